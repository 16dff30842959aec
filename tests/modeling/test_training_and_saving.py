"""Forward + backward under float32 / mixed_float16 / mixed_bfloat16, layer-by-layer API, saving and reloading."""
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import modeling
from modeling import ModelConfig

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = ["tiny_bert", "tiny_albert", "tiny_mobilebert"]


def _config(name):
    return ModelConfig.from_json_file(os.path.join(ROOT, "configs", name + ".json"))


def _features(vocab, b=4, t=16, p=3, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, vocab, size=(b, t)).astype(np.int32)
    mask = np.ones((b, t), np.int32)
    mask[1, 9:] = 0
    mask[3, 4:] = 0
    seg = np.zeros((b, t), np.int32)
    seg[:, t // 2:] = 1
    return {"input_ids": ids * mask, "input_mask": mask, "segment_ids": seg * mask,
            "masked_lm_positions": np.array([[1, 2, 3]] * b, np.int32)[:, :p],
            "masked_lm_ids": rng.integers(5, vocab, size=(b, p)).astype(np.int32),
            "next_sentence_labels": rng.integers(0, 2, size=(b,)).astype(np.int32)}


@pytest.fixture
def policy():
    old = keras.mixed_precision.dtype_policy()

    def set_policy(name):
        keras.mixed_precision.set_dtype_policy(name)
    yield set_policy
    keras.mixed_precision.set_dtype_policy(old)


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("dtype_policy", ["float32", "mixed_float16", "mixed_bfloat16"])
def test_pretraining_forward_backward(name, dtype_policy, policy):
    policy(dtype_policy)
    config = _config(name)
    model = modeling.build_pretraining_model(config)
    feats = _features(config.vocab_size)
    with tf.GradientTape() as tape:
        out = model(feats, training=True)
        assert out["mlm_logits"].dtype == tf.float32 and out["nsp_logits"].dtype == tf.float32
        assert out["mlm_logits"].shape == (4, 3, config.vocab_size)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
            feats["masked_lm_ids"], out["mlm_logits"], from_logits=True)) + tf.reduce_mean(
            keras.losses.sparse_categorical_crossentropy(feats["next_sentence_labels"], out["nsp_logits"],
                                                         from_logits=True))
    grads = tape.gradient(loss, model.trainable_variables)
    assert np.isfinite(loss.numpy())
    assert all(v.dtype == tf.float32 for v in model.trainable_variables)
    names = [v.path for v, g in zip(model.trainable_variables, grads) if g is None]
    assert not names, f"no gradient for {names}"
    for v, g in zip(model.trainable_variables, grads):
        g = tf.convert_to_tensor(g)
        assert np.all(np.isfinite(g.numpy())), v.path
    emb_grad = grads[[id(v) for v in model.trainable_variables].index(id(model.encoder.word_embeddings))]
    assert emb_grad is not None  # tied output embedding receives gradient
    enc_out = model.encoder(feats)
    expected = {"float32": tf.float32, "mixed_float16": tf.float16, "mixed_bfloat16": tf.bfloat16}[dtype_policy]
    assert enc_out["sequence_output"].dtype == expected


@pytest.mark.parametrize("name", TINY)
def test_layer_by_layer_equals_call(name):
    config = _config(name)
    enc = modeling.build_encoder(config)
    feats = _features(config.vocab_size)
    out = enc(feats, output_hidden_states=True, output_attentions=True)
    h, bias = enc.embed(feats, training=False)
    assert bias.shape == (4, 1, 1, 16) and bias.dtype == tf.float32
    np.testing.assert_allclose(h.numpy(), out["hidden_states"][0].numpy(), atol=1e-6)
    for i in range(enc.num_layers):
        h, scores = enc.run_layer(i, h, bias, training=False)
        np.testing.assert_allclose(h.numpy(), out["hidden_states"][i + 1].numpy(), atol=1e-6)
        np.testing.assert_allclose(scores.numpy(), out["attention_scores"][i].numpy(), atol=1e-6)
    np.testing.assert_allclose(enc.pool(h).numpy(), out["pooled_output"].numpy(), atol=1e-6)
    assert len(out["hidden_states"]) == config.num_hidden_layers + 1
    assert out["attention_scores"][0].shape == (4, config.num_attention_heads, 16, 16)
    # padding really is masked: changing padded tokens does not change real positions
    feats2 = dict(feats, input_ids=np.where(feats["input_mask"] == 1, feats["input_ids"], 7))
    out2 = enc(feats2)
    m = feats["input_mask"].astype(bool)
    if getattr(config, "trigram_input", False):  # MobileBERT's trigram input lets the last real token see the next one
        m = m & np.concatenate([m[:, 1:], np.ones_like(m[:, :1])], axis=1)
    np.testing.assert_allclose(out2["sequence_output"].numpy()[m], out["sequence_output"].numpy()[m], atol=1e-5)
    assert enc.word_embeddings.shape == (config.vocab_size, config.embedding_dim)


@pytest.mark.parametrize("name", TINY)
def test_checkpoint_roundtrip_is_complete(name, tmp_path):
    config = _config(name)
    model = modeling.build_pretraining_model(config)
    feats = _features(config.vocab_size)
    ref = model(feats)
    path = tf.train.Checkpoint(encoder=model.encoder, mlm_head=model.mlm_head, nsp_head=model.nsp_head).write(
        str(tmp_path / "ckpt"))
    saved = {n for n, _ in tf.train.list_variables(path)}
    n_vars = len([n for n in saved if n.endswith("VARIABLE_VALUE") and "save_counter" not in n])
    assert n_vars == len(model.weights), (n_vars, len(model.weights))
    other = modeling.build_pretraining_model(config)
    tf.train.Checkpoint(encoder=other.encoder, mlm_head=other.mlm_head, nsp_head=other.nsp_head).read(
        path).assert_consumed()
    out = other(feats)
    np.testing.assert_allclose(out["mlm_logits"].numpy(), ref["mlm_logits"].numpy(), atol=1e-5)
    np.testing.assert_allclose(out["nsp_logits"].numpy(), ref["nsp_logits"].numpy(), atol=1e-5)


@pytest.mark.parametrize("name", TINY)
def test_keras_file_roundtrip(name, tmp_path):
    config = _config(name)
    clf = modeling.build_classifier(config, num_labels=3)
    feats = _features(config.vocab_size)
    ref = clf(feats)
    path = str(tmp_path / "clf.keras")
    clf.save(path)
    back = keras.models.load_model(path)
    assert back.config == config and back.num_labels == 3
    np.testing.assert_allclose(back(feats).numpy(), ref.numpy(), atol=1e-5)
    enc_path = str(tmp_path / "enc.keras")
    clf.encoder.save(enc_path)
    enc = keras.models.load_model(enc_path)
    np.testing.assert_allclose(enc(feats)["pooled_output"].numpy(), clf.encoder(feats)["pooled_output"].numpy(),
                               atol=1e-5)


def test_classifier_regression_and_fit_dense():
    config = _config("tiny_bert")
    reg = modeling.build_classifier(config, num_labels=1)
    out = reg(_features(config.vocab_size))
    assert out.shape == (4, 1) and out.dtype == tf.float32
    fit = modeling.build_fit_dense(config, 768)
    h = reg.encoder(_features(config.vocab_size), output_hidden_states=True)["hidden_states"]
    assert fit(h[-1]).shape == (4, 16, 768)
    assert sum(int(np.prod(v.shape)) for v in fit.trainable_weights) == 64 * 768 + 768


def test_albert_layers_are_shared():
    config = _config("tiny_albert").replace(num_hidden_layers=4, num_hidden_groups=2)
    enc = modeling.build_encoder(config)
    assert [enc.group_index(i) for i in range(4)] == [0, 0, 1, 1]
    single = modeling.count_params_from_specs(config.replace(num_hidden_groups=1))
    assert enc.count_params_from_specs() > single
    assert modeling.count_params_from_specs(config.replace(num_hidden_layers=8)) == enc.count_params_from_specs()
