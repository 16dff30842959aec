"""Export a bertkit checkpoint as a TF Serving SavedModel: `export_dir/<version>/` with raw-text signatures.

A fine-tuned classifier (the checkpoint dir holds task_meta.json, or --task_meta is given) is exported with
`serving_default` (text_a [, text_b] -> probabilities, label_id, label, logits), `serve_ids` and `serve_examples`
(FastBERT checkpoints also get `serve_speed` / `serve_ids_speed`); anything else as an encoder with `serving_default`
(text -> pooled_output, sequence_output) and `encode` (text -> one vector per text). See serving/README_SERVING.md.

    .venv/bin/python export_model.py --init_checkpoint=bbc_out --export_dir=bbc_out/export
    .venv/bin/python export_model.py --init_checkpoint=pretrain_out --pooling=mean --l2_normalize

Unset flags default to the files of the model directory (bert_config.json, vocab.txt, bertkit.json, task_meta.json).
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

import bertkit_errors  # noqa: E402
import bertkit_io  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("init_checkpoint", None, "bertkit model directory or checkpoint prefix (other formats through "
                    "modeling/checkpoints.py: TF1 and HuggingFace BERT directories, encoders only).")
flags.DEFINE_string("bert_config_file", None, "Model config; default <model dir>/bert_config.json.")
flags.DEFINE_string("vocab_file", None, "WordPiece vocabulary; default <model dir>/vocab.txt.")
flags.DEFINE_bool("do_lower_case", None, "Lower-case input text; default from <model dir>/bertkit.json, else true.")
flags.DEFINE_integer("max_seq_length", None, "Tokens per text (longer texts are truncated); default from "
                     "task_meta.json, else 128.")
flags.DEFINE_string("export_dir", None, "TF Serving base path; the export goes to <export_dir>/<next version>/. "
                    "Default <model dir>/export.")
flags.DEFINE_string("task_meta", None, "task_meta.json of the fine-tuning task (labels, is_regression): export a "
                    "classifier. Default <model dir>/task_meta.json when present, else an encoder is exported.")
flags.DEFINE_bool("pair", None, "Classifier takes text_a and text_b; default from task_meta.json.")
flags.DEFINE_enum("pooling", "cls", ["cls", "mean"], "Encoder `encode` signature: the [CLS] vector or the mean over "
                  "the input mask.")
flags.DEFINE_bool("l2_normalize", False, "Encoder `encode` signature: L2-normalise the vectors.")


def main(argv):
    if len(argv) > 1:
        raise bertkit_errors.UserError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.init_checkpoint:
        raise bertkit_errors.UserError("--init_checkpoint: required")
    bertkit_io.refuse_output_on_input(
        [("export_dir", FLAGS.export_dir)],
        [("init_checkpoint", bertkit_io.checkpoint_files(FLAGS.init_checkpoint)),
         ("bert_config_file", FLAGS.bert_config_file), ("vocab_file", FLAGS.vocab_file),
         ("task_meta", FLAGS.task_meta)])
    if FLAGS.export_dir:
        bertkit_io.check_output_dir(FLAGS.export_dir, "export_dir")
    from serving import checkpoint_export
    version_dir = checkpoint_export.export_checkpoint(
        FLAGS.init_checkpoint, export_dir=FLAGS.export_dir, bert_config_file=FLAGS.bert_config_file,
        vocab_file=FLAGS.vocab_file, do_lower_case=FLAGS.do_lower_case, max_seq_length=FLAGS.max_seq_length,
        task_meta=FLAGS.task_meta, pooling=FLAGS.pooling, l2_normalize=FLAGS.l2_normalize, pair=FLAGS.pair)
    print(f"exported {version_dir}")


if __name__ == "__main__":
    bertkit_errors.run_main(main)
