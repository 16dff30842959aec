"""Checkpoint import: one entry point for whatever --init_checkpoint names, the format detected from the path.

    fmt = detect_format(path)        # "bertkit" | "tf1" | "hf" | "keras_hub"
    encoder = load_encoder(path, config=None)
    bundle = load_checkpoint(path, config=None, with_heads=True)   # CheckpointBundle
    init_from_checkpoint(encoder, path, mlm_head=None, nsp_head=None) -> description   # into existing layers
    save_bertkit_checkpoint(output_dir, config, encoder, ...) -> prefix                # a bertkit model directory
    read_objects(prefix, encoder=..., classifier_head=...)   # tf.train.Checkpoint(**objects).read, all matched

Formats:
  * "bertkit": a `tf.train.Checkpoint` with top-level `encoder` (and maybe `mlm_head`, `nsp_head`, ...): a `ckpt-N`
    prefix, or a model directory (`checkpoint` file, `bert_config.json`, `vocab.txt`, `bertkit.json`). Variables are
    matched through the object graph (the same walk `tf.train.Checkpoint` does), read with a checkpoint reader and
    assigned after every shape has been checked.
  * "tf1": original Google BERT / ALBERT / MobileBERT checkpoints (`bert_model.ckpt` / `model.ckpt-N`, variables
    `bert/...`, `cls/...`; MobileBERT's names: modeling/tf1_mobilebert.py). The TF1 names are renamed to HuggingFace
    state-dict names (kernels transposed to torch layout) and assigned by `modeling.hf_import.assign_hf_state`, the
    one assignment path for foreign weights. Shapes and presence are checked first against the TF1 names, so errors
    name the variable the user's checkpoint has.
    The config is `bert_config.json` / `albert_config.json` beside the checkpoint (or given).
  * "hf": HuggingFace directories (`config.json` + `model.safetensors`), see `modeling.hf_import`.
  * "keras_hub": keras-hub preset directories of a `BertBackbone` (`config.json` naming `keras_hub>BertBackbone`,
    `model.weights.h5`): loaded with keras-hub's own `from_preset`, its variables mapped by path to HF names, and the
    result checked numerically against the keras-hub model on a probe batch.

Model directories: `model_dir_defaults(path)` gives what a directory holds for the scripts' unset flags (config file,
vocabulary, lower-casing) for all of these; a vocabulary that exists only as a HuggingFace `tokenizer.json` (BERT
WordPiece) is written out as `vocab.txt` (`write_vocab`) into the output directory, so everything downstream reads
vocab.txt.

Errors are `bertkit_errors.UserError`s starting with `--<flag>=<path>:` when a flag name is given (init_from_checkpoint
uses `init_checkpoint` by default), else `<path>:`.
"""
import atexit
import collections
import glob
import json
import os
import re
import shutil
import tempfile

import numpy as np
import tensorflow as tf
from absl import logging

import bertkit_errors
import bertkit_io
from modeling import hf_import, tf1_mobilebert
from modeling.config import ModelConfig
from modeling.encoders import build_encoder
from modeling.heads import MaskedLMHead, SentencePairHead

FORMATS = ("bertkit", "tf1", "hf", "keras_hub")
CONFIG_NAMES = ("bert_config.json", "albert_config.json", "config.json")
VOCAB_NAMES = ("vocab.txt", "30k-clean.vocab", "spiece.vocab")
TOKENIZER_JSON = "tokenizer.json"
_VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"

CheckpointBundle = collections.namedtuple(
    "CheckpointBundle", ["config", "encoder", "mlm_head", "nsp_head", "vocab_file", "do_lower_case", "format"])


def _src(path, flag):
    return f"--{flag}={path}" if flag else str(path)


def _shape_str(shape):
    return "[" + ", ".join(str(int(d)) for d in shape) + "]"


# ------------------------------------------------------------------------------------------------ format detection
def _read_json(path, src):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise bertkit_errors.UserError(f"{src}: cannot read {path} ({e})") from None


def _is_keras_hub_dir(path):
    cfg = os.path.join(path, "config.json")
    if not os.path.isfile(cfg):
        return False
    try:
        with open(cfg, encoding="utf-8") as f:
            d = json.load(f)
    except (OSError, json.JSONDecodeError):
        return False
    if not isinstance(d, dict):
        return False
    name = str(d.get("registered_name") or "") + " " + str(d.get("module") or "")
    return "keras_hub" in name or "keras_nlp" in name


def _is_hf_dir(path):
    if not os.path.isfile(os.path.join(path, "config.json")):
        return False
    return any(os.path.exists(os.path.join(path, n)) for n in (
        "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "tf_model.h5"))


def _prefix_in_dir(path, src):
    """The checkpoint prefix a directory holds (via its `checkpoint` file, else the one *.index there), or None."""
    state = os.path.join(path, "checkpoint")
    if os.path.isfile(state):
        prefix = tf.train.latest_checkpoint(path)
        if prefix and tf.io.gfile.exists(prefix + ".index"):
            return prefix
    indexes = sorted(glob.glob(os.path.join(path, "*.index")))
    if not indexes:
        return None
    prefixes = [i[: -len(".index")] for i in indexes]
    for name in ("bert_model.ckpt", "model.ckpt"):
        if os.path.join(path, name) in prefixes:
            return os.path.join(path, name)
    if len(prefixes) == 1:
        return prefixes[0]

    def step(p):
        m = re.search(r"-(\d+)$", p)
        return int(m.group(1)) if m else -1
    numbered = [p for p in prefixes if step(p) >= 0]
    if numbered:
        return max(numbered, key=step)
    raise bertkit_errors.UserError(f"{src}: several checkpoints and no `checkpoint` file "
                                   f"({', '.join(os.path.basename(p) for p in prefixes)}): name one prefix")


def _resolve(path, flag=None):
    """-> (format, location): location is a checkpoint prefix (bertkit, tf1) or a directory (hf, keras_hub)."""
    src = _src(path, flag)
    if not path:
        raise bertkit_errors.UserError(f"{src}: empty checkpoint path")
    path = str(path)
    if os.path.isdir(path):
        if _is_keras_hub_dir(path):
            return "keras_hub", path
        if _is_hf_dir(path):
            return "hf", path
        prefix = _prefix_in_dir(path, src)
        if prefix is None:
            raise bertkit_errors.UserError(
                f"{src}: no checkpoint recognised in this directory (expected a bertkit model directory or "
                "checkpoint prefix, an original TF1 bert_model.ckpt, a HuggingFace config.json + model.safetensors, "
                "or a keras-hub preset)")
    else:
        prefix = path
        for suffix in (".index", ".meta"):
            if prefix.endswith(suffix):
                prefix = prefix[: -len(suffix)]
        prefix = re.sub(r"\.data-\d+-of-\d+$", "", prefix)
        if not tf.io.gfile.exists(prefix + ".index"):
            if not os.path.exists(path):
                raise bertkit_errors.UserError(f"{src}: no such file or directory")
            raise bertkit_errors.UserError(f"{src}: not a checkpoint (no {os.path.basename(prefix)}.index beside it)")
    names = _checkpoint_names(prefix, src)
    if any(n.startswith("encoder/") for n in names):
        return "bertkit", prefix
    if any(n.startswith("bert/embeddings/") for n in names):
        return "tf1", prefix
    shown = ", ".join(sorted(n for n in names if not n.startswith("_"))[:5])
    raise bertkit_errors.UserError(f"{src}: checkpoint {prefix} is neither a bertkit checkpoint (no 'encoder' object) "
                                   f"nor an original BERT/ALBERT one (no bert/embeddings/...); it holds {shown}")


def _checkpoint_names(prefix, src):
    try:
        return dict(tf.train.list_variables(prefix))
    except (tf.errors.OpError, ValueError) as e:
        raise bertkit_errors.UserError(f"{src}: cannot read checkpoint {prefix} ({str(e).splitlines()[0]})") from None


def detect_format(path, flag=None):
    """"bertkit" | "tf1" | "hf" | "keras_hub" for what is at `path`; UserError if nothing recognisable."""
    return _resolve(path, flag)[0]


# ------------------------------------------------------------------------------------------------ side files
def _find_config(directory, src, config_file=None):
    if config_file:
        return ModelConfig.from_json_file(config_file)
    for name in CONFIG_NAMES:
        p = os.path.join(directory, name)
        if os.path.isfile(p):
            return ModelConfig.from_json_file(p)
    raise bertkit_errors.UserError(f"{src}: no {' / '.join(CONFIG_NAMES)} beside the checkpoint; give the model "
                                   "config (--bert_config_file)")


def _find_vocab(directory):
    for name in VOCAB_NAMES:
        p = os.path.join(directory, name)
        if os.path.isfile(p):
            return p
    return None


def _case_from_name(directory):
    """The original repo's convention (tokenization.validate_case_matches_checkpoint): the model's directory name."""
    name = os.path.basename(os.path.normpath(directory)).lower()
    if "uncased" in name:
        return True
    if "cased" in name:
        return False
    return None


# ------------------------------------------------------------------------------------------------ bertkit
def _walk_variables(root_name, obj):
    """{checkpoint key: variable} for the trainable variables under `obj`, keys as tf.train.Checkpoint writes them
    (breadth-first, first path wins, `<root_name>/.../<attr>/.ATTRIBUTES/VARIABLE_VALUE`)."""
    import keras
    out, seen = {}, {id(obj)}
    queue = collections.deque([(root_name, obj)])
    while queue:
        path, node = queue.popleft()
        try:
            children = node._trackable_children(save_type="checkpoint")
        except (AttributeError, TypeError):
            continue
        for name, child in children.items():
            if id(child) in seen:
                continue
            seen.add(id(child))
            key = f"{path}/{name}"
            if isinstance(child, (tf.Variable, keras.Variable)):
                if getattr(child, "trainable", True):
                    out[key + _VALUE_SUFFIX] = child
            else:
                queue.append((key, child))
    return out


def _object_graph(prefix):
    """The TrackableObjectGraph a tf.train.Checkpoint stores beside its tensors (None for other checkpoints)."""
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    reader = tf.train.load_checkpoint(prefix)
    if not reader.has_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"):
        return None
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(read_tensor(reader, "_CHECKPOINTABLE_OBJECT_GRAPH", prefix))
    return graph


def _key_for(graph, path):
    """The checkpoint key of the variable reached by following `path` ("encoder/a/b") from the root object. A
    variable is stored once, under its shortest path (e.g. optimizer/_trainable_variables/N when the optimizer is in
    the checkpoint), so the key is read from the object graph rather than derived from the path."""
    node = 0
    for part in path.split("/"):
        for child in graph.nodes[node].children:
            if child.local_name == part:
                node = child.node_id
                break
        else:
            return None
    for attr in graph.nodes[node].attributes:
        if attr.name == "VARIABLE_VALUE":
            return attr.checkpoint_key
    return None


# What reading a damaged or truncated checkpoint raises (a short data file: IndexError "Read less bytes than
# requested"; a cut index file: DataLossError; a missing shard: NotFoundError).
DAMAGED_CHECKPOINT_ERRORS = (IndexError, tf.errors.DataLossError, tf.errors.OutOfRangeError, tf.errors.NotFoundError)


def damaged_checkpoint_error(prefix, error):
    """The UserError for a checkpoint that cannot be read: names the prefix and the reader's first message line."""
    text = (getattr(error, "message", None) or str(error) or type(error).__name__).strip().splitlines()
    detail = text[0][:200] if text else type(error).__name__
    return bertkit_errors.UserError(f"{prefix}: checkpoint is damaged or truncated ({detail})")


def read_tensor(reader, key, prefix):
    """reader.get_tensor(key), a UserError naming the checkpoint when its files are damaged or cut short."""
    try:
        return reader.get_tensor(key)
    except DAMAGED_CHECKPOINT_ERRORS as e:
        raise damaged_checkpoint_error(prefix, e) from None


def restore_checked(checkpoint, prefix, read=False):
    """checkpoint.restore(prefix) (checkpoint.read(prefix) with read=True) of a tf.train.Checkpoint; a UserError
    naming the checkpoint when its files are damaged or cut short. Returns the restore status."""
    try:
        return checkpoint.read(prefix) if read else checkpoint.restore(prefix)
    except DAMAGED_CHECKPOINT_ERRORS as e:
        raise damaged_checkpoint_error(prefix, e) from None


def _restore_bertkit(prefix, items, src, required=("encoder",)):
    """Assign checkpoint values to the variables of `items` ({top-level name: layer}); every shape is checked before
    anything is assigned. Items other than `required` are skipped when the checkpoint lacks them. Returns the names
    restored."""
    shapes = _checkpoint_names(prefix, src)
    graph = _object_graph(prefix)
    roots = ({c.local_name for c in graph.nodes[0].children} if graph is not None
             else {k.split("/", 1)[0] for k in shapes})
    plan, done = [], []
    for name, layer in items.items():
        if layer is None:
            continue
        if name not in roots:
            if name in required:
                raise bertkit_errors.UserError(f"{src}: not a bertkit checkpoint (no '{name}' object)")
            continue
        for key, var in _walk_variables(name, layer).items():
            short = key[len(name) + 1: -len(_VALUE_SUFFIX)]
            label = short if name == "encoder" else f"{name}/{short}"
            if graph is not None:
                key = _key_for(graph, key[:-len(_VALUE_SUFFIX)]) or key
            if key not in shapes:
                raise bertkit_errors.UserError(
                    f"{src}: variable {label} (shape {_shape_str(var.shape)}) is missing from the checkpoint "
                    "(the model config does not match the checkpoint's)")
            if tuple(shapes[key]) != tuple(var.shape):
                raise bertkit_errors.UserError(
                    f"{src}: variable {label} has shape {_shape_str(var.shape)} in the model but "
                    f"{_shape_str(shapes[key])} in the checkpoint")
            plan.append((key, var))
        done.append(name)
    reader = tf.train.load_checkpoint(prefix)
    for key, var in plan:
        var.assign(tf.cast(read_tensor(reader, key, prefix), var.dtype))
    return done


def read_objects(prefix, **objects):
    """tf.train.Checkpoint(**objects).read(prefix), checked: every variable of `objects` must be in the checkpoint
    (AssertionError otherwise, ValueError for a shape mismatch); checkpoint values the objects lack are fine. The one
    way bertkit restores selected objects of a bertkit checkpoint. `read`, not `restore`: restore() also creates the
    root's `save_counter`, which a checkpoint written by Checkpoint.write() (save_bertkit_checkpoint, so every
    convert_checkpoint.py output) does not hold, and the match check then fails on it."""
    status = restore_checked(tf.train.Checkpoint(**objects), prefix, read=True)
    status.expect_partial()
    status.assert_existing_objects_matched()
    return status


# ------------------------------------------------------------------------------------------------ TF1 (Google)
def _tf1_model_type(names):
    if any(n.startswith("bert/encoder/transformer/") or n.startswith("bert/encoder/embedding_hidden_mapping_in")
           for n in names):
        return "albert"
    if any("/bottleneck/" in n or n.startswith("bert/embeddings/embedding_transformation") for n in names):
        return "mobilebert"
    return "bert"


def _tf1_table(config, with_mlm, with_nsp):
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


def _tf1_state(prefix, config, src, want_mlm, want_nsp):
    """HF-named numpy state from a TF1 checkpoint for `config`, after checking presence and shapes by TF1 name.
    Returns (state, has_mlm, has_nsp)."""
    shapes = _checkpoint_names(prefix, src)
    ckpt_type = _tf1_model_type(shapes)
    if ckpt_type != config.model_type:
        raise bertkit_errors.UserError(f"{src}: the checkpoint's variables are those of a {ckpt_type!r} model but the "
                                       f"config says model_type {config.model_type!r}")
    has_mlm = want_mlm and "cls/predictions/output_bias" in shapes
    has_nsp = want_nsp and "cls/seq_relationship/output_weights" in shapes
    if config.model_type == "mobilebert":  # Google's MobileBERT release: modeling/tf1_mobilebert.py
        rows = tf1_mobilebert.tf1_table(config, shapes, has_mlm, has_nsp)
    else:
        rows = _tf1_table(config, has_mlm, has_nsp)
    for name, _, shape, _ in rows:
        if name not in shapes:
            raise bertkit_errors.UserError(f"{src}: variable {name} (shape {_shape_str(shape)}) is missing from the "
                                           "checkpoint (the model config does not match the checkpoint's)")
        if tuple(shapes[name]) != shape:
            raise bertkit_errors.UserError(f"{src}: variable {name} has shape {_shape_str(shape)} in the model but "
                                           f"{_shape_str(shapes[name])} in the checkpoint")
    reader = tf.train.load_checkpoint(prefix)
    state = {}
    for name, key, _, transpose in rows:
        value = np.asarray(read_tensor(reader, name, prefix), dtype=np.float32)
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


# ------------------------------------------------------------------------------------------------ keras-hub
def _keras_hub_backbone(path, src):
    try:
        import keras_hub
    except ImportError:
        raise bertkit_errors.UserError(f"{src}: a keras-hub preset, but keras_hub is not installed") from None
    cfg = _read_json(os.path.join(path, "config.json"), src)
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


def _keras_hub_config(backbone):
    return ModelConfig(
        model_type="bert", vocab_size=int(backbone.vocabulary_size), hidden_size=int(backbone.hidden_dim),
        num_hidden_layers=int(backbone.num_layers), num_attention_heads=int(backbone.num_heads),
        intermediate_size=int(backbone.intermediate_dim), hidden_act="gelu_new",  # keras-hub: gelu_approximate
        hidden_dropout_prob=float(backbone.dropout), attention_probs_dropout_prob=float(backbone.dropout),
        max_position_embeddings=int(backbone.max_sequence_length), type_vocab_size=int(backbone.num_segments),
        layer_norm_eps=1e-12)


def _keras_hub_state(backbone, src):
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


def _check_keras_hub_numerics(backbone, encoder, src, tol=1e-4):
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


def _keras_hub_tokenizer_info(path):
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


def _hf_tokenizer_info(path):
    """(vocabulary source, do_lower_case) of a HuggingFace directory: vocab.txt, else tokenizer.json (a vocab source
    for write_vocab, which checks it is a BERT WordPiece tokenizer); lower-casing from tokenizer.json's
    BertNormalizer, else tokenizer_config.json."""
    vocab = _find_vocab(path)
    tok = os.path.join(path, TOKENIZER_JSON)
    if vocab is None and os.path.isfile(tok):
        vocab = tok
    lower = None
    if os.path.isfile(tok):
        d = _read_json(tok, tok)
        normalizer = d.get("normalizer") if isinstance(d, dict) else None
        if isinstance(normalizer, dict) and normalizer.get("type") == "BertNormalizer":
            lower = normalizer.get("lowercase")
    tc = os.path.join(path, "tokenizer_config.json")
    if lower is None and os.path.isfile(tc):
        try:
            with open(tc, encoding="utf-8") as f:
                d = json.load(f)
            lower = d.get("do_lower_case", d.get("lowercase"))
        except (OSError, json.JSONDecodeError, AttributeError):
            lower = None
    return vocab, (bool(lower) if lower is not None else None)


def _wordpiece_tokenizer_json(path):
    """(tokens in id order, normalizer dict) of a HuggingFace tokenizer.json holding a BERT WordPiece tokenizer;
    one-line UserError for anything else."""
    d = _read_json(path, path)
    model = d.get("model") if isinstance(d, dict) else None
    model = model if isinstance(model, dict) else {}
    normalizer = d.get("normalizer") if isinstance(d, dict) else None
    normalizer = normalizer if isinstance(normalizer, dict) else {}
    kind, prefix = model.get("type"), model.get("continuing_subword_prefix", "##")
    if kind != "WordPiece" or prefix != "##" or normalizer.get("type") != "BertNormalizer":
        raise bertkit_errors.UserError(
            f"{path}: not a BERT WordPiece tokenizer (model.type {kind!r}, continuing_subword_prefix {prefix!r}, "
            f"normalizer {normalizer.get('type')!r}; bertkit needs WordPiece, '##', BertNormalizer)")
    vocab = model.get("vocab")
    if not isinstance(vocab, dict) or not vocab:
        raise bertkit_errors.UserError(f"{path}: model.vocab is missing or empty")
    by_id = {}
    for token, i in vocab.items():
        if not isinstance(i, int) or i < 0 or i in by_id:
            raise bertkit_errors.UserError(f"{path}: token {token!r} has id {i!r} (ids must be distinct integers >= 0)")
        if not token or token != token.strip() or "\n" in token or "\r" in token:
            raise bertkit_errors.UserError(f"{path}: token {token!r} (id {i}) cannot be a line of vocab.txt")
        by_id[i] = token
    if max(by_id) != len(by_id) - 1:
        gap = min(set(range(len(by_id))) - set(by_id))
        raise bertkit_errors.UserError(f"{path}: vocabulary ids are not contiguous (no token has id {gap}; "
                                       f"{len(by_id)} tokens, largest id {max(by_id)})")
    return [by_id[i] for i in range(len(by_id))], normalizer


def write_vocab(source, path):
    """Write vocab.txt at `path` from `source`: a vocab.txt (copied) or a HuggingFace tokenizer.json (its WordPiece
    vocabulary, one token a line in id order). Atomic."""
    if os.path.basename(source) == TOKENIZER_JSON:
        tokens = _wordpiece_tokenizer_json(source)[0]
        with bertkit_io.atomic_write(path) as f:
            f.write("\n".join(tokens) + "\n")
        return path
    if os.path.abspath(source) != os.path.abspath(path):
        with open(source, "rb") as fin, bertkit_io.atomic_write(path, "wb") as f:
            f.write(fin.read())
    return path


def _vocab_from_tokenizer_json(tokenizer_json, vocab_dir):
    """vocab_dir/vocab.txt holding tokenizer.json's vocabulary. An existing vocab.txt there is never replaced (the
    directory may be a finished model directory): when its tokens differ, they are written to a temporary file
    instead, so the scripts' rerun check sees the difference and refuses before anything is written."""
    tokens = _wordpiece_tokenizer_json(tokenizer_json)[0]
    path = os.path.join(vocab_dir, "vocab.txt")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            if f.read().splitlines() == tokens:
                return path
        fd, path = tempfile.mkstemp(prefix="bertkit-vocab-", suffix=".txt")
        os.close(fd)
        atexit.register(lambda: os.path.exists(path) and os.remove(path))
    else:
        bertkit_io.ensure_writable_dir(vocab_dir)
    return write_vocab(tokenizer_json, path)


def model_dir_defaults(path, vocab_dir=None, flag="init_checkpoint"):
    """What the model directory of checkpoint `path` gives to the scripts' unset flags: {"model_dir",
    "bert_config_file", "vocab_file", "do_lower_case"}, keys absent when unknown; {} when `path` is not a directory
    or a file in one. bertkit and TF1 directories: bert_config.json / albert_config.json, vocab.txt, bertkit.json's
    do_lower_case (TF1: the directory name, as the original repository does). HuggingFace directories: config.json,
    vocab.txt or, when there is only tokenizer.json, a vocab.txt written from it into `vocab_dir` (no "vocab_file"
    without a vocab_dir), lower-casing from tokenizer.json / tokenizer_config.json."""
    if not path:
        return {}
    model_dir = path if os.path.isdir(path) else os.path.dirname(path)
    if not model_dir or not os.path.isdir(model_dir):
        return {}
    out = {"model_dir": model_dir}
    if _is_keras_hub_dir(model_dir):
        return out
    if _is_hf_dir(model_dir) and not os.path.isfile(os.path.join(model_dir, "bert_config.json")):
        out["bert_config_file"] = os.path.join(model_dir, "config.json")
        vocab, lower = _hf_tokenizer_info(model_dir)
        if vocab and os.path.basename(vocab) == TOKENIZER_JSON:
            if vocab_dir:
                vocab = _vocab_from_tokenizer_json(vocab, vocab_dir)
            else:
                vocab = None
        if vocab:
            out["vocab_file"] = vocab
        if lower is not None:
            out["do_lower_case"] = lower
        return out
    for name in CONFIG_NAMES[:2]:
        if os.path.isfile(os.path.join(model_dir, name)):
            out["bert_config_file"] = os.path.join(model_dir, name)
            break
    vocab = os.path.join(model_dir, "vocab.txt")
    if os.path.isfile(vocab):
        out["vocab_file"] = vocab
    meta = os.path.join(model_dir, "bertkit.json")
    if os.path.isfile(meta):
        lower = _read_json(meta, _src(path, flag)).get("do_lower_case")
        if isinstance(lower, bool):
            out["do_lower_case"] = lower
    elif "bert_config_file" in out and _case_from_name(model_dir) is not None:
        out["do_lower_case"] = _case_from_name(model_dir)
    return out


# ------------------------------------------------------------------------------------------------ public API
def _new_heads(config, encoder, mlm, nsp):
    mlm_head = nsp_head = None
    if mlm:
        mlm_head = MaskedLMHead(config, encoder)
        mlm_head.build()
    if nsp:
        nsp_head = SentencePairHead(initializer_range=config.initializer_range)
        nsp_head.build((None, config.hidden_size))
    return mlm_head, nsp_head


def _assign(config, encoder, state, heads, src):
    """The one assignment path for foreign weights (HF names, torch layout); returns the unused state keys."""
    return hf_import.assign_hf_state(config, encoder, state, heads, source=src)


def load_checkpoint(path, config=None, with_heads=True, flag=None):
    """Load any supported format -> CheckpointBundle(config, encoder, mlm_head, nsp_head, vocab_file, do_lower_case,
    format). `config` (a ModelConfig or a path to a config file) overrides the one found beside the checkpoint."""
    src = _src(path, flag)
    fmt, loc = _resolve(path, flag)
    if isinstance(config, str):
        config = ModelConfig.from_json_file(config)
    if fmt == "bertkit":
        directory = os.path.dirname(loc) or "."
        config = config or _find_config(directory, src)
        encoder = build_encoder(config)
        names = _checkpoint_names(loc, src)
        mlm_head, nsp_head = _new_heads(config, encoder, with_heads and any(n.startswith("mlm_head/") for n in names),
                                        with_heads and any(n.startswith("nsp_head/") for n in names))
        _restore_bertkit(loc, {"encoder": encoder, "mlm_head": mlm_head, "nsp_head": nsp_head}, src)
        vocab = _find_vocab(directory)
        lower = None
        meta = os.path.join(directory, "bertkit.json")
        if os.path.isfile(meta):
            lower = _read_json(meta, src).get("do_lower_case")
        return CheckpointBundle(config, encoder, mlm_head, nsp_head, vocab, lower, fmt)
    if fmt == "tf1":
        directory = os.path.dirname(loc) or "."
        config = config or _find_config(directory, src)
        state, has_mlm, has_nsp = _tf1_state(loc, config, src, with_heads, with_heads)
        encoder = build_encoder(config)
        mlm_head, nsp_head = _new_heads(config, encoder, has_mlm, has_nsp)
        heads = {k: v for k, v in (("mlm_head", mlm_head), ("nsp_head", nsp_head)) if v is not None}
        _assign(config, encoder, state, heads, src)
        return CheckpointBundle(config, encoder, mlm_head, nsp_head, _find_vocab(directory),
                                _case_from_name(directory), fmt)
    if fmt == "hf":
        config = config or ModelConfig.from_json_file(os.path.join(loc, "config.json"))
        state = hf_import.read_safetensors(loc)
        encoder = build_encoder(config)
        mlm_head, nsp_head = _new_heads(config, encoder, with_heads and hf_import._has_mlm(state, config),
                                        with_heads and hf_import._nsp_key(config) + ".weight" in state)
        heads = {k: v for k, v in (("mlm_head", mlm_head), ("nsp_head", nsp_head)) if v is not None}
        unused = _assign(config, encoder, state, heads, src)
        if unused:
            logging.info("%s: %d tensors not used: %s", src, len(unused), ", ".join(sorted(unused)[:10]))
        vocab, lower = _hf_tokenizer_info(loc)
        return CheckpointBundle(config, encoder, mlm_head, nsp_head, vocab, lower, fmt)
    # keras_hub
    backbone = _keras_hub_backbone(loc, src)
    hub_config = _keras_hub_config(backbone)
    config = config or hub_config
    encoder = build_encoder(config)
    _assign(config, encoder, _keras_hub_state(backbone, src), {}, src)
    _check_keras_hub_numerics(backbone, encoder, src)
    vocab, lower = _keras_hub_tokenizer_info(loc)
    return CheckpointBundle(config, encoder, None, None, vocab, lower, fmt)


def load_encoder(path, config=None, flag=None):
    """A built bertkit encoder with the weights of the checkpoint at `path` (any supported format)."""
    return load_checkpoint(path, config=config, with_heads=False, flag=flag).encoder


def _check_same_architecture(model_config, ckpt_config, src):
    for key in ("model_type", "num_attention_heads"):
        a, b = getattr(model_config, key), getattr(ckpt_config, key)
        if a != b:
            raise bertkit_errors.UserError(f"{src}: {key} is {a!r} in the model config but {b!r} in the "
                                           "checkpoint's config")
    for key in ("hidden_act", "num_hidden_layers", "layer_norm_eps"):
        a, b = getattr(model_config, key, None), getattr(ckpt_config, key, None)
        if a != b:
            logging.warning("%s: %s is %r in the model config but %r in the checkpoint's config", src, key, a, b)


def _side_config(directory):
    for name in CONFIG_NAMES:
        p = os.path.join(directory, name)
        if os.path.isfile(p):
            try:
                return ModelConfig.from_json_file(p)
            except bertkit_errors.UserError:
                return None
    return None


def init_from_checkpoint(encoder, path, mlm_head=None, nsp_head=None, flag="init_checkpoint"):
    """Load the weights of the checkpoint at `path` (any format) INTO `encoder`, and into `mlm_head` / `nsp_head`
    when given and the checkpoint has them. Returns a one-line description of what was loaded. A config mismatch
    (wrong shape, missing variable, other model type or head count) is a UserError naming the variable."""
    src = _src(path, flag)
    fmt, loc = _resolve(path, flag)
    if fmt == "bertkit":
        side = _side_config(os.path.dirname(loc) or ".")
        if side is not None and isinstance(getattr(encoder, "config", None), ModelConfig):
            _check_same_architecture(encoder.config, side, src)
        done = _restore_bertkit(loc, {"encoder": encoder, "mlm_head": mlm_head, "nsp_head": nsp_head}, src)
        return f"{', '.join(done)} from bertkit checkpoint {loc}"
    config = getattr(encoder, "config", None)
    if not isinstance(config, ModelConfig):
        raise bertkit_errors.UserError(f"{src}: a {fmt} checkpoint can only initialise a bertkit encoder")
    heads = {}
    if fmt == "tf1":
        side = _side_config(os.path.dirname(loc) or ".")
        if side is not None:
            _check_same_architecture(config, side, src)
        state, has_mlm, has_nsp = _tf1_state(loc, config, src, mlm_head is not None, nsp_head is not None)
        what = f"TF1 checkpoint {loc}"
    elif fmt == "hf":
        _check_same_architecture(config, ModelConfig.from_json_file(os.path.join(loc, "config.json")), src)
        state = hf_import.read_safetensors(loc)
        has_mlm = mlm_head is not None and hf_import._has_mlm(state, config)
        has_nsp = nsp_head is not None and hf_import._nsp_key(config) + ".weight" in state
        what = f"HuggingFace directory {loc}"
    else:
        backbone = _keras_hub_backbone(loc, src)
        _check_same_architecture(config, _keras_hub_config(backbone), src)
        state, has_mlm, has_nsp = _keras_hub_state(backbone, src), False, False
        what = f"keras-hub preset {loc}"
    if has_mlm:
        heads["mlm_head"] = mlm_head
    if has_nsp:
        heads["nsp_head"] = nsp_head
    _assign(config, encoder, state, heads, src)
    if fmt == "keras_hub":
        _check_keras_hub_numerics(backbone, encoder, src)
    return f"{', '.join(['encoder'] + sorted(heads))} from {what}"


def remove_checkpoint_temps(directory):
    """Remove the `ckpt-N_temp/` folders a failed checkpoint save leaves in `directory`."""
    for path in glob.glob(os.path.join(glob.escape(directory), "*_temp")):
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)


def save_bertkit_checkpoint(output_dir, config, encoder, mlm_head=None, nsp_head=None, vocab_file=None,
                            do_lower_case=None, created_by="save_bertkit_checkpoint"):
    """Write a bertkit model directory: ckpt-0 (tf.train.Checkpoint of encoder [, mlm_head, nsp_head]) + `checkpoint`,
    bert_config.json, vocab.txt (from `vocab_file`: a vocab.txt or a tokenizer.json, see write_vocab), bertkit.json.
    Returns the checkpoint prefix."""
    bertkit_io.ensure_writable_dir(output_dir)
    items = {"encoder": encoder}
    if mlm_head is not None:
        items["mlm_head"] = mlm_head
    if nsp_head is not None:
        items["nsp_head"] = nsp_head
    # the weights first (the largest write: a full disk then leaves nothing behind), then the side files
    try:
        prefix = tf.train.Checkpoint(**items).write(os.path.join(output_dir, "ckpt-0"))
    except Exception as e:  # noqa: BLE001 - only disk-full errors are translated
        if not bertkit_io.is_no_space(e):
            raise
        remove_checkpoint_temps(output_dir)
        for path in glob.glob(os.path.join(glob.escape(output_dir), "ckpt-0.*")):
            os.remove(path)
        raise bertkit_errors.UserError(f"{output_dir}: no space left on device while writing checkpoint ckpt-0") \
            from None
    if vocab_file:
        write_vocab(vocab_file, os.path.join(output_dir, "vocab.txt"))
    config.to_json_file(os.path.join(output_dir, "bert_config.json"))
    meta = {"model_type": config.model_type, "created_by": created_by}
    if do_lower_case is not None:
        meta["do_lower_case"] = bool(do_lower_case)
    with bertkit_io.atomic_write(os.path.join(output_dir, "bertkit.json")) as f:
        json.dump(meta, f, indent=2, sort_keys=True)
        f.write("\n")
    # the `checkpoint` state file last (relative path: the directory can be moved); latest_checkpoint() reads it
    with bertkit_io.atomic_write(os.path.join(output_dir, "checkpoint")) as f:
        f.write('model_checkpoint_path: "ckpt-0"\nall_model_checkpoint_paths: "ckpt-0"\n')
    return prefix


def convert_to_bertkit(input_checkpoint, output_dir, bert_config_file=None, vocab_file=None, do_lower_case=None,
                       created_by="convert_checkpoint.py"):
    """Any supported checkpoint -> a bertkit model directory (convert_checkpoint.py). Returns a dict describing what
    was written: prefix, format, model_type, heads, vocab_file (the copy), do_lower_case."""
    src = f"--input_checkpoint={input_checkpoint}"
    if os.path.isfile(os.path.join(output_dir, "checkpoint")):
        raise bertkit_errors.UserError(f"--output_dir={output_dir}: already holds a checkpoint; choose a new directory")
    if vocab_file and not os.path.isfile(vocab_file):
        raise bertkit_errors.UserError(f"--vocab_file={vocab_file}: no such file")
    config = ModelConfig.from_json_file(bert_config_file) if bert_config_file else None
    bundle = load_checkpoint(input_checkpoint, config=config, with_heads=True, flag="input_checkpoint")
    vocab = vocab_file or bundle.vocab_file
    if vocab and os.path.basename(vocab) == TOKENIZER_JSON:
        _wordpiece_tokenizer_json(vocab)  # refused before anything is written
    if vocab is None:
        logging.warning("%s: no vocabulary found beside the checkpoint and no --vocab_file: none written", src)
    lower = bundle.do_lower_case if do_lower_case is None else bool(do_lower_case)
    prefix = save_bertkit_checkpoint(output_dir, bundle.config, bundle.encoder, bundle.mlm_head, bundle.nsp_head,
                                     vocab_file=vocab, do_lower_case=lower, created_by=created_by)
    heads = [n for n, h in (("mlm_head", bundle.mlm_head), ("nsp_head", bundle.nsp_head)) if h is not None]
    return {"prefix": prefix, "format": bundle.format, "model_type": bundle.config.model_type, "heads": heads,
            "vocab_file": os.path.join(output_dir, "vocab.txt") if vocab else None, "do_lower_case": lower}


__all__ = ["FORMATS", "CheckpointBundle", "detect_format", "load_checkpoint", "load_encoder", "init_from_checkpoint",
           "save_bertkit_checkpoint", "convert_to_bertkit", "read_objects", "model_dir_defaults", "write_vocab"]
