"""TinyBERT data augmentation of a task file (what augment_data.py runs): read the table, load a teacher with a
masked-LM head, write N augmented copies of every row (see augment_data.py and training/tinybert.py: Augmenter)."""
import csv
import io
import json
import os

import keras
import numpy as np
import tensorflow as tf

import bertkit_errors
import bertkit_io
from data import processor_base
from modeling import ModelConfig, build_pretraining_model
from modeling import checkpoints as ckpt_lib
from tokenization import FullTokenizer
from training import tinybert

_DEFAULT_TEXT_COLUMNS = ("text", "sentence")
_ROWS_PER_CHUNK = 256


# ----------------------------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------------------------

def _kind(path):
    if path.endswith(".jsonl"):
        return "jsonl"
    return "csv" if path.endswith(".csv") else "tsv"


def read_table(path, text_column=None):
    """(kind, header, rows, text_keys): rows are lists (tsv/csv) or dicts (jsonl); text_keys index/key of the text
    columns. UserError naming the file (and the header) when the text column is missing."""
    kind = _kind(path)
    wanted = [c.strip() for c in text_column.split(",") if c.strip()] if text_column else None
    if kind == "jsonl":
        rows = [obj for _, obj in processor_base.read_jsonl_lines(path)]
        if not rows:
            raise bertkit_errors.UserError(f"{path}: empty file")
        keys = list(rows[0])
        names = wanted or [next((c for c in _DEFAULT_TEXT_COLUMNS if c in keys), None)]
        for line_no, row in enumerate(rows, 1):
            for n in names:
                if n is None or n not in row:
                    raise bertkit_errors.UserError(
                        f"{path}:{line_no}: no text column {n or ' or '.join(_DEFAULT_TEXT_COLUMNS)!r} "
                        f"(--text_column; keys: {', '.join(row)})")
        return kind, None, rows, names
    reader = processor_base.read_csv_lines(path) if kind == "csv" else processor_base.read_tsv_lines(path)
    lines = list(reader)
    if not lines:
        raise bertkit_errors.UserError(f"{path}: empty file (no header)")
    header = [h.strip() for h in lines[0][1]]
    names = wanted or [next((c for c in _DEFAULT_TEXT_COLUMNS if c in header), None)]
    keys = []
    for n in names:
        if n is None or n not in header:
            shown = n if n is not None else " or ".join(_DEFAULT_TEXT_COLUMNS)
            raise bertkit_errors.UserError(f"{path}: no text column {shown!r} (--text_column) in the header "
                                           f"{chr(9).join(header) if kind == 'tsv' else ','.join(header)!r}")
        keys.append(header.index(n))
    rows = []
    for line_no, fields in lines[1:]:
        if len(fields) != len(header):
            raise bertkit_errors.UserError(f"{path}:{line_no}: expected {len(header)} columns, found {len(fields)}")
        rows.append(fields)
    return kind, lines[0][1], rows, keys


def _format_row(kind, row):
    if kind == "jsonl":
        return json.dumps(row, ensure_ascii=False) + "\n"
    if kind == "tsv":
        return "\t".join(row) + "\n"
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(row)
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------------------------
# Teacher
# ----------------------------------------------------------------------------------------------------------------

def load_teacher(checkpoint, bert_config_file=None, vocab_file=None, do_lower_case=None):
    """(encoder, mlm_head, tokenizer) of a bertkit model directory (or a checkpoint prefix inside one)."""
    flag = "--teacher_checkpoint"
    if os.path.isdir(checkpoint):
        model_dir, prefix = checkpoint, tf.train.latest_checkpoint(checkpoint)
    else:
        model_dir, prefix = os.path.dirname(checkpoint) or ".", checkpoint
    if not prefix or not (os.path.exists(prefix + ".index") or os.path.exists(prefix)):
        raise bertkit_errors.UserError(f"{flag}={checkpoint}: no checkpoint found")
    config_file = bert_config_file or os.path.join(model_dir, "bert_config.json")
    vocab = vocab_file or os.path.join(model_dir, "vocab.txt")
    for path, name in ((config_file, "--bert_config_file"), (vocab, "--vocab_file")):
        if not os.path.isfile(path):
            raise bertkit_errors.UserError(f"{name}={path}: no such file (give it, or a model dir that has it)")
    if do_lower_case is None:
        meta = os.path.join(model_dir, "bertkit.json")
        do_lower_case = True
        if os.path.isfile(meta):
            with open(meta, encoding="utf-8") as f:
                do_lower_case = bool(json.load(f).get("do_lower_case", True))
    tokenizer = FullTokenizer(vocab, do_lower_case=do_lower_case)
    config = ModelConfig.from_json_file(config_file)
    if len(tokenizer.vocab) > config.vocab_size:
        raise bertkit_errors.UserError(f"--vocab_file={vocab}: {len(tokenizer.vocab)} tokens but {config_file} has "
                                       f"vocab_size {config.vocab_size}")

    try:  # modeling/checkpoints.py reads more checkpoint formats
        bundle = ckpt_lib.load_checkpoint(checkpoint)
    except (TypeError, NotImplementedError):
        bundle = None
    if bundle is not None and getattr(bundle, "encoder", None) is not None \
            and getattr(bundle, "mlm_head", None) is not None:
        return bundle.encoder, bundle.mlm_head, tokenizer

    model = build_pretraining_model(config)
    tinybert.restore_teacher_weights(model.encoder, prefix, flag="teacher_checkpoint")
    names = [n for n, _ in tf.train.list_variables(prefix)]
    if not any(n.startswith("mlm_head/") for n in names):
        raise bertkit_errors.UserError(f"{flag}={checkpoint}: the checkpoint has no mlm_head (augmentation needs the "
                                       "teacher's masked-LM head: a run_pretraining.py output)")
    status = tf.train.Checkpoint(mlm_head=model.mlm_head).restore(prefix)
    status.expect_partial()
    try:
        status.assert_existing_objects_matched()
    except AssertionError as e:
        raise bertkit_errors.UserError(f"{flag}={checkpoint}: mlm_head does not match the config "
                                       f"({str(e).splitlines()[0][:200]})") from None
    return model.encoder, model.mlm_head, tokenizer


# ----------------------------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------------------------

def augment_file(input_file, output_file, augmenter, *, text_column=None, num_aug=20, replace_prob=0.4, seed=42,
                 progress=True):
    """Augment `input_file` into `output_file` (atomically). Returns a summary dict."""
    kind, header, rows, keys = read_table(input_file, text_column)
    bar = None
    if progress:
        bar = keras.utils.Progbar(len(rows), unit_name="row")
    replaced = considered = 0
    out_rows = 0
    os.makedirs(os.path.dirname(os.path.abspath(output_file)), exist_ok=True)
    with bertkit_io.atomic_write(output_file) as f:
        if header is not None:
            f.write(_format_row(kind, header))
        for start in range(0, len(rows), _ROWS_PER_CHUNK):
            chunk = rows[start:start + _ROWS_PER_CHUNK]
            per_key = {k: augmenter.candidates_for([str(r[k] if r[k] is not None else "") for r in chunk])
                       for k in keys}
            for i, row in enumerate(chunk):
                rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, start + i])
                texts = {}
                for k in keys:
                    words, cands = per_key[k][i]
                    texts[k] = augmenter.augment_words(words, cands, num_aug, replace_prob, rng)
                    for t in texts[k]:
                        new = t.split(" ") if t else []
                        considered += len(cands)
                        replaced += sum(1 for wi in cands if new[wi] != words[wi])
                f.write(_format_row(kind, row))
                for n in range(int(num_aug)):
                    copy = dict(row) if kind == "jsonl" else list(row)
                    for k in keys:
                        copy[k] = texts[k][n]
                    f.write(_format_row(kind, copy))
                out_rows += 1 + int(num_aug)
            if bar is not None:
                bar.update(start + len(chunk))
    return {"input_rows": len(rows), "output_rows": out_rows, "model_calls": augmenter.calls,
            "replaced_fraction": replaced / considered if considered else 0.0}
