"""Import HuggingFace BERT / ALBERT / MobileBERT directories (config.json + model.safetensors, numpy loader, no torch).

    config, encoder, heads = load_hf_directory(path)
    heads: dict with "mlm_head" (MaskedLMHead), "nsp_head" (SentencePairHead: cls.seq_relationship / ALBERT's
    sop_classifier) and "classifier_head" (ClassificationHead from a *ForSequenceClassification `classifier`), each
    only when the checkpoint has its weights.

`assign_hf_state(config, encoder, state, heads)` does the mapping for a dict of HF-named numpy arrays (torch layout:
Linear weights [out, in]); other importers (TF1 checkpoints) can rename into HF names and reuse it. Q, K and V are
concatenated into bertkit's fused [H, 3H] kernel. A missing tensor or a shape mismatch is a UserError naming the
variable and both shapes.
"""
import json
import os

import numpy as np
from absl import logging
from safetensors.numpy import load_file

import bertkit_errors
from modeling.config import ModelConfig
from modeling.encoders import build_encoder
from modeling.heads import ClassificationHead, MaskedLMHead, SentencePairHead, build_pretraining_model

_PREFIXES = ("bert.", "albert.", "mobilebert.")
_IGNORED_SUFFIXES = ("position_ids", "token_type_ids")  # non-persistent buffers written by old versions


def _normalise_key(k):
    for p in _PREFIXES:
        if k.startswith(p):
            k = k[len(p):]
            break
    if k.endswith(".gamma"):
        k = k[: -len(".gamma")] + ".weight"
    elif k.endswith(".beta"):
        k = k[: -len(".beta")] + ".bias"
    return k


def read_safetensors(path):
    """All tensors of a directory's model.safetensors (or sharded model.safetensors.index.json) as numpy."""
    single = os.path.join(path, "model.safetensors")
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.exists(single):
        files = [single]
    elif os.path.exists(index):
        with open(index, encoding="utf-8") as f:
            files = sorted({os.path.join(path, v) for v in json.load(f)["weight_map"].values()})
    else:
        other = [n for n in ("pytorch_model.bin", "tf_model.h5") if os.path.exists(os.path.join(path, n))]
        hint = f" (found {', '.join(other)}: re-save it with save_pretrained(safe_serialization=True))" if other else ""
        raise bertkit_errors.UserError(f"{path}: no model.safetensors{hint}")
    state = {}
    for fn in files:
        try:
            tensors = load_file(fn)
        except Exception as e:  # corrupt file, unsupported dtype (bfloat16 has no numpy type)
            raise bertkit_errors.UserError(f"{fn}: cannot read safetensors ({e})") from None
        for k, v in tensors.items():
            state[_normalise_key(k)] = v
    return state


class _Assigner:
    def __init__(self, state, source):
        self.state, self.source, self.used = state, source, set()

    def get(self, key):
        if key not in self.state:
            raise bertkit_errors.UserError(f"{self.source}: missing tensor {key!r}")
        self.used.add(key)
        return np.asarray(self.state[key])

    def has(self, key):
        return key in self.state

    def linear(self, prefix):
        """HF Linear -> (kernel [in,out], bias)."""
        return self.get(prefix + ".weight").T, self.get(prefix + ".bias")

    def assign(self, var, value, what):
        value = np.asarray(value)
        if tuple(var.shape) != value.shape:
            raise bertkit_errors.UserError(
                f"{self.source}: {what} -> {var.path}: shape mismatch, bertkit variable {tuple(var.shape)} vs "
                f"checkpoint {value.shape}")
        var.assign(value.astype(var.dtype))

    def dense(self, layer, prefix):
        k, b = self.linear(prefix)
        self.assign(layer.kernel, k, prefix + ".weight")
        self.assign(layer.bias, b, prefix + ".bias")

    def norm(self, layer, prefix):
        self.assign(layer.gamma, self.get(prefix + ".weight"), prefix + ".weight")
        self.assign(layer.beta, self.get(prefix + ".bias"), prefix + ".bias")

    def fused_qkv(self, attn, q, k, v, out):
        ks, bs = zip(*(self.linear(p) for p in (q, k, v)))
        self.assign(attn.qkv_kernel, np.concatenate(ks, axis=1), f"{q}/{k}/{v}.weight")
        self.assign(attn.qkv_bias, np.concatenate(bs, axis=0), f"{q}/{k}/{v}.bias")
        ok, ob = self.linear(out)
        self.assign(attn.output_kernel, ok, out + ".weight")
        self.assign(attn.output_bias, ob, out + ".bias")


def _assign_block(a, block, p, names):
    a.fused_qkv(block.attention, p + names["q"], p + names["k"], p + names["v"], p + names["o"])
    a.norm(block.attention_norm, p + names["attn_norm"])
    a.dense(block.intermediate, p + names["inter"])
    a.dense(block.output_dense, p + names["out"])
    a.norm(block.output_norm, p + names["out_norm"])


_BERT_BLOCK = dict(q="attention.self.query", k="attention.self.key", v="attention.self.value",
                   o="attention.output.dense", attn_norm="attention.output.LayerNorm", inter="intermediate.dense",
                   out="output.dense", out_norm="output.LayerNorm")
_ALBERT_BLOCK = dict(q="attention.query", k="attention.key", v="attention.value", o="attention.dense",
                     attn_norm="attention.LayerNorm", inter="ffn", out="ffn_output",
                     out_norm="full_layer_layer_norm")


def _assign_embeddings(a, emb):
    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        key = f"embeddings.{name}.weight"
        a.assign(getattr(emb, name), a.get(key), key)


def _assign_encoder(a, config, enc):
    t = config.model_type
    _assign_embeddings(a, enc.embeddings)
    if t == "bert":
        a.norm(enc.embeddings.norm, "embeddings.LayerNorm")
        for i in range(config.num_hidden_layers):
            _assign_block(a, getattr(enc, f"layer_{i}"), f"encoder.layer.{i}.", _BERT_BLOCK)
        a.dense(enc.pooler, "pooler.dense")
    elif t == "albert":
        a.norm(enc.embeddings.norm, "embeddings.LayerNorm")
        a.dense(enc.embeddings.projection, "encoder.embedding_hidden_mapping_in")
        for g in range(config.num_hidden_groups):
            for j in range(config.inner_group_num):
                _assign_block(a, getattr(enc, f"group_{g}_inner_{j}"),
                              f"encoder.albert_layer_groups.{g}.albert_layers.{j}.", _ALBERT_BLOCK)
        a.dense(enc.pooler, "pooler")
    else:
        e = enc.embeddings
        if e.transformation is not None:
            a.dense(e.transformation, "embeddings.embedding_transformation")
        a.norm(e.norm, "embeddings.LayerNorm")
        for i in range(config.num_hidden_layers):
            b, p = getattr(enc, f"layer_{i}"), f"encoder.layer.{i}."
            if config.use_bottleneck:
                a.dense(b.bottleneck_input, p + "bottleneck.input.dense")
                a.norm(b.bottleneck_input_norm, p + "bottleneck.input.LayerNorm")
                if config.key_query_shared_bottleneck:
                    a.dense(b.bottleneck_attention, p + "bottleneck.attention.dense")
                    a.norm(b.bottleneck_attention_norm, p + "bottleneck.attention.LayerNorm")
                a.dense(b.output_bottleneck, p + "output.bottleneck.dense")
                a.norm(b.output_bottleneck_norm, p + "output.bottleneck.LayerNorm")
            for name in ("query", "key", "value"):
                a.dense(getattr(b, name), p + "attention.self." + name)
            a.dense(b.attention_output, p + "attention.output.dense")
            a.norm(b.attention_norm, p + "attention.output.LayerNorm")
            for j in range(config.num_feedforward_networks - 1):
                a.dense(getattr(b, f"ffn_{j}_intermediate"), p + f"ffn.{j}.intermediate.dense")
                a.dense(getattr(b, f"ffn_{j}_output"), p + f"ffn.{j}.output.dense")
                a.norm(getattr(b, f"ffn_{j}_norm"), p + f"ffn.{j}.output.LayerNorm")
            a.dense(b.intermediate, p + "intermediate.dense")
            a.dense(b.output_dense, p + "output.dense")
            a.norm(b.output_norm, p + "output.LayerNorm")
        if enc.pooler is not None:
            a.dense(enc.pooler, "pooler.dense")


def _mlm_prefix(config):
    return "predictions." if config.model_type == "albert" else "cls.predictions."


def has_mlm(state, config):
    p = _mlm_prefix(config)
    return (p + "bias") in state or (p + "decoder.bias") in state


def _assign_mlm(a, config, head):
    p = _mlm_prefix(config)
    if config.model_type == "albert":
        a.dense(head.transform, p + "dense")
        a.norm(head.transform_norm, p + "LayerNorm")
    else:
        a.dense(head.transform, p + "transform.dense")
        a.norm(head.transform_norm, p + "transform.LayerNorm")
    bias_key = p + "bias" if a.has(p + "bias") else p + "decoder.bias"
    a.assign(head.output_bias, a.get(bias_key), bias_key)
    if a.has(p + "decoder.weight"):  # tied copy of the word embeddings: must agree with them
        w, emb = a.get(p + "decoder.weight"), a.get("embeddings.word_embeddings.weight")
        if w.shape != emb.shape or not np.allclose(w, emb):
            raise bertkit_errors.UserError(f"{a.source}: {p}decoder.weight is not tied to the word embeddings "
                                           "(bertkit's MLM head always ties them)")
    if config.model_type == "mobilebert" and head._extra_dim:
        a.assign(head.extra_output_weights, a.get(p + "dense.weight"), p + "dense.weight")


def nsp_key(config):
    return "sop_classifier.classifier" if config.model_type == "albert" else "cls.seq_relationship"


def assign_hf_state(config, encoder, state, heads=None, source="<state>"):
    """Assign HF-named numpy arrays to `encoder` and to the layers in `heads` (keys mlm_head, nsp_head,
    classifier_head). Returns the set of state keys that were not used."""
    a = _Assigner(state, source)
    _assign_encoder(a, config, encoder)
    heads = heads or {}
    if "mlm_head" in heads:
        _assign_mlm(a, config, heads["mlm_head"])
    if "nsp_head" in heads:
        a.dense(heads["nsp_head"].dense, nsp_key(config))
    if "classifier_head" in heads:
        a.dense(heads["classifier_head"].dense, "classifier")
    return {k for k in state if k not in a.used and not k.endswith(_IGNORED_SUFFIXES)}


def load_hf_directory(path, config=None):
    """Read a HuggingFace BERT/ALBERT/MobileBERT directory -> (ModelConfig, encoder, heads dict)."""
    if not os.path.isdir(path):
        raise bertkit_errors.UserError(f"{path}: not a directory")
    if config is None:
        cfg_path = os.path.join(path, "config.json")
        if not os.path.exists(cfg_path):
            raise bertkit_errors.UserError(f"{path}: no config.json")
        config = ModelConfig.from_json_file(cfg_path)
    state = read_safetensors(path)
    source = os.path.join(path, "model.safetensors")
    encoder = build_encoder(config)
    heads = {}
    if has_mlm(state, config):
        heads["mlm_head"] = MaskedLMHead(config, encoder)
        heads["mlm_head"].build()
    if nsp_key(config) + ".weight" in state:
        heads["nsp_head"] = SentencePairHead(initializer_range=config.initializer_range)
        heads["nsp_head"].build((None, config.hidden_size))
    if "classifier.weight" in state:
        n = state["classifier.weight"].shape[0]
        heads["classifier_head"] = ClassificationHead(n, config.hidden_dropout_prob, config.initializer_range)
        heads["classifier_head"].build((None, config.hidden_size))
    unused = assign_hf_state(config, encoder, state, heads, source=source)
    if unused:
        logging.warning("%s: %d tensors not used by bertkit: %s", source, len(unused),
                        ", ".join(sorted(unused)[:10]))
    return config, encoder, heads


def load_hf_pretraining_model(path):
    """A bertkit PretrainingModel (encoder + mlm_head + nsp_head) with the weights of a HF *ForPreTraining directory
    (the checkpoint must hold both heads)."""
    config = ModelConfig.from_json_file(os.path.join(path, "config.json"))
    state = read_safetensors(path)
    model = build_pretraining_model(config)
    unused = assign_hf_state(config, model.encoder, state, {"mlm_head": model.mlm_head, "nsp_head": model.nsp_head},
                             source=os.path.join(path, "model.safetensors"))
    if unused:
        logging.warning("%s: %d tensors not used by bertkit: %s", path, len(unused), ", ".join(sorted(unused)[:10]))
    return model
