"""Building blocks of the encoders: dense, normalisation, embeddings, attention.

All layers declare their weights up front (`weight_specs()`: name, shape, initializer) and create exactly those in
`build()`, so a model's parameter count can be read from the declarations without allocating anything
(`modeling.count_params_from_specs`). Under a mixed precision policy matmuls run in the compute dtype, while LayerNorm
statistics and the attention softmax are computed in float32.
"""
import math

import keras
import tensorflow as tf

MASK_NEG = -10000.0  # additive attention bias for padding, as in the original BERT


def initializer(config):
    return keras.initializers.TruncatedNormal(stddev=config.initializer_range)


def gelu_exact(x):
    return tf.nn.gelu(x, approximate=False)


def gelu_tanh(x):
    return tf.nn.gelu(x, approximate=True)


def gelu_fast(x):
    return 0.5 * x * (1.0 + tf.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))


_ACTIVATIONS = {
    "gelu": gelu_exact,
    "gelu_new": gelu_tanh,
    "gelu_pytorch_tanh": gelu_tanh,
    "gelu_fast": gelu_fast,
    "relu": tf.nn.relu,
    "tanh": tf.tanh,
    "swish": tf.nn.silu,
    "silu": tf.nn.silu,
}


def get_activation(name):
    return _ACTIVATIONS[name]


class SpecLayer(keras.layers.Layer):
    """A layer whose own weights are fully declared in __init__ via `self._spec(name, shape, init)`."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._weight_specs = []

    def _spec(self, name, shape, init):
        self._weight_specs.append((name, tuple(int(s) for s in shape), init))

    def weight_specs(self):
        return list(self._weight_specs)

    def build(self, input_shape=None):
        if self.built:
            return
        for name, shape, init in self._weight_specs:
            setattr(self, name, self.add_weight(name=name, shape=shape, initializer=init, trainable=True))
        self.built = True

    def _w(self, var):
        """A weight in the compute dtype."""
        return tf.cast(var, self.compute_dtype)


class Dense(SpecLayer):
    """y = act(x @ kernel + bias) on the last axis; kernel [in, out] (HF's Linear weight transposed)."""

    def __init__(self, in_dim, units, init, activation=None, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.in_dim, self.units, self.use_bias = int(in_dim), int(units), use_bias
        self.activation = get_activation(activation) if isinstance(activation, str) else activation
        self._spec("kernel", (in_dim, units), init)
        if use_bias:
            self._spec("bias", (units,), "zeros")

    def call(self, x):
        x = tf.cast(x, self.compute_dtype)
        shape = tf.shape(x)
        y = tf.matmul(tf.reshape(x, [-1, self.in_dim]), self._w(self.kernel))
        if self.use_bias:
            y = tf.nn.bias_add(y, self._w(self.bias))
        if self.activation is not None:
            y = self.activation(y)
        return tf.reshape(y, tf.concat([shape[:-1], [self.units]], 0))


class LayerNorm(SpecLayer):
    """LayerNorm over the last axis, statistics in float32, output in the compute dtype."""

    def __init__(self, dim, eps, **kwargs):
        super().__init__(**kwargs)
        self.eps = float(eps)
        self._spec("gamma", (dim,), "ones")
        self._spec("beta", (dim,), "zeros")

    def call(self, x):
        x = tf.cast(x, tf.float32)
        mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
        y = (x - mean) * tf.math.rsqrt(var + self.eps) * tf.cast(self.gamma, tf.float32) \
            + tf.cast(self.beta, tf.float32)
        return tf.cast(y, self.compute_dtype)


class NoNorm(SpecLayer):
    """MobileBERT's NoNorm: x * gamma + beta (elementwise)."""

    def __init__(self, dim, eps=None, **kwargs):
        super().__init__(**kwargs)
        self._spec("gamma", (dim,), "ones")
        self._spec("beta", (dim,), "zeros")

    def call(self, x):
        x = tf.cast(x, self.compute_dtype)
        return x * self._w(self.gamma) + self._w(self.beta)


def make_norm(kind, dim, eps, name):
    if kind == "layer_norm":
        return LayerNorm(dim, eps, name=name)
    return NoNorm(dim, name=name)


def mask_bias_from(input_mask):
    """input_mask [B,T] (1 = token, 0 = padding) -> additive float32 bias [B,1,1,T]."""
    m = tf.cast(input_mask, tf.float32)
    return ((1.0 - m) * MASK_NEG)[:, tf.newaxis, tf.newaxis, :]


def attention_core(q, k, v, mask_bias, scale, dropout, training, compute_dtype):
    """q,k,v [B,N,T,d] in the compute dtype -> (context [B,T,N*d], scores [B,N,T,T] float32, pre-mask)."""
    mask_bias = tf.cast(mask_bias, tf.float32)
    q = q * tf.cast(scale, q.dtype)
    scores = tf.cast(tf.matmul(q, k, transpose_b=True), tf.float32)
    probs = tf.nn.softmax(scores + mask_bias, axis=-1)
    probs = tf.cast(probs, compute_dtype)
    if dropout is not None:
        probs = dropout(probs, training=training)
    ctx = tf.matmul(probs, v)  # [B,N,T,d]
    ctx = tf.transpose(ctx, [0, 2, 1, 3])
    s = tf.shape(ctx)
    ctx = tf.reshape(ctx, [s[0], s[1], s[2] * s[3]])
    return ctx, scores


def split_heads(x, num_heads, head_size):
    """[B,T,N*d] -> [B,N,T,d]."""
    s = tf.shape(x)
    return tf.transpose(tf.reshape(x, [s[0], s[1], num_heads, head_size]), [0, 2, 1, 3])


class FusedSelfAttention(SpecLayer):
    """BERT/ALBERT self-attention with one fused QKV matmul (kernel [H, 3H] = [q | k | v]) and the output dense."""

    def __init__(self, hidden_size, num_heads, attention_dropout, init, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.num_heads = hidden_size, num_heads
        self.head_size = hidden_size // num_heads
        self._spec("qkv_kernel", (hidden_size, 3 * hidden_size), init)
        self._spec("qkv_bias", (3 * hidden_size,), "zeros")
        self._spec("output_kernel", (hidden_size, hidden_size), init)
        self._spec("output_bias", (hidden_size,), "zeros")
        self.attention_dropout = keras.layers.Dropout(attention_dropout) if attention_dropout > 0 else None

    def call(self, x, mask_bias, training=False):
        x = tf.cast(x, self.compute_dtype)
        s = tf.shape(x)
        b, t, h = s[0], s[1], self.hidden_size
        x2 = tf.reshape(x, [-1, h])
        kernel, bias = self._w(self.qkv_kernel), self._w(self.qkv_bias)

        def heads(j):  # Q, K or V: one matmul on its third of the fused kernel, then [B,N,T,d]
            y = tf.nn.bias_add(tf.matmul(x2, kernel[:, j * h:(j + 1) * h]), bias[j * h:(j + 1) * h])
            return split_heads(tf.reshape(y, [b, t, h]), self.num_heads, self.head_size)

        # Three matmuls and three 4-D transposes train about 10% faster on CPU than one [H, 3H] matmul followed by
        # a 5-D transpose of the fused result (bench/bench_encoder.py); the weights are the same either way.
        ctx, scores = attention_core(heads(0), heads(1), heads(2), mask_bias, 1.0 / math.sqrt(self.head_size),
                                     self.attention_dropout, training, self.compute_dtype)
        out = tf.nn.bias_add(tf.matmul(tf.reshape(ctx, [-1, h]), self._w(self.output_kernel)),
                             self._w(self.output_bias))
        return tf.reshape(out, [b, t, h]), scores


class TransformerBlock(keras.layers.Layer):
    """Post-LayerNorm transformer block of BERT and ALBERT."""

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        h, i = config.hidden_size, config.intermediate_size
        init = initializer(config)
        self.attention = FusedSelfAttention(h, config.num_attention_heads, config.attention_probs_dropout_prob, init,
                                            name="attention")
        self.attention_norm = LayerNorm(h, config.layer_norm_eps, name="attention_norm")
        self.intermediate = Dense(h, i, init, activation=config.hidden_act, name="intermediate")
        self.output_dense = Dense(i, h, init, name="output")
        self.output_norm = LayerNorm(h, config.layer_norm_eps, name="output_norm")
        self.dropout = keras.layers.Dropout(config.hidden_dropout_prob) if config.hidden_dropout_prob > 0 else None

    def build(self, input_shape=None):
        for layer in (self.attention, self.attention_norm, self.intermediate, self.output_dense, self.output_norm):
            layer.build()
        self.built = True

    def _drop(self, x, training):
        return self.dropout(x, training=training) if self.dropout is not None else x

    def call(self, x, mask_bias, training=False):
        x = tf.cast(x, self.compute_dtype)
        attn, scores = self.attention(x, mask_bias, training=training)
        attn = self.attention_norm(x + self._drop(attn, training))
        y = self.output_dense(self.intermediate(attn))
        y = self.output_norm(attn + self._drop(y, training))
        return y, scores
