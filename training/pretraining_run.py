"""The steps of run_pretraining.py once its flags are checked: each takes the script's absl FLAGS (`flags`) and the
`PretrainingRun` that `prepare` builds (model config, teacher config, strategy, record files, sentence task).

    apply_model_dir_defaults(FLAGS)             # --init_checkpoint / --teacher_checkpoint directories fill flags
    run = prepare(FLAGS)                        # config and teacher checks, output checks, strategy, records
    model, trainer, items = build_model(FLAGS, run)      # MLM + NSP/SOP, or TinyBERT general distillation
    train(FLAGS, run, model, trainer, items)  or  restore_for_eval(FLAGS, run, model, trainer, items)
    evaluate(FLAGS, run, trainer); export(FLAGS, model.encoder)
"""
import dataclasses
import glob
import json
import os

import keras
import tensorflow as tf

import bertkit_errors
import bertkit_io
from data import pipeline
from modeling import ModelConfig, build_fit_dense, build_pretraining_model, checkpoints, model_dirs
from serving import export as export_lib
from tokenization import load_vocab
from training import checkpointing, distillation, distribution, mobilebert_transfer, optimization, pretraining_loss
from training import rerun, tinybert
from training import trainer as trainer_lib


@dataclasses.dataclass
class PretrainingRun:
    """What the steps after `prepare` share."""
    config: object
    teacher_config: object
    distill: bool
    strategy: object
    is_chief: bool
    train_files: list
    eval_files: list
    sentence_task: str
    masker: object
    steps_per_execution: int
    transfer_plan: object = None  # --distillation=mobilebert: the stages (training/mobilebert_transfer.stage_plan)


def apply_model_dir_defaults(flags):
    """Unset flags from the model directories of --init_checkpoint (--bert_config_file, --vocab_file,
    --do_lower_case) and --teacher_checkpoint (--teacher_config_file; the vocabulary and lower-casing when the
    student has none): bertkit, TF1 or HuggingFace directories (modeling.model_dirs.model_dir_defaults; a vocabulary
    only in tokenizer.json is written as output_dir/vocab.txt)."""
    vocab_dir = None if flags["vocab_file"].present else flags.output_dir
    init = model_dirs.model_dir_defaults(flags.init_checkpoint, vocab_dir=vocab_dir)
    teacher = model_dirs.model_dir_defaults(flags.teacher_checkpoint, vocab_dir=None if "vocab_file" in init
                                             else vocab_dir, flag="teacher_checkpoint")
    wanted = [("bert_config_file", init, "bert_config_file"), ("vocab_file", init, "vocab_file"),
              ("do_lower_case", init, "do_lower_case"), ("teacher_config_file", teacher, "bert_config_file"),
              ("vocab_file", teacher, "vocab_file"), ("do_lower_case", teacher, "do_lower_case")]
    done = set()
    for name, defaults, key in wanted:
        if not flags[name].present and name not in done and key in defaults:
            setattr(flags, name, defaults[key])
            done.add(name)


def prepare(flags):
    """Everything before the model: the configs (student, teacher) against the flags, no output on an input, no rerun
    with other settings into a trained model directory, the strategy, the record files and their checks, the model
    directory's files."""
    config = ModelConfig.from_json_file(flags.bert_config_file)
    distill = bool(flags.teacher_config_file or flags.teacher_checkpoint)
    teacher_config = _check_teacher_flags(flags, config) if distill else None
    transfer_plan = (_mobilebert_plan(flags, config, teacher_config)
                     if distill and flags.distillation == "mobilebert" else None)
    if flags.max_seq_length > config.max_position_embeddings:
        raise bertkit_errors.UserError(
            f"--max_seq_length={flags.max_seq_length}: longer than max_position_embeddings "
            f"{config.max_position_embeddings} of {flags.bert_config_file}")

    # Before anything is written: no output on an input, no rerun with other settings into a trained model directory.
    bertkit_io.refuse_output_on_input(
        [("output_dir", flags.output_dir)]
        + [("output_dir", os.path.join(flags.output_dir, name)) for name in ("bertkit.json", "eval_results.txt")],
        [("init_checkpoint", bertkit_io.checkpoint_dir(flags.init_checkpoint)),
         ("teacher_checkpoint", bertkit_io.checkpoint_dir(flags.teacher_checkpoint)),
         ("input_file", flags.input_file), ("eval_input_file", flags.eval_input_file),
         ("bert_config_file", flags.bert_config_file), ("vocab_file", flags.vocab_file)])
    rerun.check_rerun(flags.output_dir, flags.bert_config_file, flags.vocab_file, flags.do_lower_case,
                      flags.max_seq_length)

    # The strategy first: MultiWorkerMirroredStrategy must be created before other TensorFlow ops run.
    strategy_name = flags.distribution_strategy or ("tpu" if flags.use_tpu else None)
    strategy = distribution.get_strategy(strategy_name, tpu_name=flags.tpu_name, tpu_zone=flags.tpu_zone,
                                         gcp_project=flags.gcp_project)
    is_chief = distribution.is_chief(strategy)
    bertkit_io.check_output_dir(flags.output_dir)
    if flags.seed is not None:
        keras.utils.set_random_seed(flags.seed)
    keras.mixed_precision.set_global_policy(flags.mixed_precision)

    train_files, eval_files = _record_files(flags, config)
    run = PretrainingRun(
        config=config, teacher_config=teacher_config, distill=distill, strategy=strategy, is_chief=is_chief,
        train_files=train_files, eval_files=eval_files, sentence_task=_sentence_task(flags, train_files or eval_files),
        masker=_dynamic_masker(flags, config) if flags.dynamic_masking else None,
        steps_per_execution=trainer_lib.steps_per_execution_for(
            flags.iterations_per_loop, flags.save_checkpoints_steps, flags.num_train_steps),
        transfer_plan=transfer_plan)
    _check_batch(flags, strategy.num_replicas_in_sync)
    if is_chief:
        _write_model_dir_files(flags, run)
    return run


def _record_files(flags, config):
    """(train files, eval files), checked: shapes against the flags, ids against the config, read to their end."""
    train_files = pipeline.expand_file_patterns(flags.input_file, "input_file") if flags.input_file else []
    eval_files = []
    if flags.do_eval:
        eval_files = pipeline.expand_file_patterns(flags.eval_input_file or flags.input_file,
                                                   "eval_input_file" if flags.eval_input_file else "input_file")
    for files in (train_files, eval_files):
        if files:
            pipeline.check_pretraining_records(files, flags.max_seq_length, flags.max_predictions_per_seq)
    # Before training: a vocabulary or records the model's embeddings cannot hold, damaged or shortened files.
    pipeline.check_vocab_fits(flags.vocab_file, config.vocab_size, flags.bert_config_file)
    all_files = list(dict.fromkeys(train_files + eval_files))
    pipeline.check_records_integrity(all_files, pipeline.summary_record_counts(all_files), config.vocab_size,
                                     config.type_vocab_size, flags.bert_config_file)
    return train_files, eval_files


def _check_batch(flags, num_replicas):
    per_replica = flags.train_batch_size // num_replicas
    if flags.train_batch_size % num_replicas:
        raise bertkit_errors.UserError(
            f"--train_batch_size={flags.train_batch_size}: not divisible by the {num_replicas} replicas")
    if per_replica % flags.gradient_accumulation_steps:
        raise bertkit_errors.UserError(
            f"--gradient_accumulation_steps={flags.gradient_accumulation_steps}: does not divide the per-replica "
            f"batch {per_replica} (--train_batch_size={flags.train_batch_size} over {num_replicas} replicas)")


def _write_model_dir_files(flags, run):
    """bert_config.json, vocab.txt and bertkit.json in output_dir."""
    run.config.to_json_file(os.path.join(flags.output_dir, "bert_config.json"))
    if flags.vocab_file and os.path.abspath(flags.vocab_file) != os.path.abspath(
            os.path.join(flags.output_dir, "vocab.txt")):
        trainer_lib.copy_file(flags.vocab_file, os.path.join(flags.output_dir, "vocab.txt"))
    teacher_config = run.teacher_config
    trainer_lib.write_json(os.path.join(flags.output_dir, "bertkit.json"), {
        "do_lower_case": flags.do_lower_case, "max_seq_length": flags.max_seq_length,
        "max_predictions_per_seq": flags.max_predictions_per_seq, "model_type": run.config.model_type,
        "sentence_task": run.sentence_task, "created_by": "run_pretraining.py",
        **({"general_distillation": {
            "teacher_config_file": flags.teacher_config_file, "teacher_checkpoint": flags.teacher_checkpoint,
            "teacher_model_type": teacher_config.model_type, "teacher_hidden_size": teacher_config.hidden_size,
            "layer_mapping": flags.layer_mapping, "attention_loss": flags.attention_loss,
            "distill_mlm": flags.distill_mlm, "method": flags.distillation}} if run.distill else {})})


def _sentence_task(flags, files):
    """"sentence_order" or "next_sentence": the flag, else a .summary.json written by create_pretraining_data.py."""
    if flags.sentence_order_prediction is not None:
        return "sentence_order" if flags.sentence_order_prediction else "next_sentence"
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


def _dynamic_masker(flags, config):
    if not flags.vocab_file:
        raise bertkit_errors.UserError("--dynamic_masking: needs --vocab_file (for the [MASK]/[CLS]/[SEP] ids)")
    vocab = load_vocab(flags.vocab_file)
    missing = [t for t in ("[MASK]", "[CLS]", "[SEP]") if t not in vocab]
    if missing:
        raise bertkit_errors.UserError(f"--vocab_file={flags.vocab_file}: lacks {', '.join(missing)}")
    if len(vocab) > config.vocab_size:
        raise bertkit_errors.UserError(f"--vocab_file={flags.vocab_file}: {len(vocab)} tokens but "
                                       f"{flags.bert_config_file} has vocab_size {config.vocab_size}")
    special = [vocab[t] for t in ("[CLS]", "[SEP]", "[MASK]", "[PAD]") if t in vocab] + [0]
    return pipeline.DynamicMasker(len(vocab), vocab["[MASK]"], special, flags.max_predictions_per_seq)


def _check_teacher_flags(flags, config):
    """The teacher's config (general distillation), checked against the student's and the flags."""
    for name in ("teacher_config_file", "teacher_checkpoint"):
        if not getattr(flags, name):
            other = "teacher_checkpoint" if name == "teacher_config_file" else "teacher_config_file"
            raise bertkit_errors.UserError(f"--{name}: required with --{other} (general distillation)")
    if not os.path.isfile(flags.teacher_config_file):
        raise bertkit_errors.UserError(f"--teacher_config_file={flags.teacher_config_file}: no such file")
    if not (os.path.exists(flags.teacher_checkpoint) or os.path.exists(flags.teacher_checkpoint + ".index")):
        raise bertkit_errors.UserError(f"--teacher_checkpoint={flags.teacher_checkpoint}: no such checkpoint")
    teacher = ModelConfig.from_json_file(flags.teacher_config_file)
    if teacher.vocab_size != config.vocab_size:
        raise bertkit_errors.UserError(
            f"--teacher_config_file={flags.teacher_config_file}: vocab_size {teacher.vocab_size} differs from the "
            f"student's {config.vocab_size} ({flags.bert_config_file}); teacher and student must share the vocabulary")
    if flags.max_seq_length > teacher.max_position_embeddings:
        raise bertkit_errors.UserError(
            f"--max_seq_length={flags.max_seq_length}: longer than max_position_embeddings "
            f"{teacher.max_position_embeddings} of {flags.teacher_config_file}")
    if flags.attention_loss != "none" and teacher.num_attention_heads != config.num_attention_heads:
        raise bertkit_errors.UserError(
            f"--attention_loss={flags.attention_loss}: the student has {config.num_attention_heads} attention heads "
            f"and the teacher {teacher.num_attention_heads}; the attention loss needs equal counts "
            "(or --attention_loss=none)")
    distillation.parse_layer_mapping(flags.layer_mapping, config.num_hidden_layers, teacher.num_hidden_layers)
    return teacher


def _distillation_setup(flags, config, model):
    """(network, loss_fn, metric_names, trainable_variables_fn, extra checkpoint items) for general distillation.
    Inside strategy.scope(); restores the teacher's weights (every start: the teacher is not checkpointed)."""
    teacher_config, teacher = tinybert.load_teacher_encoder(flags.teacher_config_file, flags.teacher_checkpoint)
    print(f"teacher: {teacher_config.model_type} {teacher_config.num_hidden_layers} layers, hidden "
          f"{teacher_config.hidden_size}, from {flags.teacher_checkpoint}")
    fit_dense = (build_fit_dense(config, teacher_config.hidden_size)
                 if teacher_config.hidden_size != config.hidden_size else None)
    loss = distillation.DistillationLoss(
        config.hidden_size, teacher_config.hidden_size, config.num_hidden_layers, teacher_config.num_hidden_layers,
        layer_mapping=flags.layer_mapping, stage="intermediate", attention_loss=flags.attention_loss,
        temperature=flags.temperature, fit_dense=fit_dense, use_projection=False)
    network = tinybert.GeneralDistillationNetwork(model, teacher, loss, distill_mlm=flags.distill_mlm)
    extra = {"fit_dense": fit_dense} if fit_dense is not None else {}
    return (network, tinybert.general_distillation_loss_fn(flags.distill_mlm),
            tinybert.general_distillation_metric_names(loss, flags.distill_mlm),
            network.student_trainable_variables, extra)


def build_model(flags, run):
    """(pre-training model, compiled TrainerModel, checkpoint items): MLM + NSP/SOP, or the student of a general
    distillation against the frozen teacher, under the run's strategy."""
    with run.strategy.scope():
        model = build_pretraining_model(run.config)
        optimizer = optimization.create_optimizer(
            flags.learning_rate, flags.num_train_steps, flags.num_warmup_steps, optimizer=flags.optimizer,
            clipnorm=None)  # clipping to 1.0 is done by TrainerModel on the all-reduced gradients
        if run.distill and run.transfer_plan is None:
            network, loss_fn, metric_names, variables_fn, extra_items = _distillation_setup(flags, run.config, model)
        else:
            network, loss_fn, metric_names = (model, pretraining_loss.pretraining_loss_fn(run.sentence_task),
                                              pretraining_loss.pretraining_metric_names(run.sentence_task))
            variables_fn, extra_items = None, {}
        trainer = trainer_lib.TrainerModel(
            network, loss_fn, metric_names, gradient_accumulation_steps=flags.gradient_accumulation_steps,
            clip_norm=1.0, trainable_variables_fn=variables_fn)
        trainer.compile(optimizer=optimizer, steps_per_execution=run.steps_per_execution,
                        jit_compile=flags.enable_xla)
    items = dict(encoder=model.encoder, mlm_head=model.mlm_head, nsp_head=model.nsp_head, **extra_items,
                 optimizer=trainer.optimizer, global_step=trainer.global_step)
    return model, trainer, items


def _mobilebert_plan(flags, config, teacher_config):
    """--distillation=mobilebert: the student/teacher pair checked and the stage plan, before anything is written."""
    if flags.init_checkpoint:
        raise bertkit_errors.UserError(f"--init_checkpoint={flags.init_checkpoint}: not used with "
                                       "--distillation=mobilebert (the student starts from the teacher's embeddings "
                                       "and heads, its layers are trained stage by stage)")
    mobilebert_transfer.check_pair(config, teacher_config)
    return mobilebert_transfer.stage_plan(config.num_hidden_layers, flags.num_progressive_stages,
                                          flags.steps_per_stage, flags.num_train_steps)


def _mobilebert_transfer(flags, run, model):
    """A run_training-like callable running the progressive stages of training/mobilebert_transfer.py on `model`
    (the student PretrainingModel) with the IB-BERT teacher of --teacher_checkpoint."""
    with run.strategy.scope():
        teacher = mobilebert_transfer.load_teacher(run.teacher_config, flags.teacher_checkpoint)
    plan = run.transfer_plan

    def run_progressive(trainer, dataset_fn, *, strategy, output_dir, steps_per_checkpoint, examples_per_step,
                        max_checkpoints_to_keep, log_every_n_steps, hparams, **unused):
        hparams = dict(hparams, distillation="mobilebert", num_progressive_stages=len(plan) - 1,
                       steps_per_stage=flags.steps_per_stage,
                       distill_ground_truth_ratio=flags.distill_ground_truth_ratio)
        return mobilebert_transfer.run_progressive(
            model, teacher, plan, dataset_fn=dataset_fn, strategy=strategy, output_dir=output_dir,
            steps_per_checkpoint=steps_per_checkpoint, examples_per_step=examples_per_step,
            learning_rate=flags.learning_rate, num_warmup_steps=flags.num_warmup_steps, optimizer=flags.optimizer,
            alpha=flags.distill_ground_truth_ratio, temperature=flags.temperature, sentence_task=run.sentence_task,
            gradient_accumulation_steps=flags.gradient_accumulation_steps,
            iterations_per_loop=flags.iterations_per_loop, jit_compile=flags.enable_xla,
            max_checkpoints_to_keep=max_checkpoints_to_keep, log_every_n_steps=log_every_n_steps, hparams=hparams)

    return run_progressive


def _train_dataset_fn(flags, run):
    def dataset_fn(ctx):
        return pipeline.pretraining_dataset(
            None, flags.max_seq_length, flags.max_predictions_per_seq, flags.train_batch_size, is_training=True,
            input_context=ctx, seed=flags.seed, dynamic_masker=run.masker, files=run.train_files,
            check_records=False)
    return dataset_fn


def _eval_dataset_fn(flags, run):
    def dataset_fn(ctx):
        return pipeline.pretraining_dataset(
            None, flags.max_seq_length, flags.max_predictions_per_seq, flags.eval_batch_size, is_training=False,
            input_context=ctx, files=run.eval_files, check_records=False)
    return dataset_fn


def _init_encoder(flags, model):
    if flags.init_checkpoint:
        prefix = checkpointing.restore_encoder_weights(model.encoder, flags.init_checkpoint)
        print(f"encoder initialised from {prefix}")


def train(flags, run, model, trainer, items):
    """Train to --num_train_steps, resuming from output_dir's newest checkpoint (else from --init_checkpoint)."""
    hparams = {k: getattr(flags, k) for k in (
        "bert_config_file", "input_file", "init_checkpoint", "max_seq_length", "max_predictions_per_seq",
        "train_batch_size", "learning_rate", "num_train_steps", "num_warmup_steps", "save_checkpoints_steps",
        "iterations_per_loop", "optimizer", "gradient_accumulation_steps", "mixed_precision", "enable_xla",
        "dynamic_masking", "seed")}
    hparams.update(distribution_strategy=type(run.strategy).__name__,
                   num_replicas=run.strategy.num_replicas_in_sync, sentence_task=run.sentence_task,
                   steps_per_execution=run.steps_per_execution)
    if run.distill:
        hparams.update({k: getattr(flags, k) for k in (
            "teacher_config_file", "teacher_checkpoint", "layer_mapping", "attention_loss", "temperature",
            "distill_mlm")})
    run_training = (_mobilebert_transfer(flags, run, model) if run.transfer_plan is not None
                    else trainer_lib.run_training)
    with pipeline.damaged_records_named(run.train_files):
        result = run_training(
            trainer, _train_dataset_fn(flags, run), strategy=run.strategy, output_dir=flags.output_dir,
            num_train_steps=flags.num_train_steps, steps_per_checkpoint=flags.save_checkpoints_steps,
            checkpoint_items=items, examples_per_step=flags.train_batch_size,
            init_fn=lambda: _init_encoder(flags, model), max_checkpoints_to_keep=flags.keep_checkpoint_max,
            log_every_n_steps=flags.log_steps, hparams=hparams)
    print(f"training done: global_step={result['global_step']}"
          + (f" examples/s={result['examples_per_second']:.1f}" if result["examples_per_second"] else ""))


def restore_for_eval(flags, run, model, trainer, items):
    """Without training: output_dir's latest checkpoint, else --init_checkpoint's encoder."""
    with run.strategy.scope():
        trainer.build_for(_eval_dataset_fn(flags, run)(tf.distribute.InputContext()).element_spec)
    latest = tf.train.latest_checkpoint(flags.output_dir)
    if latest:
        checkpoints.restore_checked(tf.train.Checkpoint(**items), latest).expect_partial()
        print(f"evaluating {latest}")
    elif flags.init_checkpoint:
        _init_encoder(flags, model)
    else:
        raise bertkit_errors.UserError(f"--output_dir={flags.output_dir}: no checkpoint to evaluate "
                                       "(and no --init_checkpoint)")


def evaluate(flags, run, trainer):
    """--max_eval_steps batches of the eval records; eval_results.txt (chief)."""
    with pipeline.damaged_records_named(run.eval_files):
        results = trainer_lib.run_evaluation(trainer, _eval_dataset_fn(flags, run), strategy=run.strategy,
                                             steps=flags.max_eval_steps, output_dir=flags.output_dir)
    if run.is_chief:
        trainer_lib.write_eval_results(os.path.join(flags.output_dir, "eval_results.txt"), results)


def export(flags, encoder):
    """The encoder as a raw-text SavedModel under output_dir/export/<version>/ (needs --vocab_file)."""
    if not flags.vocab_file:
        print("no --vocab_file: SavedModel export skipped")
        return None
    version_dir = export_lib.export_encoder(encoder, flags.vocab_file, flags.do_lower_case, flags.max_seq_length,
                                            os.path.join(flags.output_dir, "export"))
    print(f"exported {version_dir}")
    return version_dir
