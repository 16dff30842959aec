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
import json
import os

from absl import flags

import bertkit_errors

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
    for name in ("task_name", "output_dir"):
        if not getattr(FLAGS, name):
            raise _err(f"--{name}: required")
    if not (FLAGS.do_train or FLAGS.do_eval or FLAGS.do_predict or FLAGS.do_export):
        raise _err("At least one of --do_train, --do_eval, --do_predict or --do_export must be True")
    if bool(FLAGS.data_dir) == bool(FLAGS.records_dir):
        raise _err("--data_dir / --records_dir: give exactly one")
    if not FLAGS.bert_config_file:
        raise _err("--bert_config_file: required (or an --init_checkpoint model directory holding bert_config.json)")
    if FLAGS.data_dir and not FLAGS.vocab_file:
        raise _err("--vocab_file: required with --data_dir (or an --init_checkpoint directory holding vocab.txt)")
    for name in ("bert_config_file", "vocab_file"):
        if getattr(FLAGS, name) and not os.path.isfile(getattr(FLAGS, name)):
            raise _err(f"--{name}={getattr(FLAGS, name)}: no such file")
    for name in ("train_batch_size", "eval_batch_size", "predict_batch_size", "max_seq_length",
                 "save_checkpoints_steps", "iterations_per_loop", "keep_checkpoint_max"):
        if getattr(FLAGS, name) <= 0:
            raise _err(f"--{name}={getattr(FLAGS, name)}: must be positive")
    if FLAGS.do_train and FLAGS.num_train_epochs <= 0:
        raise _err(f"--num_train_epochs={FLAGS.num_train_epochs}: must be positive")
    if not 0 <= FLAGS.warmup_proportion <= 1:
        raise _err(f"--warmup_proportion={FLAGS.warmup_proportion}: must be in [0, 1]")
    if not FLAGS.teacher_checkpoint:
        for name in ("distill_stage", "layer_mapping", "attention_loss", "temperature", "hard_label_weight"):
            if FLAGS[name].present:
                raise _err(f"--{name}: only for task distillation (--teacher_checkpoint)")
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


def _load_records(processors, finetuning, classifier_lib, out_meta, has_checkpoint, lower_case_given,
                  train_records=True):
    """(processor, meta, records_dir) from --data_dir (records written into output_dir) or --records_dir."""
    from training import rerun

    if FLAGS.records_dir:
        meta = finetuning.read_task_meta(FLAGS.records_dir)
        if meta is None:
            raise _err(f"--records_dir={FLAGS.records_dir}: no task_meta.json "
                       "(write it with create_finetuning_data.py)")
        if processors.canonical_task_name(meta["task"]) != processors.canonical_task_name(FLAGS.task_name):
            raise _err(f"--records_dir={FLAGS.records_dir}: records of task {meta['task']}, not {FLAGS.task_name}")
        if FLAGS["max_seq_length"].present and int(meta["max_seq_length"]) != FLAGS.max_seq_length:
            raise _err(f"--max_seq_length={FLAGS.max_seq_length}: the records in {FLAGS.records_dir} have "
                       f"max_seq_length {meta['max_seq_length']}")
        FLAGS.max_seq_length = int(meta["max_seq_length"])
        if FLAGS.vocab_file is None and meta.get("vocab_file") and os.path.isfile(meta["vocab_file"]):
            FLAGS.vocab_file = meta["vocab_file"]
        if not lower_case_given and meta.get("do_lower_case") is not None:
            FLAGS.do_lower_case = bool(meta["do_lower_case"])
        if has_checkpoint:
            classifier_lib.check_labels_match(meta, out_meta, f"--output_dir={FLAGS.output_dir}")
        rerun.check_rerun(FLAGS.output_dir, FLAGS.bert_config_file, FLAGS.vocab_file, FLAGS.do_lower_case,
                          FLAGS.max_seq_length, task_meta=meta)
        return classifier_lib.processor_from_meta(meta, FLAGS.skip_malformed), meta, FLAGS.records_dir

    from tokenization import FullTokenizer

    processor = processors.processor_from_flags(FLAGS)
    if not os.path.isdir(FLAGS.data_dir):
        raise _err(f"--data_dir={FLAGS.data_dir}: not a directory")
    labels = processor.get_labels(FLAGS.data_dir)
    if has_checkpoint:
        classifier_lib.check_labels_match({"task": processor.task_name, "labels": labels,
                                           "is_regression": processor.is_regression}, out_meta,
                                          f"--output_dir={FLAGS.output_dir}")
    rerun.check_rerun(FLAGS.output_dir, FLAGS.bert_config_file, FLAGS.vocab_file, FLAGS.do_lower_case,
                      FLAGS.max_seq_length, task_meta={"task": processor.task_name, "labels": list(labels),
                                                       "is_regression": processor.is_regression})
    tokenizer = FullTokenizer(FLAGS.vocab_file, do_lower_case=FLAGS.do_lower_case)
    meta = classifier_lib.prepare_records(
        processor, FLAGS.data_dir, tokenizer, FLAGS.output_dir, FLAGS.max_seq_length,
        do_train=FLAGS.do_train and train_records,
        do_eval=FLAGS.do_eval, do_predict=FLAGS.do_predict, vocab_file=FLAGS.vocab_file,
        do_lower_case=FLAGS.do_lower_case)
    if meta is None:  # no records needed (FastBERT branches trained on --distill_file only): the task's metadata
        import bertkit_io

        meta = {"task": processor.task_name, "labels": list(labels), "num_labels": processor.num_labels,
                "is_regression": bool(processor.is_regression), "main_metric": processor.main_metric,
                "max_seq_length": int(FLAGS.max_seq_length), "vocab_file": os.path.abspath(FLAGS.vocab_file),
                "do_lower_case": bool(FLAGS.do_lower_case), "processor": processor.config(), "splits": {}}
        with bertkit_io.atomic_write(os.path.join(FLAGS.output_dir, finetuning.META_FILE)) as f:
            json.dump(meta, f, indent=2, sort_keys=True)
            f.write("\n")
    return processor, meta, FLAGS.output_dir


def _check_teacher(config, labels, is_regression, tinybert):
    """The teacher directory's task_meta.json and bert_config.json against this task and the student (before any
    model is built). Returns the teacher's task meta."""
    from data import finetuning
    from modeling import ModelConfig
    from training import distillation

    where = f"--teacher_checkpoint={FLAGS.teacher_checkpoint}"
    if not os.path.isdir(FLAGS.teacher_checkpoint):
        raise _err(f"{where}: not a directory (give the output_dir of run_classifier.py for the teacher)")
    teacher_meta = finetuning.read_task_meta(FLAGS.teacher_checkpoint)
    config_file = os.path.join(FLAGS.teacher_checkpoint, "bert_config.json")
    if teacher_meta is None or not os.path.isfile(config_file):
        raise _err(f"{where}: no task_meta.json / bert_config.json (not a run_classifier.py output directory)")
    if bool(teacher_meta.get("is_regression")) != is_regression:
        kinds = {True: "regression", False: "classification"}
        raise _err(f"{where}: the teacher is a {kinds[bool(teacher_meta.get('is_regression'))]} model, this task is "
                   f"{kinds[is_regression]}")
    tinybert.check_teacher_labels(teacher_meta.get("labels"), labels, where=where)
    teacher = ModelConfig.from_json_file(config_file)
    if teacher.vocab_size != config.vocab_size:
        raise _err(f"{where}: the teacher's vocab_size {teacher.vocab_size} differs from the student's "
                   f"{config.vocab_size} ({FLAGS.bert_config_file}); teacher and student must share the vocabulary")
    if FLAGS.max_seq_length > teacher.max_position_embeddings:
        raise _err(f"--max_seq_length={FLAGS.max_seq_length}: longer than the teacher's max_position_embeddings "
                   f"{teacher.max_position_embeddings}")
    if FLAGS.distill_stage != "prediction":
        if FLAGS.attention_loss != "none" and teacher.num_attention_heads != config.num_attention_heads:
            raise _err(f"--attention_loss={FLAGS.attention_loss}: the student has {config.num_attention_heads} "
                       f"attention heads and the teacher {teacher.num_attention_heads}; the attention loss needs "
                       "equal counts (use --attention_loss=none)")
        distillation.parse_layer_mapping(FLAGS.layer_mapping, config.num_hidden_layers, teacher.num_hidden_layers)
    return teacher_meta


def _method_info(teacher_meta):
    """bertkit.json / hparams entries of the task-distillation and FastBERT settings."""
    info = {}
    if FLAGS.teacher_checkpoint:
        info["task_distillation"] = {
            "teacher_checkpoint": os.path.abspath(FLAGS.teacher_checkpoint), "stage": FLAGS.distill_stage,
            "layer_mapping": FLAGS.layer_mapping, "attention_loss": FLAGS.attention_loss,
            "temperature": FLAGS.temperature, "hard_label_weight": FLAGS.hard_label_weight,
            "teacher_task": (teacher_meta or {}).get("task")}
    if FLAGS.fastbert:
        info["fastbert"] = {"stage": FLAGS.fastbert_stage, "branch_hidden_size": FLAGS.branch_hidden_size,
                            "distill_file": os.path.abspath(FLAGS.distill_file) if FLAGS.distill_file else None,
                            "speeds": FLAGS.speed}
    return info


def _is_bertkit_prefix(prefix):
    import tensorflow as tf

    try:
        tf.train.list_variables(prefix)
    except (tf.errors.NotFoundError, tf.errors.DataLossError, ValueError, TypeError):
        return False
    return True


def main(argv):
    del argv
    import bertkit_io
    from training import classifier as classifier_lib

    defaults = classifier_lib.model_dir_defaults(
        FLAGS.init_checkpoint, vocab_dir=None if FLAGS["vocab_file"].present else FLAGS.output_dir)
    for name in ("bert_config_file", "vocab_file", "do_lower_case"):
        if not FLAGS[name].present and name in defaults:
            setattr(FLAGS, name, defaults[name])
    lower_case_given = FLAGS["do_lower_case"].present or "do_lower_case" in defaults
    _check_flags()

    from modeling import ModelConfig

    config = ModelConfig.from_json_file(FLAGS.bert_config_file)
    bertkit_io.refuse_output_on_input(
        [("output_dir", FLAGS.output_dir)]
        + [("output_dir", os.path.join(FLAGS.output_dir, name)) for name in ("bertkit.json", "task_meta.json")],
        [("init_checkpoint", bertkit_io.checkpoint_dir(FLAGS.init_checkpoint)),
         ("teacher_checkpoint", bertkit_io.checkpoint_dir(FLAGS.teacher_checkpoint)),
         ("bert_config_file", FLAGS.bert_config_file), ("vocab_file", FLAGS.vocab_file),
         ("distill_file", FLAGS.distill_file), ("data_dir", FLAGS.data_dir)])
    bertkit_io.check_output_dir(FLAGS.output_dir)

    from training import distribution

    strategy = distribution.get_strategy(FLAGS.distribution_strategy or ("tpu" if FLAGS.use_tpu else None),
                                         tpu_name=FLAGS.tpu_name or FLAGS.master, tpu_zone=FLAGS.tpu_zone,
                                         gcp_project=FLAGS.gcp_project)
    import keras
    import tensorflow as tf

    from data import finetuning, pipeline, processors
    from modeling import checkpoints
    from training import optimization
    from training import trainer as trainer_lib

    is_chief = distribution.is_chief(strategy)
    out_meta = finetuning.read_task_meta(FLAGS.output_dir)
    has_checkpoint = tf.train.latest_checkpoint(FLAGS.output_dir) is not None
    def check_length():
        if FLAGS.max_seq_length > config.max_position_embeddings:
            raise _err(f"--max_seq_length={FLAGS.max_seq_length}: longer than max_position_embeddings "
                       f"{config.max_position_embeddings} of {FLAGS.bert_config_file}")

    check_length()
    fastbert_distill = FLAGS.fastbert and FLAGS.fastbert_stage == "distill"
    speeds = _speeds() if FLAGS.fastbert else None
    processor, meta, records_dir = _load_records(processors, finetuning, classifier_lib, out_meta, has_checkpoint,
                                                 lower_case_given, train_records=not FLAGS.distill_file)
    check_length()  # with --records_dir the length comes from the records
    init_meta = defaults.get("task_meta")
    init_head = False
    if init_meta is not None and FLAGS.init_checkpoint:
        same_task = processors.canonical_task_name(init_meta.get("task")) == processor.task_name
        if same_task or not FLAGS.do_train:
            classifier_lib.check_labels_match(meta, init_meta, f"--init_checkpoint={FLAGS.init_checkpoint}")
            init_head = True
    is_regression = bool(meta["is_regression"])
    labels = list(meta["labels"])
    num_labels = 1 if is_regression else len(labels)
    dev_splits = classifier_lib.splits_of_kind(meta, processor, "dev")
    test_splits = classifier_lib.splits_of_kind(meta, processor, "test")
    train_splits = classifier_lib.splits_of_kind(meta, processor, "train")
    if FLAGS.distill_file:
        train_splits = []  # the branches learn from the --distill_file texts
    for flag, kind, names in (("do_train", "train", train_splits), ("do_eval", "dev", dev_splits),
                              ("do_predict", "test", test_splits)):
        if flag == "do_train" and FLAGS.distill_file:
            continue
        if getattr(FLAGS, flag) and not names:
            raise _err(f"--{flag}: no {kind} records in {records_dir}")

    def split_file(split):
        return os.path.join(records_dir, meta["splits"][split]["file"])

    def num_records(split):
        return meta["splits"][split].get("num_examples")

    used = (train_splits if FLAGS.do_train else []) + (dev_splits if FLAGS.do_eval else []) + (
        test_splits if FLAGS.do_predict else [])
    for split in used:
        if not os.path.isfile(split_file(split)):
            raise _err(f"{split_file(split)}: no such file (named in {records_dir}/task_meta.json)")
    pipeline.check_finetuning_records([split_file(s) for s in used], FLAGS.max_seq_length)
    # Before training: a vocabulary or records the model's embeddings cannot hold, damaged or shortened files.
    pipeline.check_vocab_fits(FLAGS.vocab_file, config.vocab_size, FLAGS.bert_config_file)
    pipeline.check_records_integrity(
        [split_file(s) for s in used],
        {split_file(s): (meta["splits"][s].get("num_examples"), os.path.join(records_dir, finetuning.META_FILE))
         for s in used}, config.vocab_size, config.type_vocab_size, FLAGS.bert_config_file)

    teacher_meta = None
    if FLAGS.teacher_checkpoint:
        from training import tinybert

        teacher_meta = _check_teacher(config, labels, is_regression, tinybert)
    if FLAGS.fastbert:
        if is_regression:
            raise _err("--fastbert: FastBERT early exit needs a classification task, not regression")
        if fastbert_distill and FLAGS.do_train and not has_checkpoint:
            if not FLAGS.init_checkpoint:
                raise _err("--fastbert_stage=distill: --init_checkpoint required (the output_dir of a fine-tuned "
                           "classifier for this task, e.g. of --fastbert_stage=finetune)")
            if not init_head:
                raise _err(f"--init_checkpoint={FLAGS.init_checkpoint}: --fastbert_stage=distill needs a classifier "
                           f"fine-tuned on this task (a run_classifier.py output_dir with task_meta.json)")
            if os.path.abspath(defaults.get("model_dir", "")) == os.path.abspath(FLAGS.output_dir):
                raise _err(f"--output_dir={FLAGS.output_dir}: --fastbert_stage=distill writes a new model directory; "
                           "give one other than --init_checkpoint")

    if FLAGS.seed is not None:
        keras.utils.set_random_seed(FLAGS.seed)
    keras.mixed_precision.set_global_policy(FLAGS.mixed_precision)
    if is_chief:
        config.to_json_file(os.path.join(FLAGS.output_dir, "bert_config.json"))
        if FLAGS.vocab_file and os.path.abspath(FLAGS.vocab_file) != os.path.abspath(
                os.path.join(FLAGS.output_dir, "vocab.txt")):
            trainer_lib.copy_file(FLAGS.vocab_file, os.path.join(FLAGS.output_dir, "vocab.txt"))
        trainer_lib.write_json(os.path.join(FLAGS.output_dir, "bertkit.json"), {
            "do_lower_case": FLAGS.do_lower_case, "max_seq_length": FLAGS.max_seq_length,
            "model_type": config.model_type, "task": processor.task_name, "created_by": "run_classifier.py",
            **_method_info(teacher_meta)})
        if records_dir != FLAGS.output_dir:
            trainer_lib.write_json(os.path.join(FLAGS.output_dir, finetuning.META_FILE), meta)

    num_replicas = strategy.num_replicas_in_sync
    if FLAGS.train_batch_size % num_replicas:
        raise _err(f"--train_batch_size={FLAGS.train_batch_size}: not divisible by the {num_replicas} replicas")
    if (FLAGS.train_batch_size // num_replicas) % FLAGS.gradient_accumulation_steps:
        raise _err(f"--gradient_accumulation_steps={FLAGS.gradient_accumulation_steps}: does not divide the "
                   f"per-replica batch {FLAGS.train_batch_size // num_replicas}")
    num_train_examples = meta["splits"][train_splits[0]]["num_real_examples"] if train_splits else 0
    if FLAGS.distill_file and FLAGS.do_train:
        from training import fastbert

        num_train_examples = len(fastbert.read_unlabelled_texts(FLAGS.distill_file, FLAGS.distill_text_column))
    num_train_steps = classifier_lib.num_train_steps_for(
        max(num_train_examples, 1), FLAGS.train_batch_size, FLAGS.num_train_epochs)
    num_warmup_steps = int(num_train_steps * FLAGS.warmup_proportion)

    with strategy.scope():
        if FLAGS.teacher_checkpoint:
            teacher_config, _, teacher = tinybert.load_teacher_classifier(FLAGS.teacher_checkpoint)
            print(f"teacher: {teacher_config.model_type} {teacher_config.num_hidden_layers} layers, hidden "
                  f"{teacher_config.hidden_size}, from {teacher.checkpoint_prefix} (frozen)")
            setup = classifier_lib.build_task_distillation_setup(
                config, num_labels, teacher, teacher_config, is_regression=is_regression, stage=FLAGS.distill_stage,
                layer_mapping=FLAGS.layer_mapping, attention_loss=FLAGS.attention_loss,
                temperature=FLAGS.temperature, hard_label_weight=FLAGS.hard_label_weight)
        elif FLAGS.fastbert:
            setup = classifier_lib.build_fastbert_setup(config, num_labels, stage=FLAGS.fastbert_stage,
                                                        branch_hidden_size=FLAGS.branch_hidden_size)
        else:
            setup = classifier_lib.build_classifier_setup(config, num_labels, is_regression)
        optimizer = optimization.create_optimizer(
            FLAGS.learning_rate, num_train_steps, num_warmup_steps, optimizer=FLAGS.optimizer, clipnorm=None,
            layerwise_lr_decay=FLAGS.layerwise_lr_decay, encoder=setup.encoder)
        trainer = trainer_lib.TrainerModel(
            setup.network, setup.loss_fn, setup.metric_names, trainable_variables_fn=setup.trainable_variables_fn,
            gradient_accumulation_steps=FLAGS.gradient_accumulation_steps, clip_norm=1.0)
        trainer.compile(optimizer=optimizer, steps_per_execution=1, jit_compile=FLAGS.enable_xla)
    items = setup.all_checkpoint_items(trainer)
    model_ckpt = tf.train.Checkpoint(**setup.checkpoint_items)

    def restore_init():
        prefix = classifier_lib.resolve_checkpoint(FLAGS.init_checkpoint)
        prefix = trainer_lib.restore_encoder_weights(setup.encoder, prefix)
        note = ""
        if init_head and classifier_lib.restore_head(setup, prefix):
            note = " (with its classifier head)"
        fit_dense = setup.checkpoint_items.get("fit_dense")
        if fit_dense is not None and _is_bertkit_prefix(prefix):
            if classifier_lib.restore_fit_dense(fit_dense, prefix):
                note += " (with its fit_dense)"
            else:
                note += " (fit_dense: none there or of other widths, a fresh projection)"
        print(f"initialised from {prefix}{note}")

    def datasets(names, batch_size):
        return {s: pipeline.finetuning_dataset(None, FLAGS.max_seq_length, batch_size, is_training=False,
                                               is_regression=is_regression, files=[split_file(s)],
                                               check_records=False) for s in names}

    eval_sets = datasets(dev_splits, FLAGS.eval_batch_size) if FLAGS.do_eval else {}
    # No best-checkpoint selection by dev accuracy where it means nothing: task distillation's intermediate stage
    # (the student's head is not trained) and FastBERT's distill stage (the final classifier is frozen): the latest
    # checkpoint is used, and the dev set is evaluated only at the end.
    select_best = not ((FLAGS.teacher_checkpoint and FLAGS.distill_stage == "intermediate") or fastbert_distill)
    best = classifier_lib.BestCheckpoint(
        FLAGS.output_dir, classifier_lib.main_metric_key(processor.task_name, is_regression, dev_splits or ["dev"]))

    def evaluate_fn(step):
        return classifier_lib.evaluate(setup.predict_fn, eval_sets, task_name=processor.task_name,
                                       is_regression=is_regression, global_step=step,
                                       output_dir=FLAGS.output_dir if is_chief else None,
                                       totals={s: num_records(s) for s in eval_sets})

    if FLAGS.do_train:
        if FLAGS.distill_file:
            from tokenization import FullTokenizer
            from training import fastbert

            tokenizer = FullTokenizer(FLAGS.vocab_file, do_lower_case=FLAGS.do_lower_case)

            def train_dataset_fn(ctx):
                return fastbert.unlabelled_text_dataset(
                    FLAGS.distill_file, tokenizer, FLAGS.max_seq_length, FLAGS.train_batch_size, seed=FLAGS.seed,
                    text_column=FLAGS.distill_text_column, input_context=ctx)
        else:
            train_file = split_file(train_splits[0])

            def train_dataset_fn(ctx):
                return pipeline.finetuning_dataset(None, FLAGS.max_seq_length, FLAGS.train_batch_size,
                                                   is_training=True, is_regression=is_regression, input_context=ctx,
                                                   seed=FLAGS.seed, files=[train_file], check_records=False,
                                                   shuffle_buffer_size=pipeline.full_shuffle_buffer(num_train_examples))

        hparams = {k: getattr(FLAGS, k) for k in (
            "task_name", "bert_config_file", "init_checkpoint", "max_seq_length", "train_batch_size",
            "learning_rate", "num_train_epochs", "warmup_proportion", "save_checkpoints_steps", "optimizer",
            "gradient_accumulation_steps", "mixed_precision", "enable_xla", "layerwise_lr_decay", "seed")}
        hparams.update({f"{group}.{k}": v for group, values in _method_info(teacher_meta).items()
                        for k, v in values.items()})
        hparams.update(num_train_steps=num_train_steps, num_warmup_steps=num_warmup_steps,
                       num_train_examples=num_train_examples, distribution_strategy=type(strategy).__name__)
        print(f"training: {num_train_examples} examples, {FLAGS.num_train_epochs:g} epochs, "
              f"{num_train_steps} steps ({num_warmup_steps} warmup)")
        result = classifier_lib.train_and_evaluate(
            trainer, train_dataset_fn, strategy=strategy, output_dir=FLAGS.output_dir,
            epoch_ends=classifier_lib.epoch_end_steps(num_train_examples, FLAGS.train_batch_size,
                                                      FLAGS.num_train_epochs),
            steps_per_checkpoint=FLAGS.save_checkpoints_steps, iterations_per_loop=FLAGS.iterations_per_loop,
            checkpoint_items=items, examples_per_step=FLAGS.train_batch_size,
            evaluate_fn=evaluate_fn if FLAGS.do_eval and select_best else None, best=best if select_best else None,
            init_fn=restore_init if FLAGS.init_checkpoint else None, max_checkpoints_to_keep=FLAGS.keep_checkpoint_max,
            hparams=hparams, is_chief=is_chief)
        print(f"training done: global_step={result['global_step']} (trained {result['trained_steps']} steps)")

    # The model used from here on: the best checkpoint when there is one, else the latest, else --init_checkpoint.
    best_prefix = best.prefix() if select_best else None
    prefix = best_prefix or tf.train.latest_checkpoint(FLAGS.output_dir)
    if prefix:
        checkpoints.restore_checked(model_ckpt, prefix).expect_partial()
        global_step = int(prefix.rsplit("-", 1)[-1]) if prefix.rsplit("-", 1)[-1].isdigit() else 0
        which = "best" if prefix == best_prefix else "latest"
        print(f"using the {which} checkpoint {prefix}")
    elif FLAGS.init_checkpoint:
        if not init_head:
            print("warning: no fine-tuned checkpoint in --output_dir; the classifier head is untrained")
        restore_init()
        global_step = 0
    elif FLAGS.do_eval or FLAGS.do_predict or FLAGS.do_export:
        raise _err(f"--output_dir={FLAGS.output_dir}: no checkpoint to use (train with --do_train or give "
                   "--init_checkpoint)")

    if FLAGS.do_eval:
        if FLAGS.teacher_checkpoint and FLAGS.distill_stage == "intermediate":
            print("note: --distill_stage=intermediate does not train the student's classifier head; its dev metrics "
                  "mean nothing until the prediction stage")
        results = classifier_lib.known_eval_results(FLAGS.output_dir, global_step) if prefix and select_best else None
        if results is not None:  # this checkpoint's dev set was evaluated (and logged) during training
            print(f"eval: the results of step {global_step} from {classifier_lib.EVAL_HISTORY_FILE}: " + " ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(results.items())))
        else:
            results = evaluate_fn(global_step)
        if fastbert_distill:
            speed_results, _ = classifier_lib.fastbert_speed_evaluation(
                setup, eval_sets, speeds, output_dir=FLAGS.output_dir if is_chief else None, global_step=global_step)
            results.update(speed_results)
        elif FLAGS.fastbert:
            print("note: the FastBERT branches are trained by --fastbert_stage=distill; the early-exit speeds are "
                  "evaluated there")
        if is_chief:
            trainer_lib.write_eval_results(os.path.join(FLAGS.output_dir, "eval_results.txt"), results)

    if FLAGS.do_predict and is_chief:
        for split, dataset in datasets(test_splits, FLAGS.predict_batch_size).items():
            outputs = classifier_lib.run_predictions(setup.predict_fn, dataset, description=f"predict {split}",
                                                     total=num_records(split))
            paths = classifier_lib.write_predictions(
                FLAGS.output_dir, split, test_splits, outputs, labels=labels, is_regression=is_regression,
                ids=classifier_lib.source_ids(meta, split, processor))
            print(f"wrote {' and '.join(paths)}")

    if FLAGS.do_export and is_chief:
        import importlib.util

        if importlib.util.find_spec("serving.export") is None:
            raise _err("--do_export: serving/export.py not available")
        from serving import export

        version_dir = export.export_classifier(
            setup.classifier, vocab_file=os.path.join(FLAGS.output_dir, "vocab.txt"),
            do_lower_case=FLAGS.do_lower_case, max_seq_length=FLAGS.max_seq_length, labels=labels,
            is_regression=is_regression, pair=classifier_lib.task_is_pair(processor),
            export_base=FLAGS.export_dir or os.path.join(FLAGS.output_dir, "export"),
            **({"branches": setup.branches} if fastbert_distill else {}))
        if FLAGS.fastbert and not fastbert_distill:
            print("note: exported without the FastBERT branches (untrained before --fastbert_stage=distill)")
        print(f"exported {version_dir}")


if __name__ == "__main__":
    bertkit_errors.run_main(main)
