"""`make demo FAST=1`: the whole pipeline end to end on a small slice of BBC News (the packaged MiniLM teacher at
sequence length 32, a tiny student, a few steps each); `make demo-scratch`'s command lines."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_fast_demo_runs_every_step_and_reuses_them(tmp_path):
    out = tmp_path / "demo"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    cmd = [sys.executable, "demo.py", f"--output_dir={out}", "--fast"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    log = proc.stdout
    # Every step's command line is printed before it runs.
    for script in ("run_classifier.py", "serve.py"):
        assert f" {script} " in log or f" {script}\n" in log, script
    assert "--init_checkpoint=" + os.path.join(os.path.expanduser("~"), ".cache") in log or "all-MiniLM-L6-v2" in log
    assert "--teacher_checkpoint=" in log and "--distill_stage=intermediate" in log and "--fastbert" in log
    assert "--init_from_teacher" in log and "initialised from the teacher, pruned" in log
    # The server answered raw text for the three models, and the summary was printed.
    for name in ("teacher", "student", "fastbert"):
        assert f"  {name}: " in log
    assert "exit_layer=" in log
    assert "=== summary" in log and "tensorboard --logdir" in log
    summary = json.loads((out / "summary.json").read_text())
    assert summary["recipe"] == "minilm"
    rows = {r["model"]: r for r in summary["rows"]}
    names = [r["model"] for r in summary["rows"]]
    assert names[0].startswith("teacher") and names[1].startswith("TinyBERT student")
    assert names[-1].startswith("TF-IDF") and "FastBERT teacher, speed 0.5" in rows
    for row in summary["rows"]:
        assert 0.0 <= row["accuracy"] <= 1.0, row
    teacher, student = summary["rows"][0], summary["rows"][1]
    assert 0 < student["encoder_params"] < teacher["encoder_params"]
    assert teacher["examples_per_second"] > 0 and student["speedup"] > 0
    assert rows["FastBERT teacher, speed 0.5"]["speedup"] > 0
    # A second run reuses every finished step (no training again) and still serves.
    again = subprocess.run(cmd + ["--noserve"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert again.stdout.count("(done before: reusing") == len(os.listdir(out / "steps"))
    assert "training done" not in again.stdout


def test_scratch_recipe_prints_the_from_scratch_pipeline(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    cmd = [sys.executable, "demo.py", f"--output_dir={tmp_path / 'demo'}", "--recipe=scratch", "--fast", "--dry_run"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    log = proc.stdout
    for script in ("build_vocab.py", "create_pretraining_data.py", "run_pretraining.py", "run_classifier.py"):
        assert f" {script} " in log, script
    assert "pretrain a small BERT teacher (MLM + NSP)" in log and "--fastbert" in log
    assert not os.path.exists(tmp_path / "demo" / "steps" / "teacher_pretrain.done")
