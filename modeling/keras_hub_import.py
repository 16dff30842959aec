"""keras-hub `BertBackbone` presets (`config.json` naming `keras_hub>BertBackbone`, `model.weights.h5`).

    backbone = load_backbone(path, src)          # keras-hub's own from_preset
    config = backbone_config(backbone)           # a bertkit ModelConfig
    state = backbone_state(backbone, src)        # HF-named numpy state, for modeling.hf_import.assign_hf_state
    check_numerics(backbone, encoder, src)       # the bertkit encoder must reproduce keras-hub's outputs
    vocab_file, do_lower_case = tokenizer_info(path)
"""
import json
import os
import re

import numpy as np

import bertkit_errors
from modeling.config import ModelConfig
from modeling.model_dirs import read_json


def load_backbone(path, src):
    try:
        import keras_hub  # local: importing keras-hub takes ~1.8 s, needed only for keras-hub presets
    except ImportError:
        raise bertkit_errors.UserError(f"{src}: a keras-hub preset, but keras_hub is not installed") from None
    cfg = read_json(os.path.join(path, "config.json"), src)
    cls_name = str(cfg.get("registered_name") or cfg.get("class_name"))
    if not cls_name.endswith("BertBackbone") or "DistilBert" in cls_name:
        raise bertkit_errors.UserError(f"{src}: keras-hub preset of {cls_name}; only BertBackbone presets are "
                                       "supported")
    try:
        backbone = keras_hub.models.BertBackbone.from_preset(path)
    except Exception as e:  # corrupt or incompatible preset: keras-hub raises many kinds
        raise bertkit_errors.UserError(f"{src}: keras-hub cannot load this preset ({type(e).__name__}: "
                                       f"{str(e).splitlines()[0][:300] if str(e) else ''})") from None
    return backbone


def backbone_config(backbone):
    return ModelConfig(
        model_type="bert", vocab_size=int(backbone.vocabulary_size), hidden_size=int(backbone.hidden_dim),
        num_hidden_layers=int(backbone.num_layers), num_attention_heads=int(backbone.num_heads),
        intermediate_size=int(backbone.intermediate_dim), hidden_act="gelu_new",  # keras-hub: gelu_approximate
        hidden_dropout_prob=float(backbone.dropout), attention_probs_dropout_prob=float(backbone.dropout),
        max_position_embeddings=int(backbone.max_sequence_length), type_vocab_size=int(backbone.num_segments),
        layer_norm_eps=1e-12)


def backbone_state(backbone, src):
    """HF-named numpy state from a keras-hub BertBackbone's variables (mapped by variable path)."""
    h = int(backbone.hidden_dim)
    simple = {
        "token_embedding/embeddings": "embeddings.word_embeddings.weight",
        "position_embedding/embeddings": "embeddings.position_embeddings.weight",
        "segment_embedding/embeddings": "embeddings.token_type_embeddings.weight",
        "embeddings_layer_norm/gamma": "embeddings.LayerNorm.weight",
        "embeddings_layer_norm/beta": "embeddings.LayerNorm.bias",
        "pooled_dense/kernel": "pooler.dense.weight",
        "pooled_dense/bias": "pooler.dense.bias",
    }
    layer_map = {
        "self_attention_layer/query": "attention.self.query",
        "self_attention_layer/key": "attention.self.key",
        "self_attention_layer/value": "attention.self.value",
        "self_attention_layer/attention_output": "attention.output.dense",
        "self_attention_layer_norm": "attention.output.LayerNorm",
        "feedforward_intermediate_dense": "intermediate.dense",
        "feedforward_output_dense": "output.dense",
        "feedforward_layer_norm": "output.LayerNorm",
    }
    leaf = {"kernel": "weight", "bias": "bias", "gamma": "weight", "beta": "bias"}
    state, unknown = {}, []
    for v in backbone.weights:
        path = v.path
        if path.startswith(backbone.name + "/"):
            path = path[len(backbone.name) + 1:]
        value = np.asarray(v.numpy(), dtype=np.float32)
        if path in simple:
            key = simple[path]
        else:
            m = re.fullmatch(r"transformer_layer_(\d+)/(.+)/(kernel|bias|gamma|beta)", path)
            if not m or m.group(2) not in layer_map:
                unknown.append(path)
                continue
            key = f"encoder.layer.{m.group(1)}.{layer_map[m.group(2)]}.{leaf[m.group(3)]}"
            if m.group(3) == "bias":
                value = value.reshape(-1)  # q/k/v biases are [heads, head_size]
            elif m.group(3) == "kernel":
                if m.group(2).endswith(("/query", "/key", "/value")):
                    value = value.reshape(h, -1)  # [H, heads, head_size] -> [in, out]
                else:
                    value = value.reshape(-1, value.shape[-1])  # attention_output [heads, head_size, H]
        if path.endswith("/kernel"):
            value = value.T  # keras [in, out] -> torch [out, in]
        state[key] = value
    if unknown:
        raise bertkit_errors.UserError(f"{src}: keras-hub variables bertkit does not know: {', '.join(unknown[:5])}")
    return state


def check_numerics(backbone, encoder, src, tol=1e-4):
    """The copied weights must give keras-hub's outputs (guards against a config flag bertkit does not honour)."""
    t = min(8, int(backbone.max_sequence_length))
    rng = np.random.default_rng(0)
    ids = rng.integers(1, int(backbone.vocabulary_size), size=(2, t)).astype("int32")
    mask = np.ones((2, t), "int32")
    mask[1, t // 2:] = 0
    seg = np.zeros((2, t), "int32")
    seg[:, t // 2:] = 1
    ref = backbone({"token_ids": ids, "padding_mask": mask, "segment_ids": seg}, training=False)
    out = encoder({"input_ids": ids, "input_mask": mask, "segment_ids": seg}, training=False)
    for name in ("sequence_output", "pooled_output"):
        a, b = np.asarray(out[name], np.float32), np.asarray(ref[name], np.float32)
        if name == "sequence_output":
            a, b = a[mask == 1], b[mask == 1]
        err = float(np.max(np.abs(a - b)))
        if not err <= tol * max(1.0, float(np.max(np.abs(b)))):
            raise bertkit_errors.UserError(f"{src}: the imported weights do not reproduce keras-hub's {name} "
                                           f"(max abs difference {err:.3g}); this preset uses options bertkit "
                                           "does not support")


def tokenizer_info(path):
    vocab = os.path.join(path, "assets", "tokenizer", "vocabulary.txt")
    vocab = vocab if os.path.isfile(vocab) else None
    lower = None
    tok = os.path.join(path, "tokenizer.json")
    if os.path.isfile(tok):
        try:
            with open(tok, encoding="utf-8") as f:
                lower = json.load(f).get("config", {}).get("lowercase")
        except (OSError, json.JSONDecodeError, AttributeError):
            lower = None
    return vocab, (bool(lower) if lower is not None else None)
