"""Numerical parity with HuggingFace transformers (CPU torch) on randomly initialised small models, with padding."""
import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import bertkit_errors  # noqa: E402
from modeling import hf_import  # noqa: E402

from tests.modeling.references import B, T, V  # noqa: E402
from tests.modeling.references import parity_inputs as _inputs  # noqa: E402

SMALL = dict(vocab_size=V, hidden_size=48, num_hidden_layers=2, num_attention_heads=4, intermediate_size=80,
             max_position_embeddings=32, type_vocab_size=2, hidden_dropout_prob=0.1,
             attention_probs_dropout_prob=0.1)


def _hf_model(kind, **overrides):
    torch.manual_seed(0)
    cfg = dict(SMALL, **overrides)
    if kind == "bert":
        model = transformers.BertForPreTraining(transformers.BertConfig(**cfg))
    elif kind == "albert":
        cfg.setdefault("embedding_size", 24)
        model = transformers.AlbertForPreTraining(transformers.AlbertConfig(**cfg))
    else:
        cfg = dict(SMALL, hidden_size=64, embedding_size=16, intra_bottleneck_size=32, num_attention_heads=4,
                   num_feedforward_networks=3, intermediate_size=40)
        cfg.update(overrides)
        model = transformers.MobileBertForPreTraining(transformers.MobileBertConfig(**cfg))
    # random everything (incl. LayerNorm/NoNorm scales and biases) so that a wrong mapping cannot hide
    # (MobileBERT's NoNorm does not normalise: smaller weights keep activations O(1) so 1e-4 is meaningful)
    scale = 0.2 if kind != "mobilebert" else 0.06
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("LayerNorm.weight"):  # also MobileBERT's NoNorm scales
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
            else:
                p.copy_(scale * torch.randn(p.shape, generator=g))
    return model.eval()


def _compare(kind, tmp_path, **overrides):
    model = _hf_model(kind, **overrides)
    model.save_pretrained(str(tmp_path), safe_serialization=True)
    ids, mask, seg = _inputs()
    with torch.no_grad():
        ref = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), token_type_ids=torch.tensor(seg),
                    output_hidden_states=True)
        base = getattr(model, kind)(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                                    token_type_ids=torch.tensor(seg))
    config, encoder, heads = hf_import.load_hf_directory(str(tmp_path))
    assert config.model_type == kind
    assert set(heads) == {"mlm_head", "nsp_head"}
    feats = {"input_ids": ids, "input_mask": mask, "segment_ids": seg}
    out = encoder(feats, training=False)
    np.testing.assert_allclose(out["sequence_output"].numpy(), base.last_hidden_state.numpy(), atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(out["pooled_output"].numpy(), base.pooler_output.numpy(), atol=1e-4, rtol=1e-4)
    positions = np.tile(np.arange(T), (B, 1))
    mlm = heads["mlm_head"](out["sequence_output"], positions).numpy()
    np.testing.assert_allclose(mlm, ref.prediction_logits.numpy(), atol=1e-4 * max(1.0, np.abs(mlm).max()),
                               rtol=1e-4)
    sub = heads["mlm_head"](out["sequence_output"], np.array([[2, 0], [6, 1], [1, 2]])).numpy()
    np.testing.assert_allclose(sub[1, 0], mlm[1, 6], atol=1e-5)
    nsp_ref = ref.sop_logits if kind == "albert" else ref.seq_relationship_logits
    np.testing.assert_allclose(heads["nsp_head"](out["pooled_output"]).numpy(), nsp_ref.numpy(), atol=1e-4)
    return encoder, base


def test_bert_parity(tmp_path):
    encoder, _ = _compare("bert", tmp_path)
    assert encoder.num_layers == 2
    # the same weights through a PretrainingModel
    model = hf_import.load_hf_pretraining_model(str(tmp_path))
    ids, mask, seg = _inputs()
    pos = np.array([[1, 4], [0, 6], [2, 1]])
    out = model({"input_ids": ids, "input_mask": mask, "segment_ids": seg, "masked_lm_positions": pos})
    _, enc, heads = hf_import.load_hf_directory(str(tmp_path))
    ref = heads["mlm_head"](enc({"input_ids": ids, "input_mask": mask, "segment_ids": seg})["sequence_output"], pos)
    np.testing.assert_allclose(out["mlm_logits"].numpy(), ref.numpy(), atol=1e-5)


def test_albert_parity_grouped_sharing(tmp_path):
    # 4 layers in 2 groups of 2 inner blocks: exercises group_index and inner loops (8 block applications)
    _compare("albert", tmp_path, num_hidden_layers=4, num_hidden_groups=2, inner_group_num=2)


def test_mobilebert_parity(tmp_path):
    _compare("mobilebert", tmp_path)


def test_mobilebert_parity_layer_norm_no_trigram(tmp_path):
    _compare("mobilebert", tmp_path, normalization_type="layer_norm", trigram_input=False, use_bottleneck=False,
             key_query_shared_bottleneck=False, embedding_size=48, classifier_activation=False,
             hidden_size=48, intra_bottleneck_size=48)


def test_hidden_states_match_hf(tmp_path):
    model = _hf_model("bert")
    model.save_pretrained(str(tmp_path), safe_serialization=True)
    ids, mask, seg = _inputs()
    with torch.no_grad():
        ref = model.bert(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                         token_type_ids=torch.tensor(seg), output_hidden_states=True)
    _, encoder, _ = hf_import.load_hf_directory(str(tmp_path))
    out = encoder({"input_ids": ids, "input_mask": mask, "segment_ids": seg}, output_hidden_states=True,
                  output_attentions=True)
    assert len(out["hidden_states"]) == 3 and len(out["attention_scores"]) == 2
    for ours, theirs in zip(out["hidden_states"], ref.hidden_states):
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), atol=1e-4)
    assert out["attention_scores"][0].shape == (B, 4, T, T)


def test_unprefixed_keys_and_shape_mismatch(tmp_path):
    from safetensors.numpy import load_file, save_file
    model = _hf_model("bert")
    model.bert.save_pretrained(str(tmp_path), safe_serialization=True)  # BertModel: keys without "bert."
    st = os.path.join(str(tmp_path), "model.safetensors")
    assert not any(k.startswith("bert.") for k in load_file(st))
    _, encoder, heads = hf_import.load_hf_directory(str(tmp_path))
    assert heads == {}
    state = load_file(st)
    state["encoder.layer.1.intermediate.dense.weight"] = np.zeros((81, 48), np.float32)
    save_file(state, st)
    with pytest.raises(bertkit_errors.UserError, match=r"intermediate\.dense\.weight.*\(48, 80\).*\(48, 81\)"):
        hf_import.load_hf_directory(str(tmp_path))
    del state["encoder.layer.1.intermediate.dense.weight"]
    save_file(state, st)
    with pytest.raises(bertkit_errors.UserError, match="missing tensor 'encoder.layer.1.intermediate.dense.weight'"):
        hf_import.load_hf_directory(str(tmp_path))


def test_hf_config_json_extra_keys_are_understood(tmp_path):
    model = _hf_model("bert")
    model.save_pretrained(str(tmp_path), safe_serialization=True)
    with open(os.path.join(str(tmp_path), "config.json")) as f:
        d = json.load(f)
    assert "transformers_version" in d and d["model_type"] == "bert"
    d["position_embedding_type"] = "relative_key"
    with open(os.path.join(str(tmp_path), "config.json"), "w") as f:
        json.dump(d, f)
    with pytest.raises(bertkit_errors.UserError, match="position_embedding_type"):
        hf_import.load_hf_directory(str(tmp_path))
