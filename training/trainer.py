"""Generic resumable training driver: a Keras `fit()` loop with checkpoints, TensorBoard and multi-worker support.

Used by run_pretraining.py (MLM + NSP/SOP: training/pretraining_loss.py) and run_classifier.py. Pieces:

* `TrainerModel(network, loss_fn, metric_names, ...)`: a keras.Model wrapping any network with a custom
  `train_step` (loss, in-step gradient accumulation, loss scaling under mixed_float16, all-reduce, global-norm
  clipping, grad-norm metric) and `test_step`. `loss_fn(features, outputs) -> (loss, {metric: (values, weights)})`.
* `run_training(...)`: restores the newest checkpoint of `output_dir` (or calls `init_fn` on a fresh start), runs
  `fit()` from the restored global step to `num_train_steps`, saving a checkpoint every `steps_per_checkpoint` steps
  and at the end, writing TensorBoard summaries under `output_dir/logs/train`. A killed run rerun with the same
  command resumes at the last checkpoint and ends at the same global step with the same LR schedule.
* `run_evaluation(...)` + `write_eval_results(...)`: `evaluate()` for N steps, summaries under `logs/eval`, and the
  original `key = value` results file.

Why `fit()` with a custom `train_step` (not a hand-written loop): Keras 3 on the TF backend runs `train_step` through
`strategy.run` inside one `tf.function` (XLA with `jit_compile`), supports `steps_per_execution`, distributed
datasets (`distribute_datasets_from_function`) and Mirrored/MultiWorkerMirrored/TPU strategies, so the same code
serves every strategy. What Keras' default step lacks is done here: gradients are all-reduced before the global
norm is taken (Keras clips per replica, before its own all-reduce), and gradient accumulation happens inside one
step, so one `fit()` step is one optimizer step and `num_train_steps`/the LR schedule do not depend on accumulation.

Checkpoints: `tf.train.CheckpointManager` over a `tf.train.Checkpoint(**checkpoint_items)`; the pre-training script
uses the DESIGN.md names (encoder, mlm_head, nsp_head, optimizer, global_step). `global_step` counts train steps
(`TrainerModel.global_step`); it equals `optimizer.iterations` except for the steps a mixed_float16 loss scaler
skipped on non-finite gradients. Resuming from the newest readable checkpoint, saving, and loading an
--init_checkpoint's encoder are in training/checkpointing.py.
"""
import json
import math
import os
import shutil
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging
from tensorboard.plugins.hparams import api as hp

import bertkit_errors
import bertkit_io
from training import distribution
from training import progress as progress_lib
# Re-exported for callers outside training/ (bench/, tests/modeling: other owners' files) that import them from here:
from training.checkpointing import restore_newest_readable, save_checkpoint


# ----------------------------------------------------------------------------------------------------------------
# The model wrapper
# ----------------------------------------------------------------------------------------------------------------

# Strategies whose step Keras' multi-step tf.cond cannot run, and which XLA cannot compile as a whole.
_MERGE_CALL_STRATEGIES = (tf.distribute.MirroredStrategy, tf.distribute.MultiWorkerMirroredStrategy)


class TrainerModel(keras.Model):
    """Wraps `network` (features dict -> outputs) with a custom train/test step.

    Args:
      network: a keras.Model/Layer called as `network(features, training=...)`.
      loss_fn: `loss_fn(features, outputs) -> (loss, metrics)`; `loss` is the scalar mean loss over this replica's
        (micro-)batch; `metrics` maps each name in `metric_names` to `(values, weights)` (weights may be None),
        accumulated as weighted means (values and weights broadcastable).
      metric_names: the metric names loss_fn returns (besides "loss", which is always tracked).
      gradient_accumulation_steps: each step's per-replica batch is split into this many micro-batches whose
        gradients are summed before one optimizer update (saves activation memory; same result as one big batch
        up to the loss normalisation per micro-batch).
      clip_norm: clip the all-reduced gradients to this global norm (None: no clipping). Original BERT: 1.0.
      trainable_variables_fn: optional callable returning the variables to train (default: network's trainable).
    Create it (and the network and optimizer) inside `strategy.scope()`, then `compile(optimizer=...,
    steps_per_execution=..., jit_compile=...)`.
    """

    def __init__(self, network, loss_fn, metric_names, gradient_accumulation_steps=1, clip_norm=1.0,
                 trainable_variables_fn=None, name="trainer"):
        super().__init__(name=name)
        self.network = network
        self.loss_fn = loss_fn
        self.gradient_accumulation_steps = int(gradient_accumulation_steps)
        if self.gradient_accumulation_steps < 1:
            raise bertkit_errors.UserError(
                f"--gradient_accumulation_steps={gradient_accumulation_steps}: must be at least 1")
        self.clip_norm = clip_norm
        self._trainable_variables_fn = trainable_variables_fn
        self.metric_names = ["loss"] + [m for m in metric_names if m != "loss"]
        self._trackers = []
        for i, metric_name in enumerate(self.metric_names):
            tracker = keras.metrics.Mean(name=metric_name)
            setattr(self, f"tracker_{i}", tracker)
            self._trackers.append(tracker)
        self.grad_norm_tracker = keras.metrics.Mean(name="grad_norm")
        self._inner_jit = False
        self._jit_grads_fn = None
        self.global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step",
                                       aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)

    @property
    def metrics(self):
        return list(self._trackers) + [self.grad_norm_tracker]

    def call(self, features, training=False):
        return self.network(features, training=training)

    def _train_vars(self):
        if self._trainable_variables_fn is not None:
            return list(self._trainable_variables_fn())
        return list(self.network.trainable_variables)

    def build_for(self, element_spec):
        """Create the network's and optimizer's variables from a features element_spec (before a restore)."""
        def zeros(spec):  # batch of 1 for every feature (static batch sizes may differ between features)
            shape = [1] + [1 if d is None else d for d in spec.shape.as_list()[1:]]
            return tf.zeros(shape, spec.dtype)

        dummy = tf.nest.map_structure(zeros, element_spec)
        self.network(dummy, training=False)
        if self.optimizer is not None and not self.optimizer.built:
            self.optimizer.build(self._train_vars())
        self.built = True

    def _update_metrics(self, loss, metric_values):
        self._trackers[0].update_state(loss)
        for tracker in self._trackers[1:]:
            values, weights = metric_values[tracker.name]
            values = tf.cast(values, tf.float32)
            if weights is not None:
                weights = tf.broadcast_to(tf.cast(weights, tf.float32), tf.shape(values))
            tracker.update_state(values, sample_weight=weights)

    def _loss_and_grads(self, features, variables, scale):
        if self._inner_jit:
            # MirroredStrategy + XLA: compile the per-replica forward/backward only; the all-reduce and the
            # optimizer's merge_call cannot be inside an XLA cluster spanning devices.
            if self._jit_grads_fn is None:
                self._jit_grads_fn = tf.function(
                    lambda f: self._loss_and_grads_impl(f, self._train_vars(), scale), jit_compile=True)
            return self._jit_grads_fn(features)
        return self._loss_and_grads_impl(features, variables, scale)

    def _loss_and_grads_impl(self, features, variables, scale):
        with tf.GradientTape() as tape:
            outputs = self.network(features, training=True)
            loss, metric_values = self.loss_fn(features, outputs)
            loss = tf.cast(loss, tf.float32)
            scaled = loss * scale
            if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
                scaled = self.optimizer.scale_loss(scaled)
        grads = tape.gradient(scaled, variables)
        grads = [None if g is None else tf.convert_to_tensor(g) for g in grads]
        self._update_metrics(loss, metric_values)
        return grads

    def train_step(self, data):
        features = data
        variables = self._train_vars()
        strategy = tf.distribute.get_strategy()
        num_replicas = strategy.num_replicas_in_sync
        n_acc = self.gradient_accumulation_steps
        # Per-replica loss / num_replicas: the SUM all-reduce then gives the gradient of the global mean loss.
        scale = 1.0 / (num_replicas * n_acc)
        if n_acc == 1:
            grads = self._loss_and_grads(features, variables, scale)
        else:
            def split(x):
                b = tf.shape(x)[0]
                tf.debugging.assert_equal(
                    b % n_acc, 0, message="per-replica batch size must be divisible by gradient_accumulation_steps")
                return tf.reshape(x, tf.concat([[n_acc, b // n_acc], tf.shape(x)[1:]], 0))

            micro = tf.nest.map_structure(split, features)
            take = lambda i: tf.nest.map_structure(lambda x: x[i], micro)  # noqa: E731
            grads = self._loss_and_grads(take(0), variables, scale)
            present = [i for i, g in enumerate(grads) if g is not None]

            def body(i, acc):
                g_i = self._loss_and_grads(take(i), variables, scale)
                return i + 1, [a + g_i[j] for a, j in zip(acc, present)]

            _, acc = tf.while_loop(lambda i, acc: i < n_acc, body, (tf.constant(1), [grads[j] for j in present]))
            for a, j in zip(acc, present):
                grads[j] = a

        present = [i for i, g in enumerate(grads) if g is not None]
        dense = [grads[i] for i in present]
        if num_replicas > 1:
            dense = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, dense)
        norm = tf.linalg.global_norm(dense)
        if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            loss_scale = tf.cast(self.optimizer.dynamic_scale, norm.dtype)
            true_norm = norm / loss_scale
        else:
            loss_scale, true_norm = None, norm
        if self.clip_norm:
            factor = self.clip_norm / tf.maximum(true_norm, self.clip_norm)
            dense = [g * tf.cast(factor, g.dtype) for g in dense]
        if num_replicas > 1:
            # Keras' optimizer SUM-all-reduces again inside apply(); the gradients are identical on every replica
            # now, so pre-dividing makes its sum the global gradient.
            dense = [g / num_replicas for g in dense]
        self.optimizer.apply(dense, [variables[i] for i in present])
        self.global_step.assign_add(1)
        self.grad_norm_tracker.update_state(true_norm)
        return self._logs(self.metrics)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Keras (TF backend) pulls one batch and `strategy.reduce`s it to build the model symbolically when the model
        was created under a strategy; MultiWorkerMirroredStrategy cannot reduce a dict of PerReplica values
        ("Attempt to convert a value ({...PerReplica...}) to a Tensor"). Everything is built by `build_for` already
        (no compiled losses/metrics), so skip it then."""
        if self.built and self.optimizer is not None and self.optimizer.built:
            return
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def make_train_function(self, force=False):
        """Keras' multi-step function wraps each step in a tf.cond, which (MultiWorker)MirroredStrategy's merge_call
        (used by the optimizer) cannot run in ("You must feed a value for placeholder ..."), and XLA cannot compile
        a step whose variables live on several devices. For these strategies use a plain while loop over steps (the
        training datasets here are infinite, so no end-of-data handling is needed) and, with jit_compile, compile only
        the per-replica forward/backward pass."""
        strategy = self.distribute_strategy
        spe = int(self.steps_per_execution or 1)
        if self.run_eagerly or not isinstance(strategy, _MERGE_CALL_STRATEGIES):
            return super().make_train_function(force)
        if self.train_function is not None and not force:
            return self.train_function
        self._inner_jit = bool(self.jit_compile)

        def reduce(outputs):
            return tf.nest.map_structure(
                lambda v: tf.reduce_mean(tf.stack(strategy.experimental_local_results(v))), outputs)  # scalars

        @tf.function(reduce_retracing=True)
        def one_step(data):
            return reduce(strategy.run(self.train_step, args=(data,)))

        @tf.function(reduce_retracing=True, autograph=False)
        def multi_step(iterator):
            def body(i):
                one_step(next(iterator))
                return (i + 1,)

            if spe > 1:
                tf.while_loop(lambda i: i < spe - 1, body, (tf.constant(0),))
            return one_step(next(iterator))

        self.train_function = multi_step
        return multi_step

    def make_test_function(self, force=False):
        """Under MirroredStrategy XLA cannot compile a multi-device step (see make_train_function): evaluate
        without jit_compile there."""
        if isinstance(self.distribute_strategy, _MERGE_CALL_STRATEGIES) and self.jit_compile:
            self._jit_compile = False
            try:
                return super().make_test_function(force)
            finally:
                self._jit_compile = True
        return super().make_test_function(force)

    def test_step(self, data):
        outputs = self.network(data, training=False)
        loss, metric_values = self.loss_fn(data, outputs)
        self._update_metrics(tf.cast(loss, tf.float32), metric_values)
        return self._logs(self._trackers)

    @staticmethod
    def _logs(metrics):
        logs = {m.name: m.result() for m in metrics}
        if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
            # Keras reduces step outputs with strategy.reduce(MEAN, axis=0) under MWMS, which fails on scalars.
            logs = {k: tf.reshape(v, [1]) for k, v in logs.items()}
        return logs


# ----------------------------------------------------------------------------------------------------------------
# Multi-worker helpers
# ----------------------------------------------------------------------------------------------------------------

def worker_info(strategy):
    """(task_type, task_id, is_chief) of this process under `strategy` (single-process: ("chief", 0, True))."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "chief", 0, True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type is None:
        return "chief", 0, True
    return task_type, task_id, distribution.is_chief(strategy)


def write_dir_for(output_dir, strategy):
    """output_dir for the chief; `<output_dir>/.worker_tmp/<type>_<id>` for the other workers (they must write
    too: saving mirrored variables is a collective step, but their copies are not the model's output)."""
    task_type, task_id, is_chief = worker_info(strategy)
    if is_chief:
        return output_dir
    # Not training.distribution.write_dir_for_worker (a fresh mkdtemp per call): a fixed place lets a worker's
    # copy be inspected (tests compare it with the chief's) and be overwritten, not accumulated, on reruns.
    return os.path.join(output_dir, ".worker_tmp", f"{task_type}_{task_id}")


# ----------------------------------------------------------------------------------------------------------------
# Callbacks
# ----------------------------------------------------------------------------------------------------------------

def _as_float(value):
    try:
        return float(np.asarray(value))
    except (TypeError, ValueError):
        return None


class _StepCallback(keras.callbacks.Callback):
    """Checkpoints on global-step boundaries, stops at num_train_steps, logs and writes summaries, and feeds the
    progress lines (`progress`, a training.progress.Progress in steps).

    Works on the global step (not Keras' epoch/batch counters), so resumed runs continue the same curves.
    """

    def __init__(self, trainer, manager, num_train_steps, steps_per_checkpoint, examples_per_step, writer,
                 log_every_n_steps, is_chief, print_fn, progress=None):
        super().__init__()
        self.trainer = trainer
        self.manager = manager
        self.num_train_steps = num_train_steps
        self.steps_per_checkpoint = steps_per_checkpoint
        self.examples_per_step = examples_per_step
        self.writer = writer
        self.log_every_n_steps = log_every_n_steps
        self.is_chief = is_chief
        self.print_fn = print_fn
        self.progress = progress
        self.last_saved = None
        self.history = []          # (global_step, logs dict of floats) at each log point
        self.throughput = []       # examples/s per log interval, the first (tracing) interval excluded
        self._t0 = None
        self._s0 = None
        self._last_log_step = None

    def on_train_begin(self, logs=None):
        self._s0 = int(self.trainer.global_step.numpy())
        self._last_log_step = self._s0
        self.last_saved = self._s0
        self._t0 = None

    def _step(self):
        return int(self.trainer.global_step.numpy())

    def on_train_batch_end(self, batch, logs=None):
        step = self._step()
        now = time.perf_counter()
        if self._t0 is None:  # first execution includes tracing/compilation: start the clock after it
            self._t0, self._s0 = now, step
            self._last_log_step = step
            self._last_log_time = now
            first = True
            if self.progress is not None:
                self.progress.start(step)
        else:
            first = False
        done = step >= self.num_train_steps
        if step // self.steps_per_checkpoint > self.last_saved // self.steps_per_checkpoint or (
                done and step != self.last_saved):
            save_checkpoint(self.manager, step)
            self.last_saved = step
        if (step // self.log_every_n_steps > self._last_log_step // self.log_every_n_steps or done) and not first:
            dt = now - self._last_log_time
            eps = (step - self._last_log_step) * self.examples_per_step / dt if dt > 0 else float("nan")
            self.throughput.append(eps)
            self._write(step, logs, eps)
            self._last_log_step, self._last_log_time = step, now
        elif first:  # the first execution's values (no examples/s: it includes tracing)
            self._write(step, logs, None)
        if self.progress is not None and not done:
            self.progress.update(step)
        if done:
            self.model.stop_training = True

    def _write(self, step, logs, eps):
        values = {k: _as_float(v) for k, v in (logs or {}).items()}
        values = {k: v for k, v in values.items() if v is not None}
        lr = _as_float(self.trainer.optimizer.learning_rate)
        if lr is not None:
            values["learning_rate"] = lr
        if eps is not None:
            values["examples_per_second"] = eps
        self.history.append((step, values))
        if self.writer is not None:
            with self.writer.as_default(step=step):
                for k, v in values.items():
                    tf.summary.scalar(k, v)
            self.writer.flush()
        shown = " ".join(f"{k}={v:.4g}" for k, v in values.items())
        self.print_fn(f"step {step}/{self.num_train_steps} {shown}")

    def on_train_end(self, logs=None):
        step = self._step()
        if step != self.last_saved:
            save_checkpoint(self.manager, step)
            self.last_saved = step


# ----------------------------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------------------------

def _element_spec_of(dataset_fn):
    ds = dataset_fn(tf.distribute.InputContext())
    return ds.element_spec


def steps_per_execution_for(iterations_per_loop, steps_per_checkpoint, num_train_steps):
    """Largest steps_per_execution <= iterations_per_loop that divides both the checkpoint interval and the total
    (so checkpoints and the end fall exactly on execution boundaries)."""
    g = math.gcd(math.gcd(max(1, int(iterations_per_loop)), int(steps_per_checkpoint)), int(num_train_steps))
    return max(1, g)


def write_hparams(log_dir, hparams):
    """TensorBoard hparams (tensorboard.plugins.hparams) plus a text table of the flags, step 0."""
    writer = tf.summary.create_file_writer(log_dir)
    clean = {k: (v if isinstance(v, (bool, int, float, str)) else str(v)) for k, v in hparams.items()}
    with writer.as_default(step=0):
        try:
            hp.hparams(clean)
        except Exception as e:  # noqa: BLE001 - hparams is optional decoration, the text summary carries the same
            logging.warning("hparams summary not written: %s", e)
        table = "| flag | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in sorted(clean.items()))
        tf.summary.text("flags", table)
    writer.flush()
    writer.close()


def run_training(trainer, dataset_fn, *, strategy, output_dir, num_train_steps, steps_per_checkpoint,
                 checkpoint_items, examples_per_step, init_fn=None, max_checkpoints_to_keep=5,
                 log_every_n_steps=None, hparams=None, callbacks=(), print_fn=print, total_steps=None,
                 progress_interval=progress_lib.DEFAULT_INTERVAL):
    """Train `trainer` (a compiled TrainerModel) to `num_train_steps`, resuming from `output_dir`'s newest checkpoint.

    Args:
      dataset_fn: `dataset_fn(input_context) -> tf.data.Dataset` of batched features (per-replica batch size),
        infinite (repeated); given to `strategy.distribute_datasets_from_function`.
      checkpoint_items: dict name -> trackable for `tf.train.Checkpoint` (include "optimizer" and
        "global_step": trainer.global_step).
      examples_per_step: global batch size, for examples/s.
      init_fn: called once when no checkpoint exists (e.g. load --init_checkpoint into the encoder).
      log_every_n_steps: log/summary interval in steps (default: the checkpoint interval / 10, at least 1 execution).
      hparams: dict written once as TensorBoard hparams + text (chief only).
      total_steps: the step count progress lines count to (default num_train_steps; train_and_evaluate trains to
        each epoch's end but reports against the last).
      progress_interval: seconds between progress lines (`train: S/T steps (P%), E examples/s, about M left`),
        printed also while one execution of many steps (steps_per_execution) runs.
    Returns a dict: global_step, initial_step, resumed (bool), history [(step, logs)], examples_per_second (mean of
    the log intervals after the first execution, or None), checkpoint (path of the last one).
    Non-chief workers of a multi-worker strategy write checkpoints/summaries under `write_dir_for(...)`.
    """
    if num_train_steps <= 0:
        raise bertkit_errors.UserError(f"--num_train_steps={num_train_steps}: must be positive")
    if steps_per_checkpoint <= 0:
        raise bertkit_errors.UserError(f"--save_checkpoints_steps={steps_per_checkpoint}: must be positive")
    _, _, is_chief = worker_info(strategy)
    write_dir = write_dir_for(output_dir, strategy)
    os.makedirs(write_dir, exist_ok=True)

    with strategy.scope():
        trainer.build_for(_element_spec_of(dataset_fn))
    checkpoint = tf.train.Checkpoint(**checkpoint_items)
    manager = tf.train.CheckpointManager(checkpoint, directory=write_dir, max_to_keep=max_checkpoints_to_keep,
                                         step_counter=trainer.global_step)
    latest = restore_newest_readable(checkpoint, output_dir, print_fn)
    resumed = False
    if latest:
        resumed = True
        print_fn(f"resuming from {latest} (global step {int(trainer.global_step.numpy())})")
    elif init_fn is not None:
        init_fn()
    initial_step = int(trainer.global_step.numpy())
    result = {"initial_step": initial_step, "resumed": resumed, "history": [], "examples_per_second": None,
              "checkpoint": latest}
    if initial_step >= num_train_steps:
        print_fn(f"global step {initial_step} >= num_train_steps {num_train_steps}: nothing to train")
        result["global_step"] = initial_step
        return result

    spe = int(trainer.steps_per_execution or 1)
    aligned = math.gcd(math.gcd(math.gcd(spe, steps_per_checkpoint), num_train_steps), initial_step)
    if aligned != spe:
        # Checkpoints and the end must fall on execution boundaries (callbacks only run between executions).
        print_fn(f"steps_per_execution {spe} -> {aligned} to end executions at checkpoint steps")
        trainer.steps_per_execution = aligned
        trainer.train_function = None
    if log_every_n_steps is None:
        log_every_n_steps = max(1, steps_per_checkpoint // 10)
    log_dir = os.path.join(write_dir, "logs", "train")
    if hparams and is_chief:
        write_hparams(log_dir, hparams)
    writer = tf.summary.create_file_writer(log_dir)
    progress = progress_lib.Progress("train", total_steps or num_train_steps, unit="steps",
                                     per_unit=examples_per_step, interval=progress_interval, print_fn=print_fn)
    step_cb = _StepCallback(trainer, manager, num_train_steps, steps_per_checkpoint, examples_per_step, writer,
                            log_every_n_steps, is_chief, print_fn, progress=progress)
    dataset = strategy.distribute_datasets_from_function(dataset_fn)
    epochs = math.ceil(num_train_steps / steps_per_checkpoint)
    initial_epoch = initial_step // steps_per_checkpoint
    # Callbacks run between executions only (steps_per_execution steps each): a thread prints the lines meanwhile.
    with progress_lib.Ticker(lambda: progress.poll(step_cb._step), period=min(1.0, max(0.05, progress_interval / 4))):
        trainer.fit(dataset, epochs=epochs, initial_epoch=initial_epoch, steps_per_epoch=steps_per_checkpoint,
                    callbacks=[step_cb, *callbacks], verbose=0, shuffle=False)
    writer.flush()
    writer.close()
    result["global_step"] = int(trainer.global_step.numpy())
    result["history"] = step_cb.history
    if step_cb.throughput:
        result["examples_per_second"] = float(np.mean(step_cb.throughput))
    result["checkpoint"] = manager.latest_checkpoint
    return result


def run_evaluation(trainer, dataset_fn, *, strategy, steps, output_dir=None, global_step=None, print_fn=print):
    """`evaluate()` on `strategy.distribute_datasets_from_function(dataset_fn)` for at most `steps` batches
    (None: the whole dataset). Returns the metrics dict plus global_step; writes summaries to logs/eval."""
    dataset = strategy.distribute_datasets_from_function(dataset_fn)
    saved_spe = trainer.steps_per_execution
    if isinstance(strategy, _MERGE_CALL_STRATEGIES) and (saved_spe or 1) > 1:
        # Keras' multi-step eval loop (a tf.cond per step) fails under these strategies; one step per call works.
        trainer.steps_per_execution = 1
        trainer.test_function = None
    try:
        results = trainer.evaluate(dataset, steps=steps, return_dict=True, verbose=0)
    finally:
        if trainer.steps_per_execution != saved_spe:
            trainer.steps_per_execution = saved_spe
            trainer.test_function = None
    results = {k: float(np.asarray(v)) for k, v in results.items()}
    step = int(trainer.global_step.numpy()) if global_step is None else int(global_step)
    results["global_step"] = step
    if output_dir is not None:
        writer = tf.summary.create_file_writer(os.path.join(write_dir_for(output_dir, strategy), "logs", "eval"))
        with writer.as_default(step=step):
            for k, v in results.items():
                if k != "global_step":
                    tf.summary.scalar(k, v)
        writer.close()
    print_fn("eval: " + " ".join(f"{k}={v:.4g}" for k, v in sorted(results.items())))
    return results


def write_eval_results(path, results):
    """The original eval_results.txt: one `key = value` line per metric, keys sorted."""
    with bertkit_io.atomic_write(path) as f:
        for key in sorted(results):
            f.write(f"{key} = {results[key]}\n")


def read_eval_results(path):
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if " = " in line:
                k, v = line.rstrip("\n").split(" = ", 1)
                out[k] = float(v)
    return out


def copy_file(src, dst):
    """Atomic copy (bertkit_io), for vocab.txt and configs copied into output_dir."""
    with open(src, "rb") as fin, bertkit_io.atomic_write(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout)


def write_json(path, obj):
    with bertkit_io.atomic_write(path) as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


__all__ = [
    "TrainerModel", "run_training", "run_evaluation",
    "write_eval_results", "read_eval_results", "steps_per_execution_for",
    "worker_info", "write_dir_for", "write_hparams", "copy_file", "write_json",
]
