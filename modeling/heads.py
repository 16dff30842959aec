"""Task heads: masked LM (tied to the word embeddings), sentence pair (NSP/SOP), classification; the pretraining and
classifier models of DESIGN.md; TinyBERT's FitDense projection. All head outputs are float32 logits."""
import keras
import tensorflow as tf

from modeling import layers as L
from modeling.config import ModelConfig
from modeling.encoders import build_encoder


class MaskedLMHead(keras.layers.Layer):
    """call(sequence_output [B,T,H], masked_lm_positions [B,P]) -> float32 logits [B,P,V].

    BERT: dense H->H + act + LayerNorm, then x @ word_embeddings^T + bias.
    ALBERT: dense H->E + act + LayerNorm(E), then x @ word_embeddings^T + bias.
    MobileBERT: dense H->H + act + LayerNorm, then x @ [word_embeddings^T ; extra_output_weights] + bias, where
    `extra_output_weights` [H-E, V] is HF's cls.predictions.dense.weight.
    With masked_lm_positions=None every position is scored ([B,T,V]).
    """

    def __init__(self, config, encoder, **kwargs):
        kwargs.setdefault("name", "mlm_head")
        super().__init__(**kwargs)
        self.config = config
        init = L.initializer(config)
        h, e = config.hidden_size, config.embedding_dim
        out_dim = e if config.model_type == "albert" else h
        self.transform = L.Dense(h, out_dim, init, activation=config.hidden_act, name="transform")
        self.transform_norm = L.LayerNorm(out_dim, config.layer_norm_eps, name="transform_norm")
        self._extra_dim = h - e if config.model_type == "mobilebert" else 0
        # A getter, not an attribute: the embedding variable belongs to (and is saved with) the encoder.
        self._get_embeddings = lambda: encoder.word_embeddings
        self.output_bias = self.add_weight(name="output_bias", shape=(config.vocab_size,), initializer="zeros")
        if self._extra_dim:
            self.extra_output_weights = self.add_weight(name="extra_output_weights",
                                                        shape=(self._extra_dim, config.vocab_size),
                                                        initializer=init)

    def build(self, input_shape=None):
        self.transform.build()
        self.transform_norm.build()
        self.built = True

    def call(self, sequence_output, masked_lm_positions=None):
        x = sequence_output
        if masked_lm_positions is not None:
            x = tf.gather(x, tf.cast(masked_lm_positions, tf.int32), batch_dims=1)
        x = self.transform_norm(self.transform(x))
        emb = tf.cast(self._get_embeddings(), self.compute_dtype)
        s = tf.shape(x)
        x2 = tf.reshape(x, [-1, s[-1]])
        if self._extra_dim:
            e = self.config.embedding_size
            logits = tf.matmul(x2[:, :e], emb, transpose_b=True) + tf.matmul(
                x2[:, e:], tf.cast(self.extra_output_weights, self.compute_dtype))
        else:
            logits = tf.matmul(x2, emb, transpose_b=True)
        logits = tf.cast(logits, tf.float32) + tf.cast(self.output_bias, tf.float32)
        return tf.reshape(logits, tf.concat([s[:-1], [self.config.vocab_size]], 0))


class _DenseHead(keras.layers.Layer):
    def __init__(self, units, dropout=0.0, initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        self.units, self.rate, self.initializer_range = int(units), float(dropout), float(initializer_range)
        self.dropout = keras.layers.Dropout(self.rate) if self.rate > 0 else None
        self.dense = keras.layers.Dense(
            self.units, kernel_initializer=keras.initializers.TruncatedNormal(stddev=initializer_range),
            name="dense")

    def build(self, input_shape):
        self.dense.build(input_shape)
        self.built = True

    def call(self, pooled_output, training=False):
        x = pooled_output
        if self.dropout is not None:
            x = self.dropout(x, training=training)
        return tf.cast(self.dense(x), tf.float32)

    def get_config(self):
        return {**super().get_config(), "dropout": self.rate, "initializer_range": self.initializer_range}


@keras.saving.register_keras_serializable(package="bertkit")
class SentencePairHead(_DenseHead):
    """NSP (BERT, MobileBERT) / SOP (ALBERT): pooled_output [B,H] -> float32 logits [B,2]."""

    def __init__(self, dropout=0.0, initializer_range=0.02, **kwargs):
        kwargs.pop("units", None)
        kwargs.setdefault("name", "nsp_head")
        super().__init__(2, dropout, initializer_range, **kwargs)


@keras.saving.register_keras_serializable(package="bertkit")
class ClassificationHead(_DenseHead):
    """dropout + dense: pooled_output [B,H] -> float32 logits [B,num_labels] (num_labels=1: regression)."""

    def __init__(self, num_labels, dropout=0.1, initializer_range=0.02, **kwargs):
        kwargs.setdefault("name", "classifier_head")
        super().__init__(num_labels, dropout, initializer_range, **kwargs)
        self.num_labels = int(num_labels)

    def get_config(self):
        return {**super().get_config(), "num_labels": self.num_labels}


@keras.saving.register_keras_serializable(package="bertkit")
class FitDense(L.SpecLayer):
    """TinyBERT's fit_dense: student hidden [.., Hs] -> teacher hidden [.., Ht] (one shared linear map)."""

    def __init__(self, student_hidden_size, teacher_hidden_size, initializer_range=0.02, **kwargs):
        kwargs.setdefault("name", "fit_dense")
        super().__init__(**kwargs)
        self.student_hidden_size, self.teacher_hidden_size = int(student_hidden_size), int(teacher_hidden_size)
        self.initializer_range = float(initializer_range)
        self.dense = L.Dense(student_hidden_size, teacher_hidden_size,
                             keras.initializers.TruncatedNormal(stddev=initializer_range), name="dense")

    def build(self, input_shape=None):
        self.dense.build()
        self.built = True

    def call(self, x):
        return self.dense(x)

    def get_config(self):
        return {**super().get_config(), "student_hidden_size": self.student_hidden_size,
                "teacher_hidden_size": self.teacher_hidden_size, "initializer_range": self.initializer_range}


def build_fit_dense(student_config, teacher_hidden_size):
    layer = FitDense(student_config.hidden_size, teacher_hidden_size, student_config.initializer_range)
    layer.build()
    return layer


def _config_from(cfg):
    return ModelConfig.from_dict(cfg, source="keras model config")


@keras.saving.register_keras_serializable(package="bertkit")
class PretrainingModel(keras.Model):
    """encoder + mlm_head + nsp_head. call(features) -> {"mlm_logits" [B,P,V], "nsp_logits" [B,2]} (float32)."""

    def __init__(self, config, **kwargs):
        if isinstance(config, dict):
            config = _config_from(config)
        kwargs.setdefault("name", "pretraining_model")
        super().__init__(**kwargs)
        self.config = config
        self.encoder = build_encoder(config)
        self.mlm_head = MaskedLMHead(config, self.encoder)
        self.mlm_head.build()
        # ALBERT's SOP head has dropout classifier_dropout_prob (0.1 in HF); BERT's NSP head has none.
        self.nsp_head = SentencePairHead(dropout=0.1 if config.model_type == "albert" else 0.0,
                                         initializer_range=config.initializer_range)
        self.nsp_head.build((None, config.hidden_size))
        self.built = True

    def call(self, features, training=False):
        out = self.encoder(features, training=training)
        return {
            "mlm_logits": self.mlm_head(out["sequence_output"], features["masked_lm_positions"]),
            "nsp_logits": self.nsp_head(out["pooled_output"], training=training),
        }

    def get_config(self):
        return {"config": self.config.to_dict(), "name": self.name}

    def build_from_config(self, cfg):
        pass


@keras.saving.register_keras_serializable(package="bertkit")
class Classifier(keras.Model):
    """encoder + head (ClassificationHead on pooled_output). call(features) -> float32 logits [B,num_labels]."""

    def __init__(self, config, num_labels, dropout=None, **kwargs):
        if isinstance(config, dict):
            config = _config_from(config)
        kwargs.setdefault("name", "classifier")
        super().__init__(**kwargs)
        self.config, self.num_labels = config, int(num_labels)
        self.dropout_rate = config.hidden_dropout_prob if dropout is None else float(dropout)
        self.encoder = build_encoder(config)
        self.head = ClassificationHead(num_labels, self.dropout_rate, config.initializer_range)
        self.head.build((None, config.hidden_size))
        self.built = True

    def call(self, features, training=False):
        return self.head(self.encoder(features, training=training)["pooled_output"], training=training)

    def get_config(self):
        return {"config": self.config.to_dict(), "num_labels": self.num_labels, "dropout": self.dropout_rate,
                "name": self.name}

    def build_from_config(self, cfg):
        pass


def build_pretraining_model(config):
    return PretrainingModel(config)


def build_classifier(config, num_labels, dropout=None):
    """dropout None: config.hidden_dropout_prob (as the original run_classifier.py)."""
    return Classifier(config, num_labels, dropout)
