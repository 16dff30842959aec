"""Convert a checkpoint to a bertkit model directory (ckpt-0 + checkpoint, bert_config.json, vocab.txt, bertkit.json).

Reads any format modeling.checkpoints knows, detected from the path: original Google TF1 BERT/ALBERT checkpoints
(bert_model.ckpt with bert_config.json / albert_config.json and vocab.txt beside it), HuggingFace directories
(config.json + model.safetensors; the vocabulary from vocab.txt or, without one, from a BERT WordPiece tokenizer.json,
lower-casing from tokenizer.json / tokenizer_config.json), keras-hub BertBackbone presets, and bertkit checkpoints.
The output restores wherever a checkpoint is taken (run_classifier.py / run_pretraining.py --init_checkpoint or
--teacher_checkpoint, export_model.py), which then need no --bert_config_file, --vocab_file or --do_lower_case.

    python convert_checkpoint.py --input_checkpoint=uncased_L-12_H-768_A-12/bert_model.ckpt --output_dir=bert_base
"""
import os

from absl import flags

import bertkit_errors
import bertkit_io

flags.DEFINE_string("input_checkpoint", None, "Checkpoint prefix or model directory to convert.")
flags.DEFINE_string("output_dir", None, "Where to write the bertkit model directory.")
flags.DEFINE_string("bert_config_file", None, "Model config, for TF1 checkpoints without one beside them "
                    "(overrides the one found there).")
flags.DEFINE_string("vocab_file", None, "Vocabulary to copy (default: the one beside the checkpoint, or the "
                    "vocabulary of a HuggingFace tokenizer.json).")
flags.DEFINE_bool("do_lower_case", None, "Recorded in bertkit.json (default: from the source when it says).")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise bertkit_errors.UserError(f"unexpected arguments: {' '.join(argv[1:])}")
    for name in ("input_checkpoint", "output_dir"):
        if not getattr(FLAGS, name):
            raise bertkit_errors.UserError(f"--{name}: required")
    written = ("checkpoint", "ckpt-0.index", "ckpt-0.data-00000-of-00001", "bert_config.json", "vocab.txt",
               "bertkit.json")
    bertkit_io.refuse_output_on_input(
        [("output_dir", [os.path.join(FLAGS.output_dir, name) for name in written])],
        [("input_checkpoint", bertkit_io.checkpoint_files(FLAGS.input_checkpoint)),
         ("bert_config_file", FLAGS.bert_config_file), ("vocab_file", FLAGS.vocab_file)])
    bertkit_io.check_output_dir(FLAGS.output_dir)
    from modeling import checkpoints

    info = checkpoints.convert_to_bertkit(FLAGS.input_checkpoint, FLAGS.output_dir,
                                          bert_config_file=FLAGS.bert_config_file, vocab_file=FLAGS.vocab_file,
                                          do_lower_case=FLAGS.do_lower_case)
    print(f"read {info['format']} checkpoint {FLAGS.input_checkpoint} ({info['model_type']}, "
          f"{' + '.join(['encoder'] + info['heads'])})")
    print(f"wrote {info['prefix']}")
    print(f"vocab: {info['vocab_file'] or 'none'}; do_lower_case: {info['do_lower_case']}")


if __name__ == "__main__":
    bertkit_errors.run_main(main)
