"""Fine-tuning throughput (issue 18): run_classifier.py's training step against HuggingFace transformers + torch on the
same CPU, in the same run, at all-MiniLM-L6-v2's shape (6 layers, hidden 384, 12 heads, intermediate 1536, vocab
30522), batch 16 and 32, length 128, 5 labels.

bertkit: the path run_classifier.py takes: `training.classifier.build_classifier_setup`,
`training.optimization.create_optimizer` (AdamW, warm-up + linear decay, clipnorm=None), `training.trainer.TrainerModel`
(global-norm clip 1.0 after the gradients), `compile(steps_per_execution=1, jit_compile=False)` under
`training.distribution.get_strategy()`, trained with `fit()` on a `distribute_datasets_from_function` dataset; a step
is timed from one `on_train_batch_end` to the next (the callback reads global_step, as run_classifier.py's does).
HuggingFace: `BertForSequenceClassification` + `torch.optim.AdamW` (HF Trainer's grouping: no decay on bias and
LayerNorm weights) + `get_linear_schedule_with_warmup`; a step is forward with labels, backward,
`clip_grad_norm_(1.0)`, `optimizer.step()`, `scheduler.step()`, `zero_grad()`.

Both start from the same weights (the packaged all-MiniLM-L6-v2 unless --init_checkpoint names another HuggingFace
BERT directory; --random_init: its config randomly initialised), see the same full-length batches (every BBC training
article is longer than 128 tokens), and are timed in --rounds alternating rounds of --steps steps after --warmup
untimed steps per round; examples/s = batch / median step time over all rounds. torch runs with as many threads as
TensorFlow's intra-op pool (--threads; 0: TensorFlow's default, which is one per CPU core, and torch gets
os.cpu_count()). With --phases the step is also split into forward (loss), backward and optimizer (clip + apply):
torch timed inside its step, bertkit as separate tf.functions of the same network (forward; forward + gradients) whose
differences with the full step give the phases.

    .venv/bin/python bench/bench_finetune.py [--batch_sizes=16,32 --rounds=3 --steps=6 --warmup=2 --phases]
"""
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from absl import app, flags  # noqa: E402

from modeling import ModelConfig, packaged  # noqa: E402
from training import classifier as classifier_lib  # noqa: E402
from training import checkpointing, distribution, optimization  # noqa: E402
from training import trainer as trainer_lib  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("batch_sizes", "16,32", "Comma-separated batch sizes.")
flags.DEFINE_integer("max_seq_length", 128, "Sequence length (every example full length).")
flags.DEFINE_integer("num_labels", 5, "Classes (BBC: 5).")
flags.DEFINE_string("init_checkpoint", None, "HuggingFace BERT directory (default: the packaged all-MiniLM-L6-v2).")
flags.DEFINE_bool("random_init", False, "Randomly initialised weights of --init_checkpoint's config (both sides).")
flags.DEFINE_integer("warmup", 2, "Untimed steps at the start of every round.")
flags.DEFINE_integer("steps", 6, "Timed steps per round.")
flags.DEFINE_integer("rounds", 3, "Alternating rounds per side and batch size.")
flags.DEFINE_integer("threads", 0, "TensorFlow intra-op threads and torch threads (0: TensorFlow's default, torch "
                     "os.cpu_count()).")
flags.DEFINE_bool("phases", False, "Also time forward / backward / optimizer separately on both sides.")
flags.DEFINE_float("learning_rate", 1e-4, "Peak learning rate (both).")

NUM_TRAIN_STEPS = 557  # the reference recipe's schedule (1,781 examples, batch 16, 5 epochs), for the LR only
NUM_WARMUP_STEPS = 55


def make_batch(batch_size, seq_length, vocab_size, num_labels, seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(min(1000, vocab_size // 2), vocab_size, size=(batch_size, seq_length)).astype(np.int32)
    return {"input_ids": ids, "input_mask": np.ones_like(ids), "segment_ids": np.zeros_like(ids),
            "label_ids": rng.integers(0, num_labels, size=(batch_size, 1)).astype(np.int32),
            "is_real_example": np.ones((batch_size, 1), np.int32),
            "example_index": np.arange(batch_size, dtype=np.int32).reshape(-1, 1)}


# ---------------------------------------------------------------------------------------------------------------
# bertkit: run_classifier.py's training path

class _StepTimes(keras.callbacks.Callback):
    def __init__(self, trainer):
        super().__init__()
        self.trainer = trainer
        self.times = []

    def on_train_batch_end(self, batch, logs=None):
        int(self.trainer.global_step.numpy())  # as run_classifier.py's callback: the step has finished
        self.times.append(time.perf_counter())


class BertkitSide:
    def __init__(self, model_dir, config, batch, num_labels):
        self.strategy = distribution.get_strategy(None)
        with self.strategy.scope():
            self.setup = classifier_lib.build_classifier_setup(config, num_labels, False)
            optimizer = optimization.create_optimizer(
                FLAGS.learning_rate, NUM_TRAIN_STEPS, NUM_WARMUP_STEPS, optimizer="adamw", clipnorm=None,
                layerwise_lr_decay=None, encoder=self.setup.encoder)
            self.trainer = trainer_lib.TrainerModel(
                self.setup.network, self.setup.loss_fn, self.setup.metric_names,
                trainable_variables_fn=self.setup.trainable_variables_fn, gradient_accumulation_steps=1,
                clip_norm=1.0)
            self.trainer.compile(optimizer=optimizer, steps_per_execution=1, jit_compile=False)
        self.batch = batch
        dataset_fn = self._dataset_fn
        with self.strategy.scope():
            self.trainer.build_for(dataset_fn(None).element_spec)
        if not FLAGS.random_init:
            checkpointing.restore_encoder_weights(self.setup.encoder, model_dir)
        self.dataset = self.strategy.distribute_datasets_from_function(dataset_fn)
        self._forward = self._grads = None

    def _dataset_fn(self, ctx):
        return tf.data.Dataset.from_tensors({k: tf.constant(v) for k, v in self.batch.items()}).repeat()

    def round(self, warmup, steps):
        cb = _StepTimes(self.trainer)
        self.trainer.fit(self.dataset, epochs=1, steps_per_epoch=warmup + steps, callbacks=[cb], verbose=0,
                         shuffle=False)
        return list(np.diff(cb.times[warmup - 1:])) if warmup >= 1 else list(np.diff(cb.times))

    def phase_round(self, warmup, steps):
        """(forward, forward + gradients) seconds per step, median of `steps` calls after `warmup`."""
        network, loss_fn = self.setup.network, self.setup.loss_fn
        variables = self.trainer._train_vars()
        features = {k: tf.constant(v) for k, v in self.batch.items()}
        if self._forward is None:
            @tf.function
            def forward(f):
                return loss_fn(f, network(f, training=True))[0]

            @tf.function
            def grads(f):
                with tf.GradientTape() as tape:
                    loss = loss_fn(f, network(f, training=True))[0]
                g = tape.gradient(loss, variables)
                return loss, tf.linalg.global_norm([x for x in g if x is not None])

            self._forward, self._grads = forward, grads
        out = []
        for fn in (self._forward, self._grads):
            times = []
            for i in range(warmup + steps):
                t0 = time.perf_counter()
                tf.nest.map_structure(lambda x: x.numpy(), fn(features))
                if i >= warmup:
                    times.append(time.perf_counter() - t0)
            out.append(statistics.median(times))
        return out


# ---------------------------------------------------------------------------------------------------------------
# HuggingFace transformers + torch

class HFSide:
    def __init__(self, model_dir, batch, num_labels):
        if FLAGS.random_init:
            config = transformers.BertConfig.from_pretrained(model_dir, num_labels=num_labels)
            self.model = transformers.BertForSequenceClassification(config)
        else:
            self.model = transformers.BertForSequenceClassification.from_pretrained(model_dir, num_labels=num_labels)
        self.model.train()
        no_decay = ("bias", "LayerNorm.weight")
        params = list(self.model.named_parameters())
        groups = [{"params": [p for n, p in params if not any(x in n for x in no_decay)], "weight_decay": 0.01},
                  {"params": [p for n, p in params if any(x in n for x in no_decay)], "weight_decay": 0.0}]
        self.optimizer = torch.optim.AdamW(groups, lr=FLAGS.learning_rate, eps=1e-8)
        self.scheduler = transformers.get_linear_schedule_with_warmup(self.optimizer, NUM_WARMUP_STEPS,
                                                                      NUM_TRAIN_STEPS)
        self.inputs = {"input_ids": torch.from_numpy(batch["input_ids"].astype(np.int64)),
                       "attention_mask": torch.from_numpy(batch["input_mask"].astype(np.int64)),
                       "token_type_ids": torch.from_numpy(batch["segment_ids"].astype(np.int64)),
                       "labels": torch.from_numpy(batch["label_ids"].reshape(-1).astype(np.int64))}

    def step(self):
        """(forward, backward, optimizer) seconds of one training step."""
        t0 = time.perf_counter()
        loss = self.model(**self.inputs).loss
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad()
        t3 = time.perf_counter()
        return t1 - t0, t2 - t1, t3 - t2

    def round(self, warmup, steps):
        out = []
        for i in range(warmup + steps):
            phases = self.step()
            if i >= warmup:
                out.append(phases)
        return out


# ---------------------------------------------------------------------------------------------------------------

def _median(values):
    return statistics.median(values) if values else float("nan")


def bench_batch_size(batch_size, model_dir, config):
    batch = make_batch(batch_size, FLAGS.max_seq_length, config.vocab_size, FLAGS.num_labels, seed=batch_size)
    bertkit = BertkitSide(model_dir, config, batch, FLAGS.num_labels)
    hf = HFSide(model_dir, batch, FLAGS.num_labels)
    print(f"  HuggingFace attention implementation: {hf.model.config._attn_implementation}", flush=True)
    bk_times, hf_phases, bk_phases = [], [], []
    for r in range(FLAGS.rounds):
        bk = bertkit.round(FLAGS.warmup, FLAGS.steps)
        hp = hf.round(FLAGS.warmup, FLAGS.steps)
        bk_times += bk
        hf_phases += hp
        print(f"  batch {batch_size} round {r + 1}: bertkit {batch_size / _median(bk):.1f} examples/s, "
              f"HuggingFace {batch_size / _median([sum(p) for p in hp]):.1f} examples/s", flush=True)
        if FLAGS.phases:
            bk_phases.append(bertkit.phase_round(FLAGS.warmup, FLAGS.steps))
    bk_step = _median(bk_times)
    hf_step = _median([sum(p) for p in hf_phases])
    bk_eps, hf_eps = batch_size / bk_step, batch_size / hf_step
    print(f"batch {batch_size}, length {FLAGS.max_seq_length}: bertkit {bk_eps:.1f} examples/s "
          f"({1000 * bk_step:.0f} ms/step), HuggingFace {hf_eps:.1f} examples/s ({1000 * hf_step:.0f} ms/step), "
          f"bertkit / HuggingFace {bk_eps / hf_eps:.2f}x", flush=True)
    if FLAGS.phases:
        fwd = _median([p[0] for p in bk_phases])
        fwd_bwd = _median([p[1] for p in bk_phases])
        h_fwd, h_bwd, h_opt = (_median([p[i] for p in hf_phases]) for i in range(3))
        print(f"  phases, ms (median): bertkit forward {1000 * fwd:.0f}, backward {1000 * (fwd_bwd - fwd):.0f}, "
              f"optimizer {1000 * (bk_step - fwd_bwd):.0f}; HuggingFace forward {1000 * h_fwd:.0f}, backward "
              f"{1000 * h_bwd:.0f}, optimizer {1000 * h_opt:.0f}", flush=True)
    return bk_eps, hf_eps


def main(argv):
    del argv
    try:
        batch_sizes = [int(b) for b in FLAGS.batch_sizes.split(",") if b.strip()]
    except ValueError:
        raise SystemExit(f"error: --batch_sizes={FLAGS.batch_sizes}: expected comma-separated integers") from None
    if not batch_sizes or min(batch_sizes) <= 0:
        raise SystemExit(f"error: --batch_sizes={FLAGS.batch_sizes}: expected positive integers")
    if FLAGS.warmup < 1 or FLAGS.steps < 1 or FLAGS.rounds < 1:
        raise SystemExit("error: --warmup, --steps and --rounds must be at least 1")
    if FLAGS.threads:
        tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
    threads = FLAGS.threads or os.cpu_count()
    torch.set_num_threads(threads)
    model_dir = FLAGS.init_checkpoint or packaged.minilm_dir()
    config = ModelConfig.from_json_file(os.path.join(model_dir, "config.json"))
    print(f"model: {model_dir} ({config.num_hidden_layers} layers, hidden {config.hidden_size}, "
          f"{config.num_attention_heads} heads, intermediate {config.intermediate_size}, vocab {config.vocab_size}"
          f"{', random init' if FLAGS.random_init else ''}); TensorFlow {tf.__version__} intra-op threads "
          f"{FLAGS.threads or 'default (one per core)'}, torch {torch.__version__} threads {torch.get_num_threads()}, "
          f"transformers {transformers.__version__}; {os.cpu_count()} CPUs", flush=True)
    print(f"{FLAGS.rounds} alternating rounds of {FLAGS.steps} timed steps after {FLAGS.warmup} warm-up steps, "
          "median step time", flush=True)
    results = {b: bench_batch_size(b, model_dir, config) for b in batch_sizes}
    print("summary: " + "; ".join(f"batch {b} {bk / hf:.2f}x" for b, (bk, hf) in results.items())
          + " (bertkit / HuggingFace examples/s)")


if __name__ == "__main__":
    app.run(main)
