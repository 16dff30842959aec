"""bench/bench_bad_inputs.py: the catalog is wide enough and a few cheap cases run and get verdicts (a smoke test;
the whole campaign spawns hundreds of processes and is run by hand, not by `make test`)."""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(ROOT, "bench", "bench_bad_inputs.py")
SCRIPTS = ["build_vocab.py", "create_pretraining_data.py", "create_finetuning_data.py", "run_pretraining.py",
           "run_classifier.py", "export_model.py", "convert_checkpoint.py", "augment_data.py", "demo.py", "serve.py"]
# these need no fixture (their argv names only the case folder), so no model is trained
CHEAP = ["bv-no-input", "bv-missing-input", "bv-no-output", "demo-unknown-flag", "demo-port-not-int",
         "demo-bad-bool"]


def _run(*args, timeout=120):
    return subprocess.run([sys.executable, BENCH, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def test_list_has_at_least_140_unique_cases_over_every_script():
    proc = _run("--list")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [ln.split() for ln in proc.stdout.splitlines()[:-1]]
    ids = [r[0] for r in rows]
    assert len(ids) >= 140 and len(ids) == len(set(ids)), len(ids)
    assert proc.stdout.splitlines()[-1] == f"{len(ids)} cases"
    assert set(SCRIPTS) <= {r[1] for r in rows}
    assert sum(r[1] == "serve.py" and r[0].startswith("http-") for r in rows) >= 20


def test_cheap_cases_print_table_rows_with_verdicts(tmp_path):
    proc = _run(f"--work_dir={tmp_path}", "--only=" + ",".join(CHEAP))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    for cid in CHEAP:
        assert re.search(rf"^{re.escape(cid)}\s+\S+\.py\s+\S+\s+(ok|weak|fail|skip)\b", out, re.M), out
    assert re.search(rf"^{len(CHEAP)} cases in \d+ s: \d+ ok, \d+ weak, \d+ fail", out, re.M), out
    # a missing --input_file and an absl flag-parsing failure are each one clean `error:` line
    assert re.search(r"^bv-no-input\s.*\b1\s+ok\s+error: ", out, re.M), out
    assert re.search(r"^demo-port-not-int\s.*\b1\s+ok\s+error: flag --port=http", out, re.M), out
