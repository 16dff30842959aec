"""Google's original TF1 MobileBERT checkpoints (e.g. uncased_L-24_H-128_B-512_A-4_F-4_OPT): the variable table.

    rows = tf1_table(config, names, with_mlm, with_nsp)   # [(tf1 name, HF key, tf1 shape, transpose)]

`modeling.tf1_import` reads the TF1 variables through this table, renames them to HuggingFace's MobileBERT state-dict
keys (kernels transposed to torch's [out, in]) and assigns them with `modeling.hf_import.assign_hf_state`, as it does
for TF1 BERT / ALBERT. The names are those of google-research/mobilebert (the ones transformers' old
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

_NORM_NAMES = ("FakeLayerNorm", "LayerNorm")


def tf1_table(config, names, with_mlm, with_nsp):
    """[(tf1 name, hf key, tf1 shape, transpose)] of a MobileBERT `config` (a ModelConfig); `names`: the checkpoint's
    variable names (a dict or set), used only to pick FakeLayerNorm or LayerNorm; transpose: [in, out] -> [out, in]."""
    c = config
    H, E, TH, I, V = c.hidden_size, c.embedding_size, c.true_hidden_size, c.intermediate_size, c.vocab_size
    B = c.intra_bottleneck_size
    rows = []

    def var(tf_name, hf_key, shape, transpose=False):
        rows.append((tf_name, hf_key, tuple(shape), transpose))

    def dense(tf_name, hf_key, n_in, n_out):
        var(tf_name + "/kernel", hf_key + ".weight", (n_in, n_out), True)
        var(tf_name + "/bias", hf_key + ".bias", (n_out,))

    def norm(tf_scope, hf_key, n, default=None):
        found = [s for s in _NORM_NAMES if f"{tf_scope}/{s}/gamma" in names]
        default = default or ("FakeLayerNorm" if c.normalization_type == "no_norm" else "LayerNorm")
        scope = f"{tf_scope}/{found[0] if found else default}"
        var(scope + "/gamma", hf_key + ".weight", (n,))
        var(scope + "/beta", hf_key + ".bias", (n,))

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
