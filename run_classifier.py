"""BERT fine-tuning for sequence (pair) classification and regression: the original run_classifier.py flags on TF2 /
Keras 3, plus distribution, mixed precision, best-checkpoint keeping, prediction files and SavedModel export.

    python run_classifier.py --task_name=MRPC --do_train --do_eval --data_dir=glue_data/MRPC \
        --vocab_file=vocab.txt --bert_config_file=bert_config.json --init_checkpoint=pretrain_out \
        --max_seq_length=128 --train_batch_size=32 --learning_rate=2e-5 --num_train_epochs=3 --output_dir=mrpc_out

With --data_dir the records are written into --output_dir (reused when their task_meta.json matches); with --records_dir
the TFRecords + task_meta.json of create_finetuning_data.py are read. --init_checkpoint may be a bertkit model
directory: bert_config.json, vocab.txt and do_lower_case then default from it; the same for a TF1 or HuggingFace
directory (config.json; a vocabulary only in tokenizer.json is written to output_dir/vocab.txt). Training evaluates the
dev set after every epoch (--do_eval) and keeps the best checkpoint by the task's main metric in output_dir/best/; the
final evaluation (the best checkpoint's results, not evaluated again), prediction and export use it. Rerunning the same
command resumes (and does not train again when done). Writes into --output_dir: ckpt-N (encoder, classifier_head,
optimizer, global_step), bert_config.json, vocab.txt, bertkit.json, task_meta.json, logs/train, logs/eval,
eval_results.txt, test_results.tsv + predictions.tsv, export/.

TinyBERT task distillation: --teacher_checkpoint=<run_classifier output_dir of a teacher fine-tuned on the task> (same
labels in the same order, else a one-line error) trains the --bert_config_file / --init_checkpoint student against
the frozen teacher; --distill_stage=intermediate|prediction|both, --layer_mapping, --attention_loss, --temperature,
--hard_label_weight. The intermediate stage adds `fit_dense` to the checkpoints (restored from an --init_checkpoint
general-distillation output when it has one of the same widths) and, since it does not train the classifier head,
keeps no best/ checkpoint (the latest one is used; the dev set is evaluated at the end only). Evaluation, prediction
and export use the student alone; its output_dir is the --init_checkpoint of the next stage:

    python run_classifier.py ... --init_checkpoint=general_distill_out --teacher_checkpoint=teacher_out \
        --distill_stage=intermediate --output_dir=student_inter
    python run_classifier.py ... --init_checkpoint=student_inter --teacher_checkpoint=teacher_out \
        --distill_stage=prediction --output_dir=student_final

FastBERT: --fastbert adds a branch classifier after every layer but the last (checkpoint item `branches`).
--fastbert_stage=finetune (default) fine-tunes as usual and saves the branches untrained; --fastbert_stage=distill
starts from a fine-tuned --init_checkpoint, freezes encoder and classifier head and trains the branches on the KL to
the final classifier's distribution (the training set's texts, or the unlabelled --distill_file), keeping the latest
checkpoint (no best/). After the distill stage, --do_eval adds speed_<s>_{accuracy,agreement,avg_exit_layer,
relative_flops,examples_per_second} for each --speed and full_model_* to eval_results.txt, writes speed_table.txt and
logs the speed/accuracy curve under logs/eval; --do_export exports the early-exit signatures (speed -> exit_layer).
"""
import os

from absl import flags

import bertkit_errors
import bertkit_io

# The original flags.
flags.DEFINE_string("data_dir", None, "The input data dir (the task's .tsv files). Or use --records_dir.")
flags.DEFINE_string("bert_config_file", None, "The config json file of the pre-trained BERT model "
                    "(default: bert_config.json of an --init_checkpoint model directory).")
flags.DEFINE_string("task_name", None, "cola|sst-2|mrpc|sts-b|qqp|mnli|mnli-mm|qnli|rte|wnli|xnli|ax|custom|bbc.")
flags.DEFINE_string("vocab_file", None, "The vocabulary file (default: vocab.txt of an --init_checkpoint directory).")
flags.DEFINE_string("output_dir", None, "The output directory where the model checkpoints will be written.")
flags.DEFINE_string("init_checkpoint", None, "Initial checkpoint: a bertkit checkpoint prefix or model directory, an "
                    "original TF1 BERT directory, or a HuggingFace BERT directory (config.json, model.safetensors, "
                    "vocab.txt or tokenizer.json).")
flags.DEFINE_bool("do_lower_case", True, "Lower case the input text (when not given: the --init_checkpoint "
                  "directory's bertkit.json, or the --records_dir records' setting, else True).",
                  allow_override=True)  # build_vocab.py defines the same flag; tests import both in one process
flags.DEFINE_integer("max_seq_length", 128, "Maximum total input sequence length after WordPiece tokenization "
                     "(with --records_dir, default: the records').")
flags.DEFINE_bool("do_train", False, "Whether to run training.")
flags.DEFINE_bool("do_eval", False, "Whether to run eval on the dev set.")
flags.DEFINE_bool("do_predict", False, "Whether to run the model in inference mode on the test set.")
flags.DEFINE_integer("train_batch_size", 32, "Total batch size for training.")
flags.DEFINE_integer("eval_batch_size", 8, "Total batch size for eval.")
flags.DEFINE_integer("predict_batch_size", 8, "Total batch size for predict.")
flags.DEFINE_float("learning_rate", 5e-5, "The initial learning rate for Adam.")
flags.DEFINE_float("num_train_epochs", 3.0, "Total number of training epochs to perform.")
flags.DEFINE_float("warmup_proportion", 0.1, "Proportion of training to perform linear learning rate warmup for.")
flags.DEFINE_integer("save_checkpoints_steps", 1000, "How often to save the model checkpoint (also at each epoch end).")
flags.DEFINE_integer("iterations_per_loop", 1000, "Steps per tf.function call (Keras steps_per_execution).")
flags.DEFINE_bool("use_tpu", False, "Whether to use TPU (same as --distribution_strategy=tpu).")
flags.DEFINE_string("tpu_name", None, "The Cloud TPU to use for training.")
flags.DEFINE_string("tpu_zone", None, "GCE zone where the Cloud TPU is located in.")
flags.DEFINE_string("gcp_project", None, "Project name for the Cloud TPU-enabled project.")
flags.DEFINE_string("master", None, "[Optional] TensorFlow master URL (used as the TPU name when --tpu_name is unset).")
flags.DEFINE_integer("num_tpu_cores", 8, "Only used for information: the TPU strategy uses all cores it finds.")
# Additions.
flags.DEFINE_bool("do_export", False, "Export a raw-text SavedModel (serving/export.py) of the best/latest model.")
flags.DEFINE_string("export_dir", None, "Export base directory (default: output_dir/export).")
flags.DEFINE_string("records_dir", None, "Read <split>.tf_record + task_meta.json written by "
                    "create_finetuning_data.py instead of --data_dir.")
flags.DEFINE_enum("distribution_strategy", None, ["one_device", "mirrored", "multi_worker_mirrored", "tpu"],
                  "tf.distribute strategy (default: tpu with --use_tpu, mirrored with several GPUs, else one_device).")
flags.DEFINE_enum("mixed_precision", "float32", ["float32", "mixed_float16", "mixed_bfloat16"], "Keras dtype policy.")
flags.DEFINE_bool("enable_xla", False, "Compile the train step with XLA (jit_compile).")
flags.DEFINE_enum("optimizer", "adamw", ["adamw", "lamb"], "Optimizer.")
flags.DEFINE_integer("gradient_accumulation_steps", 1, "Micro-batches per optimizer step (must divide the "
                     "per-replica batch).")
flags.DEFINE_float("layerwise_lr_decay", None, "Layer-wise learning-rate decay factor (e.g. 0.8); none by default.")
flags.DEFINE_integer("seed", None, "Random seed (weights init, data order, dropout).")
flags.DEFINE_integer("keep_checkpoint_max", 5, "How many checkpoints to keep (the best one is kept apart).")
flags.DEFINE_bool("skip_malformed", False, "Skip (and log) malformed rows of the data files.")
flags.DEFINE_string("xnli_language", None, "XNLI language (default zh, as the original BERT).")
# Custom task columns (as create_finetuning_data.py).
flags.DEFINE_string("text_a_column", None, "custom: column name / JSONL key (0-based index without header).")
flags.DEFINE_string("text_b_column", None, "custom: second text column, for pair tasks.")
flags.DEFINE_string("label_column", None, "custom: label column.")
flags.DEFINE_string("labels", None, "custom: comma-separated labels in id order (default: the training file's, "
                    "sorted).")
flags.DEFINE_bool("has_header", True, "custom: TSV/CSV files have a header line.")
flags.DEFINE_bool("is_regression", False, "custom: the label is a number (regression).")
flags.DEFINE_string("id_column", None, "custom: column with a row id (used in predictions.tsv).")
# TinyBERT task distillation.
flags.DEFINE_string("teacher_checkpoint", None, "TinyBERT task distillation: the output_dir of run_classifier.py for "
                    "a teacher fine-tuned on this task (same labels in the same order); its best/ checkpoint, else "
                    "its latest, is loaded and frozen. The --bert_config_file / --init_checkpoint model is the "
                    "student.")
flags.DEFINE_enum("distill_stage", "both", ["intermediate", "prediction", "both"],
                  "Task distillation stage: intermediate (embedding, hidden-state and attention losses; the "
                  "student's classifier head is not trained and the latest checkpoint is kept, no best/ selection), "
                  "prediction (soft cross-entropy to the teacher's logits) or both at once.")
flags.DEFINE_string("layer_mapping", "uniform", "Task distillation: student layer -> teacher layer, 'uniform' or "
                    "'s:t,...' (e.g. 0:2,1:5,2:8,3:11 for 12 -> 4 layers).")
flags.DEFINE_enum("attention_loss", "mse", ["mse", "kl", "none"], "Task distillation: attention loss.")
flags.DEFINE_float("temperature", 1.0, "Task distillation: temperature of the prediction loss.")
flags.DEFINE_bool("init_from_teacher", False, "Task distillation without --init_checkpoint: start the student from the "
                  "teacher's own weights, pruned to the student's shape (modeling/prune.py): student layer k from the "
                  "teacher layer --layer_mapping maps it to, the residual dimensions most active on a training batch, "
                  "the strongest query/key, value and feed-forward dimensions. BERT teacher and student, the same "
                  "head count.")
flags.DEFINE_float("hard_label_weight", 0.0, "Task distillation: weight of the gold-label cross-entropy added to the "
                   "prediction loss (0: soft labels only, as TinyBERT).")
# FastBERT.
flags.DEFINE_bool("fastbert", False, "FastBERT: a branch classifier after every layer but the last, for early exit.")
flags.DEFINE_enum("fastbert_stage", "finetune", ["finetune", "distill"],
                  "FastBERT stage: finetune (backbone + final classifier as usual; the branches are created and "
                  "saved untrained) or distill (from a fine-tuned --init_checkpoint, backbone and final classifier "
                  "frozen, every branch trained on the KL to the final classifier; no labels needed; the latest "
                  "checkpoint is kept, no best/ selection).")
flags.DEFINE_string("distill_file", None, "FastBERT distill stage: train the branches on this unlabelled text file "
                    "(one text a line, or a .tsv/.csv with a text/sentence column) instead of the training set.")
flags.DEFINE_string("distill_text_column", None, "FastBERT: the column of a delimited --distill_file to read.")
flags.DEFINE_integer("branch_hidden_size", 128, "FastBERT: width of the branch classifiers.")
flags.DEFINE_string("speed", "0,0.1,0.3,0.5,0.8", "FastBERT: comma-separated early-exit speeds in [0, 1] to "
                    "evaluate (normalized-entropy thresholds) with --do_eval after the distill stage.")

FLAGS = flags.FLAGS


def _err(message):
    return bertkit_errors.UserError(message)


def _check_flags():
    """The flag checks that need no TensorFlow (run before anything heavy is imported, so a flag error prints its line
    at once). The model files (--bert_config_file, --vocab_file) are checked here unless an --init_checkpoint
    directory may supply them (then `_check_model_files` after its defaults). Returns the --speed values."""
    # data/tasks.py imports no TensorFlow / numpy: the task name is checked before anything heavy.
    from data.tasks import canonical_task_name

    for name in ("task_name", "output_dir"):
        if not getattr(FLAGS, name):
            raise _err(f"--{name}: required")
    canonical_task_name(FLAGS.task_name)
    if not (FLAGS.do_train or FLAGS.do_eval or FLAGS.do_predict or FLAGS.do_export):
        raise _err("At least one of --do_train, --do_eval, --do_predict or --do_export must be True")
    if bool(FLAGS.data_dir) == bool(FLAGS.records_dir):
        raise _err("--data_dir / --records_dir: give exactly one")
    if not FLAGS.init_checkpoint:
        _check_model_files()
    for name in ("train_batch_size", "eval_batch_size", "predict_batch_size", "max_seq_length",
                 "save_checkpoints_steps", "iterations_per_loop", "keep_checkpoint_max"):
        if getattr(FLAGS, name) <= 0:
            raise _err(f"--{name}={getattr(FLAGS, name)}: must be positive")
    if FLAGS.do_train and FLAGS.num_train_epochs <= 0:
        raise _err(f"--num_train_epochs={FLAGS.num_train_epochs}: must be positive")
    if not 0 <= FLAGS.warmup_proportion <= 1:
        raise _err(f"--warmup_proportion={FLAGS.warmup_proportion}: must be in [0, 1]")
    _check_method_flags()
    return _speeds() if FLAGS.fastbert else None


def _check_model_files():
    if not FLAGS.bert_config_file:
        raise _err("--bert_config_file: required (or an --init_checkpoint model directory holding bert_config.json)")
    if FLAGS.data_dir and not FLAGS.vocab_file:
        raise _err("--vocab_file: required with --data_dir (or an --init_checkpoint directory holding vocab.txt)")
    for name in ("bert_config_file", "vocab_file"):
        if getattr(FLAGS, name) and not os.path.isfile(getattr(FLAGS, name)):
            raise _err(f"--{name}={getattr(FLAGS, name)}: no such file")


def _check_method_flags():
    """Task-distillation and FastBERT flags only where they apply."""
    if not FLAGS.teacher_checkpoint:
        for name in ("distill_stage", "layer_mapping", "attention_loss", "temperature", "hard_label_weight",
                     "init_from_teacher"):
            if FLAGS[name].present:
                raise _err(f"--{name}: only for task distillation (--teacher_checkpoint)")
    if FLAGS.init_from_teacher and FLAGS.init_checkpoint:
        raise _err("--init_from_teacher / --init_checkpoint: not together (the student starts from one or the other)")
    if FLAGS.temperature <= 0:
        raise _err(f"--temperature={FLAGS.temperature}: must be positive")
    if FLAGS.hard_label_weight < 0:
        raise _err(f"--hard_label_weight={FLAGS.hard_label_weight}: must not be negative")
    if not FLAGS.fastbert:
        for name in ("fastbert_stage", "distill_file", "distill_text_column", "branch_hidden_size", "speed"):
            if FLAGS[name].present:
                raise _err(f"--{name}: only with --fastbert")
    if FLAGS.fastbert and FLAGS.teacher_checkpoint:
        raise _err("--fastbert / --teacher_checkpoint: not together (distil the student first, then add FastBERT "
                   "branches to it with --init_checkpoint)")
    if FLAGS.distill_file:
        if FLAGS.fastbert_stage != "distill":
            raise _err("--distill_file: only with --fastbert_stage=distill")
        if not os.path.isfile(FLAGS.distill_file):
            raise _err(f"--distill_file={FLAGS.distill_file}: no such file")


def _speeds():
    speeds = []
    for item in FLAGS.speed.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            value = float(item)
        except ValueError:
            raise _err(f"--speed={FLAGS.speed}: {item!r} is not a number") from None
        if not 0.0 <= value <= 1.0:
            raise _err(f"--speed={FLAGS.speed}: {item} is not in [0, 1]")
        speeds.append(value)
    if not speeds:
        raise _err(f"--speed={FLAGS.speed}: no speed given")
    return speeds


def main(argv):
    del argv
    speeds = _check_flags()
    # The packages (TensorFlow with them), once the flags are known to be fine.
    from training import classifier_run as steps

    with bertkit_io.new_dir_removed_on_error(FLAGS.output_dir):   # a refused command leaves no new directory
        defaults, lower_case_given = steps.apply_model_dir_defaults(FLAGS)
        _check_model_files()
        run = steps.prepare(FLAGS, defaults, lower_case_given, speeds)   # records, strategy, checks, model dir files
    setup, trainer, items = steps.build_model(FLAGS, run)
    eval_sets = steps.datasets(FLAGS, run, run.dev_splits, FLAGS.eval_batch_size) if FLAGS.do_eval else {}
    evaluate = steps.evaluate_fn(FLAGS, run, setup, eval_sets)
    best = steps.best_checkpoint_of(FLAGS, run)
    if FLAGS.do_train:
        steps.train(FLAGS, run, setup, trainer, items, best, evaluate)
    global_step, prefix = steps.restore_final_model(FLAGS, run, setup, best)
    if FLAGS.do_eval:
        steps.evaluate_final(FLAGS, run, setup, evaluate, eval_sets, global_step, prefix)
    if FLAGS.do_predict and run.is_chief:
        steps.predict(FLAGS, run, setup)
    if FLAGS.do_export and run.is_chief:
        steps.export(FLAGS, run, setup)


if __name__ == "__main__":
    bertkit_errors.run_main(main)
