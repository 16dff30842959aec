"""Atomic file output: write under a temporary name, rename when complete."""
import contextlib
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
