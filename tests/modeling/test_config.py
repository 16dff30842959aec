"""ModelConfig: original, HuggingFace and bertkit JSON files; strict checking of bertkit's own files."""
import glob
import json
import os

import pytest

from bertkit_errors import UserError
from modeling import ModelConfig

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ORIGINAL_BERT = {"attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
                 "hidden_size": 768, "initializer_range": 0.02, "intermediate_size": 3072,
                 "max_position_embeddings": 512, "num_attention_heads": 12, "num_hidden_layers": 12,
                 "type_vocab_size": 2, "vocab_size": 30522}
ORIGINAL_ALBERT = {"attention_probs_dropout_prob": 0, "hidden_act": "gelu", "hidden_dropout_prob": 0,
                   "embedding_size": 128, "hidden_size": 768, "initializer_range": 0.02, "intermediate_size": 3072,
                   "max_position_embeddings": 512, "num_attention_heads": 12, "num_hidden_layers": 12,
                   "num_hidden_groups": 1, "net_structure_type": 0, "gap_size": 0, "num_memory_blocks": 0,
                   "inner_group_num": 1, "down_scale_factor": 1, "type_vocab_size": 2, "vocab_size": 30000}


def _write(tmp_path, d, name="config.json"):
    p = tmp_path / name
    p.write_text(json.dumps(d))
    return str(p)


def test_original_bert_config_loads_unchanged(tmp_path):
    c = ModelConfig.from_json_file(_write(tmp_path, ORIGINAL_BERT))
    assert c.model_type == "bert" and c.hidden_act == "gelu" and c.layer_norm_eps == 1e-12
    for k, v in ORIGINAL_BERT.items():
        assert getattr(c, k) == v


def test_original_albert_config_detected(tmp_path):
    c = ModelConfig.from_json_file(_write(tmp_path, ORIGINAL_ALBERT))
    assert c.model_type == "albert" and c.embedding_size == 128 and c.num_hidden_groups == 1
    assert c.hidden_act == "gelu_new"  # the ALBERT repo's gelu is the tanh approximation


def test_hf_configs_load(tmp_path):
    transformers = pytest.importorskip("transformers")
    for cls, t in ((transformers.BertConfig, "bert"), (transformers.AlbertConfig, "albert"),
                   (transformers.MobileBertConfig, "mobilebert")):
        d = str(tmp_path / t)
        cls().save_pretrained(d)
        c = ModelConfig.from_json_file(os.path.join(d, "config.json"))
        ref = cls()
        assert c.model_type == t
        for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                  "hidden_act", "layer_norm_eps"):
            assert getattr(c, k) == getattr(ref, k), k
        if t == "mobilebert":
            assert c.true_hidden_size == ref.true_hidden_size and c.normalization_type == ref.normalization_type


def test_roundtrip_all_shipped_configs(tmp_path):
    files = sorted(glob.glob(os.path.join(ROOT, "configs", "*.json")))
    assert len(files) >= 14
    for f in files:
        c = ModelConfig.from_json_file(f)
        out = str(tmp_path / os.path.basename(f))
        c.to_json_file(out)
        assert ModelConfig.from_json_file(out) == c
        assert ModelConfig.from_dict(c.to_dict()) == c
    assert ModelConfig.from_json_file(os.path.join(ROOT, "configs", "bert_base_cased.json")).vocab_size == 28996
    assert ModelConfig.from_json_file(os.path.join(ROOT, "configs", "albert_base.json")).vocab_size == 30000


def _bertkit(**changes):
    d = dict(ORIGINAL_BERT, model_type="bert")
    d.update(changes)
    return d


@pytest.mark.parametrize("changes,pattern", [
    (dict(hidden_sise=768), r"hidden_sise: unknown key"),
    (dict(hidden_size="768"), r"hidden_size: expected int, got str"),
    (dict(num_hidden_layers=2.5), r"num_hidden_layers: expected int"),
    (dict(hidden_dropout_prob=True), r"hidden_dropout_prob: expected"),
    (dict(num_attention_heads=5), r"num_attention_heads: hidden_size 768 is not divisible"),
    (dict(hidden_act="gelu2"), r"hidden_act: 'gelu2' is not one of"),
    (dict(model_type="gpt"), r"model_type: 'gpt' is not one of"),
    (dict(embedding_size=128), r"embedding_size: unknown key for model_type 'bert'"),
    (dict(vocab_size=0), r"vocab_size: must be positive"),
    (dict(hidden_dropout_prob=1.5), r"hidden_dropout_prob: must be in"),
])
def test_bertkit_config_errors_name_file_and_key(tmp_path, changes, pattern):
    path = _write(tmp_path, _bertkit(**changes), "bad.json")
    with pytest.raises(UserError, match=pattern) as e:
        ModelConfig.from_json_file(path)
    assert str(e.value).startswith(path + ": ")


def test_missing_required_and_model_specific_errors(tmp_path):
    d = _bertkit()
    del d["vocab_size"]
    with pytest.raises(UserError, match="vocab_size: missing required key"):
        ModelConfig.from_json_file(_write(tmp_path, d))
    with pytest.raises(UserError, match="num_hidden_groups: 3 groups for only 2 layers"):
        ModelConfig.from_dict(dict(ORIGINAL_ALBERT, num_hidden_layers=2, num_hidden_groups=3))
    mb = json.load(open(os.path.join(ROOT, "configs", "mobilebert_uncased.json")))
    with pytest.raises(UserError, match="num_attention_heads: true_hidden_size 128 is not divisible"):
        ModelConfig.from_dict(dict(mb, num_attention_heads=3))
    with pytest.raises(UserError, match="normalization_type"):
        ModelConfig.from_dict(dict(mb, normalization_type="batch_norm"))
    with pytest.raises(UserError, match="true_hidden_size: 64 disagrees"):
        ModelConfig.from_dict(dict(mb, true_hidden_size=64))


def test_unreadable_files(tmp_path):
    with pytest.raises(UserError, match="cannot read model config"):
        ModelConfig.from_json_file(str(tmp_path / "nope.json"))
    p = tmp_path / "broken.json"
    p.write_text("{\"vocab_size\": 1,")
    with pytest.raises(UserError, match="broken.json: not valid JSON"):
        ModelConfig.from_json_file(str(p))


def test_hf_style_dict_without_version_is_lenient_but_checked():
    d = dict(ORIGINAL_BERT, model_type="bert", pad_token_id=0, classifier_dropout=None, use_cache=True)
    c = ModelConfig.from_dict(d)
    assert c.hidden_size == 768
    with pytest.raises(UserError, match="is_decoder"):
        ModelConfig.from_dict(dict(d, is_decoder=True))
    with pytest.raises(UserError, match="num_attention_heads: hidden_size 768 is not divisible"):
        ModelConfig.from_dict(dict(d, num_attention_heads=7))
