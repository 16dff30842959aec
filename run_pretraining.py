"""Masked-LM + next-sentence (or sentence-order) pre-training, the original BERT flags on TF2 / Keras 3.

Runs under any tf.distribute strategy (one_device, mirrored, multi_worker_mirrored via TF_CONFIG, tpu via
TPUClusterResolver(--tpu_name, --tpu_zone, --gcp_project)); resumable: rerunning the same command continues from the
newest checkpoint in --output_dir and stops at --num_train_steps with the same learning-rate schedule.
Writes into --output_dir: ckpt-N checkpoints (encoder, mlm_head, nsp_head, optimizer, global_step), bert_config.json,
vocab.txt, bertkit.json, TensorBoard logs (logs/train, logs/eval), eval_results.txt (--do_eval) and, when
serving/export.py is present and --vocab_file given, a SavedModel under export/.

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
import glob
import json
import os

from absl import flags

import bertkit_errors

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


def _sentence_task(files):
    """"sentence_order" or "next_sentence": the flag, else a .summary.json written by create_pretraining_data.py."""
    if FLAGS.sentence_order_prediction is not None:
        return "sentence_order" if FLAGS.sentence_order_prediction else "next_sentence"
    wanted = {os.path.abspath(f) for f in files}
    for directory in sorted({os.path.dirname(os.path.abspath(f)) for f in files}):
        for path in sorted(glob.glob(os.path.join(directory, "*.summary.json"))):
            try:
                with open(path, encoding="utf-8") as fh:
                    summary = json.load(fh)
            except (OSError, ValueError):
                continue
            outputs = {os.path.abspath(os.path.join(directory, os.path.basename(o)))
                       for o in summary.get("output_files", [])}
            if outputs & wanted and summary.get("task") in ("sop", "nsp"):
                return "sentence_order" if summary["task"] == "sop" else "next_sentence"
    return "next_sentence"


def _dynamic_masker(config):
    from data import pipeline
    from tokenization import load_vocab

    if not FLAGS.vocab_file:
        raise bertkit_errors.UserError("--dynamic_masking: needs --vocab_file (for the [MASK]/[CLS]/[SEP] ids)")
    vocab = load_vocab(FLAGS.vocab_file)
    missing = [t for t in ("[MASK]", "[CLS]", "[SEP]") if t not in vocab]
    if missing:
        raise bertkit_errors.UserError(f"--vocab_file={FLAGS.vocab_file}: lacks {', '.join(missing)}")
    if len(vocab) > config.vocab_size:
        raise bertkit_errors.UserError(f"--vocab_file={FLAGS.vocab_file}: {len(vocab)} tokens but "
                                       f"{FLAGS.bert_config_file} has vocab_size {config.vocab_size}")
    special = [vocab[t] for t in ("[CLS]", "[SEP]", "[MASK]", "[PAD]") if t in vocab] + [0]
    return pipeline.DynamicMasker(len(vocab), vocab["[MASK]"], special, FLAGS.max_predictions_per_seq)


def _check_teacher_flags(config):
    """The teacher's config (general distillation), checked against the student's and the flags."""
    from modeling import ModelConfig

    for name in ("teacher_config_file", "teacher_checkpoint"):
        if not getattr(FLAGS, name):
            other = "teacher_checkpoint" if name == "teacher_config_file" else "teacher_config_file"
            raise bertkit_errors.UserError(f"--{name}: required with --{other} (general distillation)")
    if not os.path.isfile(FLAGS.teacher_config_file):
        raise bertkit_errors.UserError(f"--teacher_config_file={FLAGS.teacher_config_file}: no such file")
    if not (os.path.exists(FLAGS.teacher_checkpoint) or os.path.exists(FLAGS.teacher_checkpoint + ".index")):
        raise bertkit_errors.UserError(f"--teacher_checkpoint={FLAGS.teacher_checkpoint}: no such checkpoint")
    teacher = ModelConfig.from_json_file(FLAGS.teacher_config_file)
    if teacher.vocab_size != config.vocab_size:
        raise bertkit_errors.UserError(
            f"--teacher_config_file={FLAGS.teacher_config_file}: vocab_size {teacher.vocab_size} differs from the "
            f"student's {config.vocab_size} ({FLAGS.bert_config_file}); teacher and student must share the vocabulary")
    if FLAGS.max_seq_length > teacher.max_position_embeddings:
        raise bertkit_errors.UserError(
            f"--max_seq_length={FLAGS.max_seq_length}: longer than max_position_embeddings "
            f"{teacher.max_position_embeddings} of {FLAGS.teacher_config_file}")
    if FLAGS.attention_loss != "none" and teacher.num_attention_heads != config.num_attention_heads:
        raise bertkit_errors.UserError(
            f"--attention_loss={FLAGS.attention_loss}: the student has {config.num_attention_heads} attention heads "
            f"and the teacher {teacher.num_attention_heads}; the attention loss needs equal counts "
            "(or --attention_loss=none)")
    from training import distillation

    distillation.parse_layer_mapping(FLAGS.layer_mapping, config.num_hidden_layers, teacher.num_hidden_layers)
    return teacher


def _distillation_setup(config, model):
    """(network, loss_fn, metric_names, trainable_variables_fn, extra checkpoint items) for general distillation.
    Inside strategy.scope(); restores the teacher's weights (every start: the teacher is not checkpointed)."""
    from modeling import build_fit_dense
    from training import distillation, tinybert

    teacher_config, teacher = tinybert.load_teacher_encoder(FLAGS.teacher_config_file, FLAGS.teacher_checkpoint)
    print(f"teacher: {teacher_config.model_type} {teacher_config.num_hidden_layers} layers, hidden "
          f"{teacher_config.hidden_size}, from {FLAGS.teacher_checkpoint}")
    fit_dense = (build_fit_dense(config, teacher_config.hidden_size)
                 if teacher_config.hidden_size != config.hidden_size else None)
    loss = distillation.DistillationLoss(
        config.hidden_size, teacher_config.hidden_size, config.num_hidden_layers, teacher_config.num_hidden_layers,
        layer_mapping=FLAGS.layer_mapping, stage="intermediate", attention_loss=FLAGS.attention_loss,
        temperature=FLAGS.temperature, fit_dense=fit_dense, use_projection=False)
    network = tinybert.GeneralDistillationNetwork(model, teacher, loss, distill_mlm=FLAGS.distill_mlm)
    extra = {"fit_dense": fit_dense} if fit_dense is not None else {}
    return (network, tinybert.general_distillation_loss_fn(FLAGS.distill_mlm),
            tinybert.general_distillation_metric_names(loss, FLAGS.distill_mlm),
            network.student_trainable_variables, extra)


def _mobilebert_plan(config, teacher_config):
    """--distillation=mobilebert: the student/teacher pair checked and the stage plan, before anything is written."""
    from training import mobilebert_transfer

    if FLAGS.init_checkpoint:
        raise bertkit_errors.UserError(f"--init_checkpoint={FLAGS.init_checkpoint}: not used with "
                                       "--distillation=mobilebert (the student starts from the teacher's embeddings "
                                       "and heads, its layers are trained stage by stage)")
    mobilebert_transfer.check_pair(config, teacher_config)
    return mobilebert_transfer.stage_plan(config.num_hidden_layers, FLAGS.num_progressive_stages,
                                          FLAGS.steps_per_stage, FLAGS.num_train_steps)


def _mobilebert_transfer(model, teacher_config, plan, strategy, sentence_task):
    """A run_training-like callable running the progressive stages of training/mobilebert_transfer.py on `model`
    (the student PretrainingModel) with the IB-BERT teacher of --teacher_checkpoint."""
    from training import mobilebert_transfer

    with strategy.scope():
        teacher = mobilebert_transfer.load_teacher(teacher_config, FLAGS.teacher_checkpoint)

    def run(trainer, dataset_fn, *, strategy, output_dir, steps_per_checkpoint, examples_per_step,
            max_checkpoints_to_keep, log_every_n_steps, hparams, **unused):
        hparams = dict(hparams, distillation="mobilebert", num_progressive_stages=len(plan) - 1,
                       steps_per_stage=FLAGS.steps_per_stage,
                       distill_ground_truth_ratio=FLAGS.distill_ground_truth_ratio)
        return mobilebert_transfer.run_progressive(
            model, teacher, plan, dataset_fn=dataset_fn, strategy=strategy, output_dir=output_dir,
            steps_per_checkpoint=steps_per_checkpoint, examples_per_step=examples_per_step,
            learning_rate=FLAGS.learning_rate, num_warmup_steps=FLAGS.num_warmup_steps, optimizer=FLAGS.optimizer,
            alpha=FLAGS.distill_ground_truth_ratio, temperature=FLAGS.temperature, sentence_task=sentence_task,
            gradient_accumulation_steps=FLAGS.gradient_accumulation_steps,
            iterations_per_loop=FLAGS.iterations_per_loop, jit_compile=FLAGS.enable_xla,
            max_checkpoints_to_keep=max_checkpoints_to_keep, log_every_n_steps=log_every_n_steps, hparams=hparams)

    return run


def _export(encoder, output_dir):
    try:
        from serving import export
    except ImportError:
        print("serving/export.py not available: SavedModel export skipped")
        return None
    if not FLAGS.vocab_file:
        print("no --vocab_file: SavedModel export skipped")
        return None
    version_dir = export.export_encoder(encoder, FLAGS.vocab_file, FLAGS.do_lower_case, FLAGS.max_seq_length,
                                        os.path.join(output_dir, "export"))
    print(f"exported {version_dir}")
    return version_dir


def _model_dir_defaults():
    """Unset flags from the model directories of --init_checkpoint (--bert_config_file, --vocab_file,
    --do_lower_case) and --teacher_checkpoint (--teacher_config_file; the vocabulary and lower-casing when the
    student has none): bertkit, TF1 or HuggingFace directories (modeling.checkpoints.model_dir_defaults; a vocabulary
    only in tokenizer.json is written as output_dir/vocab.txt)."""
    from modeling import checkpoints

    vocab_dir = None if FLAGS["vocab_file"].present else FLAGS.output_dir
    init = checkpoints.model_dir_defaults(FLAGS.init_checkpoint, vocab_dir=vocab_dir)
    teacher = checkpoints.model_dir_defaults(FLAGS.teacher_checkpoint, vocab_dir=None if "vocab_file" in init
                                             else vocab_dir, flag="teacher_checkpoint")
    wanted = [("bert_config_file", init, "bert_config_file"), ("vocab_file", init, "vocab_file"),
              ("do_lower_case", init, "do_lower_case"), ("teacher_config_file", teacher, "bert_config_file"),
              ("vocab_file", teacher, "vocab_file"), ("do_lower_case", teacher, "do_lower_case")]
    done = set()
    for name, defaults, key in wanted:
        if not FLAGS[name].present and name not in done and key in defaults:
            setattr(FLAGS, name, defaults[key])
            done.add(name)


def main(argv):
    del argv
    import bertkit_io

    _model_dir_defaults()
    for name in ("bert_config_file", "output_dir"):
        _require(name)
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

    from modeling import ModelConfig

    config = ModelConfig.from_json_file(FLAGS.bert_config_file)
    distill = bool(FLAGS.teacher_config_file or FLAGS.teacher_checkpoint)
    teacher_config = _check_teacher_flags(config) if distill else None
    transfer_plan = _mobilebert_plan(config, teacher_config) if distill and FLAGS.distillation == "mobilebert" else None
    if FLAGS.max_seq_length > config.max_position_embeddings:
        raise bertkit_errors.UserError(
            f"--max_seq_length={FLAGS.max_seq_length}: longer than max_position_embeddings "
            f"{config.max_position_embeddings} of {FLAGS.bert_config_file}")

    # Before anything is written: no output on an input, no rerun with other settings into a trained model directory.
    bertkit_io.refuse_output_on_input(
        [("output_dir", FLAGS.output_dir)]
        + [("output_dir", os.path.join(FLAGS.output_dir, name)) for name in ("bertkit.json", "eval_results.txt")],
        [("init_checkpoint", bertkit_io.checkpoint_dir(FLAGS.init_checkpoint)),
         ("teacher_checkpoint", bertkit_io.checkpoint_dir(FLAGS.teacher_checkpoint)),
         ("input_file", FLAGS.input_file), ("eval_input_file", FLAGS.eval_input_file),
         ("bert_config_file", FLAGS.bert_config_file), ("vocab_file", FLAGS.vocab_file)])
    from training import rerun

    rerun.check_rerun(FLAGS.output_dir, FLAGS.bert_config_file, FLAGS.vocab_file, FLAGS.do_lower_case,
                      FLAGS.max_seq_length)

    # The strategy first: MultiWorkerMirroredStrategy must be created before other TensorFlow ops run.
    from training import distribution

    strategy_name = FLAGS.distribution_strategy or ("tpu" if FLAGS.use_tpu else None)
    strategy = distribution.get_strategy(strategy_name, tpu_name=FLAGS.tpu_name, tpu_zone=FLAGS.tpu_zone,
                                         gcp_project=FLAGS.gcp_project)
    import keras
    import tensorflow as tf

    from data import pipeline
    from modeling import build_pretraining_model, checkpoints
    from training import optimization
    from training import trainer as trainer_lib

    is_chief = distribution.is_chief(strategy)
    bertkit_io.check_output_dir(FLAGS.output_dir)
    if FLAGS.seed is not None:
        keras.utils.set_random_seed(FLAGS.seed)
    keras.mixed_precision.set_global_policy(FLAGS.mixed_precision)

    train_files = pipeline.expand_file_patterns(FLAGS.input_file, "input_file") if FLAGS.input_file else []
    eval_files = []
    if FLAGS.do_eval:
        eval_files = pipeline.expand_file_patterns(FLAGS.eval_input_file or FLAGS.input_file,
                                                   "eval_input_file" if FLAGS.eval_input_file else "input_file")
    for files in (train_files, eval_files):
        if files:
            pipeline.check_pretraining_records(files, FLAGS.max_seq_length, FLAGS.max_predictions_per_seq)
    # Before training: a vocabulary or records the model's embeddings cannot hold, damaged or shortened files.
    pipeline.check_vocab_fits(FLAGS.vocab_file, config.vocab_size, FLAGS.bert_config_file)
    all_files = list(dict.fromkeys(train_files + eval_files))
    pipeline.check_records_integrity(all_files, pipeline.summary_record_counts(all_files), config.vocab_size,
                                     config.type_vocab_size, FLAGS.bert_config_file)
    sentence_task = _sentence_task(train_files or eval_files)
    masker = _dynamic_masker(config) if FLAGS.dynamic_masking else None
    num_replicas = strategy.num_replicas_in_sync
    per_replica = FLAGS.train_batch_size // num_replicas
    if FLAGS.train_batch_size % num_replicas:
        raise bertkit_errors.UserError(
            f"--train_batch_size={FLAGS.train_batch_size}: not divisible by the {num_replicas} replicas")
    if per_replica % FLAGS.gradient_accumulation_steps:
        raise bertkit_errors.UserError(
            f"--gradient_accumulation_steps={FLAGS.gradient_accumulation_steps}: does not divide the per-replica "
            f"batch {per_replica} (--train_batch_size={FLAGS.train_batch_size} over {num_replicas} replicas)")

    if is_chief:
        config.to_json_file(os.path.join(FLAGS.output_dir, "bert_config.json"))
        if FLAGS.vocab_file and os.path.abspath(FLAGS.vocab_file) != os.path.abspath(
                os.path.join(FLAGS.output_dir, "vocab.txt")):
            trainer_lib.copy_file(FLAGS.vocab_file, os.path.join(FLAGS.output_dir, "vocab.txt"))
        trainer_lib.write_json(os.path.join(FLAGS.output_dir, "bertkit.json"), {
            "do_lower_case": FLAGS.do_lower_case, "max_seq_length": FLAGS.max_seq_length,
            "max_predictions_per_seq": FLAGS.max_predictions_per_seq, "model_type": config.model_type,
            "sentence_task": sentence_task, "created_by": "run_pretraining.py",
            **({"general_distillation": {
                "teacher_config_file": FLAGS.teacher_config_file, "teacher_checkpoint": FLAGS.teacher_checkpoint,
                "teacher_model_type": teacher_config.model_type, "teacher_hidden_size": teacher_config.hidden_size,
                "layer_mapping": FLAGS.layer_mapping, "attention_loss": FLAGS.attention_loss,
                "distill_mlm": FLAGS.distill_mlm, "method": FLAGS.distillation}} if distill else {})})

    steps_per_execution = trainer_lib.steps_per_execution_for(
        FLAGS.iterations_per_loop, FLAGS.save_checkpoints_steps, FLAGS.num_train_steps)
    with strategy.scope():
        model = build_pretraining_model(config)
        optimizer = optimization.create_optimizer(
            FLAGS.learning_rate, FLAGS.num_train_steps, FLAGS.num_warmup_steps, optimizer=FLAGS.optimizer,
            clipnorm=None)  # clipping to 1.0 is done by TrainerModel on the all-reduced gradients
        if distill and transfer_plan is None:
            network, loss_fn, metric_names, variables_fn, extra_items = _distillation_setup(config, model)
        else:
            network, loss_fn, metric_names = (model, trainer_lib.pretraining_loss_fn(sentence_task),
                                              trainer_lib.pretraining_metric_names(sentence_task))
            variables_fn, extra_items = None, {}
        trainer = trainer_lib.TrainerModel(
            network, loss_fn, metric_names, gradient_accumulation_steps=FLAGS.gradient_accumulation_steps,
            clip_norm=1.0, trainable_variables_fn=variables_fn)
        trainer.compile(optimizer=optimizer, steps_per_execution=steps_per_execution, jit_compile=FLAGS.enable_xla)
    items = dict(encoder=model.encoder, mlm_head=model.mlm_head, nsp_head=model.nsp_head, **extra_items,
                 optimizer=trainer.optimizer, global_step=trainer.global_step)

    def train_dataset_fn(ctx):
        return pipeline.pretraining_dataset(
            None, FLAGS.max_seq_length, FLAGS.max_predictions_per_seq, FLAGS.train_batch_size, is_training=True,
            input_context=ctx, seed=FLAGS.seed, dynamic_masker=masker, files=train_files, check_records=False)

    def eval_dataset_fn(ctx):
        return pipeline.pretraining_dataset(
            None, FLAGS.max_seq_length, FLAGS.max_predictions_per_seq, FLAGS.eval_batch_size, is_training=False,
            input_context=ctx, files=eval_files, check_records=False)

    def init_fn():
        if FLAGS.init_checkpoint:
            prefix = trainer_lib.restore_encoder_weights(model.encoder, FLAGS.init_checkpoint)
            print(f"encoder initialised from {prefix}")

    if FLAGS.do_train:
        hparams = {k: getattr(FLAGS, k) for k in (
            "bert_config_file", "input_file", "init_checkpoint", "max_seq_length", "max_predictions_per_seq",
            "train_batch_size", "learning_rate", "num_train_steps", "num_warmup_steps", "save_checkpoints_steps",
            "iterations_per_loop", "optimizer", "gradient_accumulation_steps", "mixed_precision", "enable_xla",
            "dynamic_masking", "seed")}
        hparams.update(distribution_strategy=type(strategy).__name__, num_replicas=num_replicas,
                       sentence_task=sentence_task, steps_per_execution=steps_per_execution)
        if distill:
            hparams.update({k: getattr(FLAGS, k) for k in (
                "teacher_config_file", "teacher_checkpoint", "layer_mapping", "attention_loss", "temperature",
                "distill_mlm")})
        with pipeline.damaged_records_named(train_files):
            run = _mobilebert_transfer(model, teacher_config, transfer_plan, strategy, sentence_task) \
                if transfer_plan else trainer_lib.run_training
            result = run(
                trainer, train_dataset_fn, strategy=strategy, output_dir=FLAGS.output_dir,
                num_train_steps=FLAGS.num_train_steps, steps_per_checkpoint=FLAGS.save_checkpoints_steps,
                checkpoint_items=items, examples_per_step=FLAGS.train_batch_size, init_fn=init_fn,
                max_checkpoints_to_keep=FLAGS.keep_checkpoint_max, log_every_n_steps=FLAGS.log_steps,
                hparams=hparams)
        print(f"training done: global_step={result['global_step']}"
              + (f" examples/s={result['examples_per_second']:.1f}" if result["examples_per_second"] else ""))
    else:
        with strategy.scope():
            trainer.build_for(eval_dataset_fn(tf.distribute.InputContext()).element_spec)
        latest = tf.train.latest_checkpoint(FLAGS.output_dir)
        if latest:
            checkpoints.restore_checked(tf.train.Checkpoint(**items), latest).expect_partial()
            print(f"evaluating {latest}")
        elif FLAGS.init_checkpoint:
            init_fn()
        else:
            raise bertkit_errors.UserError(f"--output_dir={FLAGS.output_dir}: no checkpoint to evaluate "
                                           "(and no --init_checkpoint)")

    if FLAGS.do_eval:
        with pipeline.damaged_records_named(eval_files):
            results = trainer_lib.run_evaluation(trainer, eval_dataset_fn, strategy=strategy,
                                                 steps=FLAGS.max_eval_steps, output_dir=FLAGS.output_dir)
        if is_chief:
            trainer_lib.write_eval_results(os.path.join(FLAGS.output_dir, "eval_results.txt"), results)

    if FLAGS.do_train and FLAGS.do_export and is_chief:
        _export(model.encoder, FLAGS.output_dir)


if __name__ == "__main__":
    bertkit_errors.run_main(main)
