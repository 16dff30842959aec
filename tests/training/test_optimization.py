import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from bertkit_errors import UserError
from training import optimization as opt


class _Block(keras.layers.Layer):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.dense = keras.layers.Dense(3, name="dense")
        self.norm = keras.layers.LayerNormalization(name="output_layer_norm")

    def call(self, x):
        return self.norm(self.dense(x))


class _ToyModel(keras.Model):
    """Variable paths like a real encoder: toy/word_embeddings/..., toy/layer_{i}/..., toy/classifier/..."""

    def __init__(self, num_layers=2):
        super().__init__(name="toy")
        self.emb = keras.layers.Embedding(7, 3, name="word_embeddings")
        self.blocks = [_Block(name=f"layer_{i}") for i in range(num_layers)]
        for i, b in enumerate(self.blocks):
            setattr(self, f"layer_{i}", b)
        self.head = keras.layers.Dense(2, name="classifier")

    def call(self, ids):
        h = self.emb(ids)
        for b in self.blocks:
            h = b(h)
        return self.head(h[:, 0])


def _model():
    keras.utils.set_random_seed(1)
    m = _ToyModel()
    m(tf.zeros([1, 2], tf.int32))
    for v in m.trainable_variables:  # make every variable non-zero so decay would be visible
        v.assign(tf.random.uniform(v.shape, 0.5, 1.5, seed=3))
    return m


def _by_path(model):
    return {v.path: v.numpy().copy() for v in model.trainable_variables}


def test_schedule_warmup_then_linear_decay_and_config():
    s = opt.WarmupLinearDecay(1e-3, num_train_steps=100, num_warmup_steps=10)
    got = [float(s(t)) for t in (0, 5, 10, 55, 100, 150)]
    np.testing.assert_allclose(got, [0.0, 5e-4, 9e-4, 4.5e-4, 0.0, 0.0], rtol=1e-6, atol=1e-12)
    s2 = opt.WarmupLinearDecay.from_config(json.loads(json.dumps(s.get_config())))
    assert float(s2(5)) == pytest.approx(5e-4)
    s0 = opt.WarmupLinearDecay(2.0, num_train_steps=4, num_warmup_steps=0)
    assert [float(s0(t)) for t in (0, 1, 4)] == [2.0, 1.5, 0.0]


def test_path_exclusions_classify_variables():
    m = _model()
    decayed = {v.path for v in m.trainable_variables if opt.uses_weight_decay(v)}
    assert decayed == {"toy/layer_0/dense/kernel", "toy/layer_1/dense/kernel", "toy/classifier/kernel",
                       "toy/word_embeddings/embeddings"}
    # BERT-style names also excluded
    class V:
        def __init__(self, path):
            self.path, self.name = path, path.rsplit("/", 1)[-1]
    assert not opt.uses_weight_decay(V("bert/encoder/layer_3/attention/output/LayerNorm/weight"))
    assert opt.uses_weight_decay(V("bert/encoder/layer_3/attention/output/dense/weight"))


@pytest.mark.parametrize("name", ["adamw", "lamb"])
def test_weight_decay_skips_layer_norm_and_bias_with_zero_gradient(name):
    m = _model()
    before = _by_path(m)
    lr, wd = 0.1, 0.2
    o = opt.create_optimizer(lr, num_train_steps=10**6, num_warmup_steps=0, optimizer=name, weight_decay_rate=wd)
    grads = [tf.zeros_like(v) for v in m.trainable_variables]
    o.apply(grads, m.trainable_variables)
    after = _by_path(m)
    # AdamW: w -= lr*wd*w. LAMB: update = wd*w, trust ratio ||w||/||wd*w|| = 1/wd, so w -= lr*w.
    factor = 1 - lr * wd if name == "adamw" else 1 - lr
    for path, w in before.items():
        if path.endswith("kernel") or path.endswith("embeddings"):
            np.testing.assert_allclose(after[path], w * factor, rtol=1e-5, err_msg=path)
        else:  # gamma, beta, bias: untouched
            np.testing.assert_array_equal(after[path], w, err_msg=path)


def test_lamb_one_step_matches_numpy_reference():
    m = _model()
    vars_ = m.trainable_variables
    before = [v.numpy().copy() for v in vars_]
    rng = np.random.RandomState(0)
    grads = [rng.randn(*v.shape).astype(np.float32) for v in vars_]
    lr, wd, b1, b2, eps = 0.01, 0.1, 0.9, 0.999, 1e-6
    o = opt.create_optimizer(lr, 10**6, 0, optimizer="lamb", weight_decay_rate=wd, clipnorm=None)
    o.apply([tf.constant(g) for g in grads], vars_)
    for v, w, g in zip(vars_, before, grads):
        m_hat = (1 - b1) * g / (1 - b1)
        v_hat = (1 - b2) * g * g / (1 - b2)
        update = m_hat / (np.sqrt(v_hat) + eps)
        if opt.uses_weight_decay(v):
            update = update + wd * w
            ratio = np.linalg.norm(w) / np.linalg.norm(update)
        else:
            ratio = 1.0
        np.testing.assert_allclose(v.numpy(), w - lr * ratio * update, rtol=1e-5, atol=1e-6, err_msg=v.path)


def test_layerwise_lr_decay_scales_each_depth():
    m = _model()
    before = _by_path(m)
    mults = dict(zip([v.path for v in m.trainable_variables],
                     opt.layer_multipliers(m.trainable_variables, num_layers=2, layerwise_lr_decay=0.5)))
    assert mults["toy/word_embeddings/embeddings"] == 0.125
    assert mults["toy/layer_0/dense/kernel"] == 0.25
    assert mults["toy/layer_1/output_layer_norm/gamma"] == 0.5
    assert mults["toy/classifier/bias"] == 1.0
    lr = 0.01
    o = opt.create_optimizer(lr, 10**6, 0, weight_decay_rate=0.0, clipnorm=None, layerwise_lr_decay=0.5,
                             num_layers=2)
    o.apply([tf.ones_like(v) for v in m.trainable_variables], m.trainable_variables)
    after = _by_path(m)
    for path, w in before.items():
        # first Adam step with gradient 1: delta = lr * mult * 1 / (1 + eps)
        np.testing.assert_allclose(w - after[path], np.full_like(w, lr * mults[path]), rtol=1e-4, err_msg=path)
    with pytest.raises(ValueError):
        opt.create_optimizer(lr, 10, 0, layerwise_lr_decay=0.8)  # needs num_layers


def test_layer_depth_convention():
    assert opt.variable_depth("enc/embeddings/layer_norm/gamma", 12) == 0
    assert opt.variable_depth("enc/layer_11/ffn/kernel", 12) == 12
    assert opt.variable_depth("enc/pooler/kernel", 12) == 13
    assert opt.variable_depth("enc/layer_norm_1/gamma", 12) == 13  # not a transformer layer index
    with pytest.raises(ValueError):
        opt.variable_depth("enc/layer_12/kernel", 12)


def test_optimizer_config_clipnorm_and_bad_name():
    o = opt.create_optimizer(1e-4, 100, 10, optimizer="lamb", layerwise_lr_decay=0.9, num_layers=4)
    assert o.global_clipnorm == 1.0 and o.clipnorm is None
    cfg = o.get_config()
    o2 = opt.Lamb.from_config(cfg)
    assert o2.layerwise_lr_decay == 0.9 and o2.num_layers == 4 and o2.weight_decay_rate == 0.01
    assert float(o2.learning_rate) == pytest.approx(0.0)  # step 0 of warmup
    a = opt.create_optimizer(1e-4, 100, 10, clipnorm=0)
    assert a.global_clipnorm is None
    assert opt.AdamWeightDecay.from_config(a.get_config()).exclude_patterns == opt.DEFAULT_WEIGHT_DECAY_EXCLUSIONS
    with pytest.raises(UserError, match="--optimizer"):
        opt.create_optimizer(1e-4, 100, 10, optimizer="sgd")


def test_global_norm():
    n = opt.global_norm([tf.constant([3.0]), None, tf.constant([[4.0]])])
    assert float(n) == pytest.approx(5.0)
    assert float(opt.global_norm([None])) == 0.0


def test_gradient_accumulator_under_mirrored_strategy_one_cpu():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        w = tf.Variable([1.0, 2.0])
        acc = opt.GradientAccumulator([w])
        sgd = keras.optimizers.SGD(learning_rate=1.0)

    @tf.function
    def micro(g):
        strategy.run(lambda: acc.accumulate([g]))

    @tf.function
    def apply():
        def fn():
            sgd.apply(acc.gradients(), [w])
            acc.reset()
        strategy.run(fn)

    for g in ([1.0, 0.0], [2.0, 4.0], [3.0, 2.0]):
        micro(tf.constant(g))
    assert int(acc.step) == 3
    np.testing.assert_allclose(acc.gradients(average=False)[0].numpy(), [6.0, 6.0])
    np.testing.assert_allclose(acc.gradients()[0].numpy(), [2.0, 2.0])
    apply()
    np.testing.assert_allclose(w.numpy(), [-1.0, 0.0])
    assert int(acc.step) == 0
    np.testing.assert_allclose(acc.gradients()[0].numpy(), [0.0, 0.0])


def test_gradient_accumulator_two_replicas_subprocess():
    """Two logical CPU replicas: each accumulates its own gradients; the optimizer sums the replicas' averages."""
    code = textwrap.dedent("""
        import os, json
        import tensorflow as tf, keras
        from training.optimization import GradientAccumulator
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        with strategy.scope():
            w = tf.Variable([0.0, 0.0])
            acc = GradientAccumulator([w])
            sgd = keras.optimizers.SGD(learning_rate=1.0)
        @tf.function
        def micro(k):
            def fn():
                rid = tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group, tf.float32)
                acc.accumulate([tf.stack([k * (rid + 1.0), 1.0])])   # replica r: [k*(r+1), 1]
            strategy.run(fn)
        @tf.function
        def apply():
            def fn():
                sgd.apply(acc.gradients(), [w]); acc.reset()
            strategy.run(fn)
        micro(tf.constant(1.0)); micro(tf.constant(3.0))
        apply()
        print(json.dumps({"w": w.numpy().tolist(), "replicas": strategy.num_replicas_in_sync}))
    """)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=root, CUDA_VISIBLE_DEVICES="")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=root,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["replicas"] == 2
    # replica 0 average [2, 1], replica 1 average [4, 1]; summed [6, 2]; SGD lr 1 -> w = -[6, 2]
    np.testing.assert_allclose(res["w"], [-6.0, -2.0])


@pytest.mark.parametrize("name", ["adamw", "lamb"])
def test_exclusions_and_layer_multipliers_under_mirrored_strategy(name):
    """Inside strategy.run, update_step sees per-replica component variables: the path-based maps must still apply."""
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        m = _model()
        o = opt.create_optimizer(0.1, 10**6, 0, optimizer=name, weight_decay_rate=0.2, layerwise_lr_decay=0.5,
                                 num_layers=2)
        o.build(m.trainable_variables)
    before = _by_path(m)

    @tf.function
    def step():
        strategy.run(lambda: o.apply([tf.zeros_like(v) for v in m.trainable_variables], m.trainable_variables))

    step()
    after = _by_path(m)
    mults = dict(zip([v.path for v in m.trainable_variables], opt.layer_multipliers(m.trainable_variables, 2, 0.5)))
    for path, w in before.items():
        lr = 0.1 * mults[path]
        if path.endswith("kernel") or path.endswith("embeddings"):
            factor = 1 - lr * 0.2 if name == "adamw" else 1 - lr
            np.testing.assert_allclose(after[path], w * factor, rtol=1e-5, err_msg=path)
        else:
            np.testing.assert_array_equal(after[path], w, err_msg=path)


class _UnscopedEncoder(keras.Model):
    """Layers reachable as encoder.embeddings / encoder.layer_{i}, but with names that do not show it in the
    variable paths (like bertkit's modeling encoders, whose weights are built outside the layers' name scopes)."""

    def __init__(self):
        super().__init__(name="enc")
        self.num_layers = 2
        self.embeddings = keras.layers.Embedding(7, 3, name="tok")
        self.layer_0 = _Block(name="block_a")
        self.layer_1 = _Block(name="block_b")
        self.pooler = keras.layers.Dense(3, name="pooler")

    def call(self, ids):
        return self.pooler(self.layer_1(self.layer_0(self.embeddings(ids)))[:, 0])


def test_layerwise_lr_decay_from_encoder_structure_and_checkpoint(tmp_path):
    enc = _UnscopedEncoder()
    enc(tf.zeros([1, 2], tf.int32))
    head = keras.layers.Dense(2, name="head")
    head.build((None, 3))
    variables = enc.trainable_variables + head.trainable_variables
    # the path rule finds nothing here, and says so instead of silently using one rate
    bad = opt.create_optimizer(0.01, 10**6, 0, layerwise_lr_decay=0.5, num_layers=2)
    with pytest.raises(ValueError, match="encoder="):
        bad.build(variables)

    depths = opt.encoder_variable_depths(enc)
    o = opt.create_optimizer(0.01, 10**6, 0, weight_decay_rate=0.0, clipnorm=None, layerwise_lr_decay=0.5,
                             encoder=enc)
    assert o.num_layers == 2
    before = [v.numpy().copy() for v in variables]
    o.apply([tf.ones_like(v) for v in variables], variables)
    expect = {id(v): 0.5 ** (3 - depths.get(id(v), 3)) for v in variables}
    assert sorted(set(expect.values())) == [0.125, 0.25, 0.5, 1.0]
    for v, w in zip(variables, before):
        np.testing.assert_allclose(w - v.numpy(), np.full_like(w, 0.01 * expect[id(v)]), rtol=1e-4, err_msg=v.path)
    # the optimizer (with its runtime maps) still checkpoints and restores
    path = tf.train.Checkpoint(optimizer=o).save(str(tmp_path / "ckpt"))
    assert any("optimizer" in n for n, _ in tf.train.list_variables(path))
