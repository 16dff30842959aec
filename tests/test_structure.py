"""The repository's structure (issue 20): few function-local imports, each saying why; no import cycle between the
repository's own modules; no module over 600 lines unless listed below with the reason. Source text only (ast and
regular expressions), no TensorFlow: a few seconds."""
import ast
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("tokenization", "data", "modeling", "training", "serving", "bench")
MAX_LOCAL_IMPORTS = 15
MAX_LINES = 600
# Modules allowed over MAX_LINES, each with the reason its parts belong together: {"path": "why"}.
LONG_MODULES_ALLOWED = {}
# The count: an indented `import x` / `from x import y` line (inside a function, class, `if` or `try`).
LOCAL_IMPORT = re.compile(r"^\s{4,}(import |from \S+ import )")


def _package_files():
    """Paths relative to ROOT of the packages' .py files, sub-packages included (bench/bad_inputs/)."""
    out = []
    for package in PACKAGES:
        for folder, subfolders, names in os.walk(os.path.join(ROOT, package)):
            subfolders[:] = sorted(d for d in subfolders if d != "__pycache__")
            rel = os.path.relpath(folder, ROOT)
            out.extend(os.path.join(rel, name) for name in sorted(names) if name.endswith(".py"))
    return out


def _repository_modules():
    """{dotted module name: path relative to ROOT} for the top-level .py files and the packages' modules."""
    modules = {name[:-3]: name for name in sorted(os.listdir(ROOT)) if name.endswith(".py")}
    for path in _package_files():
        folder, name = os.path.split(path)
        package = folder.replace(os.sep, ".")
        modules[package if name == "__init__.py" else f"{package}.{name[:-3]}"] = path
    return modules


def _read_lines(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read().split("\n")


def local_imports():
    """[(path, line number, line, says why)] for every line LOCAL_IMPORT matches in the package modules."""
    found = []
    for path in _package_files():
        lines = _read_lines(path)
        for i, line in enumerate(lines):
            if LOCAL_IMPORT.match(line):
                above = lines[i - 1].strip() if i else ""
                found.append((path, i + 1, line.strip(), "#" in line or above.startswith("#")))
    return found


def test_few_function_local_imports():
    found = local_imports()
    listing = "\n".join(f"  {path}:{n}: {line}" for path, n, line, _ in found)
    assert len(found) <= MAX_LOCAL_IMPORTS, (
        f"{len(found)} function-local imports in {', '.join(PACKAGES)} (at most {MAX_LOCAL_IMPORTS}); move them to "
        f"the top of their module unless they must stay local:\n{listing}")


def test_each_local_import_says_why():
    silent = [f"  {path}:{n}: {line}" for path, n, line, why in local_imports() if not why]
    assert not silent, ("function-local imports without a comment (same line or the line above) saying why they "
                        "must be local (an optional dependency, a measured start-up cost):\n" + "\n".join(silent))


def _imported_modules(module, tree, modules):
    """The repository modules `module`'s source imports anywhere (top level and inside functions)."""
    package = module if modules[module].endswith("__init__.py") else module.rpartition(".")[0]
    targets = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                # `import a.b.c` runs a, a.b and a.b.c; the deepest one of ours is what the code uses
                names = [".".join(parts[:k]) for k in range(len(parts), 0, -1)]
                targets.update(next(([n] for n in names if n in modules), []))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".") if package else []
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}" if base else alias.name
                if full in modules:        # `from pkg import module`
                    targets.add(full)
                elif base in modules:      # `from module import name`
                    targets.add(base)
    targets.discard(module)
    return targets


def import_graph():
    modules = _repository_modules()
    graph = {}
    for module, path in modules.items():
        tree = ast.parse("\n".join(_read_lines(path)), filename=path)
        graph[module] = sorted(_imported_modules(module, tree, modules))
    return graph


def import_cycles(graph):
    """One cycle [a, b, ..., a] per strongly connected group of modules (Tarjan), in a stable order."""
    index, low, on_stack, stack, groups = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    cycles = []
    for group in sorted(groups):
        members = set(group)
        path, seen = [group[0]], {group[0]}
        while True:      # walk inside the group until a module repeats: that closes a cycle
            nxt = next(w for w in graph[path[-1]] if w in members)
            if nxt in seen:
                cycles.append(path[path.index(nxt):] + [nxt])
                break
            path.append(nxt)
            seen.add(nxt)
    return cycles


def test_import_cycle_finder_names_the_cycle():
    graph = {"a": ["b"], "b": ["c"], "c": ["a", "d"], "d": [], "e": ["e2"], "e2": ["e"]}
    assert import_cycles(graph) == [["a", "b", "c", "a"], ["e", "e2", "e"]]
    assert import_cycles({"a": ["b"], "b": []}) == []


def test_no_import_cycles():
    cycles = import_cycles(import_graph())
    assert not cycles, "import cycles between the repository's modules:\n" + "\n".join(
        "  " + " -> ".join(cycle) for cycle in cycles)


def test_no_module_over_600_lines():
    long = []
    for path in sorted(_repository_modules().values()):
        count = len(_read_lines(path)) - 1
        if count > MAX_LINES and path not in LONG_MODULES_ALLOWED:
            long.append(f"  {path}: {count} lines")
    assert not long, (f"modules over {MAX_LINES} lines (split them along their seams, or list them in "
                      f"LONG_MODULES_ALLOWED with the reason their parts belong together):\n" + "\n".join(long))
