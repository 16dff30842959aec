"""Write fine-tuning TFRecords (train/dev/test) and task_meta.json for a GLUE, XNLI, BBC or custom task.

    python create_finetuning_data.py --task_name=MRPC --data_dir=glue_data/MRPC \
        --vocab_file=vocab.txt --do_lower_case --max_seq_length=128 --output_dir=records/mrpc

    python create_finetuning_data.py --task_name=custom --data_dir=my_data --text_a_column=review \
        --label_column=stars --labels=1,2,3,4,5 --vocab_file=vocab.txt --output_dir=records/reviews

See data/processors.py for the file layouts and data/finetuning.py for the record format.
"""
import os

from absl import flags

import bertkit_errors
import bertkit_io
from bertkit_errors import UserError

FLAGS = flags.FLAGS
flags.DEFINE_string("task_name", None, "cola|sst-2|mrpc|sts-b|qqp|mnli|mnli-mm|qnli|rte|wnli|xnli|ax|custom|bbc "
                    "(case-insensitive, hyphens optional).")
flags.DEFINE_string("data_dir", None, "Folder with the task's files (as distributed).")
flags.DEFINE_string("vocab_file", None, "WordPiece vocab file.")
flags.DEFINE_bool("do_lower_case", True, "Lower-case the text (uncased models).")
flags.DEFINE_integer("max_seq_length", 128, "Sequence length after WordPiece tokenization, [CLS] and [SEP]s.")
flags.DEFINE_string("output_dir", None, "Where <split>.tf_record and task_meta.json are written.")
flags.DEFINE_string("splits", "train,dev,test", "Comma-separated: train, dev, test (a task without one skips it) "
                    "or exact split names such as dev_mismatched.")
flags.DEFINE_integer("pad_to_multiple_of", 0, "Pad dev/test records with is_real_example=0 examples to a multiple "
                     "of this (the eval/predict batch size, for TPUs); 0 = no padding.")
flags.DEFINE_bool("skip_malformed", False, "Skip (and log) malformed rows instead of stopping with an error.")
flags.DEFINE_string("xnli_language", None, "XNLI language (default zh, as the original BERT).")
# custom task
flags.DEFINE_string("text_a_column", None, "custom: column name / JSONL key (0-based index without header).")
flags.DEFINE_string("text_b_column", None, "custom: second text column, for pair tasks.")
flags.DEFINE_string("label_column", None, "custom: label column.")
flags.DEFINE_string("labels", None, "custom: comma-separated labels in id order; default: the training file's "
                    "labels, sorted (numerically when all are integers).")
flags.DEFINE_bool("has_header", True, "custom: TSV/CSV files have a header line.")
flags.DEFINE_bool("is_regression", False, "custom: the label is a number (regression).")
flags.DEFINE_string("id_column", None, "custom: column with a row id (used in example guids).")


def _check_flags():
    """Flag errors, before the packages (TensorFlow: seconds) are imported."""
    for name in ("task_name", "data_dir", "vocab_file", "output_dir"):
        if not getattr(FLAGS, name):
            raise UserError(f"--{name} is required")
    # data/tasks.py imports no TensorFlow / numpy: the task name is checked before anything heavy.
    from data.tasks import canonical_task_name

    canonical_task_name(FLAGS.task_name)
    if FLAGS.pad_to_multiple_of < 0:
        raise UserError(f"--pad_to_multiple_of={FLAGS.pad_to_multiple_of}: must be >= 0")


def main(argv):
    del argv
    _check_flags()
    from data import finetuning, processors
    from tokenization import FullTokenizer

    processor = processors.processor_from_flags(FLAGS)
    if os.path.isfile(os.path.join(FLAGS.output_dir, "checkpoint")):
        raise UserError(f"--output_dir={FLAGS.output_dir}: holds a trained model (its records belong to it); write "
                        "the records into another directory")
    bertkit_io.check_output_dir(FLAGS.output_dir)
    tokenizer = FullTokenizer(FLAGS.vocab_file, do_lower_case=FLAGS.do_lower_case)
    meta = finetuning.write_task_records(
        processor, FLAGS.data_dir, tokenizer, FLAGS.output_dir, FLAGS.max_seq_length, splits=FLAGS.splits,
        pad_to_multiple_of=FLAGS.pad_to_multiple_of or None, vocab_file=FLAGS.vocab_file,
        do_lower_case=FLAGS.do_lower_case, replace_other=False)
    for split, info in meta["splits"].items():
        print(f"{split}: {info['num_real_examples']} examples ({info['num_examples']} records, "
              f"{info['num_truncated']} truncated) -> {info['file']}")
    print(f"labels: {' '.join(meta['labels']) if meta['labels'] else '(regression)'}")


if __name__ == "__main__":
    bertkit_errors.run_main(main)
