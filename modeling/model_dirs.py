"""What a model directory holds, for the scripts' unset flags: config file, vocabulary, lower-casing.

    model_dir_defaults(path, vocab_dir=None) -> {"model_dir", "bert_config_file", "vocab_file", "do_lower_case"}
    write_vocab(source, path)        # vocab.txt from a vocab.txt or a HuggingFace tokenizer.json (BERT WordPiece)

bertkit and original TF1 directories: bert_config.json / albert_config.json, vocab.txt, bertkit.json's do_lower_case
(TF1: the directory name, as the original repository does). HuggingFace directories: config.json, vocab.txt or a
tokenizer.json, whose vocabulary is written out as vocab.txt so that everything downstream reads vocab.txt. No
TensorFlow here: the checkpoints themselves are read by modeling/checkpoints.py.
"""
import atexit
import json
import os
import tempfile

import bertkit_errors
import bertkit_io
from modeling.config import ModelConfig

CONFIG_NAMES = ("bert_config.json", "albert_config.json", "config.json")
VOCAB_NAMES = ("vocab.txt", "30k-clean.vocab", "spiece.vocab")
TOKENIZER_JSON = "tokenizer.json"


def read_json(path, src):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise bertkit_errors.UserError(f"{src}: cannot read {path} ({e})") from None


def is_keras_hub_dir(path):
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


def is_hf_dir(path):
    if not os.path.isfile(os.path.join(path, "config.json")):
        return False
    return any(os.path.exists(os.path.join(path, n)) for n in (
        "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "tf_model.h5"))


def find_config(directory, src, config_file=None):
    if config_file:
        return ModelConfig.from_json_file(config_file)
    for name in CONFIG_NAMES:
        p = os.path.join(directory, name)
        if os.path.isfile(p):
            return ModelConfig.from_json_file(p)
    raise bertkit_errors.UserError(f"{src}: no {' / '.join(CONFIG_NAMES)} beside the checkpoint; give the model "
                                   "config (--bert_config_file)")


def find_vocab(directory):
    for name in VOCAB_NAMES:
        p = os.path.join(directory, name)
        if os.path.isfile(p):
            return p
    return None


def case_from_name(directory):
    """The original repo's convention (tokenization.validate_case_matches_checkpoint): the model's directory name."""
    name = os.path.basename(os.path.normpath(directory)).lower()
    if "uncased" in name:
        return True
    if "cased" in name:
        return False
    return None


def hf_tokenizer_info(path):
    """(vocabulary source, do_lower_case) of a HuggingFace directory: vocab.txt, else tokenizer.json (a vocab source
    for write_vocab, which checks it is a BERT WordPiece tokenizer); lower-casing from tokenizer.json's
    BertNormalizer, else tokenizer_config.json."""
    vocab = find_vocab(path)
    tok = os.path.join(path, TOKENIZER_JSON)
    if vocab is None and os.path.isfile(tok):
        vocab = tok
    lower = None
    if os.path.isfile(tok):
        d = read_json(tok, tok)
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


def wordpiece_tokenizer_json(path):
    """(tokens in id order, normalizer dict) of a HuggingFace tokenizer.json holding a BERT WordPiece tokenizer;
    one-line UserError for anything else."""
    d = read_json(path, path)
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
        tokens = wordpiece_tokenizer_json(source)[0]
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
    tokens = wordpiece_tokenizer_json(tokenizer_json)[0]
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
    if is_keras_hub_dir(model_dir):
        return out
    if is_hf_dir(model_dir) and not os.path.isfile(os.path.join(model_dir, "bert_config.json")):
        out["bert_config_file"] = os.path.join(model_dir, "config.json")
        vocab, lower = hf_tokenizer_info(model_dir)
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
        lower = read_json(meta, f"--{flag}={path}" if flag else str(path)).get("do_lower_case")
        if isinstance(lower, bool):
            out["do_lower_case"] = lower
    elif "bert_config_file" in out and case_from_name(model_dir) is not None:
        out["do_lower_case"] = case_from_name(model_dir)
    return out


def side_config(directory):
    for name in CONFIG_NAMES:
        p = os.path.join(directory, name)
        if os.path.isfile(p):
            try:
                return ModelConfig.from_json_file(p)
            except bertkit_errors.UserError:
                return None
    return None
