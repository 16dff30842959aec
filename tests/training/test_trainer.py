"""training/trainer.py: the custom train step (accumulation, clipping, grad norm), exact resume, MirroredStrategy
equivalence with one device, the eval results file and the pre-training loss."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import keras

from training import checkpointing, pretraining_loss
from training import trainer as T

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Toy(keras.Model):
    def __init__(self):
        super().__init__()
        self.hidden = keras.layers.Dense(8, activation="tanh", kernel_initializer=keras.initializers.GlorotUniform(1))
        self.out = keras.layers.Dense(1, kernel_initializer=keras.initializers.GlorotUniform(2))

    def call(self, features, training=False):
        return {"pred": self.out(self.hidden(features["x"]))[:, 0]}


def toy_loss(features, outputs):
    err = tf.cast(outputs["pred"], tf.float32) - features["y"]
    return tf.reduce_mean(tf.square(err)), {"mae": (tf.abs(err), None)}


def _batch(n=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    return {"x": x, "y": (x.sum(1) * 3.0).astype("float32")}


def _trainer(acc=1, clip=None, lr=0.1, spe=1):
    net = Toy()
    tr = T.TrainerModel(net, toy_loss, ["mae"], gradient_accumulation_steps=acc, clip_norm=clip)
    tr.compile(optimizer=keras.optimizers.SGD(lr), steps_per_execution=spe)
    return tr, net


def _weights(net):
    return [v.numpy() for v in net.weights]


def test_gradient_accumulation_equals_full_batch():
    batch = _batch(8)
    ds = tf.data.Dataset.from_tensors(batch).repeat(3)
    a, net_a = _trainer(acc=1)
    b, net_b = _trainer(acc=4)
    a.fit(ds, epochs=1, steps_per_epoch=3, verbose=0)
    b.fit(ds, epochs=1, steps_per_epoch=3, verbose=0)
    for wa, wb in zip(_weights(net_a), _weights(net_b)):
        np.testing.assert_allclose(wa, wb, rtol=1e-5, atol=1e-6)
    assert int(a.global_step.numpy()) == int(b.global_step.numpy()) == 3
    assert int(b.optimizer.iterations.numpy()) == 3  # one optimizer step per train step, not per micro-batch


def test_clipping_and_grad_norm():
    batch = _batch(8)
    tr, net = _trainer(clip=0.01, lr=1.0)
    tr.build_for(tf.nest.map_structure(lambda v: tf.TensorSpec(v.shape, tf.float32), batch))
    before = _weights(net)
    with tf.GradientTape() as tape:
        loss, _ = toy_loss(batch, net(batch))
    grads = tape.gradient(loss, net.trainable_variables)
    true_norm = float(tf.linalg.global_norm(grads))
    assert true_norm > 0.01
    logs = tr.fit(tf.data.Dataset.from_tensors(batch), epochs=1, steps_per_epoch=1, verbose=0).history
    assert logs["grad_norm"][0] == pytest.approx(true_norm, rel=1e-4)
    step = [b - a for a, b in zip(before, _weights(net))]
    moved = float(np.sqrt(sum(np.sum(s ** 2) for s in step)))
    assert moved == pytest.approx(0.01, rel=1e-3)  # lr 1 * gradient clipped to norm 0.01


def _run(tmp, steps, ckpt_every, spe=2):
    batch = _batch(8)
    tr, net = _trainer(lr=0.05, spe=spe)
    # a momentum-free SGD would hide optimizer-state bugs: use Adam with a schedule driven by iterations
    tr.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.PolynomialDecay(0.05, 20, 0.0)),
               steps_per_execution=spe)
    strategy = tf.distribute.get_strategy()
    res = T.run_training(
        tr, lambda ctx: tf.data.Dataset.from_tensors(batch).repeat(), strategy=strategy, output_dir=str(tmp),
        num_train_steps=steps, steps_per_checkpoint=ckpt_every,
        checkpoint_items={"net": net, "optimizer": tr.optimizer, "global_step": tr.global_step},
        examples_per_step=8, log_every_n_steps=2, hparams={"lr": 0.05}, print_fn=lambda *_: None)
    return res, net, tr


def test_resume_is_exact(tmp_path):
    full, net_full, _ = _run(tmp_path / "full", 20, 10)
    assert full["global_step"] == 20 and not full["resumed"]
    assert sorted(f for f in os.listdir(tmp_path / "full") if f.endswith(".index")) == ["ckpt-10.index",
                                                                                       "ckpt-20.index"]
    first, _, _ = _run(tmp_path / "split", 10, 10)
    assert first["global_step"] == 10
    second, net_split, tr = _run(tmp_path / "split", 20, 10)
    assert second["resumed"] and second["initial_step"] == 10 and second["global_step"] == 20
    assert all(step > 10 for step, _ in second["history"])
    assert int(tr.optimizer.iterations.numpy()) == 20
    for a, b in zip(_weights(net_full), _weights(net_split)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    again, _, _ = _run(tmp_path / "split", 20, 10)
    assert again["global_step"] == 20 and again["history"] == []
    assert os.listdir(tmp_path / "full" / "logs" / "train")


def test_checkpoint_interval_not_multiple_of_execution(tmp_path):
    res, _, _ = _run(tmp_path, 7, 3, spe=5)  # steps_per_execution is the caller's choice; saves still at 3, 6, 7
    assert res["global_step"] == 7
    assert T.steps_per_execution_for(1000, 300, 1000) == 100
    assert T.steps_per_execution_for(5, 3, 7) == 1


def test_eval_results_file(tmp_path):
    path = tmp_path / "eval_results.txt"
    T.write_eval_results(str(path), {"loss": 1.5, "global_step": 10, "masked_lm_accuracy": 0.25})
    assert path.read_text() == "global_step = 10\nloss = 1.5\nmasked_lm_accuracy = 0.25\n"
    assert T.read_eval_results(str(path)) == {"global_step": 10.0, "loss": 1.5, "masked_lm_accuracy": 0.25}


def test_pretraining_loss_matches_original_formula():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 5)).astype("float32")
    ids = np.array([[1, 2, 0], [4, 0, 0]], np.int32)
    w = np.array([[1, 1, 0], [1, 0, 0]], np.float32)
    nsp = rng.normal(size=(2, 2)).astype("float32")
    labels = np.array([[0], [1]], np.int32)
    loss, metrics = pretraining_loss.pretraining_loss_fn("sentence_order")(
        {"masked_lm_ids": ids, "masked_lm_weights": w, "next_sentence_labels": labels},
        {"mlm_logits": logits, "nsp_logits": nsp})
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    ce = -np.take_along_axis(logp, ids[..., None], -1)[..., 0]
    mlm = (ce * w).sum() / (w.sum() + 1e-5)
    lp2 = nsp - np.log(np.exp(nsp).sum(-1, keepdims=True))
    ns = -lp2[[0, 1], labels[:, 0]].mean()
    assert float(loss) == pytest.approx(mlm + ns, rel=1e-5)
    assert set(metrics) == set(pretraining_loss.pretraining_metric_names("sentence_order"))


def test_mirrored_two_cpu_replicas_match_one_device(tmp_path):
    """Same global batch, 2 logical CPUs vs 1 device (subprocess: logical devices must be set before TF starts)."""
    script = textwrap.dedent(f"""
        import sys, json, numpy as np, tensorflow as tf
        sys.path.insert(0, {ROOT!r}); sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import keras, test_trainer as tt
        from training import trainer as T
        out = {{}}
        for name, strategy in [("one", tf.distribute.OneDeviceStrategy("/cpu:0")),
                               ("mirrored", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))]:
            with strategy.scope():
                tr, net = tt._trainer(acc=2, clip=0.5, lr=0.05, spe=3)
            batch = tt._batch(8)
            res = T.run_training(tr, lambda ctx: tf.data.Dataset.from_tensors(batch).unbatch().batch(
                    ctx.get_per_replica_batch_size(8)).repeat(), strategy=strategy,
                output_dir=sys.argv[1] + "/" + name, num_train_steps=6, steps_per_checkpoint=3,
                checkpoint_items={{"net": net, "global_step": tr.global_step}}, examples_per_step=8,
                print_fn=lambda *_: None)
            out[name] = [w.numpy().tolist() for w in net.weights] + [res["global_step"]]
        print("RESULT" + json.dumps(out))
    """)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    r = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=300,
                       env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.split("RESULT", 1)[1])
    assert out["one"][-1] == out["mirrored"][-1] == 6
    for a, b in zip(out["one"][:-1], out["mirrored"][:-1]):
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-4, atol=1e-6)


def test_restore_encoder_weights_errors(tmp_path):
    import bertkit_errors

    enc = keras.Sequential([keras.layers.Dense(3)])
    enc.build((None, 2))
    other = keras.Sequential([keras.layers.Dense(4)])
    other.build((None, 2))
    prefix = tf.train.Checkpoint(encoder=other).save(str(tmp_path / "ck"))
    with pytest.raises(bertkit_errors.UserError, match=r"--init_checkpoint=.*\(2, 4\).*\(2, 3\)|"
                                                       r"--init_checkpoint=.*\(2, 3\).*\(2, 4\)"):
        checkpointing.restore_encoder_weights(enc, prefix)
    with pytest.raises(bertkit_errors.UserError, match="no checkpoint found"):
        checkpointing.restore_encoder_weights(enc, str(tmp_path / "missing"))
    good = tf.train.Checkpoint(encoder=enc).save(str(tmp_path / "good"))
    enc2 = keras.Sequential([keras.layers.Dense(3)])
    enc2.build((None, 2))
    checkpointing.restore_encoder_weights(enc2, good)
    np.testing.assert_array_equal(enc.weights[0].numpy(), enc2.weights[0].numpy())


def test_mixed_float16_uses_loss_scaling_and_reports_unscaled_norm(tmp_path):
    """Under mixed_float16 compile() wraps the optimizer in a LossScaleOptimizer; train_step scales the loss and the
    reported grad norm is the unscaled one (the same as in float32 up to half precision)."""
    batch = _batch(8)
    spec = tf.nest.map_structure(lambda v: tf.TensorSpec(v.shape, tf.float32), batch)
    norms = {}
    for policy in ("float32", "mixed_float16"):
        keras.mixed_precision.set_global_policy(policy)
        try:
            tr, net = _trainer(clip=None, lr=0.0)
            tr.build_for(spec)
            if policy == "mixed_float16":
                assert isinstance(tr.optimizer, keras.optimizers.LossScaleOptimizer)
                assert float(tr.optimizer.dynamic_scale.numpy()) > 1000
            # the initial loss scale (32768) overflows float16 for gradients ~15: those steps are skipped and the
            # scale halves until the gradients are finite
            for _ in range(8):
                hist = tr.fit(tf.data.Dataset.from_tensors(batch), epochs=1, steps_per_epoch=1, verbose=0).history
            norms[policy] = hist["grad_norm"][0]
            if policy == "mixed_float16":
                assert float(tr.optimizer.dynamic_scale.numpy()) < 32768
                assert int(tr.global_step.numpy()) == 8 > int(tr.optimizer.iterations.numpy())
        finally:
            keras.mixed_precision.set_global_policy("float32")
    assert norms["mixed_float16"] == pytest.approx(norms["float32"], rel=2e-2)
