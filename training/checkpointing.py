"""Checkpoints of a training run, apart from the loop that writes them (training/trainer.py): resuming from the newest
readable checkpoint of an output directory (a damaged or cut one is skipped with a warning and the previous one is
used), saving with a one-line error on a full disk, and loading an --init_checkpoint's encoder (a bertkit checkpoint,
or any format modeling.checkpoints reads) with errors naming the variable and both shapes.

    prefix = restore_newest_readable(tf.train.Checkpoint(**items), output_dir)     # None: a fresh start
    save_checkpoint(manager, step)
    prefix = restore_encoder_weights(encoder, init_checkpoint)
"""
import gc
import os
import re

import tensorflow as tf
from absl import logging

import bertkit_errors
import bertkit_io
from modeling import checkpoints


def checkpoint_prefixes(directory):
    """The checkpoints the `checkpoint` state file of `directory` lists and whose index file exists (as
    tf.train.latest_checkpoint requires), newest first."""
    state = tf.train.get_checkpoint_state(directory)
    if state is None or not state.model_checkpoint_path:
        return []
    paths = [state.model_checkpoint_path] + list(reversed(state.all_model_checkpoint_paths))
    paths = [p if os.path.isabs(p) else os.path.join(directory, p) for p in paths]
    return [p for p in dict.fromkeys(paths) if tf.io.gfile.exists(p + ".index")]


def restore_newest_readable(checkpoint, directory, print_fn=print):
    """Restore the newest checkpoint of `directory` that can be read; returns its prefix (None: no checkpoint).

    A damaged or truncated checkpoint (a run killed while writing, a full disk) is skipped with a warning naming it,
    and the previous one is tried; UserError naming the newest when none can be read. A checkpoint that does not match
    the model fails as before (AssertionError / ValueError)."""
    prefixes = checkpoint_prefixes(directory)
    first_error = None
    for prefix in prefixes:
        try:
            checkpoint.restore(prefix).assert_existing_objects_matched()
        except checkpoints.DAMAGED_CHECKPOINT_ERRORS as e:
            error = checkpoints.damaged_checkpoint_error(prefix, e)
            first_error = first_error or error
            print_fn(f"warning: {error}; trying the previous checkpoint")
            continue
        if prefix != prefixes[0]:
            print_fn(f"warning: resuming from {prefix}, not from the damaged {prefixes[0]}")
        return prefix
    if first_error is not None:
        raise bertkit_errors.UserError(f"{first_error} (and no earlier readable checkpoint in {directory})")
    return None


def save_checkpoint(manager, step):
    """manager.save(checkpoint_number=step); on a full disk a UserError naming the directory, and no `_temp`
    leftovers."""
    try:
        return manager.save(checkpoint_number=step)
    except Exception as e:  # noqa: BLE001 - only disk-full errors are translated
        if not bertkit_io.is_no_space(e):
            raise
        checkpoints.remove_checkpoint_temps(manager.directory)
        raise bertkit_errors.UserError(
            f"{manager.directory}: no space left on device while saving checkpoint ckpt-{step}") from None


def restore_encoder_weights(encoder, path, name="encoder"):
    """Load a bertkit checkpoint's `encoder` (tf.train.Checkpoint(encoder=...)) into `encoder`.

    UserError (flag --init_checkpoint) when the checkpoint has no encoder, lacks one of our variables, or a variable's
    shape differs (the message names the variable and both shapes). Other formats (original TF1 BERT/ALBERT
    checkpoints, HuggingFace directories, keras-hub presets) are delegated to
    `modeling.checkpoints.init_from_checkpoint` (then the return value is `path`).
    """
    prefix = tf.train.latest_checkpoint(path) if os.path.isdir(path) else path
    if not prefix or not (tf.io.gfile.exists(prefix + ".index") or tf.io.gfile.exists(prefix)):
        if _foreign_format(path):  # a TF1 / HuggingFace / keras-hub checkpoint: modeling.checkpoints loads it
            return _init_foreign(encoder, path)
        raise bertkit_errors.UserError(f"--init_checkpoint={path}: no checkpoint found")
    try:
        reader = tf.train.load_checkpoint(prefix)
    except (tf.errors.NotFoundError, tf.errors.DataLossError, ValueError) as e:
        raise bertkit_errors.UserError(f"--init_checkpoint={path}: cannot read checkpoint ({e})") from None
    shapes = reader.get_variable_to_shape_map()
    if not any(k.startswith(f"{name}/") for k in shapes):
        if _foreign_format(path):
            return _init_foreign(encoder, path)
        raise bertkit_errors.UserError(f"--init_checkpoint={path}: not a bertkit checkpoint (no '{name}' object)")
    problem = None
    try:
        checkpoints.read_objects(prefix, **{name: encoder})  # a damaged checkpoint: a UserError naming it
    except AssertionError as e:
        problem = f"checkpoint does not match the model config ({str(e).splitlines()[0][:300]})"
    except ValueError as e:
        problem = _shape_message(e)
    if problem:
        # The half-done restore logs "Value in checkpoint could not be found" warnings when it is collected; collect
        # it now, quietly, so the one-line error is the last thing printed.
        verbosity = logging.get_verbosity()
        logging.set_verbosity(logging.ERROR)
        try:
            gc.collect()
        finally:
            logging.set_verbosity(verbosity)
        raise bertkit_errors.UserError(f"--init_checkpoint={path}: {problem}")
    return prefix


def _foreign_format(path):
    """The format name when `path` is a checkpoint modeling.checkpoints reads other than bertkit's, else None."""
    try:
        fmt = checkpoints.detect_format(path)
    except bertkit_errors.UserError:
        return None
    return fmt if fmt != "bertkit" else None


def _init_foreign(encoder, path):
    what = checkpoints.init_from_checkpoint(encoder, path)
    logging.info("--init_checkpoint=%s: loaded %s", path, what)
    return path


def _shape_message(error):
    msg = str(error).replace("\n", " ")
    m = re.search(r"incompatible tensor with shape (\S+) when attempting to restore variable with shape (\S+) "
                  r"and name (\S+?)(?::\d+)?\.?$", msg)
    if m:
        return f"variable {m.group(3)} has shape {m.group(2)} in the model but {m.group(1)} in the checkpoint"
    return msg[:400]


__all__ = ["checkpoint_prefixes", "restore_newest_readable", "save_checkpoint", "restore_encoder_weights"]
