"""Atomic file output: write under a temporary name, rename when complete."""
import contextlib
import errno
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
