"""Pre-training throughput: run_pretraining's path vs a bare Keras fit() of the same model.

A TinyBERT-4-shaped model (configs/tinybert_4l_312.json), seq 128, 20 predictions, batch 32, float32:
  (a) run_pretraining's path: TFRecords on disk -> data/pipeline.pretraining_dataset -> TrainerModel (all-reduce,
      global-norm clipping, grad-norm metric, 5 metrics) -> training.trainer.run_training (checkpoint/summary
      callbacks, distribute_datasets_from_function),
  (b) a bare keras.Model subclass whose train_step is just loss + tape + optimizer.apply, fed the same batches
      from memory (tf.data.Dataset.from_tensors(...).repeat()), model.fit(),
same optimizer (create_optimizer adamw, no clipping in the optimizer), same steps_per_execution. Seconds per step are
taken with a callback between executions, the first executions (tracing, warm-up) skipped. Prints examples/s of both
and the ratio (target >= 0.90). Timings on a shared CPU are noisy: run it on an idle machine for numbers to quote.

    .venv/bin/python bench/bench_pretraining_throughput.py [--steps 40] [--warmup 10] [--batch 32] [--seq 128]
"""
import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from data import pipeline  # noqa: E402
from modeling import ModelConfig, build_pretraining_model  # noqa: E402
from training import optimization  # noqa: E402
from training import trainer as trainer_lib  # noqa: E402
from training.pretraining_loss import pretraining_loss_fn, pretraining_metric_names  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class StepTimer(keras.callbacks.Callback):
    def __init__(self, warmup_steps, steps_per_execution):
        super().__init__()
        self.warmup = warmup_steps
        self.spe = steps_per_execution
        self.times = []
        self.steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += self.spe
        self.times.append((self.steps, time.perf_counter()))

    def seconds_per_step(self):
        timed = [(s, t) for s, t in self.times if s >= self.warmup]
        (s0, t0), (s1, t1) = timed[0], timed[-1]
        return (t1 - t0) / (s1 - s0)


def write_records(path, n, seq, preds, vocab, seed=0):
    rng = np.random.default_rng(seed)
    f = lambda v: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(x) for x in v]))  # noqa: E731
    with tf.io.TFRecordWriter(path) as w:
        for _ in range(n):
            length = int(rng.integers(seq // 2, seq + 1))
            ids = np.concatenate([[2], rng.integers(5, vocab, length - 2), [3], np.zeros(seq - length, int)])
            pos = np.sort(rng.choice(np.arange(1, length - 1), preds, replace=False))
            feats = {
                "input_ids": f(ids), "input_mask": f([1] * length + [0] * (seq - length)),
                "segment_ids": f([0] * (length // 2) + [1] * (seq - length // 2)),
                "masked_lm_positions": f(pos), "masked_lm_ids": f(rng.integers(5, vocab, preds)),
                "masked_lm_weights": tf.train.Feature(float_list=tf.train.FloatList(value=[1.0] * preds)),
                "next_sentence_labels": f([rng.integers(0, 2)]),
            }
            w.write(tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString())


class BareModel(keras.Model):
    """The baseline: the same network, the same loss, nothing else."""

    def __init__(self, network):
        super().__init__()
        self.network = network
        self.loss_fn = pretraining_loss_fn()

    def call(self, features, training=False):
        return self.network(features, training=training)

    def train_step(self, data):
        with tf.GradientTape() as tape:
            loss, _ = self.loss_fn(data, self.network(data, training=True))
        variables = self.network.trainable_variables
        self.optimizer.apply(tape.gradient(loss, variables), variables)
        return {"loss": loss}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=os.path.join(ROOT, "configs", "tinybert_4l_312.json"))
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--preds", type=int, default=20)
    ap.add_argument("--steps_per_execution", type=int, default=5)
    args = ap.parse_args()
    config = ModelConfig.from_json_file(args.config)
    spe = args.steps_per_execution
    total = args.steps + args.warmup
    strategy = tf.distribute.get_strategy()
    print(f"model {os.path.basename(args.config)} seq {args.seq} batch {args.batch} float32, "
          f"{total} steps ({args.warmup} warm-up), steps_per_execution {spe}, "
          f"{len(tf.config.list_physical_devices('GPU'))} GPU(s), {os.cpu_count()} CPU(s)")

    with tempfile.TemporaryDirectory() as tmp:
        rec = os.path.join(tmp, "bench.tfrecord")
        write_records(rec, 20 * args.batch, args.seq, args.preds, config.vocab_size)

        # (a) run_pretraining's path
        keras.utils.set_random_seed(1)
        model = build_pretraining_model(config)
        opt = optimization.create_optimizer(1e-4, total, 0, clipnorm=None)
        tr = trainer_lib.TrainerModel(model, pretraining_loss_fn(), pretraining_metric_names())
        tr.compile(optimizer=opt, steps_per_execution=spe, jit_compile=False)
        timer_a = StepTimer(args.warmup, spe)
        trainer_lib.run_training(
            tr, lambda ctx: pipeline.pretraining_dataset(rec, args.seq, args.preds, args.batch, input_context=ctx,
                                                         seed=1, files=[rec], check_records=False),
            strategy=strategy, output_dir=os.path.join(tmp, "out"), num_train_steps=total,
            steps_per_checkpoint=total, checkpoint_items={"encoder": model.encoder, "optimizer": opt,
                                                           "global_step": tr.global_step},
            examples_per_step=args.batch, callbacks=[timer_a], print_fn=lambda *_: None)
        sec_a = timer_a.seconds_per_step()

        # (b) bare fit on in-memory batches (the same records, parsed once)
        batch = next(iter(pipeline.pretraining_dataset(rec, args.seq, args.preds, args.batch, is_training=False,
                                                       files=[rec], check_records=False)))
        keras.utils.set_random_seed(1)
        bare = BareModel(build_pretraining_model(config))
        bare.compile(optimizer=optimization.create_optimizer(1e-4, total, 0, clipnorm=None), steps_per_execution=spe,
                     jit_compile=False)
        timer_b = StepTimer(args.warmup, spe)
        bare.fit(tf.data.Dataset.from_tensors(batch).repeat(), epochs=1, steps_per_epoch=total, verbose=0,
                 callbacks=[timer_b], shuffle=False)
        sec_b = timer_b.seconds_per_step()

    eps_a, eps_b = args.batch / sec_a, args.batch / sec_b
    print(f"run_pretraining path (TFRecord pipeline + TrainerModel + callbacks): {eps_a:8.1f} examples/s "
          f"({sec_a * 1000:.1f} ms/step)")
    print(f"bare Keras fit (in-memory batches):                                  {eps_b:8.1f} examples/s "
          f"({sec_b * 1000:.1f} ms/step)")
    print(f"ratio: {eps_a / eps_b:.3f} (target >= 0.90)")


if __name__ == "__main__":
    main()
