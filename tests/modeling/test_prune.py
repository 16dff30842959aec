"""modeling/prune.py: cutting a student from its teacher's weights."""
import re

import numpy as np
import pytest
import tensorflow as tf

from bertkit_errors import UserError
from modeling import ModelConfig, build_encoder
from modeling import prune

BASE = dict(model_type="bert", vocab_size=100, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
            intermediate_size=64, hidden_act="gelu", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
            max_position_embeddings=64, type_vocab_size=2, initializer_range=0.2, layer_norm_eps=1e-12)


def _config(**kw):
    return ModelConfig.from_dict(dict(BASE, **kw))


def _inputs(b=3, t=10):
    rng = np.random.default_rng(0)
    mask = np.ones((b, t), np.int32)
    mask[0, 7:] = 0
    return {"input_ids": tf.constant(rng.integers(1, 100, (b, t)), tf.int32), "input_mask": tf.constant(mask),
            "segment_ids": tf.zeros((b, t), tf.int32)}


def _randomise(encoder, seed=1):
    rng = np.random.default_rng(seed)
    for v in encoder.weights:
        v.assign(rng.normal(0, 0.3, v.shape).astype(np.float32) + (1.0 if "gamma" in v.path else 0.0))


def test_same_shape_and_all_layers_is_the_teacher():
    teacher = build_encoder(_config())
    _randomise(teacher)
    student = build_encoder(_config())
    inputs = _inputs()
    prune.prune_into(teacher, student, [0, 1, 2], prune.residual_importance(teacher, inputs))
    np.testing.assert_allclose(student(inputs)["sequence_output"], teacher(inputs)["sequence_output"], atol=1e-5)


def test_dropping_layers_only_is_layer_dropping():
    """Full width, layers 0 and 2: the student computes embeddings -> teacher layer 0 -> teacher layer 2."""
    teacher = build_encoder(_config())
    _randomise(teacher)
    student = build_encoder(_config(num_hidden_layers=2))
    inputs = _inputs()
    prune.prune_into(teacher, student, [0, 2], prune.residual_importance(teacher, inputs))
    h, bias = teacher.embed(inputs)
    for i in (0, 2):
        h, _ = teacher.run_layer(i, h, bias)
    np.testing.assert_allclose(student(inputs)["sequence_output"], h, atol=1e-5)


def test_narrower_student_takes_the_chosen_dimensions():
    teacher = build_encoder(_config())
    _randomise(teacher)
    student = build_encoder(_config(hidden_size=16, intermediate_size=40, num_hidden_layers=2))
    importance = np.arange(32, dtype=np.float64)[::-1]  # the first 16 dimensions are the most important
    hid = prune.prune_into(teacher, student, [1, 2], importance)
    np.testing.assert_array_equal(hid, np.arange(16))
    np.testing.assert_array_equal(student.embeddings.word_embeddings.numpy(),
                                  teacher.embeddings.word_embeddings.numpy()[:, :16])
    np.testing.assert_array_equal(student._block_list[0].output_norm.gamma.numpy(),
                                  teacher._block_list[1].output_norm.gamma.numpy()[:16])
    # every student head keeps 4 of the teacher's 8 query dimensions, scaled by sqrt(4/8); keys unscaled
    tq = teacher._block_list[1].attention.qkv_kernel.numpy()[:16]
    sq = student._block_list[0].attention.qkv_kernel.numpy()
    for head in range(4):
        cols = sq[:, head * 4:(head + 1) * 4] / np.sqrt(0.5)
        for c in cols.T:
            assert any(np.allclose(c, t) for t in tq[:, head * 8:(head + 1) * 8].T)
    out = student(_inputs())["sequence_output"]
    assert out.shape == (3, 10, 16) and np.isfinite(out.numpy()).all()


@pytest.mark.parametrize("kw, layers, message", [
    (dict(hidden_size=48), [0, 1, 2], "hidden_size (48) is larger"),
    (dict(num_attention_heads=2), [0, 1, 2], "num_attention_heads (2) differs"),
    (dict(vocab_size=90), [0, 1, 2], "vocab_size (90) differs"),
    (dict(num_hidden_layers=2), [0, 3], "do not fit"),
    (dict(num_hidden_layers=2), [0], "do not fit"),
])
def test_refuses_students_that_cannot_be_cut(kw, layers, message):
    with pytest.raises(UserError, match=re.escape(message)):
        prune.check_prunable(_config(), _config(**kw), layers)
