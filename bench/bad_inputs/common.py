"""Constants and file helpers of the bad-input campaign: hashes, leftovers, last stderr line, tmpfs mounts."""
import contextlib
import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PY = sys.executable
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1", "CUDA_VISIBLE_DEVICES": "-1"}
TEMP_PATTERNS = ("*.tmp-*", "*_temp*", ".tmp-*")
CLEAN_TEMP = re.compile(r"(\.tmp-|_temp)")

SEQ = 32
PRED = 5


# --------------------------------------------------------------------------------------------------------- helpers

def sh(args, timeout=900, check=True, cwd=ROOT):
    proc = subprocess.run([PY, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"fixture command failed ({proc.returncode}): {' '.join(args)}\n{proc.stderr[-3000:]}")
    return proc


def tree_hashes(path):
    """{relative path: sha256} of a file or of every file under a folder (symlinks followed for files)."""
    out = {}
    if os.path.isfile(path):
        with open(path, "rb") as f:
            out[""] = hashlib.sha256(f.read()).hexdigest()
    elif os.path.isdir(path):
        for dirpath, _, files in os.walk(path):
            for name in files:
                p = os.path.join(dirpath, name)
                try:
                    with open(p, "rb") as f:
                        out[os.path.relpath(p, path)] = hashlib.sha256(f.read()).hexdigest()
                except OSError:
                    out[os.path.relpath(p, path)] = "unreadable"
    return out


def temp_leftovers(path):
    found = []
    for dirpath, dirs, files in os.walk(path):
        for name in files + dirs:
            if CLEAN_TEMP.search(name):
                found.append(os.path.join(dirpath, name))
    return found


NOISE = re.compile(r"^([IWE]\d{4} \d\d:\d\d:[\d.]+ +\d+ \S+\]|WARNING: All log messages before absl)")


def last_line(text):
    """The last non-blank line, passing over TensorFlow's C++ log lines (I0000 ...) that follow a clean exit."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    real = [ln for ln in lines if not NOISE.match(ln)]
    return (real or lines or [""])[-1]


def write(path, data, mode="w"):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    kw = {} if "b" in mode else {"encoding": "utf-8"}
    with open(path, mode, **kw) as f:
        f.write(data)
    return path


def copy(src, dst):
    if os.path.isdir(src):
        shutil.copytree(src, dst, symlinks=True)
    else:
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy(src, dst)
    return dst


def latest_ckpt_data(model_dir):
    files = sorted(glob.glob(os.path.join(model_dir, "ckpt-*.data-*")),
                   key=lambda p: int(re.search(r"ckpt-(\d+)", p).group(1)))
    return files[-1]


def truncate(path, fraction=0.5):
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(int(size * fraction))


def flip_bytes(path, at=0.5, n=16):
    with open(path, "r+b") as f:
        data = bytearray(f.read())
        i = int(len(data) * at)
        for k in range(i, min(i + n, len(data))):
            data[k] ^= 0xFF
        f.seek(0)
        f.write(data)


@contextlib.contextmanager
def tmpfs(path, size=None, ro=False):
    """Mount a tmpfs at `path` (root only); yields False when mounting is refused (the case is then skipped)."""
    os.makedirs(path, exist_ok=True)
    opts = ",".join(x for x in (f"size={size}" if size else "", "ro" if ro else "") if x) or "defaults"
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", path], capture_output=True, text=True)
    try:
        yield r.returncode == 0
    finally:
        if r.returncode == 0:
            subprocess.run(["umount", "-l", path], capture_output=True)
