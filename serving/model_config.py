"""TF Serving's `models.config` (ModelServerConfig text proto), read without the tensorflow-serving protos.

    model_config_list {
      config { name: 'bert' base_path: '/models/bert' model_platform: 'tensorflow'
               model_version_policy { latest { num_versions: 2 } }      # or all {} / specific { versions: 1 }
               version_labels { key: 'stable' value: 1 } }
    }

`parse_text_proto` is a small, generic protobuf text-format reader (fields, nested messages with `{}` or `<>`,
repeated fields, `[a, b]` lists, quoted strings with escapes, numbers, identifiers, `#` comments).
`read_model_config_file` interprets it; mistakes raise `UserError("<file>:<line>: <what is wrong>")`.
"""
import dataclasses
import logging
import os
import re

import bertkit_errors

_TOKEN = re.compile(
    r"""(?P<ws>[ \t\r\f\v]+)|(?P<nl>\n)|(?P<comment>\#[^\n]*)
    |(?P<str>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
    |(?P<num>[-+]?(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)[fF]?)
    |(?P<id>[A-Za-z_][A-Za-z0-9_.]*)
    |(?P<punct>[{}<>:,;\[\]])""",
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "a": "\a", "b": "\b", "f": "\f",
            "v": "\v", "?": "?"}


def _unquote(s, where):
    body, out, i = s[1:-1], [], 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        i += 1
        e = body[i]
        if e in _ESCAPES:
            out.append(_ESCAPES[e])
            i += 1
        elif e in "01234567":
            m = re.match(r"[0-7]{1,3}", body[i:])
            out.append(chr(int(m.group(0), 8)))
            i += len(m.group(0))
        elif e == "x":
            m = re.match(r"[0-9a-fA-F]{1,2}", body[i + 1:])
            if not m:
                raise bertkit_errors.UserError(f"{where}: bad \\x escape in string {s}")
            out.append(chr(int(m.group(0), 16)))
            i += 1 + len(m.group(0))
        else:
            raise bertkit_errors.UserError(f"{where}: unknown escape \\{e} in string {s}")
    return "".join(out)


class _Tokens:
    def __init__(self, text, source):
        self.source = source
        self.items = []  # (kind, value, line)
        line, pos = 1, 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m:
                raise bertkit_errors.UserError(f"{source}:{line}: unexpected character {text[pos]!r}")
            kind = m.lastgroup
            if kind == "nl":
                line += 1
            elif kind in ("str", "num", "id", "punct"):
                self.items.append((kind, m.group(0), line))
            pos = m.end()
        self.i = 0
        self.last_line = line

    def peek(self):
        return self.items[self.i] if self.i < len(self.items) else (None, None, self.last_line)

    def take(self):
        tok = self.peek()
        self.i += 1
        return tok

    def where(self, tok=None):
        return f"{self.source}:{(tok or self.peek())[2]}"


def _parse_scalar(toks):
    kind, value, line = toks.take()
    where = f"{toks.source}:{line}"
    if kind == "str":
        parts = [_unquote(value, where)]
        while toks.peek()[0] == "str":  # adjacent strings concatenate, as in C
            parts.append(_unquote(toks.take()[1], where))
        return "".join(parts)
    if kind == "num":
        v = value.rstrip("fF") if not value.lower().startswith(("0x", "-0x", "+0x")) else value
        try:
            return int(v, 0) if re.fullmatch(r"[-+]?(0[xX][0-9a-fA-F]+|\d+)", v) else float(v)
        except ValueError:
            raise bertkit_errors.UserError(f"{where}: bad number {value}") from None
    if kind == "id":
        return {"true": True, "True": True, "false": False, "False": False}.get(value, value)
    raise bertkit_errors.UserError(f"{where}: expected a value, found {value or 'end of file'}")


def _parse_message(toks, closer):
    fields = {}
    while True:
        kind, value, line = toks.peek()
        if kind is None:
            if closer is None:
                return fields
            raise bertkit_errors.UserError(f"{toks.where()}: missing '{closer}' (end of file)")
        if kind == "punct" and value == closer:
            toks.take()
            return fields
        if kind == "punct" and value in ",;":
            toks.take()
            continue
        if kind != "id":
            raise bertkit_errors.UserError(f"{toks.where()}: expected a field name, found {value!r}")
        name = toks.take()[1]
        has_colon = toks.peek()[:2] == ("punct", ":")
        if has_colon:
            toks.take()
        kind, value, line = toks.peek()
        values = fields.setdefault(name, [])
        if kind == "punct" and value in "{<":
            toks.take()
            values.append(_parse_message(toks, "}" if value == "{" else ">"))
        elif kind == "punct" and value == "[":
            toks.take()
            while True:
                k, v, _ = toks.peek()
                if (k, v) == ("punct", "]"):
                    toks.take()
                    break
                if (k, v) == ("punct", ","):
                    toks.take()
                    continue
                if (k, v) in (("punct", "{"), ("punct", "<")):
                    toks.take()
                    values.append(_parse_message(toks, "}" if v == "{" else ">"))
                else:
                    values.append(_parse_scalar(toks))
        elif not has_colon:
            raise bertkit_errors.UserError(f"{toks.where()}: expected ':' or '{{' after field '{name}'")
        else:
            values.append(_parse_scalar(toks))


def parse_text_proto(text, source="<text>"):
    """Parse protobuf text format into {field: [value or dict, ...]} (every field is a list)."""
    return _parse_message(_Tokens(text, source), None)


@dataclasses.dataclass
class ModelSpecConfig:
    name: str
    base_path: str
    version_policy: str = "all"           # "all" | "latest" | "specific"
    num_versions: int = 1                 # for "latest"
    versions: tuple = ()                  # for "specific"
    version_labels: dict = dataclasses.field(default_factory=dict)   # label -> version

    def wanted_versions(self, on_disk):
        """Which of the versions found on disk should be loaded."""
        on_disk = sorted(on_disk)
        if self.version_policy == "latest":
            return set(on_disk[-self.num_versions:]) if self.num_versions > 0 else set()
        if self.version_policy == "specific":
            return set(on_disk) & set(self.versions)
        return set(on_disk)


_KNOWN = {"name", "base_path", "model_platform", "model_type", "model_version_policy", "version_labels",
          "logging_config"}


def _one(fields, key, where, required=False, kind=str):
    vals = fields.get(key, [])
    if len(vals) > 1:
        raise bertkit_errors.UserError(f"{where}: field '{key}' given {len(vals)} times")
    if not vals:
        if required:
            raise bertkit_errors.UserError(f"{where}: field '{key}' is required")
        return None
    if not isinstance(vals[0], kind) or isinstance(vals[0], bool) and kind is not bool:
        raise bertkit_errors.UserError(f"{where}: field '{key}' has the wrong type ({vals[0]!r})")
    return vals[0]


def model_configs_from_text(text, source="models.config"):
    root = parse_text_proto(text, source)
    unknown = set(root) - {"model_config_list", "custom_model_config"}
    if unknown:
        raise bertkit_errors.UserError(f"{source}: unknown top-level field(s) {sorted(unknown)}; expected "
                                       "model_config_list {{ config {{ ... }} }}")
    if "custom_model_config" in root:
        raise bertkit_errors.UserError(f"{source}: custom_model_config is not supported, use model_config_list")
    lists = root.get("model_config_list", [])
    if len(lists) != 1 or not isinstance(lists[0], dict):
        raise bertkit_errors.UserError(f"{source}: expected exactly one model_config_list {{ ... }} block")
    configs, names = [], set()
    for i, cfg in enumerate(lists[0].get("config", [])):
        where = f"{source}: config #{i + 1}"
        if not isinstance(cfg, dict):
            raise bertkit_errors.UserError(f"{where}: expected config {{ ... }}")
        for key in sorted(set(cfg) - _KNOWN):
            logging.warning("%s: ignoring unknown field '%s'", where, key)
        name = _one(cfg, "name", where, required=True)
        if not name or "/" in name or ":" in name:
            raise bertkit_errors.UserError(f"{where}: bad model name {name!r}")
        if name in names:
            raise bertkit_errors.UserError(f"{where}: model name '{name}' appears twice")
        names.add(name)
        where = f"{source}: model '{name}'"
        base_path = _one(cfg, "base_path", where, required=True)
        platform = _one(cfg, "model_platform", where)
        if platform not in (None, "tensorflow"):
            raise bertkit_errors.UserError(f"{where}: model_platform '{platform}' is not supported (only "
                                           "'tensorflow')")
        spec = ModelSpecConfig(name=name, base_path=os.path.abspath(os.path.expanduser(base_path)))
        policy = _one(cfg, "model_version_policy", where, kind=dict)
        if policy:
            if len(policy) != 1:
                raise bertkit_errors.UserError(f"{where}: model_version_policy needs exactly one of latest, all, "
                                               "specific")
            (kind, body), = policy.items()
            body = body[0] if body else {}
            if kind == "latest":
                n = _one(body, "num_versions", where, kind=int)
                spec.version_policy, spec.num_versions = "latest", 1 if n is None else n
                if spec.num_versions < 1:
                    raise bertkit_errors.UserError(f"{where}: num_versions must be >= 1")
            elif kind == "all":
                spec.version_policy = "all"
            elif kind == "specific":
                versions = body.get("versions", [])
                if not versions or not all(isinstance(v, int) and not isinstance(v, bool) for v in versions):
                    raise bertkit_errors.UserError(f"{where}: specific {{ versions: N ... }} needs integer versions")
                spec.version_policy, spec.versions = "specific", tuple(versions)
            else:
                raise bertkit_errors.UserError(f"{where}: unknown model_version_policy '{kind}'")
        for entry in cfg.get("version_labels", []):
            label = _one(entry, "key", where, required=True)
            version = _one(entry, "value", where, required=True, kind=int)
            spec.version_labels[label] = version
        configs.append(spec)
    if not configs:
        raise bertkit_errors.UserError(f"{source}: model_config_list has no config {{ ... }} entries")
    return configs


def read_model_config_file(path):
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise bertkit_errors.UserError(f"--model_config_file={path}: cannot read ({e.strerror})") from None
    return model_configs_from_text(text, source=path)
