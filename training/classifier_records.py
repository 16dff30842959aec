"""Task metadata and fine-tuning records of run_classifier.py: the processor a task_meta.json was written with, the
splits of each kind, writing / reusing the records of a --data_dir in output_dir, label checks between task metas and
the source rows' ids for predictions.tsv.

    meta = prepare_records(processor, data_dir, tokenizer, output_dir, max_seq_length, do_train=True, do_eval=True,
                           do_predict=False, vocab_file=vocab, do_lower_case=True)
    dev_splits = splits_of_kind(meta, processor, "dev")
"""
import os

import bertkit_errors
from data import finetuning, processors


def processor_from_meta(meta, skip_malformed=False):
    """Rebuild the processor that wrote records from their task_meta.json (for the source rows' ids)."""
    cfg = dict(meta.get("processor") or {})
    task = cfg.pop("task_name", None) or meta.get("task")
    if processors.canonical_task_name(task) == "custom":
        custom = {k: cfg.get(k) for k in ("text_a_column", "text_b_column", "label_column", "id_column",
                                          "has_header", "is_regression")}
        if not meta.get("is_regression"):
            custom["labels"] = ",".join(meta.get("labels") or [])
        return processors.get_processor(task, skip_malformed=skip_malformed, **custom)
    return processors.get_processor(task, skip_malformed=skip_malformed, language=cfg.get("language"))


def task_is_pair(processor):
    """True when the task's examples are text pairs (text_a, text_b)."""
    if hasattr(processor, "text_b_column"):
        return processor.text_b_column is not None
    layouts = getattr(processor, "layouts", None) or {}
    return any(getattr(layout, "text_b", None) is not None for layout in layouts.values())


def splits_of_kind(meta, processor, kind):
    """Split names of `kind` ('train', 'dev', 'test') present in the records, in the processor's order."""
    order = {name: i for i, name in enumerate(processor.split_names())}
    names = [s for s, info in meta.get("splits", {}).items() if info.get("kind") == kind]
    return sorted(names, key=lambda s: order.get(s, len(order)))


def _wanted_splits(processor, do_train, do_eval, do_predict):
    names = []
    if do_train:
        names += list(processor.train_splits)
    if do_eval:
        names += list(processor.dev_splits)
    if do_predict:
        names += list(processor.test_splits)
    return names


def prepare_records(processor, data_dir, tokenizer, output_dir, max_seq_length, *, do_train, do_eval, do_predict,
                    vocab_file, do_lower_case, print_fn=print):
    """The original run_classifier.py behaviour: write the needed splits' records into output_dir (train.tf_record,
    eval/dev..., test...), reusing records already there when their task_meta.json matches (same task, labels, vocab,
    case, max_seq_length, processor settings, source file, and the record newer than its source). Returns the meta."""
    wanted = _wanted_splits(processor, do_train, do_eval, do_predict)
    for kind, flag, names in (("train", "do_train", processor.train_splits), ("dev", "do_eval", processor.dev_splits),
                              ("test", "do_predict", processor.test_splits)):
        if {"train": do_train, "dev": do_eval, "test": do_predict}[kind] and not names:
            raise bertkit_errors.UserError(f"--{flag}: task {processor.task_name} has no {kind} set")
    labels = processor.get_labels(data_dir)
    expected = {
        "task": processor.task_name, "labels": list(labels), "is_regression": bool(processor.is_regression),
        "max_seq_length": int(max_seq_length), "vocab_file": os.path.abspath(vocab_file),
        "do_lower_case": bool(do_lower_case), "processor": processor.config(),
    }
    old = finetuning.read_task_meta(output_dir)
    missing = list(wanted)
    if old is not None and all(old.get(k) == v for k, v in expected.items()):
        missing = []
        for split in wanted:
            info = old.get("splits", {}).get(split)
            record = os.path.join(output_dir, info["file"]) if info and info.get("file") else None
            source = processor.split_path(data_dir, split)
            if (record is None or not os.path.isfile(record) or info.get("source") != os.path.abspath(source)
                    or not os.path.isfile(source) or os.path.getmtime(record) < os.path.getmtime(source)):
                missing.append(split)
    if not missing:
        print_fn(f"reusing the records in {output_dir} ({', '.join(wanted)})")
        return old
    meta = finetuning.write_task_records(processor, data_dir, tokenizer, output_dir, max_seq_length, splits=missing,
                                         vocab_file=vocab_file, do_lower_case=do_lower_case)
    for split in missing:
        info = meta["splits"][split]
        print_fn(f"{split}: {info['num_real_examples']} examples ({info['num_truncated']} truncated) -> "
                 f"{os.path.join(output_dir, info['file'])}")
    return meta


def check_labels_match(meta, other_meta, where):
    """UserError when two task metas disagree on the task's label list / regression."""
    if other_meta is None:
        return
    a = (bool(meta.get("is_regression")), list(meta.get("labels") or []))
    b = (bool(other_meta.get("is_regression")), list(other_meta.get("labels") or []))
    if a != b:
        def show(x):
            return "regression" if x[0] else ",".join(x[1])
        raise bertkit_errors.UserError(
            f"{where}: labels {show(b)} differ from the records' labels {show(a)} (task {meta.get('task')})")


def source_ids(meta, split, processor=None):
    """{example_index: id} for a split from its source file (the id part of each example's guid: the row's id column
    where the task has one, else its row number). {} when the source cannot be read."""
    info = meta.get("splits", {}).get(split, {})
    source = info.get("source")
    if not source or not os.path.isfile(source):
        return {}
    try:
        processor = processor or processor_from_meta(meta)
        examples = processor.get_examples(os.path.dirname(source), split)
    except (bertkit_errors.UserError, OSError, TypeError, KeyError):
        return {}
    out = {}
    for ex in examples:
        guid = str(ex.guid)
        out[int(ex.example_index)] = guid[len(split) + 1:] if guid.startswith(split + "-") else guid
    return out


__all__ = [
    "processor_from_meta", "task_is_pair", "splits_of_kind", "prepare_records", "check_labels_match", "source_ids",
]
