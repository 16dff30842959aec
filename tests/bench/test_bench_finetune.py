"""bench/bench_finetune.py runs end to end on a tiny HuggingFace BERT directory and prints every figure it promises
(a smoke test: no timing asserted)."""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NUMBER = r"[0-9]+\.[0-9]+"


def test_bench_finetune_prints_both_sides_the_ratio_and_the_phases(tiny_hf_dir):
    cmd = [sys.executable, os.path.join(ROOT, "bench", "bench_finetune.py"), f"--init_checkpoint={tiny_hf_dir}",
           "--batch_sizes=2", "--max_seq_length=16", "--rounds=1", "--steps=2", "--warmup=1", "--phases",
           "--threads=1"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert re.search(r"\(2 layers, hidden 32, 2 heads, intermediate 64, vocab \d+\); TensorFlow \S+ intra-op threads "
                     r"1, torch \S+ threads 1", out), out
    assert re.search(r"HuggingFace attention implementation: \S+", out), out
    assert re.search(rf"batch 2 round 1: bertkit {NUMBER} examples/s, HuggingFace {NUMBER} examples/s", out), out
    assert re.search(rf"batch 2, length 16: bertkit {NUMBER} examples/s \(\d+ ms/step\), HuggingFace {NUMBER} "
                     rf"examples/s \(\d+ ms/step\), bertkit / HuggingFace {NUMBER}x", out), out
    assert re.search(r"phases, ms \(median\): bertkit forward -?\d+, backward -?\d+, optimizer -?\d+; HuggingFace "
                     r"forward \d+, backward \d+, optimizer \d+", out), out
    assert re.search(rf"summary: batch 2 {NUMBER}x \(bertkit / HuggingFace examples/s\)", out), out
