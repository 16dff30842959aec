"""The TensorFlow side of the record schemas (data/schema.py): tf.io feature specs of the pretraining and
fine-tuning records, and a TFRecordDataset over comma-separated globs with the compression detected per file.
"""
import tensorflow as tf

from data import schema


def pretraining_feature_spec(max_seq_length, max_predictions_per_seq):
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
    t = int(max_seq_length)
    return {
        "input_ids": tf.io.FixedLenFeature([t], tf.int64),
        "input_mask": tf.io.FixedLenFeature([t], tf.int64),
        "segment_ids": tf.io.FixedLenFeature([t], tf.int64),
        "label_ids": tf.io.FixedLenFeature([1], tf.float32 if is_regression else tf.int64),
        "is_real_example": tf.io.FixedLenFeature([1], tf.int64),
        "example_index": tf.io.FixedLenFeature([1], tf.int64),
    }


def open_tfrecord_dataset(file_patterns, num_parallel_reads=None, flag="input_file"):
    """A tf.data.TFRecordDataset of serialized records from comma-separated globs (file order kept).

    The compression (none or GZIP) is detected per file from its bytes; files of both kinds may be mixed.
    """
    files = schema.expand_file_patterns(file_patterns, flag=flag)
    kinds = [schema.compression_type(f) for f in files]
    if len(set(kinds)) == 1:
        return tf.data.TFRecordDataset(files, compression_type=kinds[0], num_parallel_reads=num_parallel_reads)
    dataset = None
    for f, kind in zip(files, kinds):
        ds = tf.data.TFRecordDataset([f], compression_type=kind)
        dataset = ds if dataset is None else dataset.concatenate(ds)
    return dataset


def parse_pretraining_dataset(file_patterns, max_seq_length, max_predictions_per_seq):
    """Convenience: an unbatched dataset of parsed pretraining feature dicts (tests, inspection)."""
    spec = pretraining_feature_spec(max_seq_length, max_predictions_per_seq)
    return open_tfrecord_dataset(file_patterns).map(lambda r: tf.io.parse_single_example(r, spec))
