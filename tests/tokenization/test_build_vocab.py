import os
import subprocess
import sys

import pytest

import bertkit_errors
from tokenization import FullTokenizer, vocab_learning

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEXT = """The quick brown fox jumps over the lazy dog. The dogs were running quickly!
Running, jumping and walking are typical activities; runners run and walkers walk.
Caf\u00e9 prices rose 5% to $3.20 in January, the café owners said.
""" * 30


def test_build_vocab_order_and_round_trip(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    vocab = vocab_learning.build_vocab([str(corpus)], vocab_size=200, do_lower_case=True, num_unused=2)
    assert vocab[:7] == ["[PAD]", "[unused0]", "[unused1]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert len(vocab) <= 200 and len(set(vocab)) == len(vocab)
    out = tmp_path / "vocab.txt"
    out.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tok = FullTokenizer(str(out), do_lower_case=True)
    for word in ["the", "running", "quick", "jumps", "cafe", "dog", "typical"]:
        pieces = tok.tokenize(word)
        assert "[UNK]" not in pieces
        assert "".join(p[2:] if p.startswith("##") else p for p in pieces) == word
    assert "[UNK]" not in tok.tokenize(TEXT.splitlines()[2])


def _run(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, os.path.join(ROOT, "build_vocab.py"), *args], capture_output=True,
                          text=True, env=env, cwd=ROOT)


def test_script_errors_and_output(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine line\nbad \xff line\n")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    out = tmp_path / "out" / "vocab.txt"
    r = _run(f"--input_file={tmp_path}/nothing*.txt", f"--output_file={out}")
    assert r.returncode == 1 and "nothing*.txt" in r.stderr and "Traceback" not in r.stderr
    r = _run(f"--input_file={bad}", f"--output_file={out}", "--vocab_size=100")
    assert r.returncode == 1 and f"{bad}:2" in r.stderr
    r = _run(f"--input_file={empty}", f"--output_file={out}", "--vocab_size=100")
    assert r.returncode == 1 and "no text" in r.stderr
    r = _run(f"--input_file={corpus}", f"--output_file={out}", "--vocab_size=5")
    assert r.returncode == 1 and "--vocab_size=5" in r.stderr
    assert not out.exists()
    r = _run(f"--input_file={tmp_path}/c*.txt,{corpus}", f"--output_file={out}", "--vocab_size=150")
    assert r.returncode == 0, r.stderr
    FullTokenizer(str(out))
    assert not [p for p in os.listdir(out.parent) if ".tmp-" in p]


def test_vocab_size_too_small_api(tmp_path):
    with pytest.raises(bertkit_errors.UserError, match="vocab_size"):
        vocab_learning.build_vocab([str(tmp_path)], vocab_size=6, num_unused=3)
