"""Atomic file output: write under a temporary name, rename when complete."""
import contextlib
import glob
import os

import bertkit_errors


def temp_name(path):
    return f"{path}.tmp-{os.getpid()}"


@contextlib.contextmanager
def atomic_write(path, mode="w", encoding="utf-8"):
    """Open `path` for writing; the file appears under its real name only if the block finishes."""
    tmp = temp_name(path)
    kwargs = {} if "b" in mode else {"encoding": encoding}
    try:
        with open(tmp, mode, **kwargs) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def ensure_writable_dir(path, flag="output_dir"):
    """Create `path` if needed; a UserError naming the flag if it cannot be written."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise bertkit_errors.UserError(f"--{flag}={path}: cannot create directory ({e.strerror})") from None
    if not os.access(path, os.W_OK):
        raise bertkit_errors.UserError(f"--{flag}={path}: directory is not writable")
    return path


def expand_paths(value):
    """A flag's value (a path, a comma-separated list, globs; or a list of those) -> the paths it names."""
    parts = value if isinstance(value, (list, tuple)) else str(value or "").split(",")
    out = []
    for part in parts:
        part = os.fspath(part).strip()
        if not part:
            continue
        matches = sorted(glob.glob(part)) if glob.has_magic(part) else []
        out.extend(matches or [part])
    return out


def same_file(a, b):
    """True when paths `a` and `b` name one file or directory: symlinks, `..` and hard links resolved."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): compare where they would resolve to
        return os.path.realpath(a) == os.path.realpath(b)


def refuse_output_on_input(outputs, inputs):
    """Before any work: a UserError naming both flags if an output path is one of the inputs.

    outputs, inputs: iterables of (flag, value); a value is a path, a comma-separated list or globs (see expand_paths),
    or None (skipped). An output that is a directory the script writes into is given as the files it writes there."""
    inputs = [(flag, path) for flag, value in inputs if value for path in expand_paths(value)]
    for out_flag, out_value in outputs:
        if not out_value:
            continue
        for out_path in expand_paths(out_value):
            for in_flag, in_path in inputs:
                if same_file(out_path, in_path):
                    where = "" if out_path == out_value else f" ({out_path})"
                    raise bertkit_errors.UserError(
                        f"--{out_flag}={out_value}{where} is the same file as --{in_flag}={in_path}: "
                        "refusing to overwrite an input; give another output path")


def checkpoint_dir(path):
    """The folder a checkpoint flag names: the path itself when it is a directory, else a prefix's folder; None when
    unset or not a path on this disk (e.g. a preset name)."""
    if not path:
        return None
    path = os.fspath(path)
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    return folder if folder and os.path.isdir(folder) else None


def checkpoint_files(path):
    """The files a checkpoint flag reads, as a glob for refuse_output_on_input: everything in its folder (a prefix's
    files and the bert_config.json / vocab.txt beside them). None when unset."""
    folder = checkpoint_dir(path)
    return os.path.join(glob.escape(folder), "*") if folder else None
