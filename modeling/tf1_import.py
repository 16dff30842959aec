"""Original Google TF1 BERT / ALBERT / MobileBERT checkpoints (`bert_model.ckpt`, variables `bert/...`, `cls/...`;
MobileBERT's names: modeling/tf1_mobilebert.py).

    state, has_mlm, has_nsp = tf1_state(shapes, read, config, src, want_mlm, want_nsp)

The TF1 names are renamed to HuggingFace state-dict names (kernels transposed to torch layout), so that
`modeling.hf_import.assign_hf_state`, the one assignment path for foreign weights, assigns them. Shapes and presence
are checked first against the TF1 names, so errors name the variable the user's checkpoint has. `shapes` ({TF1 name:
shape}) and `read(name) -> array` come from the checkpoint reader of modeling/checkpoints.py.
"""
import numpy as np
from absl import logging

import bertkit_errors
from modeling import tf1_mobilebert


def _shape_str(shape):
    return "[" + ", ".join(str(int(d)) for d in shape) + "]"


def tf1_model_type(names):
    if any(n.startswith("bert/encoder/transformer/") or n.startswith("bert/encoder/embedding_hidden_mapping_in")
           for n in names):
        return "albert"
    if any("/bottleneck/" in n or n.startswith("bert/embeddings/embedding_transformation") for n in names):
        return "mobilebert"
    return "bert"


def tf1_table(config, with_mlm, with_nsp):
    """[(tf1 name, hf key, tf1 shape, transpose)] for `config`; transpose: TF1 [in, out] -> HF [out, in]."""
    c = config
    H, E, I, V = c.hidden_size, c.embedding_dim, c.intermediate_size, c.vocab_size
    rows = []

    def var(tf_name, hf_key, shape, transpose=False):
        rows.append((tf_name, hf_key, tuple(shape), transpose))

    def dense(tf_name, hf_key, n_in, n_out):
        var(tf_name + "/kernel", hf_key + ".weight", (n_in, n_out), True)
        var(tf_name + "/bias", hf_key + ".bias", (n_out,))

    def norm(tf_name, hf_key, n):
        var(tf_name + "/gamma", hf_key + ".weight", (n,))
        var(tf_name + "/beta", hf_key + ".bias", (n,))

    var("bert/embeddings/word_embeddings", "embeddings.word_embeddings.weight", (V, E))
    var("bert/embeddings/position_embeddings", "embeddings.position_embeddings.weight", (c.max_position_embeddings, E))
    var("bert/embeddings/token_type_embeddings", "embeddings.token_type_embeddings.weight", (c.type_vocab_size, E))
    norm("bert/embeddings/LayerNorm", "embeddings.LayerNorm", E)
    if c.model_type == "bert":
        for i in range(c.num_hidden_layers):
            t, h = f"bert/encoder/layer_{i}/", f"encoder.layer.{i}."
            for n in ("query", "key", "value"):
                dense(t + "attention/self/" + n, h + "attention.self." + n, H, H)
            dense(t + "attention/output/dense", h + "attention.output.dense", H, H)
            norm(t + "attention/output/LayerNorm", h + "attention.output.LayerNorm", H)
            dense(t + "intermediate/dense", h + "intermediate.dense", H, I)
            dense(t + "output/dense", h + "output.dense", I, H)
            norm(t + "output/LayerNorm", h + "output.LayerNorm", H)
        dense("bert/pooler/dense", "pooler.dense", H, H)
        mlm, nsp = "cls.predictions.", "cls.seq_relationship"
        if with_mlm:
            dense("cls/predictions/transform/dense", mlm + "transform.dense", H, E)
            norm("cls/predictions/transform/LayerNorm", mlm + "transform.LayerNorm", E)
    else:  # albert
        dense("bert/encoder/embedding_hidden_mapping_in", "encoder.embedding_hidden_mapping_in", E, H)
        for g in range(c.num_hidden_groups):
            for j in range(c.inner_group_num):
                t = f"bert/encoder/transformer/group_{g}/inner_group_{j}/"
                h = f"encoder.albert_layer_groups.{g}.albert_layers.{j}."
                for n in ("query", "key", "value"):
                    dense(t + "attention_1/self/" + n, h + "attention." + n, H, H)
                dense(t + "attention_1/output/dense", h + "attention.dense", H, H)
                norm(t + "LayerNorm", h + "attention.LayerNorm", H)
                dense(t + "ffn_1/intermediate/dense", h + "ffn", H, I)
                dense(t + "ffn_1/intermediate/output/dense", h + "ffn_output", I, H)
                norm(t + "LayerNorm_1", h + "full_layer_layer_norm", H)
        dense("bert/pooler/dense", "pooler", H, H)
        mlm, nsp = "predictions.", "sop_classifier.classifier"
        if with_mlm:
            dense("cls/predictions/transform/dense", mlm + "dense", H, E)
            norm("cls/predictions/transform/LayerNorm", mlm + "LayerNorm", E)
    if with_mlm:
        var("cls/predictions/output_bias", mlm + "bias", (V,))
    if with_nsp:
        var("cls/seq_relationship/output_weights", nsp + ".weight", (2, H))  # already [out, in]
        var("cls/seq_relationship/output_bias", nsp + ".bias", (2,))
    return rows


def tf1_state(shapes, read, config, src, want_mlm, want_nsp):
    """HF-named numpy state from a TF1 checkpoint for `config`, after checking presence and shapes by TF1 name.
    `shapes`: {variable name: shape} of the checkpoint; `read(name)`: the variable's value. Returns (state, has_mlm,
    has_nsp)."""
    ckpt_type = tf1_model_type(shapes)
    if ckpt_type != config.model_type:
        raise bertkit_errors.UserError(f"{src}: the checkpoint's variables are those of a {ckpt_type!r} model but the "
                                       f"config says model_type {config.model_type!r}")
    has_mlm = want_mlm and "cls/predictions/output_bias" in shapes
    has_nsp = want_nsp and "cls/seq_relationship/output_weights" in shapes
    if config.model_type == "mobilebert":  # Google's MobileBERT release: modeling/tf1_mobilebert.py
        rows = tf1_mobilebert.tf1_table(config, shapes, has_mlm, has_nsp)
    else:
        rows = tf1_table(config, has_mlm, has_nsp)
    for name, _, shape, _ in rows:
        if name not in shapes:
            raise bertkit_errors.UserError(f"{src}: variable {name} (shape {_shape_str(shape)}) is missing from the "
                                           "checkpoint (the model config does not match the checkpoint's)")
        if tuple(shapes[name]) != shape:
            raise bertkit_errors.UserError(f"{src}: variable {name} has shape {_shape_str(shape)} in the model but "
                                           f"{_shape_str(shapes[name])} in the checkpoint")
    state = {}
    for name, key, _, transpose in rows:
        value = np.asarray(read(name), dtype=np.float32)
        state[key] = value.T if transpose else value
    if config.model_type == "albert" and config.num_hidden_groups > 0:
        extra = [n for n in shapes if n.startswith(f"bert/encoder/transformer/group_{config.num_hidden_groups}/")]
        if extra:
            raise bertkit_errors.UserError(f"{src}: the checkpoint has more ALBERT groups than num_hidden_groups="
                                           f"{config.num_hidden_groups} ({extra[0]})")
    if config.model_type == "bert":
        extra = f"bert/encoder/layer_{config.num_hidden_layers}/output/dense/kernel"
        if extra in shapes:
            logging.warning("%s: the checkpoint has more layers than num_hidden_layers=%d; the extra ones are not "
                            "used", src, config.num_hidden_layers)
    return state, has_mlm, has_nsp
