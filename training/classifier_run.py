"""The steps of run_classifier.py once its flags are checked: each takes the script's absl FLAGS (`flags`) and the
`ClassifierRun` that `prepare` builds (model config, strategy, records, labels, splits, step counts).

    defaults, lower_case_given = apply_model_dir_defaults(FLAGS)      # --init_checkpoint's directory fills flags
    run = prepare(FLAGS, defaults, lower_case_given, speeds)          # checks, strategy, records, model dir files
    setup, trainer, items = build_model(FLAGS, run)                   # inside run.strategy.scope()
    eval_sets = datasets(FLAGS, run, run.dev_splits, FLAGS.eval_batch_size)
    evaluate, best = evaluate_fn(FLAGS, run, setup, eval_sets), best_checkpoint_of(FLAGS, run)
    train(FLAGS, run, setup, trainer, items, best, evaluate)
    global_step, prefix = restore_final_model(FLAGS, run, setup, best)
    evaluate_final(FLAGS, run, setup, evaluate, eval_sets, global_step, prefix)
    predict(FLAGS, run, setup); export(FLAGS, run, setup)

The model-level pieces (setups, per-epoch training, best checkpoint) are training/classifier.py's; evaluation and
prediction files training/classifier_eval.py's; records and task metadata training/classifier_records.py's.
"""
import dataclasses
import json
import os

import keras
import tensorflow as tf

import bertkit_errors
import bertkit_io
from data import finetuning, pipeline, processors
from modeling import ModelConfig, checkpoints, prune
from serving import export as export_lib
from tokenization import FullTokenizer
from training import best_checkpoint, checkpointing, classifier_eval, classifier_records, distillation, distribution
from training import classifier as classifier_lib
from training import fastbert, fastbert_speed, optimization, rerun, tinybert
from training import trainer as trainer_lib


def _err(message):
    return bertkit_errors.UserError(message)


@dataclasses.dataclass
class ClassifierRun:
    """What the steps after `prepare` share."""
    config: object
    strategy: object
    is_chief: bool
    processor: object
    meta: dict
    records_dir: str
    defaults: dict
    init_head: bool
    labels: list
    is_regression: bool
    num_labels: int
    train_splits: list
    dev_splits: list
    test_splits: list
    teacher_meta: dict
    fastbert_distill: bool
    select_best: bool
    speeds: list
    num_train_examples: int = 0
    num_train_steps: int = 0
    num_warmup_steps: int = 0

    def split_file(self, split):
        return os.path.join(self.records_dir, self.meta["splits"][split]["file"])

    def num_records(self, split):
        return self.meta["splits"][split].get("num_examples")


def apply_model_dir_defaults(flags):
    """Unset --bert_config_file / --vocab_file / --do_lower_case from an --init_checkpoint model directory. Returns
    (the directory's defaults, whether the lower-casing was given by the flag or the directory)."""
    defaults = classifier_lib.model_dir_defaults(
        flags.init_checkpoint, vocab_dir=None if flags["vocab_file"].present else flags.output_dir)
    for name in ("bert_config_file", "vocab_file", "do_lower_case"):
        if not flags[name].present and name in defaults:
            setattr(flags, name, defaults[name])
    return defaults, flags["do_lower_case"].present or "do_lower_case" in defaults


def prepare(flags, defaults, lower_case_given, speeds):
    """Everything before the model: output checks, the strategy, the records (written from --data_dir or read from
    --records_dir) and their checks, the teacher's / FastBERT's checks, the model directory's files, step counts."""
    config = ModelConfig.from_json_file(flags.bert_config_file)
    bertkit_io.refuse_output_on_input(
        [("output_dir", flags.output_dir)]
        + [("output_dir", os.path.join(flags.output_dir, name)) for name in ("bertkit.json", "task_meta.json")],
        [("init_checkpoint", bertkit_io.checkpoint_dir(flags.init_checkpoint)),
         ("teacher_checkpoint", bertkit_io.checkpoint_dir(flags.teacher_checkpoint)),
         ("bert_config_file", flags.bert_config_file), ("vocab_file", flags.vocab_file),
         ("distill_file", flags.distill_file), ("data_dir", flags.data_dir)])
    bertkit_io.check_output_dir(flags.output_dir)
    # The strategy first: MultiWorkerMirroredStrategy must be created before other TensorFlow ops run.
    strategy = distribution.get_strategy(flags.distribution_strategy or ("tpu" if flags.use_tpu else None),
                                         tpu_name=flags.tpu_name or flags.master, tpu_zone=flags.tpu_zone,
                                         gcp_project=flags.gcp_project)
    is_chief = distribution.is_chief(strategy)
    out_meta = finetuning.read_task_meta(flags.output_dir)
    has_checkpoint = tf.train.latest_checkpoint(flags.output_dir) is not None
    _check_length(flags, config)
    fastbert_distill = flags.fastbert and flags.fastbert_stage == "distill"
    processor, meta, records_dir = _load_records(flags, out_meta, has_checkpoint, lower_case_given,
                                                 train_records=not flags.distill_file)
    _check_length(flags, config)  # with --records_dir the length comes from the records
    init_meta = defaults.get("task_meta")
    init_head = False
    if init_meta is not None and flags.init_checkpoint:
        same_task = processors.canonical_task_name(init_meta.get("task")) == processor.task_name
        if same_task or not flags.do_train:
            classifier_records.check_labels_match(meta, init_meta, f"--init_checkpoint={flags.init_checkpoint}")
            init_head = True
    is_regression = bool(meta["is_regression"])
    train_splits = classifier_records.splits_of_kind(meta, processor, "train")
    run = ClassifierRun(
        config=config, strategy=strategy, is_chief=is_chief, processor=processor, meta=meta, records_dir=records_dir,
        defaults=defaults, init_head=init_head, labels=list(meta["labels"]), is_regression=is_regression,
        num_labels=1 if is_regression else len(meta["labels"]),
        train_splits=[] if flags.distill_file else train_splits,  # the branches learn from the --distill_file texts
        dev_splits=classifier_records.splits_of_kind(meta, processor, "dev"),
        test_splits=classifier_records.splits_of_kind(meta, processor, "test"), teacher_meta=None,
        fastbert_distill=fastbert_distill,
        # No best-checkpoint selection by dev accuracy where it means nothing: task distillation's intermediate
        # stage (the student's head is not trained) and FastBERT's distill stage (the final classifier is frozen):
        # the latest checkpoint is used, and the dev set is evaluated only at the end.
        select_best=not ((flags.teacher_checkpoint and flags.distill_stage == "intermediate") or fastbert_distill),
        speeds=speeds)
    _check_records(flags, run)
    if flags.teacher_checkpoint:
        run.teacher_meta = _check_teacher(flags, config, run.labels, is_regression)
    if flags.fastbert:
        _check_fastbert(flags, run, has_checkpoint)
    if flags.seed is not None:
        keras.utils.set_random_seed(flags.seed)
    keras.mixed_precision.set_global_policy(flags.mixed_precision)
    if is_chief:
        _write_model_dir_files(flags, run)
    _count_steps(flags, run)
    return run


def _check_length(flags, config):
    if flags.max_seq_length > config.max_position_embeddings:
        raise _err(f"--max_seq_length={flags.max_seq_length}: longer than max_position_embeddings "
                   f"{config.max_position_embeddings} of {flags.bert_config_file}")


def _load_records(flags, out_meta, has_checkpoint, lower_case_given, train_records=True):
    """(processor, meta, records_dir) from --data_dir (records written into output_dir) or --records_dir."""
    if flags.records_dir:
        meta = finetuning.read_task_meta(flags.records_dir)
        if meta is None:
            raise _err(f"--records_dir={flags.records_dir}: no task_meta.json "
                       "(write it with create_finetuning_data.py)")
        if processors.canonical_task_name(meta["task"]) != processors.canonical_task_name(flags.task_name):
            raise _err(f"--records_dir={flags.records_dir}: records of task {meta['task']}, not {flags.task_name}")
        if flags["max_seq_length"].present and int(meta["max_seq_length"]) != flags.max_seq_length:
            raise _err(f"--max_seq_length={flags.max_seq_length}: the records in {flags.records_dir} have "
                       f"max_seq_length {meta['max_seq_length']}")
        flags.max_seq_length = int(meta["max_seq_length"])
        if flags.vocab_file is None and meta.get("vocab_file") and os.path.isfile(meta["vocab_file"]):
            flags.vocab_file = meta["vocab_file"]
        if not lower_case_given and meta.get("do_lower_case") is not None:
            flags.do_lower_case = bool(meta["do_lower_case"])
        if has_checkpoint:
            classifier_records.check_labels_match(meta, out_meta, f"--output_dir={flags.output_dir}")
        rerun.check_rerun(flags.output_dir, flags.bert_config_file, flags.vocab_file, flags.do_lower_case,
                          flags.max_seq_length, task_meta=meta)
        return classifier_records.processor_from_meta(meta, flags.skip_malformed), meta, flags.records_dir

    processor = processors.processor_from_flags(flags)
    if not os.path.isdir(flags.data_dir):
        raise _err(f"--data_dir={flags.data_dir}: not a directory")
    labels = processor.get_labels(flags.data_dir)
    if has_checkpoint:
        classifier_records.check_labels_match({"task": processor.task_name, "labels": labels,
                                               "is_regression": processor.is_regression}, out_meta,
                                              f"--output_dir={flags.output_dir}")
    rerun.check_rerun(flags.output_dir, flags.bert_config_file, flags.vocab_file, flags.do_lower_case,
                      flags.max_seq_length, task_meta={"task": processor.task_name, "labels": list(labels),
                                                       "is_regression": processor.is_regression})
    tokenizer = FullTokenizer(flags.vocab_file, do_lower_case=flags.do_lower_case)
    meta = classifier_records.prepare_records(
        processor, flags.data_dir, tokenizer, flags.output_dir, flags.max_seq_length,
        do_train=flags.do_train and train_records,
        do_eval=flags.do_eval, do_predict=flags.do_predict, vocab_file=flags.vocab_file,
        do_lower_case=flags.do_lower_case)
    if meta is None:  # no records needed (FastBERT branches trained on --distill_file only): the task's metadata
        meta = {"task": processor.task_name, "labels": list(labels), "num_labels": processor.num_labels,
                "is_regression": bool(processor.is_regression), "main_metric": processor.main_metric,
                "max_seq_length": int(flags.max_seq_length), "vocab_file": os.path.abspath(flags.vocab_file),
                "do_lower_case": bool(flags.do_lower_case), "processor": processor.config(), "splits": {}}
        with bertkit_io.atomic_write(os.path.join(flags.output_dir, finetuning.META_FILE)) as f:
            json.dump(meta, f, indent=2, sort_keys=True)
            f.write("\n")
    return processor, meta, flags.output_dir


def _check_records(flags, run):
    """Every split the run uses is there, of the right length, readable to its end, with ids the model holds."""
    for flag, kind, names in (("do_train", "train", run.train_splits), ("do_eval", "dev", run.dev_splits),
                              ("do_predict", "test", run.test_splits)):
        if flag == "do_train" and flags.distill_file:
            continue
        if getattr(flags, flag) and not names:
            raise _err(f"--{flag}: no {kind} records in {run.records_dir}")
    used = (run.train_splits if flags.do_train else []) + (run.dev_splits if flags.do_eval else []) + (
        run.test_splits if flags.do_predict else [])
    for split in used:
        if not os.path.isfile(run.split_file(split)):
            raise _err(f"{run.split_file(split)}: no such file (named in {run.records_dir}/task_meta.json)")
    pipeline.check_finetuning_records([run.split_file(s) for s in used], flags.max_seq_length)
    # Before training: a vocabulary or records the model's embeddings cannot hold, damaged or shortened files.
    pipeline.check_vocab_fits(flags.vocab_file, run.config.vocab_size, flags.bert_config_file)
    pipeline.check_records_integrity(
        [run.split_file(s) for s in used],
        {run.split_file(s): (run.meta["splits"][s].get("num_examples"),
                             os.path.join(run.records_dir, finetuning.META_FILE)) for s in used},
        run.config.vocab_size, run.config.type_vocab_size, flags.bert_config_file)


def _check_teacher(flags, config, labels, is_regression):
    """The teacher directory's task_meta.json and bert_config.json against this task and the student (before any
    model is built). Returns the teacher's task meta."""
    where = f"--teacher_checkpoint={flags.teacher_checkpoint}"
    if not os.path.isdir(flags.teacher_checkpoint):
        raise _err(f"{where}: not a directory (give the output_dir of run_classifier.py for the teacher)")
    teacher_meta = finetuning.read_task_meta(flags.teacher_checkpoint)
    config_file = os.path.join(flags.teacher_checkpoint, "bert_config.json")
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
                   f"{config.vocab_size} ({flags.bert_config_file}); teacher and student must share the vocabulary")
    if flags.max_seq_length > teacher.max_position_embeddings:
        raise _err(f"--max_seq_length={flags.max_seq_length}: longer than the teacher's max_position_embeddings "
                   f"{teacher.max_position_embeddings}")
    if flags.distill_stage != "prediction":
        if flags.attention_loss != "none" and teacher.num_attention_heads != config.num_attention_heads:
            raise _err(f"--attention_loss={flags.attention_loss}: the student has {config.num_attention_heads} "
                       f"attention heads and the teacher {teacher.num_attention_heads}; the attention loss needs "
                       "equal counts (use --attention_loss=none)")
        distillation.parse_layer_mapping(flags.layer_mapping, config.num_hidden_layers, teacher.num_hidden_layers)
    if flags.init_from_teacher:
        try:
            prune.check_prunable(teacher, config, _pruned_layers(flags, config, teacher))
        except bertkit_errors.UserError as e:
            raise _err(f"--init_from_teacher: {e}") from None
    return teacher_meta


def _pruned_layers(flags, config, teacher_config):
    """The teacher layer each student layer starts from: the --layer_mapping's attention targets."""
    mapping = distillation.parse_layer_mapping(flags.layer_mapping, config.num_hidden_layers,
                                               teacher_config.num_hidden_layers)
    return list(mapping.attention)


def _check_fastbert(flags, run, has_checkpoint):
    if run.is_regression:
        raise _err("--fastbert: FastBERT early exit needs a classification task, not regression")
    if run.fastbert_distill and flags.do_train and not has_checkpoint:
        if not flags.init_checkpoint:
            raise _err("--fastbert_stage=distill: --init_checkpoint required (the output_dir of a fine-tuned "
                       "classifier for this task, e.g. of --fastbert_stage=finetune)")
        if not run.init_head:
            raise _err(f"--init_checkpoint={flags.init_checkpoint}: --fastbert_stage=distill needs a classifier "
                       f"fine-tuned on this task (a run_classifier.py output_dir with task_meta.json)")
        if os.path.abspath(run.defaults.get("model_dir", "")) == os.path.abspath(flags.output_dir):
            raise _err(f"--output_dir={flags.output_dir}: --fastbert_stage=distill writes a new model directory; "
                       "give one other than --init_checkpoint")


def method_info(flags, teacher_meta):
    """bertkit.json / hparams entries of the task-distillation and FastBERT settings."""
    info = {}
    if flags.teacher_checkpoint:
        info["task_distillation"] = {
            "teacher_checkpoint": os.path.abspath(flags.teacher_checkpoint), "stage": flags.distill_stage,
            "layer_mapping": flags.layer_mapping, "attention_loss": flags.attention_loss,
            "temperature": flags.temperature, "hard_label_weight": flags.hard_label_weight,
            "init_from_teacher": flags.init_from_teacher, "teacher_task": (teacher_meta or {}).get("task")}
    if flags.fastbert:
        info["fastbert"] = {"stage": flags.fastbert_stage, "branch_hidden_size": flags.branch_hidden_size,
                            "distill_file": os.path.abspath(flags.distill_file) if flags.distill_file else None,
                            "speeds": flags.speed}
    return info


def _write_model_dir_files(flags, run):
    """bert_config.json, vocab.txt, bertkit.json and (for --records_dir) task_meta.json in output_dir."""
    run.config.to_json_file(os.path.join(flags.output_dir, "bert_config.json"))
    if flags.vocab_file and os.path.abspath(flags.vocab_file) != os.path.abspath(
            os.path.join(flags.output_dir, "vocab.txt")):
        trainer_lib.copy_file(flags.vocab_file, os.path.join(flags.output_dir, "vocab.txt"))
    trainer_lib.write_json(os.path.join(flags.output_dir, "bertkit.json"), {
        "do_lower_case": flags.do_lower_case, "max_seq_length": flags.max_seq_length,
        "model_type": run.config.model_type, "task": run.processor.task_name, "created_by": "run_classifier.py",
        **method_info(flags, run.teacher_meta)})
    if run.records_dir != flags.output_dir:
        trainer_lib.write_json(os.path.join(flags.output_dir, finetuning.META_FILE), run.meta)


def _count_steps(flags, run):
    num_replicas = run.strategy.num_replicas_in_sync
    if flags.train_batch_size % num_replicas:
        raise _err(f"--train_batch_size={flags.train_batch_size}: not divisible by the {num_replicas} replicas")
    if (flags.train_batch_size // num_replicas) % flags.gradient_accumulation_steps:
        raise _err(f"--gradient_accumulation_steps={flags.gradient_accumulation_steps}: does not divide the "
                   f"per-replica batch {flags.train_batch_size // num_replicas}")
    run.num_train_examples = (run.meta["splits"][run.train_splits[0]]["num_real_examples"] if run.train_splits
                              else 0)
    if flags.distill_file and flags.do_train:
        run.num_train_examples = len(fastbert.read_unlabelled_texts(flags.distill_file, flags.distill_text_column))
    run.num_train_steps = classifier_lib.num_train_steps_for(
        max(run.num_train_examples, 1), flags.train_batch_size, flags.num_train_epochs)
    run.num_warmup_steps = int(run.num_train_steps * flags.warmup_proportion)


def build_model(flags, run):
    """(setup, compiled TrainerModel, checkpoint items) for plain fine-tuning, task distillation (--teacher_checkpoint,
    the teacher loaded and frozen) or FastBERT, under the run's strategy."""
    config = run.config
    with run.strategy.scope():
        if flags.teacher_checkpoint:
            teacher_config, _, teacher = tinybert.load_teacher_classifier(flags.teacher_checkpoint)
            print(f"teacher: {teacher_config.model_type} {teacher_config.num_hidden_layers} layers, hidden "
                  f"{teacher_config.hidden_size}, from {teacher.checkpoint_prefix} (frozen)")
            setup = classifier_lib.build_task_distillation_setup(
                config, run.num_labels, teacher, teacher_config, is_regression=run.is_regression,
                stage=flags.distill_stage, layer_mapping=flags.layer_mapping, attention_loss=flags.attention_loss,
                temperature=flags.temperature, hard_label_weight=flags.hard_label_weight)
        elif flags.fastbert:
            setup = classifier_lib.build_fastbert_setup(config, run.num_labels, stage=flags.fastbert_stage,
                                                        branch_hidden_size=flags.branch_hidden_size)
        else:
            setup = classifier_lib.build_classifier_setup(config, run.num_labels, run.is_regression)
        optimizer = optimization.create_optimizer(
            flags.learning_rate, run.num_train_steps, run.num_warmup_steps, optimizer=flags.optimizer, clipnorm=None,
            layerwise_lr_decay=flags.layerwise_lr_decay, encoder=setup.encoder)
        trainer = trainer_lib.TrainerModel(
            setup.network, setup.loss_fn, setup.metric_names, trainable_variables_fn=setup.trainable_variables_fn,
            gradient_accumulation_steps=flags.gradient_accumulation_steps, clip_norm=1.0)
        trainer.compile(optimizer=optimizer, steps_per_execution=1, jit_compile=flags.enable_xla)
    return setup, trainer, setup.all_checkpoint_items(trainer)


def _is_bertkit_prefix(prefix):
    try:
        tf.train.list_variables(prefix)
    except (tf.errors.NotFoundError, tf.errors.DataLossError, ValueError, TypeError):
        return False
    return True


def restore_init(flags, run, setup):
    """--init_checkpoint into the setup's encoder (and its classifier head / fit_dense where it has them)."""
    prefix = best_checkpoint.resolve_checkpoint(flags.init_checkpoint)
    prefix = checkpointing.restore_encoder_weights(setup.encoder, prefix)
    note = ""
    if run.init_head and classifier_lib.restore_head(setup, prefix):
        note = " (with its classifier head)"
    fit_dense = setup.checkpoint_items.get("fit_dense")
    if fit_dense is not None and _is_bertkit_prefix(prefix):
        if classifier_lib.restore_fit_dense(fit_dense, prefix):
            note += " (with its fit_dense)"
        else:
            note += " (fit_dense: none there or of other widths, a fresh projection)"
    print(f"initialised from {prefix}{note}")


def init_from_teacher(flags, run, setup, calibration_examples=64):
    """--init_from_teacher: the student encoder cut from the frozen teacher's (modeling/prune.py), the residual
    dimensions ranked on the first `calibration_examples` training records."""
    teacher = setup.network.teacher.encoder
    batch = next(iter(pipeline.finetuning_dataset(
        None, flags.max_seq_length, calibration_examples, is_training=False, is_regression=run.is_regression,
        files=[run.split_file(run.train_splits[0])], check_records=False)))
    inputs = {k: batch[k] for k in ("input_ids", "input_mask", "segment_ids")}
    layers = _pruned_layers(flags, run.config, teacher.config)
    prune.prune_into(teacher, setup.encoder, layers, prune.residual_importance(teacher, inputs))
    print(f"initialised from the teacher, pruned: its layers {layers}, hidden {teacher.config.hidden_size} -> "
          f"{run.config.hidden_size}, intermediate {teacher.config.intermediate_size} -> "
          f"{run.config.intermediate_size}")


def datasets(flags, run, names, batch_size):
    """{split: one pass over its records} for evaluation and prediction."""
    return {s: pipeline.finetuning_dataset(None, flags.max_seq_length, batch_size, is_training=False,
                                           is_regression=run.is_regression, files=[run.split_file(s)],
                                           check_records=False) for s in names}


def best_checkpoint_of(flags, run):
    return best_checkpoint.BestCheckpoint(flags.output_dir, classifier_eval.main_metric_key(
        run.processor.task_name, run.is_regression, run.dev_splits or ["dev"]))


def evaluate_fn(flags, run, setup, eval_sets):
    """evaluate(global_step) -> the dev results of the current model on `eval_sets` (logged under
    output_dir/logs/eval)."""
    def evaluate(step):
        return classifier_eval.evaluate(setup.predict_fn, eval_sets, task_name=run.processor.task_name,
                                        is_regression=run.is_regression, global_step=step,
                                        output_dir=flags.output_dir if run.is_chief else None,
                                        totals={s: run.num_records(s) for s in eval_sets})
    return evaluate


def _train_dataset_fn(flags, run):
    if flags.distill_file:
        tokenizer = FullTokenizer(flags.vocab_file, do_lower_case=flags.do_lower_case)

        def from_texts(ctx):
            return fastbert.unlabelled_text_dataset(
                flags.distill_file, tokenizer, flags.max_seq_length, flags.train_batch_size, seed=flags.seed,
                text_column=flags.distill_text_column, input_context=ctx)
        return from_texts
    train_file = run.split_file(run.train_splits[0])

    def from_records(ctx):
        return pipeline.finetuning_dataset(None, flags.max_seq_length, flags.train_batch_size,
                                           is_training=True, is_regression=run.is_regression, input_context=ctx,
                                           seed=flags.seed, files=[train_file], check_records=False,
                                           shuffle_buffer_size=pipeline.full_shuffle_buffer(run.num_train_examples))
    return from_records


def train(flags, run, setup, trainer, items, best, evaluate):
    """Per-epoch training (dev evaluation and best/ after each epoch where the best is selected); resumable."""
    hparams = {k: getattr(flags, k) for k in (
        "task_name", "bert_config_file", "init_checkpoint", "max_seq_length", "train_batch_size",
        "learning_rate", "num_train_epochs", "warmup_proportion", "save_checkpoints_steps", "optimizer",
        "gradient_accumulation_steps", "mixed_precision", "enable_xla", "layerwise_lr_decay", "seed")}
    hparams.update({f"{group}.{k}": v for group, values in method_info(flags, run.teacher_meta).items()
                    for k, v in values.items()})
    hparams.update(num_train_steps=run.num_train_steps, num_warmup_steps=run.num_warmup_steps,
                   num_train_examples=run.num_train_examples, distribution_strategy=type(run.strategy).__name__)
    print(f"training: {run.num_train_examples} examples, {flags.num_train_epochs:g} epochs, "
          f"{run.num_train_steps} steps ({run.num_warmup_steps} warmup)")
    result = classifier_lib.train_and_evaluate(
        trainer, _train_dataset_fn(flags, run), strategy=run.strategy, output_dir=flags.output_dir,
        epoch_ends=classifier_lib.epoch_end_steps(run.num_train_examples, flags.train_batch_size,
                                                  flags.num_train_epochs),
        steps_per_checkpoint=flags.save_checkpoints_steps, iterations_per_loop=flags.iterations_per_loop,
        checkpoint_items=items, examples_per_step=flags.train_batch_size,
        evaluate_fn=evaluate if flags.do_eval and run.select_best else None,
        best=best if run.select_best else None,
        init_fn=_init_fn(flags, run, setup),
        max_checkpoints_to_keep=flags.keep_checkpoint_max, hparams=hparams, is_chief=run.is_chief)
    print(f"training done: global_step={result['global_step']} (trained {result['trained_steps']} steps)")


def _init_fn(flags, run, setup):
    """What a fresh run starts the model from: --init_checkpoint, the pruned teacher, or nothing (random)."""
    if flags.init_checkpoint:
        return lambda: restore_init(flags, run, setup)
    if flags.init_from_teacher:
        return lambda: init_from_teacher(flags, run, setup)
    return None


def restore_final_model(flags, run, setup, best):
    """The model used from here on: the best checkpoint when there is one, else the latest, else --init_checkpoint.
    Returns (global_step, checkpoint prefix or None)."""
    best_prefix = best.prefix() if run.select_best else None
    prefix = best_prefix or tf.train.latest_checkpoint(flags.output_dir)
    global_step = None
    if prefix:
        checkpoints.restore_checked(tf.train.Checkpoint(**setup.checkpoint_items), prefix).expect_partial()
        global_step = int(prefix.rsplit("-", 1)[-1]) if prefix.rsplit("-", 1)[-1].isdigit() else 0
        which = "best" if prefix == best_prefix else "latest"
        print(f"using the {which} checkpoint {prefix}")
    elif flags.init_checkpoint:
        if not run.init_head:
            print("warning: no fine-tuned checkpoint in --output_dir; the classifier head is untrained")
        restore_init(flags, run, setup)
        global_step = 0
    elif flags.do_eval or flags.do_predict or flags.do_export:
        raise _err(f"--output_dir={flags.output_dir}: no checkpoint to use (train with --do_train or give "
                   "--init_checkpoint)")
    return global_step, prefix


def evaluate_final(flags, run, setup, evaluate, eval_sets, global_step, prefix):
    """eval_results.txt of the model in use (the results recorded during training when they are of this checkpoint);
    FastBERT's distill stage adds the early-exit speeds."""
    if flags.teacher_checkpoint and flags.distill_stage == "intermediate":
        print("note: --distill_stage=intermediate does not train the student's classifier head; its dev metrics "
              "mean nothing until the prediction stage")
    results = classifier_lib.known_eval_results(flags.output_dir, global_step) if prefix and run.select_best else None
    if results is not None:  # this checkpoint's dev set was evaluated (and logged) during training
        print(f"eval: the results of step {global_step} from {classifier_lib.EVAL_HISTORY_FILE}: " + " ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(results.items())))
    else:
        results = evaluate(global_step)
    if run.fastbert_distill:
        speed_results, _ = fastbert_speed.fastbert_speed_evaluation(
            setup, eval_sets, run.speeds, output_dir=flags.output_dir if run.is_chief else None,
            global_step=global_step)
        results.update(speed_results)
    elif flags.fastbert:
        print("note: the FastBERT branches are trained by --fastbert_stage=distill; the early-exit speeds are "
              "evaluated there")
    if run.is_chief:
        trainer_lib.write_eval_results(os.path.join(flags.output_dir, "eval_results.txt"), results)


def predict(flags, run, setup):
    """test_results.tsv and predictions.tsv of every test split."""
    for split, dataset in datasets(flags, run, run.test_splits, flags.predict_batch_size).items():
        outputs = classifier_eval.run_predictions(setup.predict_fn, dataset, description=f"predict {split}",
                                                  total=run.num_records(split))
        paths = classifier_eval.write_predictions(
            flags.output_dir, split, run.test_splits, outputs, labels=run.labels, is_regression=run.is_regression,
            ids=classifier_records.source_ids(run.meta, split, run.processor))
        print(f"wrote {' and '.join(paths)}")


def export(flags, run, setup):
    """A raw-text SavedModel of the model in use (with the early-exit signatures after FastBERT's distill stage)."""
    version_dir = export_lib.export_classifier(
        setup.classifier, vocab_file=os.path.join(flags.output_dir, "vocab.txt"),
        do_lower_case=flags.do_lower_case, max_seq_length=flags.max_seq_length, labels=run.labels,
        is_regression=run.is_regression, pair=classifier_records.task_is_pair(run.processor),
        export_base=flags.export_dir or os.path.join(flags.output_dir, "export"),
        **({"branches": setup.branches} if run.fastbert_distill else {}))
    if flags.fastbert and not run.fastbert_distill:
        print("note: exported without the FastBERT branches (untrained before --fastbert_stage=distill)")
    print(f"exported {version_dir}")
