"""TinyBERT data augmentation for a task's training file (Jiao et al. 2020, `data_augmentation.py`).

Reads a TSV/CSV file with a header (e.g. data/bbc.py's train.tsv `id<TAB>label<TAB>text`) or a JSON Lines file, and
writes the same format: every input row first as it is, then --num_aug augmented copies in which each word of the text
column(s) is replaced with probability --replace_prob by one of its --candidates candidates; the other columns
(label, id, ...) are copied. Candidates come from a teacher with a masked-LM head (a bertkit model directory written by
run_pretraining.py): single-piece words from the masked LM (the word masked in its sentence, top whole-word
predictions), multi-piece words from the nearest whole words in the teacher's input embedding space
(training/tinybert.py: Augmenter). Augmented texts are the basic tokenizer's words joined by spaces (lower-cased for an
uncased vocabulary), as in the reference. The same --seed gives the same output, whatever --batch_size.

    python augment_data.py --input_file=bbc/train.tsv --output_file=bbc_aug/train.tsv \
        --teacher_checkpoint=pretrain_out --num_aug=20
"""
import os

from absl import flags

import bertkit_errors
import bertkit_io

flags.DEFINE_string("input_file", None, "The task's training file (.tsv or .csv with a header, or .jsonl).")
flags.DEFINE_string("output_file", None, "Where to write the augmented file (same format).")
flags.DEFINE_string("teacher_checkpoint", None, "A bertkit model directory (or checkpoint prefix in one) holding the "
                    "teacher's encoder and mlm_head, bert_config.json, vocab.txt and bertkit.json.")
flags.DEFINE_string("bert_config_file", None, "Override the teacher's config (default: <model dir>/bert_config.json).")
flags.DEFINE_string("vocab_file", None, "Override the teacher's vocabulary (default: <model dir>/vocab.txt).")
flags.DEFINE_bool("do_lower_case", None, "Override lower-casing (default: bertkit.json of the model dir, else True).")
flags.DEFINE_string("text_column", None, "Column(s) to augment, comma-separated header names (default: 'text', else "
                    "'sentence').")
flags.DEFINE_integer("num_aug", 20, "Augmented copies per row (N).")
flags.DEFINE_float("replace_prob", 0.4, "Probability of replacing each word (p).")
flags.DEFINE_integer("candidates", 15, "Candidates per word (M).")
flags.DEFINE_integer("max_seq_length", 128, "Longest sequence given to the teacher (longer texts: a window around "
                     "each masked word).")
flags.DEFINE_integer("batch_size", 64, "Masked sequences per teacher forward pass.")
flags.DEFINE_integer("seed", 42, "Random seed.")
flags.DEFINE_bool("progress", True, "Show a progress bar.")

FLAGS = flags.FLAGS


def _check_flags():
    """Flag errors, before the packages (TensorFlow: seconds) are imported."""
    for name in ("input_file", "output_file", "teacher_checkpoint"):
        if not getattr(FLAGS, name):
            raise bertkit_errors.UserError(f"--{name}: required")
    if not os.path.isfile(FLAGS.input_file):
        raise bertkit_errors.UserError(f"--input_file={FLAGS.input_file}: no such file")
    if FLAGS.num_aug < 0:
        raise bertkit_errors.UserError(f"--num_aug={FLAGS.num_aug}: must not be negative")
    if not 0.0 <= FLAGS.replace_prob <= 1.0:
        raise bertkit_errors.UserError(f"--replace_prob={FLAGS.replace_prob}: must be in [0, 1]")
    bertkit_io.refuse_output_on_input([("output_file", FLAGS.output_file)], [
        ("input_file", FLAGS.input_file), ("vocab_file", FLAGS.vocab_file),
        ("bert_config_file", FLAGS.bert_config_file),
        ("teacher_checkpoint", bertkit_io.checkpoint_files(FLAGS.teacher_checkpoint))])
    bertkit_io.check_output_file(FLAGS.output_file, "output_file")


def main(argv):
    del argv
    _check_flags()
    from data import augmentation
    from training import tinybert

    augmentation.read_table(FLAGS.input_file, FLAGS.text_column)  # header errors before the model is loaded
    encoder, mlm_head, tokenizer = augmentation.load_teacher(FLAGS.teacher_checkpoint, FLAGS.bert_config_file,
                                                             FLAGS.vocab_file, FLAGS.do_lower_case)
    augmenter = tinybert.Augmenter(encoder, mlm_head, tokenizer, max_seq_length=FLAGS.max_seq_length,
                                   candidates=FLAGS.candidates, batch_size=FLAGS.batch_size)
    summary = augmentation.augment_file(FLAGS.input_file, FLAGS.output_file, augmenter,
                                        text_column=FLAGS.text_column, num_aug=FLAGS.num_aug,
                                        replace_prob=FLAGS.replace_prob, seed=FLAGS.seed, progress=FLAGS.progress)
    print(f"wrote {FLAGS.output_file}: {summary['output_rows']} rows from {summary['input_rows']} "
          f"({summary['model_calls']} teacher forward passes, {summary['replaced_fraction']:.1%} words replaced)")


if __name__ == "__main__":
    bertkit_errors.run_main(main)
