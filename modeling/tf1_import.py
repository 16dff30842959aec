"""Original Google TF1 BERT / ALBERT / MobileBERT checkpoints (`bert_model.ckpt`, variables `bert/...`, `cls/...`).

    state, has_mlm, has_nsp = tf1_state(shapes, read, config, src, want_mlm, want_nsp)

The TF1 names are renamed to HuggingFace state-dict names (kernels transposed to torch layout), so that
`modeling.hf_import.assign_hf_state`, the one assignment path for foreign weights, assigns them. Shapes and presence
are checked first against the TF1 names, so errors name the variable the user's checkpoint has. `shapes` ({TF1 name:
shape}) and `read(name) -> array` come from the checkpoint reader of modeling/checkpoints.py. The tables:
`tf1_table` (BERT, ALBERT) and `mobilebert_table` (MobileBERT, e.g. uncased_L-24_H-128_B-512_A-4_F-4_OPT).

MobileBERT's names are those of google-research/mobilebert (the ones transformers' old
`load_tf_weights_in_mobilebert` renamed):

    bert/embeddings/{word,position,token_type}_embeddings, bert/embeddings/embedding_transformation/{kernel,bias}
    bert/embeddings/FakeLayerNorm/{gamma,beta}          (NoNorm; "LayerNorm" with normalization_type layer_norm)
    bert/encoder/layer_<i>/bottleneck/{input,attention}/dense, .../bottleneck/{input,attention}/FakeLayerNorm
    bert/encoder/layer_<i>/attention/self/{query,key,value}, attention/output/dense, attention/output/FakeLayerNorm
    bert/encoder/layer_<i>/ffn_layer_<j>/intermediate/dense, .../ffn_layer_<j>/output/{dense,FakeLayerNorm}
    bert/encoder/layer_<i>/intermediate/dense, output/dense, output/FakeLayerNorm
    bert/encoder/layer_<i>/output/bottleneck/dense, output/bottleneck/FakeLayerNorm
    bert/pooler/dense                                    (only read with classifier_activation)
    cls/predictions/transform/dense, cls/predictions/transform/LayerNorm, cls/predictions/output_bias,
    cls/predictions/extra_output_weights [V, H - E]      (HF: cls.predictions.dense.weight [H - E, V])
    cls/seq_relationship/output_weights [2, H], cls/seq_relationship/output_bias

Each norm is looked up under both names (FakeLayerNorm / LayerNorm): the one the checkpoint has is used.
"""
import numpy as np
from absl import logging

import bertkit_errors


def _shape_str(shape):
    return "[" + ", ".join(str(int(d)) for d in shape) + "]"


def tf1_model_type(names):
    if any(n.startswith("bert/encoder/transformer/") or n.startswith("bert/encoder/embedding_hidden_mapping_in")
           for n in names):
        return "albert"
    if any("/bottleneck/" in n or n.startswith("bert/embeddings/embedding_transformation") for n in names):
        return "mobilebert"
    return "bert"


class _Rows(list):
    """[(tf1 name, hf key, tf1 shape, transpose)]: the table of one config; transpose: TF1 [in, out] -> HF [out, in]."""

    def var(self, tf_name, hf_key, shape, transpose=False):
        self.append((tf_name, hf_key, tuple(shape), transpose))

    def dense(self, tf_name, hf_key, n_in, n_out):
        self.var(tf_name + "/kernel", hf_key + ".weight", (n_in, n_out), True)
        self.var(tf_name + "/bias", hf_key + ".bias", (n_out,))

    def norm(self, tf_scope, hf_key, n):
        self.var(tf_scope + "/gamma", hf_key + ".weight", (n,))
        self.var(tf_scope + "/beta", hf_key + ".bias", (n,))


def tf1_table(config, with_mlm, with_nsp):
    """[(tf1 name, hf key, tf1 shape, transpose)] for `config`; transpose: TF1 [in, out] -> HF [out, in]."""
    c = config
    H, E, I, V = c.hidden_size, c.embedding_dim, c.intermediate_size, c.vocab_size
    rows = _Rows()
    var, dense, norm = rows.var, rows.dense, rows.norm

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


_NORM_NAMES = ("FakeLayerNorm", "LayerNorm")


def mobilebert_table(config, names, with_mlm, with_nsp):
    """[(tf1 name, hf key, tf1 shape, transpose)] of a MobileBERT `config` (a ModelConfig); `names`: the checkpoint's
    variable names (a dict or set), used only to pick FakeLayerNorm or LayerNorm; transpose: [in, out] -> [out, in]."""
    c = config
    H, E, TH, I, V = c.hidden_size, c.embedding_size, c.true_hidden_size, c.intermediate_size, c.vocab_size
    B = c.intra_bottleneck_size
    rows = _Rows()
    var, dense = rows.var, rows.dense

    def norm(tf_scope, hf_key, n, default=None):
        found = [s for s in _NORM_NAMES if f"{tf_scope}/{s}/gamma" in names]
        default = default or ("FakeLayerNorm" if c.normalization_type == "no_norm" else "LayerNorm")
        rows.norm(f"{tf_scope}/{found[0] if found else default}", hf_key, n)

    var("bert/embeddings/word_embeddings", "embeddings.word_embeddings.weight", (V, E))
    var("bert/embeddings/position_embeddings", "embeddings.position_embeddings.weight", (c.max_position_embeddings, H))
    var("bert/embeddings/token_type_embeddings", "embeddings.token_type_embeddings.weight", (c.type_vocab_size, H))
    if c.trigram_input or E != H:
        dense("bert/embeddings/embedding_transformation", "embeddings.embedding_transformation",
              E * (3 if c.trigram_input else 1), H)
    norm("bert/embeddings", "embeddings.LayerNorm", H)
    qk_in = TH if (c.use_bottleneck_attention or c.key_query_shared_bottleneck) else H
    for i in range(c.num_hidden_layers):
        t, h = f"bert/encoder/layer_{i}/", f"encoder.layer.{i}."
        if c.use_bottleneck:
            dense(t + "bottleneck/input/dense", h + "bottleneck.input.dense", H, B)
            norm(t + "bottleneck/input", h + "bottleneck.input.LayerNorm", B)
            if c.key_query_shared_bottleneck:
                dense(t + "bottleneck/attention/dense", h + "bottleneck.attention.dense", H, B)
                norm(t + "bottleneck/attention", h + "bottleneck.attention.LayerNorm", B)
        dense(t + "attention/self/query", h + "attention.self.query", qk_in, TH)
        dense(t + "attention/self/key", h + "attention.self.key", qk_in, TH)
        dense(t + "attention/self/value", h + "attention.self.value", TH if c.use_bottleneck_attention else H, TH)
        dense(t + "attention/output/dense", h + "attention.output.dense", TH, TH)
        norm(t + "attention/output", h + "attention.output.LayerNorm", TH)
        for j in range(c.num_feedforward_networks - 1):
            f, g = t + f"ffn_layer_{j}/", h + f"ffn.{j}."
            dense(f + "intermediate/dense", g + "intermediate.dense", TH, I)
            dense(f + "output/dense", g + "output.dense", I, TH)
            norm(f + "output", g + "output.LayerNorm", TH)
        dense(t + "intermediate/dense", h + "intermediate.dense", TH, I)
        dense(t + "output/dense", h + "output.dense", I, TH)
        norm(t + "output", h + "output.LayerNorm", TH)
        if c.use_bottleneck:
            dense(t + "output/bottleneck/dense", h + "output.bottleneck.dense", TH, H)
            norm(t + "output/bottleneck", h + "output.bottleneck.LayerNorm", H)
    if c.classifier_activation:
        dense("bert/pooler/dense", "pooler.dense", H, H)
    if with_mlm:
        dense("cls/predictions/transform/dense", "cls.predictions.transform.dense", H, H)
        norm("cls/predictions/transform", "cls.predictions.transform.LayerNorm", H, default="LayerNorm")
        var("cls/predictions/output_bias", "cls.predictions.bias", (V,))
        if H > E:
            var("cls/predictions/extra_output_weights", "cls.predictions.dense.weight", (V, H - E), True)
    if with_nsp:
        var("cls/seq_relationship/output_weights", "cls.seq_relationship.weight", (2, H))  # already [out, in]
        var("cls/seq_relationship/output_bias", "cls.seq_relationship.bias", (2,))
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
    if config.model_type == "mobilebert":  # Google's MobileBERT release
        rows = mobilebert_table(config, shapes, has_mlm, has_nsp)
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
