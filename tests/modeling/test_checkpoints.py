"""modeling.checkpoints: TF1 (original Google names, written with tf.compat.v1), HuggingFace, keras-hub and bertkit
checkpoints, checked numerically against the reference implementations (transformers on CPU torch, keras-hub)."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import bertkit_errors  # noqa: E402
from modeling import ModelConfig, build_encoder, checkpoints, model_dirs  # noqa: E402
from modeling.heads import MaskedLMHead, SentencePairHead  # noqa: E402
from training import classifier  # noqa: E402

from tests.modeling.references import B, T, V  # noqa: E402
from tests.modeling.references import parity_inputs as _inputs  # noqa: E402
from tests.modeling.references import write_tf1_checkpoint as _write_tf1  # noqa: E402

SMALL = dict(vocab_size=V, hidden_size=48, num_hidden_layers=2, num_attention_heads=4, intermediate_size=80,
             max_position_embeddings=32, type_vocab_size=2, hidden_dropout_prob=0.1,
             attention_probs_dropout_prob=0.1)
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(V - 5)]


def _randomise(model, seed=1, scale=0.2):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("LayerNorm.weight") or name.endswith("layer_norm.weight"):
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
            else:
                p.copy_(scale * torch.randn(p.shape, generator=g))
    return model.eval()


def _feats():
    ids, mask, seg = _inputs()
    return {"input_ids": ids, "input_mask": mask, "segment_ids": seg}


def _hf_outputs(model, base):
    ids, mask, seg = (torch.tensor(a) for a in _inputs())
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask, token_type_ids=seg)
        out = base(input_ids=ids, attention_mask=mask, token_type_ids=seg)
    return out.last_hidden_state.numpy(), out.pooler_output.numpy(), full


def _bert_tf1_names(state):
    """HF BertForPreTraining state dict -> original BERT TF1 names and layout (kernels [in, out])."""
    out = {}
    for k, v in state.items():
        v = v.numpy()
        if k.endswith("position_ids") or k.startswith("cls.predictions.decoder"):
            continue  # decoder: tied to the word embeddings, its bias == cls.predictions.bias
        name = k.replace("layer.", "layer_").replace(".", "/")
        name = name.replace("LayerNorm/weight", "LayerNorm/gamma").replace("LayerNorm/bias", "LayerNorm/beta")
        if name.endswith("_embeddings/weight"):
            name = name[: -len("/weight")]
        elif name == "cls/predictions/bias":
            name = "cls/predictions/output_bias"
        elif name.startswith("cls/seq_relationship/"):
            name = "cls/seq_relationship/output_" + ("weights" if name.endswith("weight") else "bias")  # [2, H]
        elif name.endswith("/weight"):
            name, v = name[: -len("weight")] + "kernel", v.T
        out[name] = np.ascontiguousarray(v)
    return out


_ALBERT_RENAMES = [  # HF AlbertForPreTraining key fragment -> original ALBERT TF1 name fragment (first match wins)
    ("albert.encoder.albert_layer_groups.", "bert/encoder/transformer/group_"), (".albert_layers.", "/inner_group_"),
    ("attention.query", "attention_1/self/query"), ("attention.key", "attention_1/self/key"),
    ("attention.value", "attention_1/self/value"), ("attention.dense", "attention_1/output/dense"),
    ("attention.LayerNorm", "LayerNorm"), ("ffn_output", "ffn_1/intermediate/output/dense"),
    ("ffn.", "ffn_1/intermediate/dense."), ("full_layer_layer_norm", "LayerNorm_1"),
    ("albert.pooler.", "bert/pooler/dense."), ("albert.", "bert/"),
    ("predictions.dense", "cls/predictions/transform/dense"),
    ("predictions.LayerNorm", "cls/predictions/transform/LayerNorm"),
    ("sop_classifier.classifier", "cls/seq_relationship"),
]


def _albert_tf1_names(state):
    out = {}
    for k, v in state.items():
        v = v.numpy()
        if k.endswith("position_ids") or k.startswith("predictions.decoder"):
            continue
        name = k
        if name == "predictions.bias":
            name = "cls/predictions/output_bias"
        for a, b in _ALBERT_RENAMES:
            name = name.replace(a, b)
        name = name.replace(".", "/")
        name = name.replace("LayerNorm/weight", "LayerNorm/gamma").replace("LayerNorm/bias", "LayerNorm/beta")
        name = name.replace("LayerNorm_1/weight", "LayerNorm_1/gamma").replace("LayerNorm_1/bias", "LayerNorm_1/beta")
        if name.endswith("_embeddings/weight"):
            name = name[: -len("/weight")]
        elif name.startswith("cls/seq_relationship/"):
            name = "cls/seq_relationship/output_" + ("weights" if name.endswith("weight") else "bias")
        elif name.endswith("/weight"):
            name, v = name[: -len("weight")] + "kernel", v.T
        out[name] = np.ascontiguousarray(v)
    return out


@pytest.fixture(scope="module")
def tf1_bert(tmp_path_factory):
    torch.manual_seed(0)
    model = _randomise(transformers.BertForPreTraining(transformers.BertConfig(**SMALL)))
    d = tmp_path_factory.mktemp("tf1") / "uncased_L-2_H-48_A-4"
    d.mkdir()
    tensors = _bert_tf1_names(model.state_dict())
    assert "bert/encoder/layer_1/attention/self/query/kernel" in tensors
    assert tensors["cls/seq_relationship/output_weights"].shape == (2, 48)
    _write_tf1(tensors, str(d / "bert_model.ckpt"))
    with open(d / "bert_config.json", "w") as f:  # the original file: no model_type
        json.dump({k: v for k, v in SMALL.items()} | {"hidden_act": "gelu", "initializer_range": 0.02}, f)
    (d / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    seq, pooled, full = _hf_outputs(model, model.bert)
    return dict(dir=str(d), prefix=str(d / "bert_model.ckpt"), seq=seq, pooled=pooled,
                mlm=full.prediction_logits.numpy(), nsp=full.seq_relationship_logits.numpy(), model=model)


@pytest.fixture(scope="module")
def tf1_albert(tmp_path_factory):
    torch.manual_seed(0)
    cfg = dict(SMALL, embedding_size=24, num_hidden_layers=4, num_hidden_groups=2, inner_group_num=2,
               hidden_act="gelu_new", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = _randomise(transformers.AlbertForPreTraining(transformers.AlbertConfig(**cfg)))
    d = tmp_path_factory.mktemp("tf1_albert") / "albert_tiny"
    d.mkdir()
    tensors = _albert_tf1_names(model.state_dict())
    for name in ("bert/encoder/transformer/group_1/inner_group_1/attention_1/self/value/kernel",
                 "bert/encoder/transformer/group_0/inner_group_0/ffn_1/intermediate/output/dense/kernel",
                 "bert/encoder/transformer/group_0/inner_group_1/LayerNorm_1/gamma",
                 "bert/encoder/embedding_hidden_mapping_in/kernel", "cls/predictions/transform/LayerNorm/beta"):
        assert name in tensors, sorted(tensors)
    _write_tf1(tensors, str(d / "model.ckpt-100"))
    orig = {k: v for k, v in cfg.items()}
    orig["hidden_act"] = "gelu"  # the ALBERT repo's gelu is the tanh approximation (HF gelu_new)
    with open(d / "albert_config.json", "w") as f:
        json.dump(orig, f)
    seq, pooled, full = _hf_outputs(model, model.albert)
    return dict(dir=str(d), prefix=str(d / "model.ckpt-100"), seq=seq, pooled=pooled,
                mlm=full.prediction_logits.numpy(), sop=full.sop_logits.numpy())


def _check_encoder(encoder, ref):
    out = encoder(_feats(), training=False)
    np.testing.assert_allclose(out["sequence_output"].numpy(), ref["seq"], atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(out["pooled_output"].numpy(), ref["pooled"], atol=1e-4, rtol=1e-4)
    return out


def _check_mlm(head, out, ref_logits):
    positions = np.tile(np.arange(T), (B, 1))
    mlm = head(out["sequence_output"], positions).numpy()
    np.testing.assert_allclose(mlm, ref_logits, atol=1e-4 * max(1.0, np.abs(mlm).max()), rtol=1e-4)


def test_tf1_bert_parity(tf1_bert):
    assert checkpoints.detect_format(tf1_bert["prefix"]) == "tf1"
    assert checkpoints.detect_format(tf1_bert["dir"]) == "tf1"  # the downloaded folder itself
    b = checkpoints.load_checkpoint(tf1_bert["dir"])
    assert b.format == "tf1" and b.config.model_type == "bert"
    assert b.vocab_file == os.path.join(tf1_bert["dir"], "vocab.txt") and b.do_lower_case is True
    out = _check_encoder(b.encoder, tf1_bert)
    _check_mlm(b.mlm_head, out, tf1_bert["mlm"])
    np.testing.assert_allclose(b.nsp_head(out["pooled_output"]).numpy(), tf1_bert["nsp"], atol=1e-4)
    enc = checkpoints.load_encoder(tf1_bert["prefix"] + ".index")  # any file of the checkpoint names it
    _check_encoder(enc, tf1_bert)


def test_tf1_albert_parity(tf1_albert, tmp_path):
    assert checkpoints.detect_format(tf1_albert["dir"]) == "tf1"
    b = checkpoints.load_checkpoint(tf1_albert["prefix"])
    assert b.config.model_type == "albert" and b.config.hidden_act == "gelu_new"
    assert b.config.num_hidden_groups == 2 and b.config.inner_group_num == 2
    out = _check_encoder(b.encoder, tf1_albert)
    _check_mlm(b.mlm_head, out, tf1_albert["mlm"])
    np.testing.assert_allclose(b.nsp_head(out["pooled_output"]).numpy(), tf1_albert["sop"], atol=1e-4)
    assert b.do_lower_case is None and b.vocab_file is None
    # ALBERT's shared blocks through a bertkit directory (every variable found by the object-graph walk)
    out_dir = str(tmp_path / "albert_bertkit")
    checkpoints.save_bertkit_checkpoint(out_dir, b.config, b.encoder, b.mlm_head, b.nsp_head)
    assert not os.path.exists(os.path.join(out_dir, "vocab.txt"))
    b2 = checkpoints.load_checkpoint(out_dir)
    out2 = b2.encoder(_feats())
    np.testing.assert_array_equal(out2["sequence_output"].numpy(), out["sequence_output"].numpy())
    np.testing.assert_array_equal(b2.nsp_head(out2["pooled_output"]).numpy(), b.nsp_head(out["pooled_output"]).numpy())


def test_init_from_tf1_and_hf_into_existing_layers(tf1_bert, tmp_path):
    config = ModelConfig.from_json_file(os.path.join(tf1_bert["dir"], "bert_config.json"))
    enc = build_encoder(config)
    mlm, nsp = MaskedLMHead(config, enc), SentencePairHead()
    mlm.build()
    nsp.build((None, config.hidden_size))
    what = checkpoints.init_from_checkpoint(enc, tf1_bert["prefix"], mlm_head=mlm, nsp_head=nsp)
    assert "mlm_head" in what and "nsp_head" in what and "TF1" in what
    out = _check_encoder(enc, tf1_bert)
    _check_mlm(mlm, out, tf1_bert["mlm"])
    # the same weights as a HuggingFace directory
    hf_dir = str(tmp_path / "hf")
    tf1_bert["model"].save_pretrained(hf_dir, safe_serialization=True)
    assert checkpoints.detect_format(hf_dir) == "hf"
    enc2 = build_encoder(config)
    assert checkpoints.init_from_checkpoint(enc2, hf_dir).startswith("encoder from HuggingFace")
    _check_encoder(enc2, tf1_bert)


def test_tf1_errors(tf1_bert, tmp_path):
    config = ModelConfig.from_json_file(os.path.join(tf1_bert["dir"], "bert_config.json"))
    wrong = build_encoder(config.replace(intermediate_size=64))
    with pytest.raises(bertkit_errors.UserError, match=r"^--init_checkpoint=.*: variable bert/encoder/layer_0/"
                       r"intermediate/dense/kernel has shape \[48, 64\] in the model but \[48, 80\] in the checkpoint"):
        checkpoints.init_from_checkpoint(wrong, tf1_bert["prefix"])
    deeper = build_encoder(config.replace(num_hidden_layers=3))
    with pytest.raises(bertkit_errors.UserError, match=r"variable bert/encoder/layer_2/attention/self/query/kernel "
                       r"\(shape \[48, 48\]\) is missing from the checkpoint"):
        checkpoints.init_from_checkpoint(deeper, tf1_bert["prefix"])
    albert = build_encoder(ModelConfig.from_json_file("configs/tiny_albert.json"))
    with pytest.raises(bertkit_errors.UserError, match="model_type is 'albert' in the model config but 'bert' in the "
                       "checkpoint's config"):
        checkpoints.init_from_checkpoint(albert, tf1_bert["prefix"])
    # a TF1 checkpoint without its config beside it
    lone = tmp_path / "lone"
    lone.mkdir()
    for suffix in (".index", ".data-00000-of-00001"):
        with open(tf1_bert["prefix"] + suffix, "rb") as fin:
            (lone / ("bert_model.ckpt" + suffix)).write_bytes(fin.read())
    with pytest.raises(bertkit_errors.UserError,
                       match=r"no bert_config.json .* beside the checkpoint.*--bert_config_file"):
        checkpoints.load_encoder(str(lone))
    with pytest.raises(bertkit_errors.UserError,
                       match="variables are those of a 'bert' model but the config says model_type 'albert'"):
        checkpoints.init_from_checkpoint(albert, str(lone))  # no config beside it: the variable names tell
    enc = checkpoints.load_encoder(str(lone / "bert_model.ckpt"),
                                   config=os.path.join(tf1_bert["dir"], "bert_config.json"))
    _check_encoder(enc, tf1_bert)


def test_path_errors(tmp_path):
    with pytest.raises(bertkit_errors.UserError, match=r"^--init_checkpoint=.*nope: no such file or directory$"):
        checkpoints.detect_format(str(tmp_path / "nope"), flag="init_checkpoint")
    with pytest.raises(bertkit_errors.UserError, match="no such file or directory"):
        checkpoints.load_encoder(str(tmp_path / "nope"))
    (tmp_path / "notes.txt").write_text("hello\n")
    with pytest.raises(bertkit_errors.UserError, match="no checkpoint recognised in this directory"):
        checkpoints.detect_format(str(tmp_path))
    with pytest.raises(bertkit_errors.UserError, match="not a checkpoint"):
        checkpoints.detect_format(str(tmp_path / "notes.txt"))
    # a checkpoint of something else entirely
    v = tf.Variable(np.zeros((2, 3), np.float32))
    prefix = tf.train.Checkpoint(thing=v).write(str(tmp_path / "other"))
    with pytest.raises(bertkit_errors.UserError, match="neither a bertkit checkpoint .* nor an original BERT"):
        checkpoints.detect_format(prefix)


def test_bertkit_round_trip_and_errors(tf1_bert, tmp_path):
    b = checkpoints.load_checkpoint(tf1_bert["prefix"])
    out_dir = str(tmp_path / "model")
    prefix = checkpoints.save_bertkit_checkpoint(out_dir, b.config, b.encoder, b.mlm_head, b.nsp_head,
                                                 vocab_file=b.vocab_file, do_lower_case=True)
    assert prefix == os.path.join(out_dir, "ckpt-0")
    assert tf.train.latest_checkpoint(out_dir) == prefix
    assert set(os.listdir(out_dir)) >= {"checkpoint", "bert_config.json", "vocab.txt", "bertkit.json",
                                        "ckpt-0.index"}
    assert not [n for n in os.listdir(out_dir) if ".tmp-" in n]
    for path in (out_dir, prefix):
        assert checkpoints.detect_format(path) == "bertkit"
    ref = b.encoder(_feats())
    enc = checkpoints.load_encoder(out_dir)
    out = enc(_feats())
    for k in ("sequence_output", "pooled_output"):
        np.testing.assert_array_equal(out[k].numpy(), ref[k].numpy())
    b2 = checkpoints.load_checkpoint(prefix)
    assert b2.format == "bertkit" and b2.do_lower_case is True and b2.config == b.config
    assert b2.vocab_file == os.path.join(out_dir, "vocab.txt")
    pos = np.array([[1, 2], [0, 6], [2, 1]])
    np.testing.assert_array_equal(b2.mlm_head(b2.encoder(_feats())["sequence_output"], pos).numpy(),
                                  b.mlm_head(ref["sequence_output"], pos).numpy())
    assert checkpoints.load_checkpoint(out_dir, with_heads=False).mlm_head is None
    # init into an existing encoder; heads only when asked
    enc2 = build_encoder(b.config)
    assert checkpoints.init_from_checkpoint(enc2, out_dir).startswith("encoder from bertkit")
    np.testing.assert_array_equal(enc2(_feats())["sequence_output"].numpy(), ref["sequence_output"].numpy())
    # config mismatch: the variable, both shapes
    wrong = build_encoder(b.config.replace(hidden_size=32, intermediate_size=64))
    with pytest.raises(bertkit_errors.UserError, match=r"^--init_checkpoint=.*: variable \S+ has shape \[\d+(, \d+)*\] "
                       r"in the model but \[\d+(, \d+)*\] in the checkpoint$"):
        checkpoints.init_from_checkpoint(wrong, out_dir)
    wrong = build_encoder(b.config.replace(intermediate_size=64))
    with pytest.raises(bertkit_errors.UserError, match=r"variable layer_0/intermediate/kernel has shape \[48, 64\] in "
                       r"the model but \[48, 80\] in the checkpoint"):
        checkpoints.init_from_checkpoint(wrong, prefix)
    deeper = build_encoder(b.config.replace(num_hidden_layers=3))
    with pytest.raises(bertkit_errors.UserError, match=r"variable layer_2/\S+ \(shape \[\d+.*\]\) is missing from the "
                       "checkpoint"):
        checkpoints.init_from_checkpoint(deeper, out_dir)


def test_trainer_restore_delegates_to_checkpoints(tf1_bert):
    from training import checkpointing
    config = ModelConfig.from_json_file(os.path.join(tf1_bert["dir"], "bert_config.json"))
    enc = build_encoder(config)
    assert checkpointing.restore_encoder_weights(enc, tf1_bert["dir"]) == tf1_bert["dir"]
    _check_encoder(enc, tf1_bert)
    wrong = build_encoder(config.replace(intermediate_size=64))
    with pytest.raises(bertkit_errors.UserError, match=r"--init_checkpoint=.*intermediate/dense/kernel has shape"):
        checkpointing.restore_encoder_weights(wrong, tf1_bert["prefix"])


def test_keras_hub_preset(tmp_path):
    keras_hub = pytest.importorskip("keras_hub")
    backbone = keras_hub.models.BertBackbone(vocabulary_size=V, num_layers=2, num_heads=4, hidden_dim=48,
                                             intermediate_dim=80, max_sequence_length=32, num_segments=2, dropout=0.1)
    rng = np.random.default_rng(3)
    for w in backbone.weights:  # random everything, LayerNorms included, so that a wrong mapping cannot hide
        base = 1.0 if w.path.endswith("gamma") else 0.0
        w.assign(base + 0.2 * rng.standard_normal(tuple(w.shape)).astype("float32"))
    preset = str(tmp_path / "bert_tiny_preset")
    backbone.save_to_preset(preset)
    keras_hub.models.BertTokenizer(vocabulary=VOCAB, lowercase=True).save_to_preset(preset)
    assert checkpoints.detect_format(preset) == "keras_hub"
    ids, mask, seg = _inputs()
    ref = keras_hub.models.BertBackbone.from_preset(preset)(
        {"token_ids": ids.astype("int32"), "padding_mask": mask.astype("int32"), "segment_ids": seg.astype("int32")})
    ref = {"seq": np.asarray(ref["sequence_output"]), "pooled": np.asarray(ref["pooled_output"])}
    b = checkpoints.load_checkpoint(preset)
    assert b.format == "keras_hub" and b.mlm_head is None and b.nsp_head is None
    assert b.config.hidden_size == 48 and b.config.num_attention_heads == 4 and b.config.max_position_embeddings == 32
    assert b.do_lower_case is True and b.vocab_file.endswith(os.path.join("assets", "tokenizer", "vocabulary.txt"))
    _check_encoder(b.encoder, ref)
    enc = build_encoder(b.config)
    assert "keras-hub" in checkpoints.init_from_checkpoint(enc, preset)
    _check_encoder(enc, ref)
    # a config bertkit would compute differently with (exact GELU; keras-hub's BERT uses the tanh approximation)
    with pytest.raises(bertkit_errors.UserError, match="do not reproduce keras-hub's sequence_output"):
        checkpoints.load_checkpoint(preset, config=b.config.replace(hidden_act="gelu"))
    with pytest.raises(bertkit_errors.UserError, match="num_attention_heads is 2 in the model config but 4"):
        checkpoints.init_from_checkpoint(build_encoder(b.config.replace(num_attention_heads=2)), preset)


def test_bertkit_checkpoint_with_optimizer_loads(tmp_path):
    """A training checkpoint stores each variable once, under its shortest path: many encoder variables then live
    under optimizer/_trainable_variables/N. The loader finds them through the checkpoint's object graph."""
    import keras

    config = ModelConfig.from_json_file("configs/tiny_bert.json")
    encoder = build_encoder(config)
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(encoder.trainable_variables)
    prefix = tf.train.Checkpoint(optimizer=optimizer, encoder=encoder).save(str(tmp_path / "ckpt"))
    config.to_json_file(str(tmp_path / "bert_config.json"))
    names = [n for n, _ in tf.train.list_variables(prefix)]
    assert any(n.startswith("optimizer/_trainable_variables/") for n in names)  # the layout this test is about
    loaded = checkpoints.load_encoder(str(tmp_path))
    feats = _feats()
    np.testing.assert_array_equal(loaded(feats)["sequence_output"].numpy(), encoder(feats)["sequence_output"].numpy())


def test_model_dir_defaults_of_a_google_directory(tmp_path):
    """An original TF1 directory: bert_config.json, vocab.txt and, as the original repository reads it, the case
    from the directory name (the defaults every script applies to unset flags)."""
    d = tmp_path / "uncased_L-2_H-32_A-2"
    d.mkdir()
    for name in ("bert_config.json", "vocab.txt", "bert_model.ckpt.index"):
        (d / name).write_text("{}")
    expected = {"model_dir": str(d), "bert_config_file": str(d / "bert_config.json"),
                "vocab_file": str(d / "vocab.txt"), "do_lower_case": True}
    assert model_dirs.model_dir_defaults(str(d)) == expected
    assert classifier.model_dir_defaults(str(d / "bert_model.ckpt")) == dict(expected, model_dir=str(d))
    cased = tmp_path / "cased_L-12_H-768_A-12"
    cased.mkdir()
    (cased / "bert_config.json").write_text("{}")
    assert model_dirs.model_dir_defaults(str(cased))["do_lower_case"] is False
