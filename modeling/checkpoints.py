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
  * "tf1": original Google BERT / ALBERT checkpoints (`bert_model.ckpt` / `model.ckpt-N`, variables `bert/...`,
    `cls/...`), renamed to HuggingFace names by `modeling.tf1_import` and assigned by
    `modeling.hf_import.assign_hf_state`, the one assignment path for foreign weights. The config is
    `bert_config.json` / `albert_config.json` beside the checkpoint (or given).
  * "hf": HuggingFace directories (`config.json` + `model.safetensors`), see `modeling.hf_import`.
  * "keras_hub": keras-hub preset directories of a `BertBackbone`, see `modeling.keras_hub_import`.

This module detects the format, reads bertkit's own checkpoints (with the damaged-file and shape checks) and writes
them; what a model directory holds beside the checkpoint (config, vocabulary, lower-casing: `model_dir_defaults`,
`write_vocab`) is `modeling.model_dirs`.

Errors are `bertkit_errors.UserError`s starting with `--<flag>=<path>:` when a flag name is given (init_from_checkpoint
uses `init_checkpoint` by default), else `<path>:`.
"""
import collections
import glob
import json
import os
import re
import shutil

import keras
import tensorflow as tf
from absl import logging
from tensorflow.core.protobuf import trackable_object_graph_pb2

import bertkit_errors
import bertkit_io
from modeling import hf_import, keras_hub_import, model_dirs, tf1_import
from modeling.config import ModelConfig
from modeling.encoders import build_encoder
from modeling.heads import MaskedLMHead, SentencePairHead

FORMATS = ("bertkit", "tf1", "hf", "keras_hub")
_VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"

CheckpointBundle = collections.namedtuple(
    "CheckpointBundle", ["config", "encoder", "mlm_head", "nsp_head", "vocab_file", "do_lower_case", "format"])


def _src(path, flag):
    return f"--{flag}={path}" if flag else str(path)


def _shape_str(shape):
    return "[" + ", ".join(str(int(d)) for d in shape) + "]"


# ------------------------------------------------------------------------------------------------ format detection
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
        if model_dirs.is_keras_hub_dir(path):
            return "keras_hub", path
        if model_dirs.is_hf_dir(path):
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


# ------------------------------------------------------------------------------------------------ bertkit
def _walk_variables(root_name, obj):
    """{checkpoint key: variable} for the trainable variables under `obj`, keys as tf.train.Checkpoint writes them
    (breadth-first, first path wins, `<root_name>/.../<attr>/.ATTRIBUTES/VARIABLE_VALUE`)."""
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


def _tf1_state(prefix, config, src, want_mlm, want_nsp):
    """tf1_import.tf1_state on the checkpoint at `prefix`, its tensors read through read_tensor."""
    reader = tf.train.load_checkpoint(prefix)
    return tf1_import.tf1_state(_checkpoint_names(prefix, src), lambda name: read_tensor(reader, name, prefix), config,
                                src, want_mlm, want_nsp)


def load_checkpoint(path, config=None, with_heads=True, flag=None):
    """Load any supported format -> CheckpointBundle(config, encoder, mlm_head, nsp_head, vocab_file, do_lower_case,
    format). `config` (a ModelConfig or a path to a config file) overrides the one found beside the checkpoint."""
    src = _src(path, flag)
    fmt, loc = _resolve(path, flag)
    if isinstance(config, str):
        config = ModelConfig.from_json_file(config)
    if fmt == "bertkit":
        directory = os.path.dirname(loc) or "."
        config = config or model_dirs.find_config(directory, src)
        encoder = build_encoder(config)
        names = _checkpoint_names(loc, src)
        mlm_head, nsp_head = _new_heads(config, encoder, with_heads and any(n.startswith("mlm_head/") for n in names),
                                        with_heads and any(n.startswith("nsp_head/") for n in names))
        _restore_bertkit(loc, {"encoder": encoder, "mlm_head": mlm_head, "nsp_head": nsp_head}, src)
        vocab = model_dirs.find_vocab(directory)
        lower = None
        meta = os.path.join(directory, "bertkit.json")
        if os.path.isfile(meta):
            lower = model_dirs.read_json(meta, src).get("do_lower_case")
        return CheckpointBundle(config, encoder, mlm_head, nsp_head, vocab, lower, fmt)
    if fmt == "tf1":
        directory = os.path.dirname(loc) or "."
        config = config or model_dirs.find_config(directory, src)
        state, has_mlm, has_nsp = _tf1_state(loc, config, src, with_heads, with_heads)
        encoder = build_encoder(config)
        mlm_head, nsp_head = _new_heads(config, encoder, has_mlm, has_nsp)
        heads = {k: v for k, v in (("mlm_head", mlm_head), ("nsp_head", nsp_head)) if v is not None}
        _assign(config, encoder, state, heads, src)
        return CheckpointBundle(config, encoder, mlm_head, nsp_head, model_dirs.find_vocab(directory),
                                model_dirs.case_from_name(directory), fmt)
    if fmt == "hf":
        config = config or ModelConfig.from_json_file(os.path.join(loc, "config.json"))
        state = hf_import.read_safetensors(loc)
        encoder = build_encoder(config)
        mlm_head, nsp_head = _new_heads(config, encoder, with_heads and hf_import.has_mlm(state, config),
                                        with_heads and hf_import.nsp_key(config) + ".weight" in state)
        heads = {k: v for k, v in (("mlm_head", mlm_head), ("nsp_head", nsp_head)) if v is not None}
        unused = _assign(config, encoder, state, heads, src)
        if unused:
            logging.info("%s: %d tensors not used: %s", src, len(unused), ", ".join(sorted(unused)[:10]))
        vocab, lower = model_dirs.hf_tokenizer_info(loc)
        return CheckpointBundle(config, encoder, mlm_head, nsp_head, vocab, lower, fmt)
    # keras_hub
    backbone = keras_hub_import.load_backbone(loc, src)
    hub_config = keras_hub_import.backbone_config(backbone)
    config = config or hub_config
    encoder = build_encoder(config)
    _assign(config, encoder, keras_hub_import.backbone_state(backbone, src), {}, src)
    keras_hub_import.check_numerics(backbone, encoder, src)
    vocab, lower = keras_hub_import.tokenizer_info(loc)
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


def init_from_checkpoint(encoder, path, mlm_head=None, nsp_head=None, flag="init_checkpoint"):
    """Load the weights of the checkpoint at `path` (any format) INTO `encoder`, and into `mlm_head` / `nsp_head`
    when given and the checkpoint has them. Returns a one-line description of what was loaded. A config mismatch
    (wrong shape, missing variable, other model type or head count) is a UserError naming the variable."""
    src = _src(path, flag)
    fmt, loc = _resolve(path, flag)
    if fmt == "bertkit":
        side = model_dirs.side_config(os.path.dirname(loc) or ".")
        if side is not None and isinstance(getattr(encoder, "config", None), ModelConfig):
            _check_same_architecture(encoder.config, side, src)
        done = _restore_bertkit(loc, {"encoder": encoder, "mlm_head": mlm_head, "nsp_head": nsp_head}, src)
        return f"{', '.join(done)} from bertkit checkpoint {loc}"
    config = getattr(encoder, "config", None)
    if not isinstance(config, ModelConfig):
        raise bertkit_errors.UserError(f"{src}: a {fmt} checkpoint can only initialise a bertkit encoder")
    heads = {}
    if fmt == "tf1":
        side = model_dirs.side_config(os.path.dirname(loc) or ".")
        if side is not None:
            _check_same_architecture(config, side, src)
        state, has_mlm, has_nsp = _tf1_state(loc, config, src, mlm_head is not None, nsp_head is not None)
        what = f"TF1 checkpoint {loc}"
    elif fmt == "hf":
        _check_same_architecture(config, ModelConfig.from_json_file(os.path.join(loc, "config.json")), src)
        state = hf_import.read_safetensors(loc)
        has_mlm = mlm_head is not None and hf_import.has_mlm(state, config)
        has_nsp = nsp_head is not None and hf_import.nsp_key(config) + ".weight" in state
        what = f"HuggingFace directory {loc}"
    else:
        backbone = keras_hub_import.load_backbone(loc, src)
        _check_same_architecture(config, keras_hub_import.backbone_config(backbone), src)
        state, has_mlm, has_nsp = keras_hub_import.backbone_state(backbone, src), False, False
        what = f"keras-hub preset {loc}"
    if has_mlm:
        heads["mlm_head"] = mlm_head
    if has_nsp:
        heads["nsp_head"] = nsp_head
    _assign(config, encoder, state, heads, src)
    if fmt == "keras_hub":
        keras_hub_import.check_numerics(backbone, encoder, src)
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
        model_dirs.write_vocab(vocab_file, os.path.join(output_dir, "vocab.txt"))
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
    if vocab and os.path.basename(vocab) == model_dirs.TOKENIZER_JSON:
        model_dirs.wordpiece_tokenizer_json(vocab)  # refused before anything is written
    if vocab is None:
        logging.warning("%s: no vocabulary found beside the checkpoint and no --vocab_file: none written", src)
    lower = bundle.do_lower_case if do_lower_case is None else bool(do_lower_case)
    prefix = save_bertkit_checkpoint(output_dir, bundle.config, bundle.encoder, bundle.mlm_head, bundle.nsp_head,
                                     vocab_file=vocab, do_lower_case=lower, created_by=created_by)
    heads = [n for n, h in (("mlm_head", bundle.mlm_head), ("nsp_head", bundle.nsp_head)) if h is not None]
    return {"prefix": prefix, "format": bundle.format, "model_type": bundle.config.model_type, "heads": heads,
            "vocab_file": os.path.join(output_dir, "vocab.txt") if vocab else None, "do_lower_case": lower}


__all__ = ["FORMATS", "CheckpointBundle", "detect_format", "load_checkpoint", "load_encoder", "init_from_checkpoint",
           "save_bertkit_checkpoint", "convert_to_bertkit", "read_objects"]
