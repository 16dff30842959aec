"""TFRecord schemas shared by the data writers and the input pipelines (see DESIGN.md).

Pretraining records: input_ids, input_mask, segment_ids int64[T]; masked_lm_positions, masked_lm_ids int64[P];
masked_lm_weights float[P]; next_sentence_labels int64[1] (SOP data: same key, 1 = segments swapped).
Fine-tuning records: input_ids, input_mask, segment_ids int64[T]; label_ids int64[1] (float[1] for regression);
is_real_example int64[1]; example_index int64[1].
"""
import glob
import os
import re

import bertkit_errors

# TensorFlow is imported inside the functions that need it, so the file helpers work in processes without it.

PRETRAINING_KEYS = ("input_ids", "input_mask", "segment_ids", "masked_lm_positions", "masked_lm_ids",
                    "masked_lm_weights", "next_sentence_labels")
FINETUNING_KEYS = ("input_ids", "input_mask", "segment_ids", "label_ids", "is_real_example", "example_index")

# Files a glob may match beside the records that are never records: summaries/metadata and unfinished temp files.
_NOT_RECORDS = re.compile(r"(\.json|\.tmp-\d+)$")
_GZIP_MAGIC = b"\x1f\x8b\x08"


def pretraining_feature_spec(max_seq_length, max_predictions_per_seq):
    import tensorflow as tf

    t, p = int(max_seq_length), int(max_predictions_per_seq)
    return {
        "input_ids": tf.io.FixedLenFeature([t], tf.int64),
        "input_mask": tf.io.FixedLenFeature([t], tf.int64),
        "segment_ids": tf.io.FixedLenFeature([t], tf.int64),
        "masked_lm_positions": tf.io.FixedLenFeature([p], tf.int64),
        "masked_lm_ids": tf.io.FixedLenFeature([p], tf.int64),
        "masked_lm_weights": tf.io.FixedLenFeature([p], tf.float32),
        "next_sentence_labels": tf.io.FixedLenFeature([1], tf.int64),
    }


def finetuning_feature_spec(max_seq_length, is_regression=False):
    import tensorflow as tf

    t = int(max_seq_length)
    return {
        "input_ids": tf.io.FixedLenFeature([t], tf.int64),
        "input_mask": tf.io.FixedLenFeature([t], tf.int64),
        "segment_ids": tf.io.FixedLenFeature([t], tf.int64),
        "label_ids": tf.io.FixedLenFeature([1], tf.float32 if is_regression else tf.int64),
        "is_real_example": tf.io.FixedLenFeature([1], tf.int64),
        "example_index": tf.io.FixedLenFeature([1], tf.int64),
    }


def split_patterns(file_patterns):
    """'a*,b' or ['a*', 'b,c'] -> ['a*', 'b', 'c'] (empty items dropped)."""
    if isinstance(file_patterns, (str, os.PathLike)):
        file_patterns = [file_patterns]
    out = []
    for item in file_patterns:
        out.extend(p.strip() for p in os.fspath(item).split(",") if p.strip())
    return out


def expand_file_patterns(file_patterns, flag="input_file", skip_non_records=True):
    """Comma-separated globs -> sorted files per pattern, in pattern order, without duplicates.

    Raises UserError naming the flag when there is no pattern, or when a pattern matches no file.
    `skip_non_records` drops `*.json` and unfinished `*.tmp-<pid>` files a broad glob would also match.
    """
    patterns = split_patterns(file_patterns)
    if not patterns:
        raise bertkit_errors.UserError(f"--{flag}: no file given")
    files, seen = [], set()
    for pattern in patterns:
        matches = sorted(m for m in glob.glob(pattern) if os.path.isfile(m))
        if skip_non_records:
            matches = [m for m in matches if not _NOT_RECORDS.search(m)]
        if not matches:
            raise bertkit_errors.UserError(f"--{flag}={pattern}: no file matches")
        for m in matches:
            if m not in seen:
                seen.add(m)
                files.append(m)
    return files


def is_gzip_file(path):
    """True when the file starts with the gzip magic bytes (1f 8b 08)."""
    with open(path, "rb") as f:
        return f.read(3) == _GZIP_MAGIC


def compression_type(path):
    return "GZIP" if is_gzip_file(path) else ""


def open_tfrecord_dataset(file_patterns, num_parallel_reads=None, flag="input_file"):
    """A tf.data.TFRecordDataset of serialized records from comma-separated globs (file order kept).

    The compression (none or GZIP) is detected per file from its bytes; files of both kinds may be mixed.
    """
    import tensorflow as tf

    files = expand_file_patterns(file_patterns, flag=flag)
    kinds = [compression_type(f) for f in files]
    if len(set(kinds)) == 1:
        return tf.data.TFRecordDataset(files, compression_type=kinds[0], num_parallel_reads=num_parallel_reads)
    dataset = None
    for f, kind in zip(files, kinds):
        ds = tf.data.TFRecordDataset([f], compression_type=kind)
        dataset = ds if dataset is None else dataset.concatenate(ds)
    return dataset


def parse_pretraining_dataset(file_patterns, max_seq_length, max_predictions_per_seq):
    """Convenience: an unbatched dataset of parsed pretraining feature dicts (tests, inspection)."""
    import tensorflow as tf

    spec = pretraining_feature_spec(max_seq_length, max_predictions_per_seq)
    return open_tfrecord_dataset(file_patterns).map(lambda r: tf.io.parse_single_example(r, spec))
