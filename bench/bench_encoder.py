"""Encoder training throughput: bertkit's BERT encoder vs keras-hub's BertBackbone of the same shape.

Default shape is TinyBERT-4 (4 layers, hidden 312, 12 heads, intermediate 1200, vocab 30522), batch 32, seq 128,
float32, CPU. Both models get the same objective (a regression head on the pooled output, MSE), the same Adam
optimizer and the same manual `tf.function` train step; the two are timed in alternating rounds after warm-up steps,
and the median and the fastest step time are reported (examples/s = batch / step time). On a shared machine the
median moves with other load; the fastest step is the steadier estimate of what each model can do.

    .venv/bin/python bench/bench_encoder.py [--steps=10 --rounds=3 --warmup=3 --jit_compile]
"""
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

import modeling  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("batch_size", 32, "examples per step")
flags.DEFINE_integer("seq_length", 128, "sequence length")
flags.DEFINE_integer("num_layers", 4, "layers")
flags.DEFINE_integer("hidden_size", 312, "hidden size")
flags.DEFINE_integer("num_heads", 12, "attention heads")
flags.DEFINE_integer("intermediate_size", 1200, "FFN size")
flags.DEFINE_integer("vocab_size", 30522, "vocabulary size")
flags.DEFINE_float("dropout", 0.1, "hidden and attention dropout (both models)")
flags.DEFINE_integer("warmup", 3, "untimed steps per model before timing")
flags.DEFINE_integer("steps", 10, "timed steps per round")
flags.DEFINE_integer("rounds", 3, "alternating rounds per model")
flags.DEFINE_bool("jit_compile", False, "XLA-compile the train steps (both models)")
flags.DEFINE_integer("threads", 0, "TF intra-op threads (0: TF default)")
flags.DEFINE_string("hidden_act", "gelu", "bertkit's activation: gelu (exact erf, as the BERT paper and bertkit's "
                    "configs) or gelu_new (the tanh approximation keras-hub's BertBackbone uses)")


def _data(rng):
    b, t = FLAGS.batch_size, FLAGS.seq_length
    ids = rng.integers(1000, FLAGS.vocab_size, size=(b, t)).astype(np.int32)
    lengths = rng.integers(t // 2, t + 1, size=(b,))
    mask = (np.arange(t)[None, :] < lengths[:, None]).astype(np.int32)
    seg = ((np.arange(t)[None, :] >= (lengths // 2)[:, None]) & (mask == 1)).astype(np.int32)
    y = rng.standard_normal((b, 1)).astype(np.float32)
    return tf.constant(ids * mask), tf.constant(mask), tf.constant(seg), tf.constant(y)


def _bertkit_model():
    config = modeling.ModelConfig(
        model_type="bert", vocab_size=FLAGS.vocab_size, hidden_size=FLAGS.hidden_size,
        num_hidden_layers=FLAGS.num_layers, num_attention_heads=FLAGS.num_heads,
        intermediate_size=FLAGS.intermediate_size, hidden_dropout_prob=FLAGS.dropout,
        attention_probs_dropout_prob=FLAGS.dropout, hidden_act=FLAGS.hidden_act)
    encoder = modeling.build_encoder(config)
    head = keras.layers.Dense(1)
    head.build((None, FLAGS.hidden_size))

    def forward(ids, mask, seg, training):
        out = encoder({"input_ids": ids, "input_mask": mask, "segment_ids": seg}, training=training)
        return head(out["pooled_output"])
    return forward, encoder.trainable_variables + head.trainable_variables


def _keras_hub_model():
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=FLAGS.vocab_size, num_layers=FLAGS.num_layers, num_heads=FLAGS.num_heads,
        hidden_dim=FLAGS.hidden_size, intermediate_dim=FLAGS.intermediate_size, dropout=FLAGS.dropout,
        max_sequence_length=512, num_segments=2)
    head = keras.layers.Dense(1)
    head.build((None, FLAGS.hidden_size))

    def forward(ids, mask, seg, training):
        out = backbone({"token_ids": ids, "padding_mask": mask, "segment_ids": seg}, training=training)
        return head(out["pooled_output"])
    return forward, backbone.trainable_variables + head.trainable_variables


def _train_step(forward, variables):
    opt = keras.optimizers.Adam(1e-4)
    opt.build(variables)

    @tf.function(jit_compile=FLAGS.jit_compile)
    def step(ids, mask, seg, y):
        with tf.GradientTape() as tape:
            pred = forward(ids, mask, seg, True)
            loss = tf.reduce_mean(tf.square(tf.cast(pred, tf.float32) - y))
        grads = tape.gradient(loss, variables)
        opt.apply_gradients(zip(grads, variables))
        return loss
    return step


def main(argv):
    del argv
    if FLAGS.threads:
        tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
    keras.utils.set_random_seed(0)
    batch = _data(np.random.default_rng(0))
    models = {}
    for name, builder in (("bertkit", _bertkit_model), ("keras_hub", _keras_hub_model)):
        forward, variables = builder()
        n_params = sum(int(np.prod(v.shape)) for v in variables)
        step = _train_step(forward, variables)
        t0 = time.perf_counter()
        for _ in range(FLAGS.warmup):
            loss = step(*batch)
        float(loss)
        print(f"{name}: {n_params / 1e6:.2f}M trainable parameters, warm-up {FLAGS.warmup} steps "
              f"{time.perf_counter() - t0:.1f}s (includes tracing), loss {float(loss):.4f}", flush=True)
        models[name] = (step, [])
    for r in range(FLAGS.rounds):
        for name, (step, times) in models.items():
            for _ in range(FLAGS.steps):
                t0 = time.perf_counter()
                float(step(*batch))  # float(): wait for the step to finish
                times.append(time.perf_counter() - t0)
    print(f"shape: layers={FLAGS.num_layers} hidden={FLAGS.hidden_size} heads={FLAGS.num_heads} "
          f"intermediate={FLAGS.intermediate_size} batch={FLAGS.batch_size} seq={FLAGS.seq_length} float32 "
          f"jit_compile={FLAGS.jit_compile} ({FLAGS.rounds} rounds x {FLAGS.steps} steps, alternating)")
    res, best = {}, {}
    for name, (_, times) in models.items():
        med = float(np.median(times))
        res[name], best[name] = FLAGS.batch_size / med, FLAGS.batch_size / min(times)
        print(f"{name:10s} median step {med * 1000:8.1f} ms  (min {min(times) * 1000:.1f}, max "
              f"{max(times) * 1000:.1f})  {res[name]:7.1f} examples/s (median), {best[name]:7.1f} (best step)")
    print(f"bertkit / keras_hub throughput: {res['bertkit'] / res['keras_hub']:.2f}x (median), "
          f"{best['bertkit'] / best['keras_hub']:.2f}x (best step; less sensitive to other load on the machine)")


if __name__ == "__main__":
    app.run(main)
