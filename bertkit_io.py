"""Atomic file output: write under a temporary name, rename when complete."""
import contextlib
import errno
import glob
import os
import re
import shutil

import bertkit_errors


def temp_name(path):
    return f"{path}.tmp-{os.getpid()}"


@contextlib.contextmanager
def atomic_write(path, mode="w", encoding="utf-8"):
    """Open `path` for writing; the file appears under its real name only if the block finishes."""
    remove_stale_temps_of(path)
    tmp = temp_name(path)
    kwargs = {} if "b" in mode else {"encoding": encoding}
    try:
        with open(tmp, mode, **kwargs) as f:
            yield f
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        if is_no_space(e):
            raise bertkit_errors.UserError(f"{path}: no space left on device") from None
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


def check_output_file(path, flag="output_file"):
    """Check an output file flag before any work starts: UserError naming the flag when `path` is empty, is a
    directory, its parent directory cannot be created or written, or the file exists and is not writable.
    Creates the parent directory; returns `path`."""
    if not path:
        raise bertkit_errors.UserError(f"--{flag} is required")
    if os.path.isdir(path):
        raise bertkit_errors.UserError(f"--{flag}={path}: is a directory, a file name is expected")
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.exists(parent) and not os.path.isdir(parent):
        raise bertkit_errors.UserError(f"--{flag}={path}: {parent} is a file, not a directory")
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as e:
        raise bertkit_errors.UserError(f"--{flag}={path}: cannot create directory {parent} ({e.strerror})") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise bertkit_errors.UserError(f"--{flag}={path}: directory {parent} is not writable")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise bertkit_errors.UserError(f"--{flag}={path}: file exists and is not writable")
    return path


@contextlib.contextmanager
def new_dir_removed_on_error(directory, leftovers=("vocab.txt",)):
    """For the checks before a script's work: a directory this run creates inside the block and that holds nothing but
    `leftovers` when the block raises (e.g. an output_dir that received a vocab.txt before a later flag check failed)
    is removed again, so a refused command leaves no such directory behind. A directory that existed before, or one
    holding finished work (records written before a later check failed, reused by the next run), is left as it is."""
    existed = directory is None or os.path.lexists(directory)
    try:
        yield
    except BaseException:
        if not existed and os.path.isdir(directory) and set(os.listdir(directory)) <= set(leftovers):
            shutil.rmtree(directory, ignore_errors=True)
        raise


def check_output_dir(path, flag="output_dir"):
    """ensure_writable_dir, with a clear message when `path` names an existing file."""
    if not path:
        raise bertkit_errors.UserError(f"--{flag} is required")
    if os.path.exists(path) and not os.path.isdir(path):
        raise bertkit_errors.UserError(f"--{flag}={path}: is a file, a directory is expected")
    return ensure_writable_dir(path, flag)


def pid_alive(pid):
    """True if a process with this id exists (on this machine)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_TEMP_PATTERNS = {
    "file": re.compile(r"^(?P<base>.+)\.tmp-(?P<pid>\d+)$"),          # atomic_write / temp_name
    "export": re.compile(r"^\.tmp-export-(?P<pid>\d+)-[^/]*$"),       # serving.export staging folders
}


def remove_stale_temps(directory, kind="file", base=None):
    """Remove the temporary files (kind "file": `<name>.tmp-<pid>`, only those of `base` when given) or staging
    folders (kind "export": `.tmp-export-<pid>-*`) that killed runs left in `directory`: those whose pid is no longer
    alive. Returns the removed paths. Missing directory: nothing to do."""
    pattern = _TEMP_PATTERNS[kind]
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        m = pattern.match(name)
        if not m or (base is not None and m.groupdict().get("base") != base):
            continue
        pid = int(m.group("pid"))
        if pid == os.getpid() or pid_alive(pid):
            continue
        path = os.path.join(directory, name)
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
        except OSError:
            continue
        removed.append(path)
    return removed


def is_no_space(error):
    """True for a disk-full error: OSError ENOSPC (or EDQUOT), or a TensorFlow error whose message says so."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return True
    text = str(getattr(error, "message", "") or error).lower()
    return "no space left" in text or "disk quota exceeded" in text


@contextlib.contextmanager
def no_space_as_user_error(path, what="writing"):
    """Turn a disk-full error inside the block into a UserError naming `path` and "no space left on device"."""
    try:
        yield
    except Exception as e:  # noqa: BLE001 - only disk-full errors are translated, the rest re-raised unchanged
        if is_no_space(e):
            raise bertkit_errors.UserError(f"{path}: no space left on device while {what}") from None
        raise


def remove_stale_temps_of(path):
    """Remove `path.tmp-<pid>` files that killed runs left beside `path` (pid no longer alive)."""
    return remove_stale_temps(os.path.dirname(os.path.abspath(path)), "file", base=os.path.basename(path))


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
