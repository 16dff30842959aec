"""Masked-LM + next-sentence (or sentence-order) pre-training, the original BERT flags on TF2 / Keras 3.

Runs under any tf.distribute strategy (one_device, mirrored, multi_worker_mirrored via TF_CONFIG, tpu via
TPUClusterResolver(--tpu_name, --tpu_zone, --gcp_project)); resumable: rerunning the same command continues from the
newest checkpoint in --output_dir and stops at --num_train_steps with the same learning-rate schedule.
Writes into --output_dir: ckpt-N checkpoints (encoder, mlm_head, nsp_head, optimizer, global_step), bert_config.json,
vocab.txt, bertkit.json, TensorBoard logs (logs/train, logs/eval), eval_results.txt (--do_eval) and, with
--vocab_file, a SavedModel under export/.

    python run_pretraining.py --bert_config_file=configs/tiny_bert.json --input_file='out/*.tfrecord' \
        --output_dir=pretrain_out --do_train --do_eval --vocab_file=vocab.txt --num_train_steps=1000

TinyBERT general distillation: with --teacher_config_file and --teacher_checkpoint the --bert_config_file model is a
student trained on the same records with the embedding, hidden-state and attention losses against the frozen teacher
(training/tinybert.py; --layer_mapping, --attention_loss, --temperature; --distill_mlm adds the student's MLM loss).
The checkpoints then also hold `fit_dense` (student width -> teacher width, when they differ); metrics
embedding_loss, hidden_loss, attention_loss (+ masked_lm_*). The output directory is a normal bertkit model directory
of the student (run_classifier --init_checkpoint reads it). Unset --bert_config_file / --teacher_config_file,
--vocab_file and --do_lower_case default from the --init_checkpoint / --teacher_checkpoint directories (bertkit, TF1
or HuggingFace: config.json, vocab.txt or tokenizer.json, written to output_dir/vocab.txt).

    python run_pretraining.py --bert_config_file=configs/tinybert_4l_312.json \
        --teacher_config_file=configs/bert_base_uncased.json --teacher_checkpoint=teacher_dir ...
"""
import os

from absl import flags

import bertkit_errors
import bertkit_io

flags.DEFINE_string("bert_config_file", None, "The config json file of the pre-trained model (architecture).")
flags.DEFINE_string("input_file", None, "Input TF example files (comma-separated globs; gzip detected).")
flags.DEFINE_string("output_dir", None, "The output directory where the model checkpoints will be written.")
flags.DEFINE_string("init_checkpoint", None, "Initial checkpoint (a bertkit checkpoint or model directory, a TF1 or "
                    "HuggingFace BERT directory); unset --bert_config_file, --vocab_file, --do_lower_case default "
                    "from its directory.")
flags.DEFINE_integer("max_seq_length", 128, "Maximum total input sequence length; must match the records.")
flags.DEFINE_integer("max_predictions_per_seq", 20, "Maximum number of masked LM predictions; must match the records.")
flags.DEFINE_bool("do_train", False, "Whether to run training.")
flags.DEFINE_bool("do_eval", False, "Whether to run eval on the dev set.")
flags.DEFINE_integer("train_batch_size", 32, "Total (global) batch size per optimizer step.")
flags.DEFINE_integer("eval_batch_size", 8, "Total batch size for eval.")
flags.DEFINE_float("learning_rate", 5e-5, "The initial learning rate.")
flags.DEFINE_integer("num_train_steps", 100000, "Number of training steps.")
flags.DEFINE_integer("num_warmup_steps", 10000, "Number of warmup steps.")
flags.DEFINE_integer("save_checkpoints_steps", 1000, "How often to save the model checkpoint.")
flags.DEFINE_integer("iterations_per_loop", 1000, "Steps per tf.function call (Keras steps_per_execution).")
flags.DEFINE_integer("max_eval_steps", 100, "Maximum number of eval steps.")
flags.DEFINE_bool("use_tpu", False, "Whether to use TPU (same as --distribution_strategy=tpu).")
flags.DEFINE_string("tpu_name", None, "The Cloud TPU to use for training.")
flags.DEFINE_string("tpu_zone", None, "GCE zone where the Cloud TPU is located in.")
flags.DEFINE_string("gcp_project", None, "Project name for the Cloud TPU-enabled project.")
flags.DEFINE_integer("num_tpu_cores", 8, "Only used for information: the TPU strategy uses all cores it finds.")
flags.DEFINE_enum("distribution_strategy", None, ["one_device", "mirrored", "multi_worker_mirrored", "tpu"],
                  "tf.distribute strategy (default: tpu with --use_tpu, mirrored with several GPUs, else one_device).")
flags.DEFINE_enum("mixed_precision", "float32", ["float32", "mixed_float16", "mixed_bfloat16"],
                  "Keras dtype policy; mixed_float16 uses dynamic loss scaling.")
flags.DEFINE_bool("enable_xla", False, "Compile the train step with XLA (jit_compile).")
flags.DEFINE_enum("optimizer", "adamw", ["adamw", "lamb"], "Optimizer.")
flags.DEFINE_integer("gradient_accumulation_steps", 1,
                     "Split each step's batch into this many micro-batches (train_batch_size stays the batch per "
                     "optimizer step; must divide the per-replica batch).")
flags.DEFINE_bool("dynamic_masking", False, "Re-mask each example on the fly every epoch (needs --vocab_file) "
                  "instead of using the masks stored in the records.")
flags.DEFINE_bool("sentence_order_prediction", None, "Name the sentence-pair metrics sentence_order_* (SOP data). "
                  "Default: from the data's .summary.json when present, else next_sentence_* (NSP).")
flags.DEFINE_string("eval_input_file", None, "Eval TF example files (default: --input_file).")
flags.DEFINE_string("vocab_file", None, "Vocabulary; copied into output_dir (needed for --dynamic_masking and export).")
flags.DEFINE_bool("do_lower_case", True, "Recorded in bertkit.json for export/fine-tuning.")
flags.DEFINE_integer("seed", None, "Random seed (weights init, data order, dropout).")
flags.DEFINE_integer("log_steps", None, "Log/summary interval in steps (default: save_checkpoints_steps / 10).")
flags.DEFINE_integer("keep_checkpoint_max", 5, "How many checkpoints to keep.")
flags.DEFINE_bool("do_export", True, "After training, export the encoder as a raw-text SavedModel under "
                  "output_dir/export/<version>/ (needs --vocab_file).")
flags.DEFINE_string("teacher_config_file", None, "TinyBERT general distillation: the teacher's config json (BERT, "
                    "ALBERT or MobileBERT). With --teacher_checkpoint, --bert_config_file is the student.")
flags.DEFINE_string("teacher_checkpoint", None, "The teacher's weights (a bertkit checkpoint or model directory, a "
                    "TF1 or HuggingFace BERT directory); --teacher_config_file defaults from its directory.")
flags.DEFINE_string("layer_mapping", "uniform", "Student layer -> teacher layer: 'uniform' or 's:t,...' "
                    "(e.g. 0:2,1:5,2:8,3:11 for 12 -> 4 layers).")
flags.DEFINE_enum("attention_loss", "mse", ["mse", "kl", "none"], "Attention distillation loss (TinyBERT: mse).")
flags.DEFINE_float("temperature", 1.0, "Distillation temperature (for the soft-label terms).")
flags.DEFINE_bool("distill_mlm", False, "Also train the student's masked-LM head on the stored masks (MLM loss added "
                  "to the distillation loss).")
flags.DEFINE_enum("distillation", "tinybert", ["tinybert", "mobilebert"], "With a teacher: tinybert (general "
                  "distillation) or mobilebert (progressive knowledge transfer from an IB-BERT teacher: one stage per "
                  "layer group, then pre-training distillation; training/mobilebert_transfer.py).")
flags.DEFINE_integer("num_progressive_stages", None, "--distillation=mobilebert: layer stages (default: one per "
                     "student layer; fewer stages take groups of consecutive layers).")
flags.DEFINE_integer("steps_per_stage", 1000, "--distillation=mobilebert: steps of each layer stage; the "
                     "pre-training distillation stage runs from the end of the last one to --num_train_steps.")
flags.DEFINE_float("distill_ground_truth_ratio", 0.5, "--distillation=mobilebert: weight of the one-hot label in "
                   "the MLM target of pre-training distillation (the rest: the teacher's distribution).")

FLAGS = flags.FLAGS


def _require(name):
    if getattr(FLAGS, name) in (None, ""):
        raise bertkit_errors.UserError(f"--{name}: required")


def _check_flags():
    """The flag checks that need no TensorFlow (run before anything heavy is imported, so a flag error prints its line
    at once). --bert_config_file and --vocab_file may come from an --init_checkpoint / --teacher_checkpoint directory:
    checked here when none is given, and by `_check_model_files` after the directories' defaults."""
    if not FLAGS.init_checkpoint:
        _require("bert_config_file")
    _require("output_dir")
    if not FLAGS.do_train and not FLAGS.do_eval:
        raise bertkit_errors.UserError("At least one of --do_train or --do_eval must be True")
    if FLAGS.do_train or not FLAGS.eval_input_file:
        _require("input_file")
    for name in ("train_batch_size", "eval_batch_size", "max_seq_length", "max_predictions_per_seq",
                 "save_checkpoints_steps", "iterations_per_loop", "num_train_steps"):
        if getattr(FLAGS, name) <= 0:
            raise bertkit_errors.UserError(f"--{name}={getattr(FLAGS, name)}: must be positive")
    if FLAGS.vocab_file and not os.path.isfile(FLAGS.vocab_file):
        raise bertkit_errors.UserError(f"--vocab_file={FLAGS.vocab_file}: no such file")


def _check_model_files():
    _require("bert_config_file")
    if FLAGS.vocab_file and not os.path.isfile(FLAGS.vocab_file):
        raise bertkit_errors.UserError(f"--vocab_file={FLAGS.vocab_file}: no such file")


def main(argv):
    del argv
    _check_flags()
    # The packages (TensorFlow with them), once the flags are known to be fine.
    from training import pretraining_run as steps

    with bertkit_io.new_dir_removed_on_error(FLAGS.output_dir):   # a refused command leaves no new directory
        steps.apply_model_dir_defaults(FLAGS)
        _check_model_files()
        run = steps.prepare(FLAGS)   # configs, output and rerun checks, strategy, records, model dir files
    model, trainer, items = steps.build_model(FLAGS, run)
    if FLAGS.do_train:
        steps.train(FLAGS, run, model, trainer, items)
    else:
        steps.restore_for_eval(FLAGS, run, model, trainer, items)
    if FLAGS.do_eval:
        steps.evaluate(FLAGS, run, trainer)
    if FLAGS.do_train and FLAGS.do_export and run.is_chief:
        steps.export(FLAGS, model.encoder)


if __name__ == "__main__":
    bertkit_errors.run_main(main)
