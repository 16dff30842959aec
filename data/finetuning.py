"""Fine-tuning data: InputExamples -> packed features -> TFRecords + `task_meta.json`.

Usage: `from data.finetuning import write_task_records`, then
  meta = write_task_records(processor, data_dir, tokenizer, output_dir, max_seq_length=128,
                            splits=("train", "dev", "test"), pad_to_multiple_of=None)

Packing follows the original BERT `convert_single_example`: `[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]`, segment ids
0 for `[CLS] a [SEP]` and 1 for `b [SEP]`, input mask 1 on real tokens, zero padding to max_seq_length. Pairs are
truncated longest-first, one token at a time, from the end, ties taken from b (`_truncate_seq_pair`); single texts
keep their first max_seq_length - 2 tokens. As in the original, an example counts as a pair only when text_b is
non-empty and has at least one token.

Records (DESIGN.md fine-tuning schema, `data.tfrecords.finetuning_feature_spec`): input_ids, input_mask, segment_ids
int64[T]; label_ids int64[1] (float[1] for regression; 0 for unlabelled test rows); is_real_example int64[1];
example_index int64[1] (data row in the source file; -1 for padding examples). Files: `<split>.tf_record` in
output_dir (train.tf_record, dev.tf_record / dev_matched.tf_record ..., test.tf_record ...), plus `task_meta.json`:

    {"task": "mrpc", "labels": ["0", "1"], "num_labels": 2, "is_regression": false, "main_metric": "f1",
     "max_seq_length": 128, "vocab_file": "/abs/vocab.txt", "do_lower_case": true, "processor": {...},
     "splits": {"train": {"kind": "train", "file": "train.tf_record", "num_examples": 3668,
                          "num_real_examples": 3668, "num_truncated": 12, "source": "/abs/train.tsv"}, ...}}

`num_examples` counts the records written, padding included. Labels are in id order: label id i is labels[i].
"""
import json
import logging
import os

import numpy as np
import tensorflow as tf

import bertkit_io
from bertkit_errors import UserError

logger = logging.getLogger(__name__)

META_FILE = "task_meta.json"
_META_KEYS = ("task", "labels", "is_regression", "max_seq_length", "vocab_file", "do_lower_case", "processor")


def truncate_seq_pair(tokens_a, tokens_b, max_length):
    """The original BERT `_truncate_seq_pair`: truncates the two lists in place, always from the longer one."""
    while True:
        total_length = len(tokens_a) + len(tokens_b)
        if total_length <= max_length:
            break
        if len(tokens_a) > len(tokens_b):
            tokens_a.pop()
        else:
            tokens_b.pop()


def truncated_lengths(len_a, len_b, max_length):
    """Lengths `truncate_seq_pair` leaves, in closed form (no loop)."""
    if len_a + len_b <= max_length:
        return len_a, len_b
    half = max_length // 2
    if len_b <= half:
        return max_length - len_b, len_b
    if len_a <= half:
        return len_a, max_length - len_a
    return max_length - half, half


def _special_id(tokenizer, token):
    try:
        return int(tokenizer.vocab[token])
    except KeyError:
        raise UserError(f"vocab file lacks {token}") from None


def convert_examples_to_features(examples, label_list, max_seq_length, tokenizer, is_regression=False,
                                 pad_to_multiple_of=None, stats=None):
    """Pack examples into numpy arrays.

    Returns {"input_ids", "input_mask", "segment_ids": int64 [N, T], "label_ids": int64 [N] (float32 for
    regression), "is_real_example": int64 [N], "example_index": int64 [N]}. With `pad_to_multiple_of=k`, padding
    rows (all zeros, is_real_example 0, example_index -1) are appended until N is a multiple of k.
    `stats`, if a dict, receives num_truncated (examples that lost tokens).
    """
    max_seq_length = int(max_seq_length)
    if max_seq_length < 3:
        raise UserError(f"--max_seq_length={max_seq_length}: must be at least 3")
    examples = list(examples)
    cls_id, sep_id = _special_id(tokenizer, "[CLS]"), _special_id(tokenizer, "[SEP]")
    label_map = {label: i for i, label in enumerate(label_list)}

    ids_a = tokenizer.encode_batch([ex.text_a for ex in examples]) if examples else []
    b_rows = [i for i, ex in enumerate(examples) if ex.text_b]
    ids_b = [None] * len(examples)
    for i, ids in zip(b_rows, tokenizer.encode_batch([examples[i].text_b for i in b_rows]) if b_rows else []):
        ids_b[i] = ids if len(ids) else None      # original: `if tokens_b:` -- an all-whitespace b is no b

    n = len(examples)
    total = n
    if pad_to_multiple_of and int(pad_to_multiple_of) > 1:
        k = int(pad_to_multiple_of)
        total = -(-n // k) * k if n else 0
    input_ids = np.zeros((total, max_seq_length), dtype=np.int64)
    input_mask = np.zeros((total, max_seq_length), dtype=np.int64)
    segment_ids = np.zeros((total, max_seq_length), dtype=np.int64)
    label_ids = np.zeros((total,), dtype=np.float32 if is_regression else np.int64)
    is_real = np.zeros((total,), dtype=np.int64)
    example_index = np.full((total,), -1, dtype=np.int64)
    num_truncated = 0

    for i, ex in enumerate(examples):
        a = np.asarray(ids_a[i], dtype=np.int64)
        b = ids_b[i]
        if b is not None:
            b = np.asarray(b, dtype=np.int64)
            la, lb = truncated_lengths(len(a), len(b), max_seq_length - 3)
            if la < len(a) or lb < len(b):
                num_truncated += 1
            a, b = a[:la], b[:lb]
            row = np.concatenate([[cls_id], a, [sep_id], b, [sep_id]])
            seg_start = len(a) + 2
        else:
            if len(a) > max_seq_length - 2:
                a = a[:max_seq_length - 2]
                num_truncated += 1
            row = np.concatenate([[cls_id], a, [sep_id]])
            seg_start = len(row)
        length = len(row)
        input_ids[i, :length] = row
        input_mask[i, :length] = 1
        segment_ids[i, seg_start:length] = 1
        is_real[i] = 1
        example_index[i] = ex.example_index
        if ex.label is None:
            continue
        if is_regression:
            try:
                label_ids[i] = float(ex.label)
            except (TypeError, ValueError):
                raise UserError(f"example {ex.guid}: label {ex.label!r} is not a number") from None
        else:
            if ex.label not in label_map:
                raise UserError(f"example {ex.guid}: label {ex.label!r} is not in the label list "
                                f"({', '.join(map(str, label_list))})")
            label_ids[i] = label_map[ex.label]
    if stats is not None:
        stats["num_truncated"] = num_truncated
    return {"input_ids": input_ids, "input_mask": input_mask, "segment_ids": segment_ids, "label_ids": label_ids,
            "is_real_example": is_real, "example_index": example_index}


def serialize_features(features):
    """Yield serialized tf.train.Example strings, one per row of the feature arrays."""
    def ints(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    regression = features["label_ids"].dtype.kind == "f"
    for i in range(features["input_ids"].shape[0]):
        label = features["label_ids"][i]
        feature = {
            "input_ids": ints(features["input_ids"][i].tolist()),
            "input_mask": ints(features["input_mask"][i].tolist()),
            "segment_ids": ints(features["segment_ids"][i].tolist()),
            "label_ids": (tf.train.Feature(float_list=tf.train.FloatList(value=[float(label)])) if regression
                          else ints([int(label)])),
            "is_real_example": ints([int(features["is_real_example"][i])]),
            "example_index": ints([int(features["example_index"][i])]),
        }
        yield tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_tfrecord(features, path):
    """Write the feature arrays to `path` atomically; returns the number of records."""
    bertkit_io.remove_stale_temps_of(path)
    tmp = bertkit_io.temp_name(path)
    count = 0
    try:
        with tf.io.TFRecordWriter(tmp) as writer:
            for record in serialize_features(features):
                writer.write(record)
                count += 1
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        if bertkit_io.is_no_space(e):
            raise UserError(f"{path}: no space left on device while writing records") from None
        raise
    return count


def resolve_splits(processor, splits=None):
    """Split names to write. `splits`: None (all of the processor's), or names / kinds ('train', 'dev', 'test';
    a kind expands to e.g. dev_matched + dev_mismatched for MNLI, and is skipped when the task has none, like the
    BBC test set). A comma-separated string is accepted."""
    if splits is None:
        return processor.split_names()
    if isinstance(splits, str):
        splits = [s.strip() for s in splits.split(",") if s.strip()]
    if not splits:
        raise UserError("--splits: no split given")
    kinds = {"train": processor.train_splits, "dev": processor.dev_splits, "test": processor.test_splits,
             "eval": processor.dev_splits, "predict": processor.test_splits}
    out = []
    for item in splits:
        if item in processor.split_names():
            names = [item]
        elif item in kinds:
            names = list(kinds[item])
            if not names:
                logger.info("task %s has no %s split; skipped", processor.task_name, item)
        else:
            raise UserError(f"--splits={','.join(splits)}: task {processor.task_name} has no split {item!r} "
                            f"(it has: {', '.join(processor.split_names())})")
        out.extend(n for n in names if n not in out)
    if not out:
        raise UserError(f"--splits={','.join(splits)}: nothing to write for task {processor.task_name}")
    return out


def read_task_meta(output_dir):
    """The task_meta.json of a records directory, or None."""
    path = os.path.join(output_dir, META_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: cannot read metadata ({e})") from None


def write_task_records(processor, data_dir, tokenizer, output_dir, max_seq_length, splits=None,
                       pad_to_multiple_of=None, vocab_file=None, do_lower_case=None, replace_other=True):
    """Read each split with `processor`, pack, write `<split>.tf_record` and `task_meta.json`; return the metadata.

    `pad_to_multiple_of` pads dev and test splits (never train) with is_real_example=0 records to a multiple of it
    (the original BERT did this for TPU eval/predict batches). When output_dir already holds records written with
    the same task, labels, vocab and max_seq_length, their entries stay in the metadata; otherwise the old record
    files named by the old metadata are removed, so the directory never mixes incompatible records
    (replace_other=False: a UserError naming the first different setting instead, before anything is written).
    """
    bertkit_io.ensure_writable_dir(output_dir)
    names = resolve_splits(processor, splits)
    labels = processor.get_labels(data_dir)
    vocab_file = vocab_file or getattr(tokenizer, "vocab_file", None)
    if do_lower_case is None:
        do_lower_case = getattr(tokenizer, "do_lower_case", None)
    meta = {
        "task": processor.task_name,
        "labels": list(labels),
        "num_labels": processor.num_labels,
        "is_regression": bool(processor.is_regression),
        "main_metric": processor.main_metric,
        "max_seq_length": int(max_seq_length),
        "vocab_file": os.path.abspath(vocab_file) if vocab_file else None,
        "do_lower_case": None if do_lower_case is None else bool(do_lower_case),
        "processor": processor.config(),
        "splits": {},
    }
    # Read every split before writing anything: a bad row in the test file must not leave half an output.
    loaded = {}
    for split in names:
        loaded[split] = (processor.get_examples(data_dir, split), processor.split_path(data_dir, split))
    bertkit_io.refuse_output_on_input(
        [("output_dir", [os.path.join(output_dir, f"{split}.tf_record") for split in names]
          + [os.path.join(output_dir, META_FILE)])],
        [("data_dir", [source for _, source in loaded.values() if source]), ("vocab_file", vocab_file)])
    labels_after = processor.get_labels(data_dir)
    meta["labels"] = list(labels_after)
    meta["processor"] = processor.config()

    old = read_task_meta(output_dir)
    if old is not None:
        other = [k for k in _META_KEYS if old.get(k) != meta.get(k)]
        if other and not replace_other:
            key = other[0]
            raise UserError(f"--output_dir={output_dir}: holds records written with {key}={old.get(key)!r}, not "
                            f"{meta.get(key)!r} (its {META_FILE}); give another --output_dir, or remove those "
                            "records first")
        if not other:
            meta["splits"].update({k: v for k, v in old.get("splits", {}).items() if k not in names})
        else:
            for split, info in old.get("splits", {}).items():
                path = os.path.join(output_dir, info.get("file", ""))
                if split not in names and os.path.isfile(path) and info.get("file"):
                    logger.warning("removing %s: written with other settings than this run", path)
                    os.remove(path)

    created = []  # record files this call added: removed again when a later split fails (e.g. a full disk)
    try:
        for split in names:
            examples, source = loaded[split]
            kind = processor.split_kind(split)
            stats = {}
            features = convert_examples_to_features(
                examples, meta["labels"], max_seq_length, tokenizer, is_regression=processor.is_regression,
                pad_to_multiple_of=pad_to_multiple_of if kind != "train" else None, stats=stats)
            file_name = f"{split}.tf_record"
            path = os.path.join(output_dir, file_name)
            existed = os.path.exists(path)
            count = write_tfrecord(features, path)
            if not existed:
                created.append(path)
            meta["splits"][split] = {
                "kind": kind, "file": file_name, "num_examples": count, "num_real_examples": len(examples),
                "num_truncated": stats["num_truncated"], "has_labels": any(ex.label is not None for ex in examples),
                "source": os.path.abspath(source),
            }
            logger.info("%s: %d examples (%d truncated) -> %s", split, len(examples), stats["num_truncated"], path)
    except BaseException:
        for path in created:
            os.remove(path)
        raise

    with bertkit_io.atomic_write(os.path.join(output_dir, META_FILE)) as f:
        json.dump(meta, f, indent=2, ensure_ascii=False)
        f.write("\n")
    return meta
