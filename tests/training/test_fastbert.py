import numpy as np
import pytest
import tensorflow as tf
import keras

from training import fastbert as fb

H, LAYERS, LABELS, VOCAB, T = 8, 3, 3, 20, 5


class ToyEncoder(keras.Model):
    """Implements the DESIGN.md layer-by-layer encoder contract with one masked single-head attention per layer."""

    def __init__(self):
        super().__init__(name="toy_encoder")
        self.num_layers = LAYERS
        self.emb = keras.layers.Embedding(VOCAB, H, name="word_embeddings")
        self.seg = keras.layers.Embedding(2, H, name="segment_embeddings")
        self._layers = []
        for i in range(LAYERS):
            d = keras.layers.Dense(H, name=f"layer_{i}")
            setattr(self, f"layer_{i}", d)
            self._layers.append(d)
        self.pooler = keras.layers.Dense(H, activation="tanh", name="pooler")

    def embed(self, inputs, training=False):
        h = self.emb(inputs["input_ids"]) + self.seg(inputs["segment_ids"])
        mask = tf.cast(inputs["input_mask"], tf.float32)
        return h, (1.0 - mask)[:, None, None, :] * -10000.0

    def run_layer(self, i, h, mask_bias, training=False):
        scores = tf.einsum("btd,bsd->bts", h, h)[:, None] / np.sqrt(H)  # [B, 1, T, T], before the mask
        probs = tf.nn.softmax(scores + mask_bias, axis=-1)[:, 0]
        return h + tf.tanh(self._layers[i](tf.einsum("bts,bsd->btd", probs, h))), scores

    def pool(self, sequence_output):
        return self.pooler(sequence_output[:, 0])

    def call(self, inputs, training=False):
        h, mb = self.embed(inputs, training)
        for i in range(self.num_layers):
            h, _ = self.run_layer(i, h, mb, training)
        return {"sequence_output": h, "pooled_output": self.pool(h)}


def _setup(seed=0, sharpen=8.0):
    keras.utils.set_random_seed(seed)
    enc = ToyEncoder()
    branches = fb.BranchSet(LAYERS, LABELS, branch_hidden_size=8, num_heads=2)
    final = fb.BranchClassifier(LABELS, branch_hidden_size=8, num_heads=2, name="final_head")
    rng = np.random.RandomState(seed)
    b = 8
    ids = rng.randint(1, VOCAB, size=(b, T)).astype(np.int32)
    lengths = rng.randint(2, T + 1, size=b)
    mask = (np.arange(T)[None, :] < lengths[:, None]).astype(np.int32)
    inputs = {"input_ids": ids * mask, "input_mask": mask, "segment_ids": np.zeros_like(ids)}
    fb.run_with_branches(enc, branches, final, inputs)  # build
    for head in list(branches) + [final]:  # spread the entropies so that examples leave at different layers
        head.classifier.kernel.assign(head.classifier.kernel * sharpen)
    return enc, branches, final, inputs


def test_normalized_entropy_rule():
    p = tf.constant([[1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    np.testing.assert_allclose(fb.normalized_entropy(p).numpy(), [1.0, 0.0, np.log(2) / np.log(3)], rtol=1e-6)
    assert fb.normalized_entropy(tf.constant([[0.0, 1.0]])).numpy()[0] == 0.0  # no NaN from 0 * log 0


def test_self_distillation_loss_matches_hand_computation():
    rng = np.random.RandomState(0)
    final = rng.randn(4, 3).astype(np.float32)
    branches = [rng.randn(4, 3).astype(np.float32) for _ in range(2)]

    def sm(x):
        e = np.exp(x - x.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    pt = sm(final)
    expect = sum((pt * (np.log(pt) - np.log(sm(b)))).sum(-1).mean() for b in branches)
    assert float(fb.self_distillation_loss(branches, final)) == pytest.approx(expect, rel=1e-5)
    # the teacher side gets no gradient
    final_t = tf.constant(final)
    b0 = tf.Variable(branches[0])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(final_t)
        loss = fb.self_distillation_loss([b0], final_t)
    assert tape.gradient(loss, final_t) is None and tape.gradient(loss, b0) is not None


def test_speed_zero_equals_full_model():
    enc, branches, final, inputs = _setup()
    probs, exits = fb.early_exit_predict(enc, branches, final, inputs, speed=0.0)
    full = fb.make_full_model_fn(enc, final)({k: tf.constant(v) for k, v in inputs.items()})
    np.testing.assert_array_equal(exits.numpy(), np.full([8], LAYERS))
    np.testing.assert_array_equal(probs.numpy(), full.numpy())  # bit for bit under the same input signature
    # and against the plain eager forward pass
    seq = enc(inputs)["sequence_output"]
    np.testing.assert_allclose(probs.numpy(), tf.nn.softmax(final(seq, inputs["input_mask"])).numpy(), atol=1e-6)


def _reference_exits(enc, branches, final, inputs, speed):
    branch_logits, final_logits = fb.run_with_branches(enc, branches, final, inputs)
    ents = np.stack([fb.normalized_entropy(tf.nn.softmax(lg)).numpy() for lg in branch_logits], 1)  # [B, L-1]
    exits = []
    for row in ents:
        below = np.nonzero(row < speed)[0]
        exits.append(int(below[0]) + 1 if len(below) else LAYERS)
    return np.array(exits), ents


def test_mixed_exits_match_running_each_example_alone():
    enc, branches, final, inputs = _setup()
    _, ents = _reference_exits(enc, branches, final, inputs, 0.0)
    # choose the speed giving the most distinct exit layers among the batch
    best = max(
        (len(set(_reference_exits(enc, branches, final, inputs, s)[0])), s)
        for s in np.unique(ents) + 1e-4
    )
    speed = float(best[1])
    expected_exits, _ = _reference_exits(enc, branches, final, inputs, speed)
    assert len(set(expected_exits)) == LAYERS, expected_exits  # exits at layers 1, 2 and 3 in one batch

    probs, exits = fb.early_exit_predict(enc, branches, final, inputs, speed)
    np.testing.assert_array_equal(exits.numpy(), expected_exits)
    for b in range(len(expected_exits)):
        one = {k: v[b:b + 1] for k, v in inputs.items()}
        p1, e1 = fb.early_exit_predict(enc, branches, final, one, speed)
        assert int(e1[0]) == expected_exits[b]
        np.testing.assert_allclose(probs.numpy()[b], p1.numpy()[0], rtol=1e-5, atol=1e-6)
        # and it is the distribution of the head at its exit layer
        branch_logits, final_logits = fb.run_with_branches(enc, branches, final, one)
        logits = (branch_logits + [final_logits])[expected_exits[b] - 1]
        np.testing.assert_allclose(probs.numpy()[b], tf.nn.softmax(logits).numpy()[0], rtol=1e-5, atol=1e-6)
    # speed above 1: everybody leaves at layer 1 (normalized entropy <= 1)
    _, exits = fb.early_exit_predict(enc, branches, final, inputs, 1.01)
    np.testing.assert_array_equal(exits.numpy(), np.ones(8))


def test_early_exit_function_exports(tmp_path):
    enc, branches, final, inputs = _setup(seed=1)
    module = tf.Module()
    module.enc, module.branches, module.final = enc, branches, final
    module.early_exit = fb.make_early_exit_fn(enc, branches, final)
    tf.saved_model.save(module, str(tmp_path / "m"))
    loaded = tf.saved_model.load(str(tmp_path / "m"))
    feed = {k: tf.constant(v[:3]) for k, v in inputs.items()}
    out = loaded.early_exit(feed, tf.constant(0.5))
    ref_p, ref_e = fb.early_exit_predict(enc, branches, final, feed, 0.5)
    np.testing.assert_allclose(out["probabilities"].numpy(), ref_p.numpy(), atol=1e-6)
    np.testing.assert_array_equal(out["exit_layer"].numpy(), ref_e.numpy())


def test_branch_set_checkpoint_tracks_every_branch(tmp_path):
    enc, branches, final, inputs = _setup()
    path = tf.train.Checkpoint(branches=branches).save(str(tmp_path / "ckpt"))
    names = [n for n, _ in tf.train.list_variables(path)]
    for i in range(LAYERS - 1):
        assert any(f"branches/branch_{i}/self_attention" in n for n in names), names
        assert any(f"branches/branch_{i}/classifier/_kernel" in n for n in names), names
    saved = [n for n in names if n.startswith("branches/") and n.endswith("VARIABLE_VALUE")]
    assert len(saved) == sum(len(b.weights) for b in branches) == 2 * 14  # 3 dense layers + 4 attention projections, kernel + bias


def test_flops():
    f = fb.flops_per_layer(seq_length=128, hidden_size=768, intermediate_size=3072, num_labels=2)
    assert f["layer"] == 2 * 4 * 128 * 768 * 768 + 4 * 128 * 128 * 768 + 4 * 128 * 768 * 3072
    assert 0 < f["branch"] < f["layer"] / 10
    full = 12 * f["layer"] + f["final_head"]
    assert fb.relative_flops([12, 12], 12, f) == pytest.approx((full + 11 * f["branch"]) / full)
    assert fb.relative_flops([1, 12], 12, f) == pytest.approx(
        ((f["layer"] + f["branch"]) + (full + 11 * f["branch"])) / (2 * full))
    with pytest.raises(ValueError):
        fb.example_flops(0, 12, f)
