"""Parameter counts of the full published configs, read from the declared weight shapes (nothing is allocated),
checked against the papers' figures and, exactly, against transformers' models built on torch's meta device."""
import os

import numpy as np
import pytest

import modeling
from modeling import ModelConfig

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# config file, published figure (millions), relative tolerance of the paper's rounding
PUBLISHED = [
    ("bert_base_uncased", 110, 0.01),     # BERT paper: 110M (109.5M)
    ("bert_large_uncased", 340, 0.02),    # BERT paper: 340M (335.1M)
    ("albert_base", 12, 0.04),            # ALBERT paper: 12M (11.7M)
    ("albert_large", 18, 0.02),           # ALBERT paper: 18M
    ("albert_xlarge", 60, 0.03),          # ALBERT paper: 60M (58.7M)
    ("mobilebert_uncased", 25.3, 0.03),   # paper: 25.3M; the encoder is 24.58M, exactly transformers' MobileBertModel
    ("tinybert_4l_312", 14.5, 0.02),      # TinyBERT paper: 14.5M
    ("tinybert_6l_768", 67, 0.01),        # TinyBERT paper: 67M
]


def _count(name):
    return modeling.count_params_from_specs(ModelConfig.from_json_file(os.path.join(ROOT, "configs", name + ".json")))


@pytest.mark.parametrize("name,published,tol", PUBLISHED)
def test_published_parameter_counts(name, published, tol):
    n = _count(name)
    print(f"{name}: {n / 1e6:.2f}M parameters (published {published}M)")
    assert abs(n / 1e6 - published) <= tol * published


def test_albert_xxlarge_count():
    # The ALBERT paper's table lists 235M for xxlarge, but the architecture it describes (H=4096, E=128, 12 shared
    # layers, I=16384) has 222.6M parameters; transformers' AlbertModel agrees (checked exactly below).
    n = _count("albert_xxlarge")
    print(f"albert_xxlarge: {n / 1e6:.2f}M parameters (paper table: 235M)")
    assert abs(n - 222.6e6) < 0.1e6


def _hf_count(config):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    d = config.to_dict()
    t = d.pop("model_type")
    d.pop("true_hidden_size", None)
    cls = {"bert": (transformers.BertConfig, transformers.BertModel),
           "albert": (transformers.AlbertConfig, transformers.AlbertModel),
           "mobilebert": (transformers.MobileBertConfig, transformers.MobileBertModel)}[t]
    with torch.device("meta"):
        model = cls[1](cls[0](**d))
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", ["bert_base_uncased", "bert_large_uncased", "albert_base", "albert_xxlarge",
                                  "mobilebert_uncased", "tinybert_4l_312", "tinybert_6l_768", "tinybert_4l_128"])
def test_counts_equal_transformers(name):
    config = ModelConfig.from_json_file(os.path.join(ROOT, "configs", name + ".json"))
    assert modeling.count_params_from_specs(config) == _hf_count(config)


@pytest.mark.parametrize("name", ["tiny_bert", "tiny_albert", "tiny_mobilebert"])
def test_spec_count_equals_built_weights(name):
    config = ModelConfig.from_json_file(os.path.join(ROOT, "configs", name + ".json"))
    enc = modeling.build_encoder(config)
    built = sum(int(np.prod(v.shape)) for v in enc.trainable_weights)
    assert built == enc.count_params_from_specs() == modeling.count_params_from_specs(config)
    assert built == _hf_count(config)
