"""tf.data input pipelines for pre-training and fine-tuning records.

Both builders return batched `tf.data.Dataset`s of feature dicts with int32 ids, sharded for one input pipeline of a
`tf.distribute` strategy when given its `tf.distribute.InputContext` (use them from
`strategy.distribute_datasets_from_function`). `batch_size` is always the GLOBAL batch size; with an input context the
per-replica batch is `input_context.get_per_replica_batch_size(batch_size)`.

Feature shapes are the stored ones: `input_ids` `input_mask` `segment_ids` [B, T]; `masked_lm_positions`
`masked_lm_ids` [B, P] int32, `masked_lm_weights` [B, P] float32; `next_sentence_labels` [B, 1];
fine-tuning `label_ids` `is_real_example` `example_index` [B, 1].
"""
import contextlib
import glob
import json
import os
import re

import tensorflow as tf

import bertkit_errors
from data import schema, tfrecords

_MAX_FILES_CHECKED = 32


def expand_file_patterns(file_patterns, flag="input_file"):
    """Comma-separated globs -> files (data.schema.expand_file_patterns); UserError naming the flag if none match."""
    return schema.expand_file_patterns(file_patterns, flag=flag)


def compression_type(path):
    """"GZIP" or "" detected from the file's bytes (data.schema)."""
    return schema.compression_type(path)


def _first_example(path):
    ds = tf.data.TFRecordDataset(path, compression_type=compression_type(path))
    try:
        for raw in ds.take(1):
            example = tf.train.Example()
            example.ParseFromString(raw.numpy())
            return example
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
        raise bertkit_errors.UserError(f"{path}: not a TFRecord file ({e.message.splitlines()[0]})") from None
    except Exception as e:  # noqa: BLE001 - a protobuf DecodeError has no common TF base
        raise bertkit_errors.UserError(f"{path}: first record is not a tf.train.Example ({e})") from None
    return None


def _feature_length(example, key):
    feature = example.features.feature.get(key)
    if feature is None:
        return None
    kind = feature.WhichOneof("kind")
    return len(getattr(feature, kind).value) if kind else 0


def check_pretraining_records(files, max_seq_length, max_predictions_per_seq):
    """Read the first record of each file (the first 32 files) and compare its lengths to the flags.

    Raises UserError naming the file and both lengths when `input_ids` is not `max_seq_length` long or
    `masked_lm_positions` is not `max_predictions_per_seq` long, or when a pre-training feature is missing.
    Returns the number of files checked. Empty files are skipped.
    """
    required = ("input_ids", "input_mask", "segment_ids", "masked_lm_positions", "masked_lm_ids",
                "masked_lm_weights", "next_sentence_labels")
    checked = 0
    for path in files[:_MAX_FILES_CHECKED]:
        example = _first_example(path)
        if example is None:
            continue
        missing = [k for k in required if _feature_length(example, k) is None]
        if missing:
            raise bertkit_errors.UserError(
                f"{path}: not a pre-training record (missing features {', '.join(missing)})")
        seq = _feature_length(example, "input_ids")
        if seq != max_seq_length:
            raise bertkit_errors.UserError(
                f"{path}: records have max_seq_length {seq}, but --max_seq_length={max_seq_length}")
        preds = _feature_length(example, "masked_lm_positions")
        if preds != max_predictions_per_seq:
            raise bertkit_errors.UserError(
                f"{path}: records have max_predictions_per_seq {preds}, "
                f"but --max_predictions_per_seq={max_predictions_per_seq}")
        checked += 1
    return checked


def check_finetuning_records(files, max_seq_length):
    """Like check_pretraining_records, for fine-tuning records (`input_ids` length and `label_ids` present)."""
    checked = 0
    for path in files[:_MAX_FILES_CHECKED]:
        example = _first_example(path)
        if example is None:
            continue
        if _feature_length(example, "label_ids") is None:
            raise bertkit_errors.UserError(f"{path}: not a fine-tuning record (missing feature label_ids)")
        seq = _feature_length(example, "input_ids")
        if seq != max_seq_length:
            raise bertkit_errors.UserError(
                f"{path}: records have max_seq_length {seq}, but --max_seq_length={max_seq_length}")
        checked += 1
    return checked


# Files of at most this many bytes in all are read through before training (record counts, CRCs, id ranges).
MAX_BYTES_SCANNED = 4 << 30


def _damage_message(error):
    text = getattr(error, "message", str(error))
    m = re.search(r"(corrupted|truncated) record at (\d+)", text)
    if m:
        return f"{m.group(1)} record at byte offset {m.group(2)}"
    return (text.strip().splitlines() or ["damaged"])[0][:200]


def _readable_records(path):
    """How many records of a damaged file can be read before the damage."""
    count = 0
    try:
        for _ in tf.data.TFRecordDataset(path, compression_type=compression_type(path)):
            count += 1
    except tf.errors.OpError:
        pass
    return count


def scan_records(path, batch_size=1024):
    """Read a TFRecord file through: {"count", "max_input_id", "max_segment_id"} (None when the records lack the
    feature). UserError naming the file (and the byte offset) when a record is damaged."""
    spec = {"input_ids": tf.io.VarLenFeature(tf.int64), "segment_ids": tf.io.VarLenFeature(tf.int64)}

    def maxima(raw):
        f = tf.io.parse_example(raw, spec)
        return (tf.shape(raw)[0], tf.reduce_max(tf.concat([[-1], f["input_ids"].values], 0)),
                tf.reduce_max(tf.concat([[-1], f["segment_ids"].values], 0)))

    ds = tf.data.TFRecordDataset(path, compression_type=compression_type(path), buffer_size=8 << 20)
    ds = ds.batch(batch_size).map(maxima, num_parallel_calls=tf.data.AUTOTUNE).prefetch(2)
    count, max_id, max_seg = 0, -1, -1
    try:
        for n, a, b in ds:
            count += int(n)
            max_id, max_seg = max(max_id, int(a)), max(max_seg, int(b))
    except tf.errors.DataLossError as e:
        raise bertkit_errors.UserError(
            f"{path}: damaged TFRecord file ({_damage_message(e)}, after {_readable_records(path)} readable "
            "records)") from None
    except tf.errors.InvalidArgumentError as e:
        raise bertkit_errors.UserError(
            f"{path}: a record is not a tf.train.Example ({_damage_message(e)})") from None
    return {"count": count, "max_input_id": max_id if max_id >= 0 else None,
            "max_segment_id": max_seg if max_seg >= 0 else None}


@contextlib.contextmanager
def damaged_records_named(files):
    """Around training / evaluation on files too large to read through first: a DataLossError from the input
    pipeline becomes a UserError naming the damaged file (found by reading the files through) and the offset."""
    try:
        yield
    except tf.errors.DataLossError as e:
        for path in files:
            scan_records(path)  # raises the UserError naming the file
        raise bertkit_errors.UserError(
            f"{', '.join(files[:3])}{' ...' if len(files) > 3 else ''}: damaged TFRecord data "
            f"({_damage_message(e)})") from None


def summary_record_counts(files):
    """{file: number of records} for the pre-training files a create_pretraining_data.py `.summary.json` beside them
    describes (records go round-robin over its output files)."""
    wanted = {os.path.abspath(f): f for f in files}
    counts = {}
    for directory in sorted({os.path.dirname(os.path.abspath(f)) for f in files}):
        for path in sorted(glob.glob(os.path.join(glob.escape(directory), "*.summary.json"))):
            try:
                with open(path, encoding="utf-8") as fh:
                    summary = json.load(fh)
                outputs = [os.path.abspath(os.path.join(directory, os.path.basename(o)))
                           for o in summary.get("output_files", [])]
                total = int(summary["instances"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            for k, out in enumerate(outputs):
                if out in wanted:
                    counts[wanted[out]] = (total // len(outputs) + (1 if k < total % len(outputs) else 0), path)
    return counts


def check_records_integrity(files, expected_counts=None, vocab_size=None, type_vocab_size=None,
                            config_file="--bert_config_file", max_bytes=MAX_BYTES_SCANNED):
    """Read the record files through before training: UserError naming the file when one is damaged (with the byte
    offset), holds another number of records than its metadata says (`expected_counts`: {file: (count, where)}), or
    holds an input id >= `vocab_size` / a segment id >= `type_vocab_size` (the model config's). Skipped (returns
    False) when the files hold more than `max_bytes` in all; True when checked."""
    expected_counts = expected_counts or {}
    if sum(os.path.getsize(f) for f in files) > max_bytes:
        return False
    for path in files:
        info = scan_records(path)
        want = expected_counts.get(path)
        if want is not None and want[0] is not None and info["count"] != int(want[0]):
            raise bertkit_errors.UserError(
                f"{path}: {info['count']} records, but {want[1]} says {int(want[0])} (the file is damaged or cut "
                "short; write it again)")
        if vocab_size is not None and info["max_input_id"] is not None and info["max_input_id"] >= vocab_size:
            raise bertkit_errors.UserError(
                f"{path}: records hold token id {info['max_input_id']}, but vocab_size is {vocab_size} in "
                f"{config_file} (records written with a larger vocabulary than the model's)")
        if (type_vocab_size is not None and info["max_segment_id"] is not None
                and info["max_segment_id"] >= type_vocab_size):
            raise bertkit_errors.UserError(
                f"{path}: records hold segment id {info['max_segment_id']} (sentence pairs), but type_vocab_size is "
                f"{type_vocab_size} in {config_file}")
    return True


def check_vocab_fits(vocab_file, vocab_size, config_file, flag="vocab_file"):
    """UserError when the vocab file has more lines (ids) than the model config's vocab_size."""
    if not vocab_file or not os.path.isfile(vocab_file):
        return
    with open(vocab_file, "rb") as f:
        lines = sum(1 for _ in f)
    if lines > vocab_size:
        raise bertkit_errors.UserError(
            f"--{flag}={vocab_file}: {lines} tokens, more than vocab_size {vocab_size} in {config_file}")


def _records(files, is_training, input_context, seed, num_parallel_reads=8):
    """Raw serialized records: files sharded per input pipeline, shuffled and repeated for training."""
    ctypes = [compression_type(f) for f in files]
    num_pipelines = input_context.num_input_pipelines if input_context else 1
    pipeline_id = input_context.input_pipeline_id if input_context else 0
    shard_records = False
    if num_pipelines > 1:
        if len(files) >= num_pipelines:
            files = files[pipeline_id::num_pipelines]
            ctypes = ctypes[pipeline_id::num_pipelines]
        else:  # fewer files than workers: every worker reads all files and keeps every n-th record
            shard_records = True

    def read(path, ctype):
        return tf.data.TFRecordDataset(path, compression_type=ctype, buffer_size=8 << 20)

    if is_training:
        d = tf.data.Dataset.from_tensor_slices((files, ctypes))
        d = d.repeat()
        d = d.shuffle(buffer_size=len(files), seed=seed)
        d = d.interleave(read, cycle_length=min(num_parallel_reads, len(files)),
                         num_parallel_calls=tf.data.AUTOTUNE, deterministic=seed is not None)
        if shard_records:
            d = d.shard(num_pipelines, pipeline_id)
    else:
        d = tf.data.Dataset.from_tensor_slices((files, ctypes)).interleave(
            read, cycle_length=1)
        if shard_records:
            d = d.shard(num_pipelines, pipeline_id)
    return d


def _to_int32(features):
    return {k: tf.cast(v, tf.int32) if v.dtype == tf.int64 else v for k, v in features.items()}


def _per_replica_batch(batch_size, input_context):
    return input_context.get_per_replica_batch_size(batch_size) if input_context else batch_size


class DynamicMasker:
    """Re-mask pre-training examples on the fly (80% [MASK] / 10% random / 10% kept), new masks every epoch.

    The stored masks are undone first: `masked_lm_ids` go back to `masked_lm_positions` (where the weight is > 0),
    then keras_hub's MaskedLMMaskGenerator picks up to `max_predictions_per_seq` new positions at rate
    `mask_selection_rate` among the non-special tokens.
    """

    def __init__(self, vocab_size, mask_token_id, unselectable_token_ids, max_predictions_per_seq,
                 mask_selection_rate=0.15, seed=None):
        import keras_hub  # local: +1.3 s start-up (measured) for every run, and only dynamic masking needs it

        self.generator = keras_hub.layers.MaskedLMMaskGenerator(
            vocabulary_size=vocab_size, mask_selection_rate=mask_selection_rate,
            mask_token_id=mask_token_id, mask_selection_length=max_predictions_per_seq,
            unselectable_token_ids=sorted(set(int(i) for i in unselectable_token_ids)),
            mask_token_rate=0.8, random_token_rate=0.1)
        self.max_predictions_per_seq = max_predictions_per_seq

    @staticmethod
    def original_ids(features):
        """input_ids with the stored masked positions restored to their original tokens ([B, T] or [T])."""
        ids = features["input_ids"]
        positions = features["masked_lm_positions"]
        labels = features["masked_lm_ids"]
        valid = features["masked_lm_weights"] > 0
        if ids.shape.rank == 1:
            idx = tf.boolean_mask(positions, valid)[:, None]
            return tf.tensor_scatter_nd_update(ids, tf.cast(idx, tf.int64 if ids.dtype == tf.int64 else tf.int32),
                                               tf.boolean_mask(labels, valid))
        batch = tf.broadcast_to(tf.range(tf.shape(ids)[0], dtype=positions.dtype)[:, None], tf.shape(positions))
        idx = tf.boolean_mask(tf.stack([batch, positions], axis=-1), valid)
        return tf.tensor_scatter_nd_update(ids, idx, tf.boolean_mask(labels, valid))

    def __call__(self, features):
        ids = self.original_ids(features)
        # Only real tokens are candidates: padding is id 0 only by convention, so mask it out explicitly.
        out = self.generator(ids)
        features = dict(features)
        masked = out["token_ids"]
        features["input_ids"] = tf.where(tf.cast(features["input_mask"], tf.bool), tf.cast(masked, ids.dtype), ids)
        features["masked_lm_positions"] = tf.cast(out["mask_positions"], features["masked_lm_positions"].dtype)
        features["masked_lm_ids"] = tf.cast(out["mask_ids"], features["masked_lm_ids"].dtype)
        features["masked_lm_weights"] = tf.cast(out["mask_weights"], tf.float32)
        return features


def pretraining_dataset(file_patterns, max_seq_length, max_predictions_per_seq, batch_size, *, is_training=True,
                        input_context=None, seed=None, dynamic_masker=None, drop_remainder=None,
                        shuffle_buffer_size=1000, check_records=True, files=None):
    """Batched pre-training features from TFRecords (comma-separated globs, gzip detected per file).

    Training: files sharded per input pipeline, shuffled, repeated, record-shuffled, batched with drop_remainder.
    Eval: read in order once (the caller repeats or limits steps), batched keeping the remainder unless
    `drop_remainder=True`. `dynamic_masker`: a DynamicMasker applied per batch (training only makes sense).
    The first record of each file is checked against the lengths first (UserError naming the file).
    """
    if files is None:
        files = expand_file_patterns(file_patterns)
    if check_records:
        check_pretraining_records(files, max_seq_length, max_predictions_per_seq)
    spec = tfrecords.pretraining_feature_spec(max_seq_length, max_predictions_per_seq)
    per_replica = _per_replica_batch(batch_size, input_context)
    if drop_remainder is None:
        drop_remainder = is_training

    d = _records(files, is_training, input_context, seed)
    if is_training:
        d = d.shuffle(shuffle_buffer_size, seed=seed)
    d = d.batch(per_replica, drop_remainder=drop_remainder)
    d = d.map(lambda raw: tf.io.parse_example(raw, spec), num_parallel_calls=tf.data.AUTOTUNE,
              deterministic=not is_training or seed is not None)
    if dynamic_masker is not None:
        d = d.map(dynamic_masker, num_parallel_calls=tf.data.AUTOTUNE,
                  deterministic=not is_training or seed is not None)
    d = d.map(_to_int32, num_parallel_calls=tf.data.AUTOTUNE)
    return d.prefetch(tf.data.AUTOTUNE)


FULL_SHUFFLE_MAX_RECORDS = 100_000


def full_shuffle_buffer(num_examples):
    """A shuffle buffer that holds a whole fine-tuning training set (up to FULL_SHUFFLE_MAX_RECORDS records).

    Task files are often sorted (by label, by source): with a buffer smaller than the file, batches then follow that
    order, which can pull a classifier towards the labels it saw last. A buffer as large as the set draws every batch
    from all of it, as a uniform shuffle does."""
    return int(max(1, min(num_examples, FULL_SHUFFLE_MAX_RECORDS)))


def finetuning_dataset(file_patterns, max_seq_length, batch_size, *, is_training=True, is_regression=False,
                       input_context=None, seed=None, drop_remainder=None, shuffle_buffer_size=1000,
                       check_records=True, files=None):
    """Batched fine-tuning features (`input_ids` `input_mask` `segment_ids` `label_ids` `is_real_example`
    `example_index`), same sharding/shuffling rules as pretraining_dataset. Eval/predict keep record order.
    For training on a sorted file, pass `shuffle_buffer_size=full_shuffle_buffer(num_examples)` (run_classifier.py
    does)."""
    if files is None:
        files = expand_file_patterns(file_patterns)
    if check_records:
        check_finetuning_records(files, max_seq_length)
    spec = tfrecords.finetuning_feature_spec(max_seq_length, is_regression=is_regression)
    per_replica = _per_replica_batch(batch_size, input_context)
    if drop_remainder is None:
        drop_remainder = is_training
    d = _records(files, is_training, input_context, seed)
    if is_training:
        d = d.shuffle(shuffle_buffer_size, seed=seed)
    d = d.batch(per_replica, drop_remainder=drop_remainder)
    d = d.map(lambda raw: _to_int32(tf.io.parse_example(raw, spec)), num_parallel_calls=tf.data.AUTOTUNE,
              deterministic=not is_training or seed is not None)
    return d.prefetch(tf.data.AUTOTUNE)
