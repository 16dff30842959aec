"""bench/bench_reference_recipe.py runs run_classifier.py per seed on a tiny HuggingFace BERT directory (tokenizer.json,
no vocab.txt) and a slice of the BBC data, and prints the per-epoch table next to the reference (a smoke test: the
accuracy of a tiny random model is not asserted)."""
import json
import os
import re
import subprocess
import sys

from data import bbc

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_bench_reference_recipe_runs_each_seed_and_prints_the_table(tiny_hf_dir, tmp_path):
    data_dir = str(tmp_path / "data")
    bbc.build_bbc(data_dir, max_docs_per_label=4)
    out_dir = str(tmp_path / "runs")
    cmd = [sys.executable, os.path.join(ROOT, "bench", "bench_reference_recipe.py"), f"--output_dir={out_dir}",
           f"--init_checkpoint={tiny_hf_dir}", f"--data_dir={data_dir}", "--seeds=1,2", "--epochs=1",
           "--max_seq_length=32", "--train_batch_size=8"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    for seed in (1, 2):
        assert re.search(rf"^\$ \S+ \S+run_classifier.py --task_name=bbc --do_train --do_eval --data_dir={data_dir} "
                         rf"--init_checkpoint={tiny_hf_dir} --max_seq_length=32 --train_batch_size=8 "
                         rf".*--learning_rate=0.0001 --num_train_epochs=1 --warmup_proportion=0.1 --seed={seed} "
                         rf"--output_dir={out_dir}/seed_{seed} ", out, re.M), out
    # run_classifier.py wrote the model directory's vocab.txt from tokenizer.json: ids in order
    with open(os.path.join(tiny_hf_dir, "tokenizer.json"), encoding="utf-8") as f:
        vocab = json.load(f)["model"]["vocab"]
    with open(os.path.join(out_dir, "seed_1", "vocab.txt"), encoding="utf-8") as f:
        assert f.read().split("\n")[:-1] == sorted(vocab, key=vocab.get)
    lines = out.splitlines()
    head = lines.index("bertkit run_classifier.py, BBC dev accuracy (%) after each epoch:")
    assert lines[head + 1].split() == ["epoch", "seed", "1", "seed", "2", "mean", "HF", "mean", "bertkit", "-", "HF"]
    cells = lines[head + 2].split()
    assert cells[0] == "1" and cells[4:] == ["-", "-"], out  # no reference figure for epoch 1
    s1, s2, mean = (float(c) for c in cells[1:4])
    assert 0 <= s1 <= 100 and 0 <= s2 <= 100 and abs(mean - (s1 + s2) / 2) < 0.006, out
    for seed, value in ((1, s1), (2, s2)):
        with open(os.path.join(out_dir, f"seed_{seed}", "eval_history.json"), encoding="utf-8") as f:
            (only,) = json.load(f).values()
        assert abs(100 * only["accuracy"] - value) < 0.006, out
    assert "HuggingFace reference (issue 18; separate 3- and 5-epoch runs):" in out
    assert re.search(r"^\s+5\s+96.17\s+97.07\s+96.85\s+96.70$", out, re.M), out

    # --report_only runs nothing and prints the same table; a seed without a run is a row of dashes
    report = subprocess.run(cmd[:-4] + ["--seeds=1,2,7", "--epochs=1", "--train_batch_size=8", "--report_only"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert report.returncode == 0, report.stdout[-3000:] + report.stderr[-3000:]
    assert "run_classifier.py --task_name" not in report.stdout
    assert f"seed 7: no run in {out_dir}/seed_7 yet" in report.stdout
    row = [line for line in report.stdout.splitlines() if line.split()[:1] == ["1"]]
    assert len(row) == 1 and row[0].split()[1:3] == cells[1:3] and row[0].split()[3] == "-", report.stdout
