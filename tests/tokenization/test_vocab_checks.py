"""Vocabulary and build_vocab.py path checks: duplicate tokens warned about, bad paths refused before the work."""
import logging
import os
import subprocess
import sys

from data import pretraining
from tokenization import load_vocab

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "the", "dog", "cat"]


def _vocab(tmp_path, tokens):
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return str(path)


def test_duplicate_vocab_token_is_warned_about(tmp_path, caplog):
    path = _vocab(tmp_path, TOKENS)
    with caplog.at_level(logging.WARNING):
        vocab = load_vocab(path)
    assert vocab["the"] == 7  # the original semantics are kept: the last line's id
    warnings = [r.getMessage() for r in caplog.records if "duplicate token" in r.getMessage()]
    assert len(warnings) == 1
    assert f"{path}:8: duplicate token 'the' (also on line 6" in warnings[0]
    assert "2 duplicate line(s)" in warnings[0]


def test_duplicate_vocab_token_warned_by_the_data_reader(tmp_path, caplog):
    path = _vocab(tmp_path, TOKENS)
    with caplog.at_level(logging.WARNING):
        pretraining.read_vocab(path)
    assert any(f"{path}:8: duplicate token 'the'" in r.getMessage() for r in caplog.records)


def test_unique_vocab_gives_no_warning(tmp_path, caplog):
    path = _vocab(tmp_path, sorted(set(TOKENS)))
    with caplog.at_level(logging.WARNING):
        load_vocab(path)
    assert not [r for r in caplog.records if "duplicate" in r.getMessage()]


def _build_vocab(*args):
    return subprocess.run([sys.executable, "build_vocab.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_build_vocab_refuses_a_directory_output_before_the_work(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("some text here\n")
    proc = _build_vocab(f"--input_file={corpus}", f"--output_file={tmp_path}")
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"error: --output_file={tmp_path}: is a directory, a file name is expected"


def test_build_vocab_input_directory_is_named(tmp_path):
    (tmp_path / "corpus.txt").write_text("some text here\n")
    proc = _build_vocab(f"--input_file={tmp_path}", f"--output_file={tmp_path / 'vocab.txt'}")
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith(f"error: --input_file={tmp_path}: {tmp_path} is a directory; name the files")
