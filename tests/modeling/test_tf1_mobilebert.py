"""Google's TF1 MobileBERT checkpoints (modeling/tf1_import.py): a checkpoint written
with tf.compat.v1 under the original google-research/mobilebert variable names, made from a randomly initialised
HuggingFace MobileBertForPreTraining, loads with the same sequence output, pooled output, MLM and NSP logits as
transformers gives (1e-4); convert_checkpoint.py turns it into a bertkit model directory; a config that does not fit
the checkpoint is a one-line error naming the variable."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import bertkit_errors  # noqa: E402
from modeling import ModelConfig, build_encoder, checkpoints  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.modeling.references import B, T, V  # noqa: E402
from tests.modeling.references import parity_inputs as _inputs  # noqa: E402
from tests.modeling.references import write_tf1_checkpoint as _write_tf1  # noqa: E402

# The layout of uncased_L-24_H-128_B-512_A-4_F-4_OPT, shrunk: bottlenecks with a shared key/query bottleneck,
# trigram input, stacked feed-forward networks, NoNorm, ReLU.
GOOGLE_CONFIG = dict(vocab_size=V, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=40,
                     max_position_embeddings=32, type_vocab_size=2, hidden_act="relu", hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.1, initializer_range=0.02, embedding_size=16, trigram_input=True,
                     use_bottleneck=True, intra_bottleneck_size=32, use_bottleneck_attention=False,
                     key_query_shared_bottleneck=True, num_feedforward_networks=3, normalization_type="no_norm",
                     classifier_activation=True)


def _hf_model(**overrides):
    torch.manual_seed(0)
    model = transformers.MobileBertForPreTraining(transformers.MobileBertConfig(**dict(GOOGLE_CONFIG, **overrides)))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # everything random (NoNorm scales too); small weights: NoNorm does not normalise
        for name, p in model.named_parameters():
            if name.endswith("LayerNorm.weight"):
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
            else:
                p.copy_(0.06 * torch.randn(p.shape, generator=g))
    return model.eval()


def _google_names(state, norm="FakeLayerNorm"):
    """HF MobileBertForPreTraining state dict -> google-research/mobilebert TF1 names and layout (kernels [in, out]),
    written independently of modeling/tf1_import.py (the inverse of transformers' old
    load_tf_weights_in_mobilebert renaming)."""
    out = {}
    for key, v in state.items():
        v = v.numpy()
        if key.endswith(("position_ids", "token_type_ids")) or key.startswith("cls.predictions.decoder"):
            continue  # decoder: tied to the word embeddings, its bias is cls.predictions.bias
        if key == "cls.predictions.bias":
            out["cls/predictions/output_bias"] = v
            continue
        if key == "cls.predictions.dense.weight":  # [H - E, V] -> the original [V, H - E]
            out["cls/predictions/extra_output_weights"] = np.ascontiguousarray(v.T)
            continue
        if key.startswith("cls.seq_relationship."):
            out["cls/seq_relationship/output_" + ("weights" if key.endswith("weight") else "bias")] = v  # [2, H]
            continue
        name = key.replace("mobilebert.", "bert.")
        name = re.sub(r"\.layer\.(\d+)\.", r".layer_\1.", name)
        name = re.sub(r"\.ffn\.(\d+)\.", r".ffn_layer_\1.", name)
        name = name.replace(".", "/")
        if "/LayerNorm/" in name:
            if not name.startswith("cls/predictions/transform/"):  # the MLM transform is a real LayerNorm
                name = name.replace("/LayerNorm/", f"/{norm}/")
            name = name.replace("/weight", "/gamma").replace("/bias", "/beta")
        elif name.endswith("_embeddings/weight"):
            name = name[: -len("/weight")]
        elif name.endswith("/weight"):
            name, v = name[: -len("weight")] + "kernel", v.T
        out[name] = np.ascontiguousarray(v)
    return out


@pytest.fixture(scope="module")
def google_dir(tmp_path_factory):
    model = _hf_model()
    d = tmp_path_factory.mktemp("tf1_mobilebert") / "uncased_L-2_H-32_B-64_A-4_F-3_OPT"
    d.mkdir()
    tensors = _google_names(model.state_dict())
    for name in ("bert/encoder/layer_1/bottleneck/attention/FakeLayerNorm/gamma",
                 "bert/encoder/layer_0/ffn_layer_1/output/dense/kernel",
                 "bert/encoder/layer_1/output/bottleneck/dense/bias", "bert/embeddings/embedding_transformation/kernel",
                 "cls/predictions/transform/LayerNorm/beta"):
        assert name in tensors, sorted(tensors)
    assert tensors["cls/predictions/extra_output_weights"].shape == (V, 64 - 16)
    _write_tf1(tensors, str(d / "mobilebert_variables.ckpt"))
    with open(d / "bert_config.json", "w") as f:  # the original file: no model_type
        json.dump(GOOGLE_CONFIG, f)
    (d / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
                                           + [f"w{i}" for i in range(V - 5)]) + "\n")
    ids, mask, seg = (torch.tensor(a) for a in _inputs())
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask, token_type_ids=seg)
        base = model.mobilebert(input_ids=ids, attention_mask=mask, token_type_ids=seg)
    return dict(dir=str(d), prefix=str(d / "mobilebert_variables.ckpt"), seq=base.last_hidden_state.numpy(),
                pooled=base.pooler_output.numpy(), mlm=full.prediction_logits.numpy(),
                nsp=full.seq_relationship_logits.numpy())


def _feats():
    ids, mask, seg = _inputs()
    return {"input_ids": ids, "input_mask": mask, "segment_ids": seg}


def _check(bundle, ref):
    out = bundle.encoder(_feats(), training=False)
    np.testing.assert_allclose(out["sequence_output"].numpy(), ref["seq"], atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(out["pooled_output"].numpy(), ref["pooled"], atol=1e-4, rtol=1e-4)
    mlm = bundle.mlm_head(out["sequence_output"], np.tile(np.arange(T), (B, 1))).numpy()
    np.testing.assert_allclose(mlm, ref["mlm"], atol=1e-4 * max(1.0, np.abs(mlm).max()), rtol=1e-4)
    np.testing.assert_allclose(bundle.nsp_head(out["pooled_output"]).numpy(), ref["nsp"], atol=1e-4)


def test_tf1_mobilebert_matches_transformers(google_dir):
    assert checkpoints.detect_format(google_dir["dir"]) == "tf1"
    b = checkpoints.load_checkpoint(google_dir["dir"])
    assert b.format == "tf1" and b.config.model_type == "mobilebert" and b.config.true_hidden_size == 32
    assert b.vocab_file == os.path.join(google_dir["dir"], "vocab.txt") and b.do_lower_case is True
    assert b.mlm_head is not None and b.nsp_head is not None
    _check(b, google_dir)
    # the encoder alone, from any file of the checkpoint
    enc = checkpoints.load_encoder(google_dir["prefix"] + ".index")
    out = enc(_feats(), training=False)
    np.testing.assert_allclose(out["sequence_output"].numpy(), google_dir["seq"], atol=1e-4, rtol=1e-4)


def test_tf1_mobilebert_layer_norm_variant(tmp_path):
    # normalization_type layer_norm: the TF1 scopes are "LayerNorm", not "FakeLayerNorm"
    model = _hf_model(normalization_type="layer_norm", classifier_activation=False)
    _write_tf1(_google_names(model.state_dict(), norm="LayerNorm"), str(tmp_path / "model.ckpt-7"))
    cfg = dict(GOOGLE_CONFIG, normalization_type="layer_norm", classifier_activation=False)
    (tmp_path / "bert_config.json").write_text(json.dumps(cfg))
    ids, mask, seg = (torch.tensor(a) for a in _inputs())
    with torch.no_grad():
        seq = model.mobilebert(input_ids=ids, attention_mask=mask, token_type_ids=seg).last_hidden_state.numpy()
    enc = checkpoints.load_encoder(str(tmp_path))
    np.testing.assert_allclose(enc(_feats())["sequence_output"].numpy(), seq, atol=1e-4, rtol=1e-4)


def test_convert_checkpoint_writes_a_bertkit_directory(google_dir, tmp_path):
    out = tmp_path / "converted"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", PYTHONPATH=ROOT)
    r = subprocess.run([sys.executable, os.path.join(ROOT, "convert_checkpoint.py"),
                        f"--input_checkpoint={google_dir['dir']}", f"--output_dir={out}"],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "read tf1 checkpoint" in r.stdout and "mobilebert" in r.stdout
    b = checkpoints.load_checkpoint(str(out))
    assert b.format == "bertkit" and b.config.model_type == "mobilebert"
    _check(b, google_dir)


def test_config_that_does_not_fit_is_one_error(google_dir, tmp_path):
    wrong = ModelConfig.from_dict(dict(GOOGLE_CONFIG, intra_bottleneck_size=16))
    with pytest.raises(bertkit_errors.UserError, match=r"bottleneck/input/dense/kernel has shape \[64, 16\]"):
        checkpoints.load_checkpoint(google_dir["prefix"], config=wrong)
    # a BERT config for the MobileBERT checkpoint
    bert = ModelConfig(vocab_size=V, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=40)
    with pytest.raises(bertkit_errors.UserError, match="model_type is 'bert' in the model config but 'mobilebert'"):
        checkpoints.init_from_checkpoint(build_encoder(bert), google_dir["prefix"])
