import numpy as np
import pytest
import tensorflow as tf

from bertkit_errors import UserError
from training import distillation as d

RNG = np.random.RandomState(0)


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_uniform_mappings():
    m = d.uniform_layer_mapping(4, 12)
    assert m.attention == (2, 5, 8, 11) and m.hidden == (0, 3, 6, 9, 12)
    m = d.uniform_layer_mapping(6, 12)
    assert m.attention == (1, 3, 5, 7, 9, 11) and m.hidden == (0, 2, 4, 6, 8, 10, 12)
    m = d.uniform_layer_mapping(3, 6)
    assert m.attention == (1, 3, 5) and m.hidden == (0, 2, 4, 6)
    assert d.parse_layer_mapping(None, 4, 12) == d.uniform_layer_mapping(4, 12)
    with pytest.raises(UserError, match="--layer_mapping.*not a multiple"):
        d.uniform_layer_mapping(5, 12)


def test_explicit_mapping_and_validation():
    m = d.parse_layer_mapping("0:2, 1:5,2:8,3:11", 4, 12)
    assert m == d.uniform_layer_mapping(4, 12)
    m = d.parse_layer_mapping("1:7,0:0,2:11", 3, 12)
    assert m.attention == (0, 7, 11) and m.hidden == (0, 1, 8, 12)
    for bad, msg in [("0:2,1", "not 'student_layer"), ("0:x", "integer"), ("0:12,1:3", "teacher layer 12"),
                     ("0:1,0:2", "mapped twice"), ("0:1", r"student layers \[1\]"), ("2:1,0:1,1:1", "student layer 2")]:
        with pytest.raises(UserError, match="--layer_mapping: .*" + msg):
            d.parse_layer_mapping(bad, 2, 12)


def test_hidden_mse_plain_and_masked():
    s = RNG.randn(2, 3, 4).astype(np.float32)
    t = RNG.randn(2, 3, 4).astype(np.float32)
    mask = np.array([[1, 1, 0], [1, 0, 0]], np.int32)
    assert float(d.hidden_mse(s, t)) == pytest.approx(((s - t) ** 2).mean(), rel=1e-5)
    sq = ((s - t) ** 2).sum(-1)  # [B, T]
    expect = (sq * mask).sum() / (mask.sum() * 4)
    assert float(d.hidden_mse(s, t, mask)) == pytest.approx(expect, rel=1e-5)


def test_attention_mse_zeroes_masked_keys():
    s = RNG.randn(2, 2, 3, 3).astype(np.float32)
    t = RNG.randn(2, 2, 3, 3).astype(np.float32)
    mask = np.array([[1, 1, 0], [1, 1, 1]], np.float32)
    # reference code: add the mask (-10000) to the scores, then zero everything <= -100
    s_ref = s + (1 - mask)[:, None, None, :] * -10000.0
    t_ref = t + (1 - mask)[:, None, None, :] * -10000.0
    s_ref = np.where(s_ref <= -1e2, 0.0, s_ref)
    t_ref = np.where(t_ref <= -1e2, 0.0, t_ref)
    expect = ((s_ref - t_ref) ** 2).mean()
    assert float(d.attention_mse(s, t, mask)) == pytest.approx(expect, rel=1e-5)


def test_attention_kl():
    s = RNG.randn(1, 2, 3, 3).astype(np.float32)
    t = RNG.randn(1, 2, 3, 3).astype(np.float32)
    mask = np.array([[1, 1, 0]], np.float32)
    ps, pt = _softmax(s[..., :2]), _softmax(t[..., :2])  # keys 0, 1 only
    kl = (pt * (np.log(pt) - np.log(ps))).sum(-1)  # [1, 2, 3]
    expect = kl[:, :, :2].mean()  # query rows 0, 1 (row 2 is padding)
    assert float(d.attention_kl(s, t, mask)) == pytest.approx(expect, rel=1e-5)


def test_head_mismatch():
    s = RNG.randn(1, 2, 3, 3).astype(np.float32)
    t = RNG.randn(1, 4, 3, 3).astype(np.float32)
    mask = np.ones([1, 3], np.float32)
    with pytest.raises(UserError, match="2 attention heads and the teacher 4"):
        d.attention_mse(s, t, mask)
    expect = ((s.mean(1) - t.mean(1)) ** 2).mean()
    assert float(d.attention_mse(s, t, mask, attention_heads="mean")) == pytest.approx(expect, rel=1e-5)


def test_soft_cross_entropy_regression_and_hard_labels():
    s = RNG.randn(3, 4).astype(np.float32)
    t = RNG.randn(3, 4).astype(np.float32)
    T = 2.0
    expect = -(_softmax(t / T) * np.log(_softmax(s / T))).sum(-1).mean()
    assert float(d.soft_cross_entropy(s, t, T)) == pytest.approx(expect, rel=1e-5)
    assert float(d.prediction_loss(s[:, :1], t[:, :1], is_regression=True)) == pytest.approx(
        ((s[:, 0] - t[:, 0]) ** 2).mean(), rel=1e-5)
    labels = np.array([0, 3, 1])
    expect = -np.log(_softmax(s)[np.arange(3), labels]).mean()
    assert float(d.hard_label_loss(s, labels)) == pytest.approx(expect, rel=1e-5)


def _outputs(num_layers, hidden, heads, rng, b=2, t=3):
    return {
        "hidden_states": [rng.randn(b, t, hidden).astype(np.float32) for _ in range(num_layers + 1)],
        "attention_scores": [rng.randn(b, heads, t, t).astype(np.float32) for _ in range(num_layers)],
    }


def test_distillation_loss_intermediate_matches_hand_computation():
    rng = np.random.RandomState(1)
    student, teacher = _outputs(2, 3, 2, rng), _outputs(4, 5, 2, rng)
    mask = np.array([[1, 1, 1], [1, 1, 0]], np.float32)
    loss = d.DistillationLoss(3, 5, 2, 4, stage="intermediate", attention_weight=0.5)
    assert loss.fit_dense is not None and loss.fit_dense.name == "fit_dense"
    out = loss.compute(student, teacher, mask)
    w, bias = loss.fit_dense.kernel.numpy(), loss.fit_dense.bias.numpy()
    proj = [h @ w + bias for h in student["hidden_states"]]
    th = teacher["hidden_states"]
    assert float(out["embedding_loss"]) == pytest.approx(((proj[0] - th[0]) ** 2).mean(), rel=1e-5)
    expect_hidden = ((proj[1] - th[2]) ** 2).mean() + ((proj[2] - th[4]) ** 2).mean()
    assert float(out["hidden_loss"]) == pytest.approx(expect_hidden, rel=1e-5)
    keep = mask[:, None, None, :]
    sa, ta = student["attention_scores"], teacher["attention_scores"]
    expect_att = ((sa[0] * keep - ta[1] * keep) ** 2).mean() + ((sa[1] * keep - ta[3] * keep) ** 2).mean()
    assert float(out["attention_loss"]) == pytest.approx(expect_att, rel=1e-5)
    assert "prediction_loss" not in out
    total = float(out["embedding_loss"]) + float(out["hidden_loss"]) + 0.5 * expect_att
    assert float(out["total_loss"]) == pytest.approx(total, rel=1e-5)
    # gradients reach the projection, not the teacher
    th_t = [tf.constant(h) for h in th]
    with tf.GradientTape() as tape:
        tape.watch(th_t)
        o = loss.compute(student, dict(teacher, hidden_states=th_t), mask)["total_loss"]
    grads = tape.gradient(o, [loss.fit_dense.kernel] + th_t)
    assert grads[0] is not None and all(g is None for g in grads[1:])


def test_distillation_loss_prediction_and_both_stages():
    rng = np.random.RandomState(2)
    s_logits, t_logits = rng.randn(2, 3).astype(np.float32), rng.randn(2, 3).astype(np.float32)
    labels = np.array([2, 0])
    loss = d.DistillationLoss(4, 4, 2, 5, stage="prediction", temperature=2.0, hard_label_weight=0.3)
    assert loss.fit_dense is None  # equal widths, and a 5-layer teacher is fine for the prediction stage
    out = loss.compute(student_logits=s_logits, teacher_logits=t_logits, labels=labels)
    soft = -(_softmax(t_logits / 2) * np.log(_softmax(s_logits / 2))).sum(-1).mean()
    hard = -np.log(_softmax(s_logits)[np.arange(2), labels]).mean()
    assert set(out) == {"prediction_loss", "hard_label_loss", "total_loss"}
    assert float(out["total_loss"]) == pytest.approx(soft + 0.3 * hard, rel=1e-5)

    student, teacher = _outputs(1, 4, 2, rng), _outputs(3, 4, 2, rng)
    both = d.DistillationLoss(4, 4, 1, 3, stage="both", layer_mapping="0:1", attention_loss="kl")
    out = both.compute(student, teacher, np.ones([2, 3], np.float32), s_logits, t_logits)
    assert set(out) == {"embedding_loss", "hidden_loss", "attention_loss", "prediction_loss", "total_loss"}
    expect_hidden = ((student["hidden_states"][1] - teacher["hidden_states"][2]) ** 2).mean()
    assert float(out["hidden_loss"]) == pytest.approx(expect_hidden, rel=1e-5)
    with pytest.raises(UserError, match="--distill_stage"):
        d.DistillationLoss(4, 4, 1, 3, stage="everything")


def test_external_fit_dense_is_used():
    import keras
    rng = np.random.RandomState(3)
    student, teacher = _outputs(1, 3, 2, rng), _outputs(2, 5, 2, rng)
    proj = keras.layers.Dense(5, use_bias=False, name="fit_dense")
    proj.build((None, None, 3))
    loss = d.DistillationLoss(3, 5, 1, 2, fit_dense=proj, attention_loss="none")
    assert loss.fit_dense is proj
    out = loss.compute(student, teacher, np.ones([2, 3], np.float32))
    assert "attention_loss" not in out
    w = proj.kernel.numpy()
    expect = ((student["hidden_states"][0] @ w - teacher["hidden_states"][0]) ** 2).mean()
    assert float(out["embedding_loss"]) == pytest.approx(expect, rel=1e-5)


def test_masked_hidden_padding_and_mapping_objects():
    rng = np.random.RandomState(4)
    student, teacher = _outputs(1, 4, 2, rng), _outputs(2, 4, 2, rng)
    mask = np.array([[1, 1, 0], [1, 0, 0]], np.float32)
    mapping = d.parse_layer_mapping("0:0", 1, 2)
    loss = d.DistillationLoss(4, 4, 1, 2, layer_mapping=mapping, mask_hidden_padding=True, attention_loss="none")
    assert loss.fit_dense is None
    out = loss.compute(student, teacher, mask)
    s, t = student["hidden_states"], teacher["hidden_states"]
    m = mask[:, :, None]
    assert float(out["hidden_loss"]) == pytest.approx((((s[1] - t[1]) ** 2) * m).sum() / (m.sum() * 4), rel=1e-5)
    assert float(out["embedding_loss"]) == pytest.approx((((s[0] - t[0]) ** 2) * m).sum() / (m.sum() * 4), rel=1e-5)
    with pytest.raises(UserError, match="--layer_mapping: mapping .* does not fit"):
        d.DistillationLoss(4, 4, 2, 2, layer_mapping=mapping)
    with pytest.raises(UserError, match="--attention_loss"):
        d.DistillationLoss(4, 4, 1, 2, attention_loss="l1")
