"""export_model.py's logic: a checkpoint or model directory -> the model it holds -> an export.

    checkpoint_export.export_checkpoint(init_checkpoint, export_dir=None, bert_config_file=None, vocab_file=None,
                                        do_lower_case=None, max_seq_length=None, task_meta=None, pooling="cls",
                                        l2_normalize=False, pair=None) -> version_dir

Unset arguments default to the files of the model directory (bert_config.json, vocab.txt, bertkit.json,
task_meta.json). A bertkit checkpoint with a task_meta is rebuilt as the classifier it was trained as (its
`classifier_head`, and `branches` for FastBERT) and exported by serving.export.export_classifier; anything else as an
encoder (serving.export.export_encoder), other formats (TF1, HuggingFace, keras-hub) through modeling.checkpoints.
"""
import json
import os
import tempfile

import tensorflow as tf

import bertkit_errors
from modeling import ModelConfig, build_classifier, build_encoder, checkpoints, model_dirs
from serving.export import export_classifier, export_encoder
from training import fastbert


def _read_json(path, flag):
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise bertkit_errors.UserError(f"--{flag}={path}: file not found") from None
    except (OSError, ValueError) as e:
        raise bertkit_errors.UserError(f"--{flag}={path}: cannot read JSON ({e})") from None
    if not isinstance(data, dict):
        raise bertkit_errors.UserError(f"--{flag}={path}: expected a JSON object")
    return data


def _bertkit_prefix(init_checkpoint):
    """(checkpoint prefix, {variable: shape}) when init_checkpoint is a TF2 object-based checkpoint with an `encoder`
    object (a bertkit checkpoint), else (None, None)."""
    prefix = tf.train.latest_checkpoint(init_checkpoint) if os.path.isdir(init_checkpoint) else init_checkpoint
    if not prefix or not tf.io.gfile.exists(prefix + ".index"):
        return None, None
    try:
        shapes = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    except (tf.errors.OpError, ValueError):
        return None, None
    if not any(k.startswith("encoder/") for k in shapes):
        return None, None
    return prefix, shapes


def _restore(init_checkpoint, prefix, **objects):
    """checkpoints.read_objects(prefix, **objects): every existing variable matched, or a one-line UserError."""
    try:
        checkpoints.read_objects(prefix, **objects)
    except (AssertionError, ValueError) as e:
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise bertkit_errors.UserError(
            f"--init_checkpoint={init_checkpoint}: checkpoint does not match the model config ({first})") from None


def _branch_set(shapes, num_layers, num_labels):
    """A built training.fastbert.BranchSet shaped like the checkpoint's `branches`, or None when it has none."""
    if not any(k.startswith("branches/") for k in shapes):
        return None
    narrow = shapes.get("branches/branch_0/dense_narrow/_kernel/.ATTRIBUTES/VARIABLE_VALUE")
    query = shapes.get("branches/branch_0/self_attention/_query_dense/_kernel/.ATTRIBUTES/VARIABLE_VALUE")
    if not narrow or not query:
        raise bertkit_errors.UserError("--init_checkpoint: the checkpoint's `branches` (FastBERT) are not "
                                       "training.fastbert.BranchSet branches")
    return fastbert.BranchSet(num_layers, num_labels, branch_hidden_size=int(narrow[1]), num_heads=int(query[1]))


_PAIR_TASKS = {"mrpc", "sts-b", "qqp", "mnli", "mnli-mm", "ax", "qnli", "rte", "wnli", "xnli"}


def _task_is_pair(meta):
    """Whether task_meta.json (data/finetuning.py) describes a sentence-pair task: an explicit "pair", a custom
    task's text_b_column, or a GLUE/XNLI pair task."""
    if "pair" in meta:
        return bool(meta["pair"])
    processor = meta.get("processor") or {}
    if "text_b_column" in processor:
        return processor["text_b_column"] is not None
    return str(meta.get("task") or processor.get("task_name") or "").lower() in _PAIR_TASKS


def export_checkpoint(init_checkpoint, *, export_dir=None, bert_config_file=None, vocab_file=None,
                      do_lower_case=None, max_seq_length=None, task_meta=None, pooling="cls", l2_normalize=False,
                      pair=None):
    """export_model.py's logic: load a checkpoint and export it; returns the version folder.

    init_checkpoint: a bertkit model directory (checkpoints + bert_config.json, vocab.txt, bertkit.json and, for a
    classifier, task_meta.json) or a checkpoint prefix inside one; other formats (original TF1 BERT, HuggingFace,
    ...) through modeling.checkpoints (encoders only; a HuggingFace vocabulary may be a tokenizer.json). Unset
    arguments default to the files of the model directory. With a task_meta (argument, or task_meta.json in the model
    directory) a classifier is exported (its checkpoint must hold `classifier_head`, and `branches` for FastBERT),
    otherwise an encoder.
    pair=None: a sentence-pair task (text_a, text_b inputs) when task_meta says so (`_task_is_pair`)."""
    init_checkpoint = os.fspath(init_checkpoint)
    if not (os.path.isdir(init_checkpoint) or tf.io.gfile.exists(init_checkpoint + ".index")
            or os.path.isfile(init_checkpoint)):
        raise bertkit_errors.UserError(f"--init_checkpoint={init_checkpoint}: no such checkpoint or directory")
    model_dir = init_checkpoint if os.path.isdir(init_checkpoint) else os.path.dirname(init_checkpoint) or "."

    def beside(name):
        path = os.path.join(model_dir, name)
        return path if os.path.isfile(path) else None

    meta = None
    if task_meta:
        meta = _read_json(task_meta, "task_meta")
    elif beside("task_meta.json"):
        task_meta = beside("task_meta.json")
        meta = _read_json(task_meta, "task_meta")
    bertkit_json = _read_json(beside("bertkit.json"), "init_checkpoint") if beside("bertkit.json") else {}
    if do_lower_case is None:
        do_lower_case = bertkit_json.get("do_lower_case", (meta or {}).get("do_lower_case"))
    if max_seq_length is None:
        max_seq_length = (meta or {}).get("max_seq_length") or bertkit_json.get("max_seq_length") or 128
    export_dir = export_dir or os.path.join(model_dir, "export")
    bert_config_file = bert_config_file or beside("bert_config.json")
    vocab_file = vocab_file or beside("vocab.txt")

    prefix, shapes = _bertkit_prefix(init_checkpoint)
    if prefix is None:
        # Not a bertkit checkpoint: other formats (TF1, HuggingFace, keras-hub) through modeling.checkpoints.
        if meta is not None:
            raise bertkit_errors.UserError(
                f"--task_meta={task_meta}: a classifier export needs a bertkit checkpoint with a classifier_head; "
                f"{init_checkpoint} is not one (export it as an encoder without --task_meta)")
        config = ModelConfig.from_json_file(bert_config_file) if bert_config_file else None
        bundle = checkpoints.load_checkpoint(init_checkpoint, config=config, with_heads=False)
        vocab_file = vocab_file or bundle.vocab_file
        if do_lower_case is None:
            do_lower_case = bundle.do_lower_case
        if not vocab_file:
            raise bertkit_errors.UserError("--vocab_file: not given and the checkpoint has no vocabulary")
        with tempfile.TemporaryDirectory() as tmp:
            if os.path.basename(vocab_file) == model_dirs.TOKENIZER_JSON:  # as vocab.txt, for the SavedModel assets
                vocab_file = model_dirs.write_vocab(vocab_file, os.path.join(tmp, "vocab.txt"))
            return export_encoder(bundle.encoder, vocab_file, True if do_lower_case is None else do_lower_case,
                                  int(max_seq_length), export_dir, pooling=pooling, l2_normalize=l2_normalize)

    if not bert_config_file:
        raise bertkit_errors.UserError(
            f"--bert_config_file: not given and {os.path.join(model_dir, 'bert_config.json')} does not exist")
    if not vocab_file:
        raise bertkit_errors.UserError(
            f"--vocab_file: not given and {os.path.join(model_dir, 'vocab.txt')} does not exist")
    if do_lower_case is None:
        do_lower_case = True
    config = ModelConfig.from_json_file(bert_config_file)
    if meta is None:
        encoder = build_encoder(config)
        _restore(init_checkpoint, prefix, encoder=encoder)
        return export_encoder(encoder, vocab_file, do_lower_case, int(max_seq_length), export_dir,
                              pooling=pooling, l2_normalize=l2_normalize)

    is_regression = bool(meta.get("is_regression", False))
    labels = [str(x) for x in meta.get("labels") or []]
    if not is_regression and not labels:
        raise bertkit_errors.UserError(f"--task_meta={task_meta}: no 'labels' list")
    num_labels = 1 if is_regression else len(labels)
    if not any(k.startswith("classifier_head/") for k in shapes):
        raise bertkit_errors.UserError(
            f"--init_checkpoint={init_checkpoint}: no classifier_head in the checkpoint (not a fine-tuned "
            "classifier; export an encoder without --task_meta)")
    head_bias = shapes.get("classifier_head/dense/bias/.ATTRIBUTES/VARIABLE_VALUE")
    if head_bias and int(head_bias[0]) != num_labels:
        raise bertkit_errors.UserError(
            f"--task_meta={task_meta}: {num_labels} label(s) but the checkpoint's classifier_head has "
            f"{head_bias[0]} outputs")
    classifier = build_classifier(config, num_labels)
    objects = {"encoder": classifier.encoder, "classifier_head": classifier.head}
    branches = None if is_regression else _branch_set(shapes, config.num_hidden_layers, num_labels)
    if branches is not None:
        ones = tf.ones([1, 2], tf.int32)
        fastbert.run_with_branches(classifier.encoder, branches, fastbert.pooled_head(classifier.encoder,
                                                                                      classifier.head),
                                   {"input_ids": ones, "input_mask": ones, "segment_ids": ones * 0})  # build
        objects["branches"] = branches
    _restore(init_checkpoint, prefix, **objects)
    if pair is None:
        pair = _task_is_pair(meta)
    return export_classifier(classifier, vocab_file=vocab_file, do_lower_case=do_lower_case,
                             max_seq_length=int(max_seq_length), labels=labels, is_regression=is_regression,
                             pair=pair, export_base=export_dir, branches=branches)
