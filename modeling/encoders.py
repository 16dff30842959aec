"""BERT, ALBERT and MobileBERT encoders (Keras 3 models) with the DESIGN.md calling convention.

    out = encoder({"input_ids", "input_mask", "segment_ids"}, training=False,
                  output_hidden_states=False, output_attentions=False)
    h, mask_bias = encoder.embed(inputs, training); h, scores = encoder.run_layer(i, h, mask_bias, training)

`sequence_output`, `pooled_output` and `hidden_states` are in the layer compute dtype (float16/bfloat16 under a mixed
policy); `attention_scores` are float32 (the softmax inputs, scaled by 1/sqrt(head_size), before the mask bias).
"""
import keras
import numpy as np
import tensorflow as tf

from modeling import layers as L
from modeling.config import ModelConfig


class EncoderBase(keras.Model):
    """Shared plumbing: input handling, the layer loop, pooling, (de)serialisation."""

    def __init__(self, config, **kwargs):
        kwargs.setdefault("name", f"{config.model_type}_encoder")
        super().__init__(**kwargs)
        self.config = config
        self._block_list = []

    # subclasses: self.embeddings (layer with call(ids, seg, training)), blocks, pooler
    def _add_block(self, name, layer):
        setattr(self, name, layer)  # named attribute: tf.train.Checkpoint does not follow lists
        self._block_list.append(layer)
        return layer

    def build(self, input_shape=None):
        """Create every weight (shapes come from the config; no data needed)."""
        if self.built:
            return
        for layer in self._spec_layers():
            layer.build()
        for layer in self._flatten_layers(include_self=False):
            layer.built = True
        self.built = True

    def _spec_layers(self):
        seen, out = set(), []
        for layer in self._flatten_layers(include_self=False, recursive=True):
            if isinstance(layer, L.SpecLayer) and id(layer) not in seen:
                seen.add(id(layer))
                out.append(layer)
        return out

    def count_params_from_specs(self):
        """Number of parameters, read from the declared weight shapes (works without building)."""
        return int(sum(np.prod(shape) for layer in self._spec_layers() for _, shape, _ in layer.weight_specs()))

    @property
    def num_layers(self):
        return self.config.num_hidden_layers

    @staticmethod
    def _unpack(inputs):
        if not isinstance(inputs, dict):
            raise TypeError("encoder inputs must be a dict with input_ids, input_mask, segment_ids")
        ids = tf.cast(inputs["input_ids"], tf.int32)
        mask = inputs.get("input_mask")
        seg = inputs.get("segment_ids")
        mask = tf.ones_like(ids) if mask is None else tf.cast(mask, tf.int32)
        seg = tf.zeros_like(ids) if seg is None else tf.cast(seg, tf.int32)
        return ids, mask, seg

    def embed(self, inputs, training=False):
        """inputs dict -> (embedding output [B,T,H] compute dtype, mask_bias [B,1,1,T] float32)."""
        self.build()
        ids, mask, seg = self._unpack(inputs)
        h = self.embeddings(ids, seg, training=training)
        return h, L.mask_bias_from(mask)

    def run_layer(self, i, h, mask_bias, training=False):
        """Apply layer i (0-based); returns (hidden [B,T,H], attention scores [B,N,T,T] float32)."""
        return self._block_list[i](h, mask_bias, training=training)

    def call(self, inputs, training=False, output_hidden_states=False, output_attentions=False):
        h, mask_bias = self.embed(inputs, training)
        hidden, scores = [h], []
        for i in range(self.num_layers):
            h, s = self.run_layer(i, h, mask_bias, training)
            hidden.append(h)
            scores.append(s)
        out = {"sequence_output": h, "pooled_output": self.pool(h)}
        if output_hidden_states:
            out["hidden_states"] = hidden
        if output_attentions:
            out["attention_scores"] = scores
        return out

    def pool(self, sequence_output):
        first = sequence_output[:, 0]
        if self.pooler is None:
            return first
        return self.pooler(first)

    @property
    def word_embeddings(self):
        self.build()
        return self.embeddings.word_embeddings

    def get_config(self):
        return {"config": self.config.to_dict(), "name": self.name}

    @classmethod
    def from_config(cls, cfg):
        cfg = dict(cfg)
        config = ModelConfig.from_dict(cfg.pop("config"), source="keras model config")
        return cls(config, **cfg)

    def build_from_config(self, cfg):
        self.build()


# ---------------------------------------------------------------------------------------------------- BERT
class BertEmbeddings(L.SpecLayer):
    """word + learned position + token type embeddings (width `dim`), LayerNorm, dropout; optional E -> H mapping."""

    def __init__(self, config, dim, **kwargs):
        super().__init__(**kwargs)
        init = L.initializer(config)
        self.dim = dim
        self._spec("word_embeddings", (config.vocab_size, dim), init)
        self._spec("position_embeddings", (config.max_position_embeddings, dim), init)
        self._spec("token_type_embeddings", (config.type_vocab_size, dim), init)
        self.norm = L.LayerNorm(dim, config.layer_norm_eps, name="norm")
        self.dropout = keras.layers.Dropout(config.hidden_dropout_prob) if config.hidden_dropout_prob > 0 else None
        self.projection = None
        if dim != config.hidden_size:  # ALBERT: embedding_hidden_mapping_in
            self.projection = L.Dense(dim, config.hidden_size, init, name="projection")

    def call(self, ids, seg, training=False):
        t = tf.shape(ids)[1]
        x = tf.gather(self.word_embeddings, ids)
        x = x + self.position_embeddings[tf.newaxis, :t, :]
        x = x + tf.gather(self.token_type_embeddings, seg)
        x = self.norm(x)
        if self.dropout is not None:
            x = self.dropout(x, training=training)
        if self.projection is not None:
            x = self.projection(x)
        return tf.cast(x, self.compute_dtype)


class BertEncoder(EncoderBase):
    """BERT (Devlin et al.): learned positions, token types, post-LN blocks, exact GELU, pooler dense+tanh."""

    def __init__(self, config, **kwargs):
        super().__init__(config, **kwargs)
        init = L.initializer(config)
        self.embeddings = BertEmbeddings(config, config.hidden_size, name="embeddings")
        for i in range(config.num_hidden_layers):
            self._add_block(f"layer_{i}", L.TransformerBlock(config, name=f"layer_{i}"))
        self.pooler = L.Dense(config.hidden_size, config.hidden_size, init, activation="tanh", name="pooler")


# ---------------------------------------------------------------------------------------------------- ALBERT
class AlbertEncoder(EncoderBase):
    """ALBERT: factorised embeddings (E -> H), blocks shared across layers in `num_hidden_groups` groups of
    `inner_group_num` blocks; layer i runs every block of group int(i * groups / layers)."""

    def __init__(self, config, **kwargs):
        super().__init__(config, **kwargs)
        init = L.initializer(config)
        self.embeddings = BertEmbeddings(config, config.embedding_size, name="embeddings")
        self._groups = []
        for g in range(config.num_hidden_groups):
            group = []
            for j in range(config.inner_group_num):
                name = f"group_{g}_inner_{j}"
                block = L.TransformerBlock(config, name=name)
                setattr(self, name, block)
                group.append(block)
            self._groups.append(tuple(group))
        self.pooler = L.Dense(config.hidden_size, config.hidden_size, init, activation="tanh", name="pooler")

    def group_index(self, i):
        c = self.config
        return int(i / (c.num_hidden_layers / c.num_hidden_groups))

    def run_layer(self, i, h, mask_bias, training=False):
        scores = None
        for block in self._groups[self.group_index(i)]:
            h, scores = block(h, mask_bias, training=training)
        return h, scores


# ---------------------------------------------------------------------------------------------------- MobileBERT
class MobileBertEmbeddings(L.SpecLayer):
    """Word embeddings of width E, trigram concat (3E), dense -> H, + position + token type, NoNorm, dropout."""

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        init = L.initializer(config)
        h, e = config.hidden_size, config.embedding_size
        self.trigram = config.trigram_input
        self._spec("word_embeddings", (config.vocab_size, e), init)
        self._spec("position_embeddings", (config.max_position_embeddings, h), init)
        self._spec("token_type_embeddings", (config.type_vocab_size, h), init)
        self.transformation = None
        if self.trigram or e != h:
            self.transformation = L.Dense(e * (3 if self.trigram else 1), h, init, name="transformation")
        # HF builds this norm without eps: torch's default 1e-5 when normalization_type == "layer_norm"
        self.norm = L.make_norm(config.normalization_type, h, 1e-5, name="norm")
        self.dropout = keras.layers.Dropout(config.hidden_dropout_prob) if config.hidden_dropout_prob > 0 else None

    def call(self, ids, seg, training=False):
        t = tf.shape(ids)[1]
        x = tf.cast(tf.gather(self.word_embeddings, ids), self.compute_dtype)
        if self.trigram:
            nxt = tf.pad(x[:, 1:], [[0, 0], [0, 1], [0, 0]])
            prv = tf.pad(x[:, :-1], [[0, 0], [1, 0], [0, 0]])
            x = tf.concat([nxt, x, prv], axis=-1)
        if self.transformation is not None:
            x = self.transformation(x)
        x = x + self._w(self.position_embeddings)[tf.newaxis, :t, :]
        x = x + tf.gather(self._w(self.token_type_embeddings), seg)
        x = self.norm(x)
        if self.dropout is not None:
            x = self.dropout(x, training=training)
        return tf.cast(x, self.compute_dtype)


class MobileBertBlock(keras.layers.Layer):
    """One MobileBERT layer, following transformers' MobileBertLayer."""

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        c = config
        init = L.initializer(c)
        h, th, inter, eps = c.hidden_size, c.true_hidden_size, c.intermediate_size, c.layer_norm_eps
        norm = c.normalization_type
        self.use_bottleneck = c.use_bottleneck
        self.use_bottleneck_attention = c.use_bottleneck_attention
        self.kq_shared = c.key_query_shared_bottleneck
        self.num_heads, self.head_size = c.num_attention_heads, th // c.num_attention_heads
        if self.use_bottleneck:
            self.bottleneck_input = L.Dense(h, c.intra_bottleneck_size, init, name="bottleneck_input")
            self.bottleneck_input_norm = L.make_norm(norm, c.intra_bottleneck_size, eps, "bottleneck_input_norm")
            if self.kq_shared:
                self.bottleneck_attention = L.Dense(h, c.intra_bottleneck_size, init, name="bottleneck_attention")
                self.bottleneck_attention_norm = L.make_norm(norm, c.intra_bottleneck_size, eps,
                                                             "bottleneck_attention_norm")
        # Query/key read the bottleneck (width true_hidden_size) or, without a bottleneck for them, the layer input
        # (width hidden_size): IB-BERT's inverted bottleneck, where true_hidden_size > hidden_size.
        qk_in = th if (c.use_bottleneck_attention or self.kq_shared or not self.use_bottleneck) else h
        self.query = L.Dense(qk_in, th, init, name="query")
        self.key = L.Dense(qk_in, th, init, name="key")
        self.value = L.Dense(th if c.use_bottleneck_attention else h, th, init, name="value")
        self.attention_dropout = (keras.layers.Dropout(c.attention_probs_dropout_prob)
                                  if c.attention_probs_dropout_prob > 0 else None)
        self.attention_output = L.Dense(th, th, init, name="attention_output")
        self.attention_norm = L.make_norm(norm, th, eps, "attention_norm")
        self.dropout = keras.layers.Dropout(c.hidden_dropout_prob) if c.hidden_dropout_prob > 0 else None
        self._ffn = []
        for j in range(c.num_feedforward_networks - 1):
            inter_l = L.Dense(th, inter, init, activation=c.hidden_act, name=f"ffn_{j}_intermediate")
            out_l = L.Dense(inter, th, init, name=f"ffn_{j}_output")
            norm_l = L.make_norm(norm, th, eps, f"ffn_{j}_norm")
            setattr(self, f"ffn_{j}_intermediate", inter_l)
            setattr(self, f"ffn_{j}_output", out_l)
            setattr(self, f"ffn_{j}_norm", norm_l)
            self._ffn.append((inter_l, out_l, norm_l))
        self.intermediate = L.Dense(th, inter, init, activation=c.hidden_act, name="intermediate")
        self.output_dense = L.Dense(inter, th, init, name="output")
        self.output_norm = L.make_norm(norm, th, 1e-5, "output_norm")  # HF: no eps given -> torch default
        if self.use_bottleneck:
            self.output_bottleneck = L.Dense(th, h, init, name="output_bottleneck")
            self.output_bottleneck_norm = L.make_norm(norm, h, eps, "output_bottleneck_norm")

    def _drop(self, x, training):
        return self.dropout(x, training=training) if self.dropout is not None else x

    def call(self, hidden, mask_bias, training=False):
        hidden = tf.cast(hidden, self.compute_dtype)
        if self.use_bottleneck:
            layer_input = self.bottleneck_input_norm(self.bottleneck_input(hidden))
            if self.use_bottleneck_attention:
                q_in = k_in = v_in = layer_input
            elif self.kq_shared:
                q_in = k_in = self.bottleneck_attention_norm(self.bottleneck_attention(hidden))
                v_in = hidden
            else:
                q_in = k_in = v_in = hidden
        else:
            q_in = k_in = v_in = layer_input = hidden
        q = L.split_heads(self.query(q_in), self.num_heads, self.head_size)
        k = L.split_heads(self.key(k_in), self.num_heads, self.head_size)
        v = L.split_heads(self.value(v_in), self.num_heads, self.head_size)
        ctx, scores = L.attention_core(q, k, v, mask_bias, self.head_size ** -0.5, self.attention_dropout,
                                       training, self.compute_dtype)
        attn = self.attention_output(ctx)
        if not self.use_bottleneck:
            attn = self._drop(attn, training)
        attn = self.attention_norm(attn + layer_input)
        for inter_l, out_l, norm_l in self._ffn:
            attn = norm_l(out_l(inter_l(attn)) + attn)
        y = self.output_dense(self.intermediate(attn))
        if not self.use_bottleneck:
            y = self.output_norm(self._drop(y, training) + attn)
        else:
            y = self.output_norm(y + attn)
            y = self.output_bottleneck_norm(self._drop(self.output_bottleneck(y), training) + hidden)
        return y, scores


class MobileBertEncoder(EncoderBase):
    """MobileBERT (Sun et al. 2020) as transformers' MobileBertModel: trigram embeddings, bottlenecks, stacked FFNs,
    NoNorm, ReLU; pooler dense+tanh only when classifier_activation, else the [CLS] vector.

    The same class is the IB-BERT teacher of MobileBERT's knowledge transfer (configs/ibbert_large.json,
    configs/tiny_ibbert.json): intra_bottleneck_size larger than hidden_size (an inverted bottleneck), no shared
    key/query bottleneck (query, key and value read the hidden_size-wide layer input), one feed-forward network,
    LayerNorm, GELU."""

    def __init__(self, config, **kwargs):
        super().__init__(config, **kwargs)
        self.embeddings = MobileBertEmbeddings(config, name="embeddings")
        for i in range(config.num_hidden_layers):
            self._add_block(f"layer_{i}", MobileBertBlock(config, name=f"layer_{i}"))
        self.pooler = None
        if config.classifier_activation:
            self.pooler = L.Dense(config.hidden_size, config.hidden_size, L.initializer(config), activation="tanh",
                                  name="pooler")


_ENCODERS = {"bert": BertEncoder, "albert": AlbertEncoder, "mobilebert": MobileBertEncoder}
for _cls in _ENCODERS.values():
    keras.saving.register_keras_serializable(package="bertkit")(_cls)


def build_encoder(config, build=True, name=None):
    """The encoder for `config` (a ModelConfig); with build=False no weights are allocated yet."""
    if not isinstance(config, ModelConfig):
        raise TypeError(f"build_encoder expects a ModelConfig, got {type(config).__name__}")
    kwargs = {"name": name} if name else {}
    encoder = _ENCODERS[config.model_type](config, **kwargs)
    if build:
        encoder.build()
    return encoder
