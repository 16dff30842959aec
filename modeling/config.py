"""ModelConfig: BERT / ALBERT / MobileBERT hyper-parameters with the original JSON key names.

Three kinds of file are read:
  * bertkit's own config files (they carry `model_type` and no HuggingFace markers): strict. Unknown keys, wrong
    types and impossible shapes are refused with a UserError naming the file and the key.
  * original Google `bert_config.json` / `albert_config.json` / MobileBERT configs (no `model_type`): the model type is
    detected from the keys (MobileBERT's bottleneck keys, ALBERT's `embedding_size` / `num_hidden_groups` /
    `inner_group_num`); keys of the original repos we do not use (`net_structure_type`, `layers_to_keep`, ...) are
    ignored, shapes are still checked. In an original ALBERT file `hidden_act: "gelu"` means the ALBERT repo's
    tanh-approximated GELU, so it is read as `gelu_new` (what HuggingFace's ALBERT configs say).
  * HuggingFace `config.json` (has `transformers_version`, `architectures`, `pad_token_id`, ...): the
    hyper-parameters are read, the generic `PretrainedConfig` keys (ids, label maps, dtype, ...) are deliberately
    ignored; settings bertkit cannot honour (`position_embedding_type` other than "absolute", `is_decoder`) are refused.
"""
import copy
import json
import os

import bertkit_errors
import bertkit_io

MODEL_TYPES = ("bert", "albert", "mobilebert")
ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "relu", "tanh", "swish", "silu")
NORMALIZATION_TYPES = ("no_norm", "layer_norm")

# key -> (type(s), default per model type or a plain default)
_INT, _FLOAT, _STR, _BOOL = (int,), (int, float), (str,), (bool,)
_COMMON = {
    "vocab_size": (_INT, None),
    "hidden_size": (_INT, None),
    "num_hidden_layers": (_INT, None),
    "num_attention_heads": (_INT, None),
    "intermediate_size": (_INT, None),
    "hidden_act": (_STR, {"bert": "gelu", "albert": "gelu_new", "mobilebert": "relu"}),
    "hidden_dropout_prob": (_FLOAT, {"bert": 0.1, "albert": 0.0, "mobilebert": 0.0}),
    "attention_probs_dropout_prob": (_FLOAT, {"bert": 0.1, "albert": 0.0, "mobilebert": 0.1}),
    "max_position_embeddings": (_INT, 512),
    "type_vocab_size": (_INT, 2),
    "initializer_range": (_FLOAT, 0.02),
    "layer_norm_eps": (_FLOAT, 1e-12),
}
_ALBERT = {
    "embedding_size": (_INT, 128),
    "num_hidden_groups": (_INT, 1),
    "inner_group_num": (_INT, 1),
}
_MOBILEBERT = {
    "embedding_size": (_INT, 128),
    "trigram_input": (_BOOL, True),
    "use_bottleneck": (_BOOL, True),
    "intra_bottleneck_size": (_INT, 128),
    "use_bottleneck_attention": (_BOOL, False),
    "key_query_shared_bottleneck": (_BOOL, True),
    "num_feedforward_networks": (_INT, 4),
    "normalization_type": (_STR, "no_norm"),
    "classifier_activation": (_BOOL, True),
    "true_hidden_size": (_INT, None),  # derived: intra_bottleneck_size if use_bottleneck else hidden_size
}
_REQUIRED = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")

# Keys of the original Google repos (ALBERT, MobileBERT) that describe things bertkit does not implement or need.
_ORIGINAL_IGNORED = {
    "net_structure_type", "layers_to_keep", "gap_size", "num_memory_blocks", "down_scale_factor",
    "use_einsum", "directionality", "pooler_fc_size", "pooler_num_attention_heads", "pooler_num_fc_layers",
    "pooler_size_per_head", "pooler_type", "model_type_hint",
}
# Keys only HuggingFace writes: their presence marks a HuggingFace config.json (read leniently).
_HF_MARKERS = ("transformers_version", "architectures", "_name_or_path", "pad_token_id", "torch_dtype", "dtype",
               "use_cache", "position_embedding_type", "tie_word_embeddings", "output_past")
# HuggingFace keys that change the computation in ways bertkit does not implement: (key, accepted values).
_HF_REFUSED = {
    "position_embedding_type": ("absolute", None),
    "is_decoder": (False, None),
    "add_cross_attention": (False, None),
}


def _schema(model_type):
    s = dict(_COMMON)
    if model_type == "albert":
        s.update(_ALBERT)
    elif model_type == "mobilebert":
        s.update(_MOBILEBERT)
    return s


def _detect_type(d):
    if any(k in d for k in ("intra_bottleneck_size", "use_bottleneck", "trigram_input", "num_feedforward_networks",
                            "key_query_shared_bottleneck", "use_bottleneck_attention", "normalization_type")):
        return "mobilebert"
    if any(k in d for k in ("embedding_size", "num_hidden_groups", "inner_group_num")):
        return "albert"
    return "bert"


class ModelConfig:
    """Hyper-parameters of a BERT-family encoder; attributes carry the original key names."""

    def __init__(self, model_type="bert", **kwargs):
        d = dict(kwargs, model_type=model_type)
        self._set(d, source="ModelConfig", strict=True)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, d, source="<dict>"):
        """Build from a dict in any of the three accepted formats (see module doc); `source` names it in errors."""
        if not isinstance(d, dict):
            raise bertkit_errors.UserError(f"{source}: expected a JSON object, got {type(d).__name__}")
        d = dict(d)
        is_hf = any(k in d for k in _HF_MARKERS)
        strict = "model_type" in d and not is_hf
        obj = cls.__new__(cls)
        obj._set(d, source=source, strict=strict, is_hf=is_hf)
        return obj

    @classmethod
    def from_json_file(cls, path):
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise bertkit_errors.UserError(f"{path}: cannot read model config ({e.strerror})") from None
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise bertkit_errors.UserError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from None
        return cls.from_dict(d, source=path)

    def _set(self, d, source, strict, is_hf=False):
        def fail(key, msg):
            raise bertkit_errors.UserError(f"{source}: {key}: {msg}")

        model_type = d.pop("model_type", None)
        if model_type is None:
            model_type = _detect_type(d)
        if not isinstance(model_type, str) or model_type not in MODEL_TYPES:
            fail("model_type", f"{model_type!r} is not one of {', '.join(MODEL_TYPES)}")
        schema = _schema(model_type)
        values = {}
        for key in list(d):
            if key in schema:
                continue
            if strict:
                fail(key, f"unknown key for model_type {model_type!r} (known: {', '.join(sorted(schema))})")
            if is_hf and key in _HF_REFUSED:
                val = d[key]
                if val not in _HF_REFUSED[key]:
                    fail(key, f"{val!r} is not supported by bertkit (only {_HF_REFUSED[key][0]!r})")
            d.pop(key)  # original-repo / HuggingFace bookkeeping keys: deliberately ignored
        for key, (types, default) in schema.items():
            if key in d:
                val = d[key]
                ok = isinstance(val, types) and not (bool not in types and isinstance(val, bool))
                if not ok:
                    fail(key, f"expected {'/'.join(t.__name__ for t in types)}, got {type(val).__name__} {val!r}")
                if types == _FLOAT:
                    val = float(val)
            else:
                if isinstance(default, dict):
                    default = default[model_type]
                if default is None and key in _REQUIRED:
                    fail(key, "missing required key")
                val = default
            values[key] = val
        if model_type == "albert" and not strict and not is_hf and values["hidden_act"] == "gelu":
            values["hidden_act"] = "gelu_new"  # the original ALBERT repo's gelu is the tanh approximation
        self.model_type = model_type
        for k, v in values.items():
            setattr(self, k, v)
        self._validate(fail)

    def _validate(self, fail):
        for key in _REQUIRED + ("max_position_embeddings", "type_vocab_size"):
            if getattr(self, key) <= 0:
                fail(key, f"must be positive, got {getattr(self, key)}")
        for key in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if not 0.0 <= getattr(self, key) < 1.0:
                fail(key, f"must be in [0, 1), got {getattr(self, key)}")
        if self.initializer_range <= 0 or self.layer_norm_eps <= 0:
            fail("initializer_range" if self.initializer_range <= 0 else "layer_norm_eps", "must be positive")
        if self.hidden_act not in ACTIVATIONS:
            fail("hidden_act", f"{self.hidden_act!r} is not one of {', '.join(ACTIVATIONS)}")
        if self.model_type == "mobilebert":
            tru = self.intra_bottleneck_size if self.use_bottleneck else self.hidden_size
            if self.true_hidden_size is not None and self.true_hidden_size != tru:
                fail("true_hidden_size", f"{self.true_hidden_size} disagrees with use_bottleneck/"
                     f"intra_bottleneck_size (which give {tru})")
            self.true_hidden_size = tru
            if self.normalization_type not in NORMALIZATION_TYPES:
                fail("normalization_type", f"{self.normalization_type!r} is not one of "
                     f"{', '.join(NORMALIZATION_TYPES)}")
            for key in ("embedding_size", "intra_bottleneck_size", "num_feedforward_networks"):
                if getattr(self, key) <= 0:
                    fail(key, f"must be positive, got {getattr(self, key)}")
            if tru % self.num_attention_heads:
                fail("num_attention_heads", f"true_hidden_size {tru} is not divisible by "
                     f"num_attention_heads {self.num_attention_heads}")
            if self.embedding_size > self.hidden_size:
                fail("embedding_size", f"{self.embedding_size} is larger than hidden_size {self.hidden_size}")
            if not self.trigram_input and self.embedding_size != self.hidden_size:
                pass  # HF projects embedding_size -> hidden_size with embedding_transformation
        else:
            if self.hidden_size % self.num_attention_heads:
                fail("num_attention_heads", f"hidden_size {self.hidden_size} is not divisible by "
                     f"num_attention_heads {self.num_attention_heads}")
        if self.model_type == "albert":
            for key in ("embedding_size", "num_hidden_groups", "inner_group_num"):
                if getattr(self, key) <= 0:
                    fail(key, f"must be positive, got {getattr(self, key)}")
            if self.num_hidden_groups > self.num_hidden_layers:
                fail("num_hidden_groups", f"{self.num_hidden_groups} groups for only "
                     f"{self.num_hidden_layers} layers")

    # ------------------------------------------------------------------ output
    @property
    def embedding_dim(self):
        """Width of the word-embedding table (the MLM output embedding width)."""
        return self.hidden_size if self.model_type == "bert" else self.embedding_size

    def to_dict(self):
        d = {"model_type": self.model_type}
        for key in _schema(self.model_type):
            d[key] = getattr(self, key)
        return copy.deepcopy(d)

    def to_json_string(self):
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    def to_json_file(self, path):
        d = os.path.dirname(os.path.abspath(path))
        os.makedirs(d, exist_ok=True)
        with bertkit_io.atomic_write(path) as f:
            f.write(self.to_json_string())

    def replace(self, **kwargs):
        """A copy with some values changed (validated like a bertkit config file)."""
        d = self.to_dict()
        d.update(kwargs)
        return ModelConfig.from_dict(d, source="ModelConfig.replace")

    def __eq__(self, other):
        return isinstance(other, ModelConfig) and self.to_dict() == other.to_dict()

    def __repr__(self):
        return f"ModelConfig({self.to_dict()})"
