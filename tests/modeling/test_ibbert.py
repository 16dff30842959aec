"""IB-BERT, MobileBERT's teacher (configs/ibbert_large.json, configs/tiny_ibbert.json): the MobileBERT encoder with
an inverted bottleneck. Its parameter count is the paper's, its query/key/value read the hidden_size-wide layer input,
and the tiny teacher/student pair share what progressive knowledge transfer copies (embeddings, MLM and NSP heads) and
what it compares (layer outputs, attention shapes)."""
import os

import numpy as np

import modeling
from modeling import ModelConfig, build_encoder, build_pretraining_model

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _config(name):
    return ModelConfig.from_json_file(os.path.join(ROOT, "configs", name + ".json"))


def test_ibbert_large_parameter_count():
    # MobileBERT paper, Table 1: IB-BERT_LARGE 293M (embeddings 128 -> 512 trigram, 24 layers, intra-block 1024)
    n = modeling.count_params_from_specs(_config("ibbert_large"))
    print(f"ibbert_large: {n / 1e6:.2f}M parameters (published 293M)")
    assert abs(n / 1e6 - 293) <= 0.01 * 293


def test_inverted_bottleneck_shapes_and_forward():
    config = _config("tiny_ibbert")
    assert config.true_hidden_size == 128 > config.hidden_size == 64
    enc = build_encoder(config)
    block = enc.layer_0
    assert tuple(block.bottleneck_input.kernel.shape) == (64, 128)   # widening, not narrowing
    for dense in (block.query, block.key, block.value):
        assert tuple(dense.kernel.shape) == (64, 128)                 # read the 64-wide layer input
    assert tuple(block.output_bottleneck.kernel.shape) == (128, 64)
    built = sum(int(np.prod(v.shape)) for v in enc.trainable_weights)
    assert built == enc.count_params_from_specs()
    ids = np.random.default_rng(0).integers(5, 100, size=(2, 9))
    mask = np.ones_like(ids)
    mask[1, 6:] = 0
    out = enc({"input_ids": ids, "input_mask": mask}, output_hidden_states=True, output_attentions=True)
    assert out["sequence_output"].shape == (2, 9, 64)
    assert len(out["hidden_states"]) == 5 and out["attention_scores"][3].shape == (2, 2, 9, 9)
    assert np.isfinite(out["sequence_output"].numpy()).all()


def test_tiny_teacher_and_student_match_where_transfer_needs_it():
    teacher, student = _config("tiny_ibbert"), _config("tiny_mobilebert_student")
    for key in ("num_hidden_layers", "hidden_size", "embedding_size", "num_attention_heads", "vocab_size",
                "trigram_input", "max_position_embeddings", "type_vocab_size"):
        assert getattr(teacher, key) == getattr(student, key), key
    t, s = build_pretraining_model(teacher), build_pretraining_model(student)
    for tl, sl in ((t.encoder.embeddings, s.encoder.embeddings), (t.mlm_head, s.mlm_head), (t.nsp_head, s.nsp_head)):
        assert [tuple(v.shape) for v in tl.weights] == [tuple(v.shape) for v in sl.weights]
    assert s.encoder.count_params_from_specs() < 0.5 * t.encoder.count_params_from_specs()
