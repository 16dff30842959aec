"""A rerun into a model directory: refuse settings other than the ones its model was trained with.

run_pretraining.py and run_classifier.py resume from the newest checkpoint in --output_dir. Before they write
anything there, `check_rerun` compares this run's settings with the directory's files (bert_config.json, vocab.txt by
content, do_lower_case and max_seq_length in bertkit.json, the task and labels in task_meta.json) and raises a
one-line UserError naming the first difference, so a failing rerun never modifies a finished model directory.
"""
import json
import os

import bertkit_errors
from data import processors
from modeling import ModelConfig


def holds_model(output_dir):
    """True when output_dir holds a checkpoint (the `checkpoint` index file the run scripts write)."""
    return bool(output_dir) and os.path.isfile(os.path.join(output_dir, "checkpoint"))


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _vocab_lines(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return [line.strip() for line in f]


def _task(name):
    try:
        return processors.canonical_task_name(name)
    except bertkit_errors.UserError:
        return str(name)


def _first_config_difference(new, old):
    a, b = new.to_dict(), old.to_dict()
    for key in list(a) + [k for k in b if k not in a]:
        if a.get(key) != b.get(key):
            return key, a.get(key), b.get(key)
    return None


def check_rerun(output_dir, bert_config_file, vocab_file=None, do_lower_case=None, max_seq_length=None,
                task_meta=None):
    """UserError naming the first difference between this run's settings and the model already in output_dir.

    Nothing to check (returns) when output_dir holds no checkpoint. Settings given as None, and files the directory
    lacks, are not compared. task_meta: {"task", "labels", "is_regression"} of this run (classifier only)."""
    if not holds_model(output_dir):
        return
    where = f"the model in --output_dir={output_dir}"
    advice = "give the settings it was trained with, or another --output_dir"
    path = os.path.join(output_dir, "bert_config.json")
    if bert_config_file and os.path.isfile(path):
        diff = _first_config_difference(ModelConfig.from_json_file(bert_config_file), ModelConfig.from_json_file(path))
        if diff is not None:
            key, new, old = diff
            raise bertkit_errors.UserError(
                f"--bert_config_file={bert_config_file}: {key}={new!r}, but {where} has {key}={old!r} "
                f"(its bert_config.json); {advice}")
    path = os.path.join(output_dir, "vocab.txt")
    if vocab_file and os.path.isfile(path) and os.path.isfile(vocab_file):
        new, old = _vocab_lines(vocab_file), _vocab_lines(path)
        if new != old:
            line = next((i for i, (a, b) in enumerate(zip(new, old)) if a != b), min(len(new), len(old))) + 1
            raise bertkit_errors.UserError(
                f"--vocab_file={vocab_file}: not the vocabulary {where} was trained with (its vocab.txt; "
                f"{len(new)} vs {len(old)} tokens, first difference at line {line}); {advice}")
    info = _read_json(os.path.join(output_dir, "bertkit.json"))
    old = info.get("do_lower_case")
    if do_lower_case is not None and isinstance(old, bool) and bool(do_lower_case) != old:
        raise bertkit_errors.UserError(
            f"--do_lower_case={bool(do_lower_case)}: {where} was trained with do_lower_case={old} "
            f"(its bertkit.json); {advice}")
    old = info.get("max_seq_length")
    if max_seq_length is not None and isinstance(old, int) and int(max_seq_length) != old:
        raise bertkit_errors.UserError(
            f"--max_seq_length={max_seq_length}: {where} was trained with max_seq_length={old} "
            f"(its bertkit.json); {advice}")
    old = _read_json(os.path.join(output_dir, "task_meta.json"))
    if task_meta is not None and old.get("task"):
        if _task(task_meta.get("task")) != _task(old["task"]):
            raise bertkit_errors.UserError(
                f"--task_name={task_meta.get('task')}: {where} was trained on task {old['task']} "
                f"(its task_meta.json); {advice}")

        def show(meta):
            return "regression" if meta.get("is_regression") else ",".join(meta.get("labels") or [])

        if show(task_meta) != show(old):
            raise bertkit_errors.UserError(
                f"--task_name={task_meta.get('task')}: labels {show(task_meta)}, but {where} was trained with "
                f"labels {show(old)} (its task_meta.json); {advice}")
