"""The best checkpoint of a fine-tuning run: `output_dir/best/` holds a copy of the checkpoint with the best main
metric so far (`ckpt-N.*`, a `checkpoint` state file, so `tf.train.latest_checkpoint(best_dir)` finds it, and
`best.json` with step, metric and metrics). `best.json` is written after the files it names and the old files are
removed after it, so an interrupted update never leaves a `best.json` naming missing files.

    best = BestCheckpoint(output_dir, "accuracy")
    best.update(step, results, checkpoint_prefix)       # after an epoch's evaluation
    prefix = best.prefix()                              # None until one was kept
    prefix = resolve_checkpoint(model_dir)              # best/ of a run_classifier.py output, else the path

Used by training/classifier.py (keeping it) and training/tinybert.py (loading a task-distillation teacher).
"""
import glob
import json
import math
import os
import shutil

import bertkit_errors
import bertkit_io

BEST_DIR = "best"
BEST_FILE = "best.json"


def read_json(path):
    """The JSON object in `path`; a UserError naming the file when it cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise bertkit_errors.UserError(f"{path}: cannot read ({e})") from None


def resolve_checkpoint(path):
    """A checkpoint prefix for --init_checkpoint: a model directory's best/ checkpoint when it has one (a run_classifier
    output), else the path itself (a prefix, or a directory that restore_encoder_weights resolves)."""
    if path and os.path.isdir(path):
        best = BestCheckpoint(path, None).prefix()
        if best:
            return best
    return path


def _better(a, b):
    """a better than b (higher); NaN is worse than anything."""
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return False
    if b is None or (isinstance(b, float) and math.isnan(b)):
        return True
    return a > b


class BestCheckpoint:
    """`output_dir/best/`: a copy of the checkpoint with the best main metric so far + best.json."""

    def __init__(self, output_dir, metric_key):
        self.dir = os.path.join(output_dir, BEST_DIR)
        self.metric_key = metric_key

    def info(self):
        path = os.path.join(self.dir, BEST_FILE)
        if not os.path.isfile(path):
            return None
        info = read_json(path)
        prefix = os.path.join(self.dir, info.get("checkpoint", ""))
        if not os.path.isfile(prefix + ".index"):
            return None
        return info

    def prefix(self):
        info = self.info()
        return os.path.join(self.dir, info["checkpoint"]) if info else None

    def update(self, step, results, checkpoint_prefix):
        """Copy `checkpoint_prefix` into best/ when results[metric_key] beats the kept one. Returns True if it did."""
        value = results.get(self.metric_key)
        current = self.info()
        if current is not None and not _better(value, current.get("value")):
            return False
        os.makedirs(self.dir, exist_ok=True)
        name = os.path.basename(checkpoint_prefix)
        for src in glob.glob(checkpoint_prefix + ".*"):
            dst = os.path.join(self.dir, os.path.basename(src))
            with open(src, "rb") as fin, bertkit_io.atomic_write(dst, "wb") as fout:
                shutil.copyfileobj(fin, fout)
        info = {"step": int(step), "checkpoint": name, "metric": self.metric_key,
                "value": None if value is None or (isinstance(value, float) and math.isnan(value)) else value,
                "metrics": results}
        with bertkit_io.atomic_write(os.path.join(self.dir, BEST_FILE)) as f:
            json.dump(info, f, indent=2, sort_keys=True)
            f.write("\n")
        with bertkit_io.atomic_write(os.path.join(self.dir, "checkpoint")) as f:  # tf.train.latest_checkpoint's file
            f.write(f'model_checkpoint_path: "{name}"\nall_model_checkpoint_paths: "{name}"\n')
        keep = {os.path.basename(p) for p in glob.glob(os.path.join(self.dir, name + ".*"))}
        for path in glob.glob(os.path.join(self.dir, "ckpt-*")):
            if os.path.basename(path) not in keep:
                os.remove(path)
        return True


__all__ = ["BEST_DIR", "BEST_FILE", "BestCheckpoint", "read_json", "resolve_checkpoint"]
