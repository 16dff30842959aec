"""bench/bench_flag_errors.py runs its bad command lines and prints a row per case and a summary (a smoke test: no
timing asserted)."""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(ROOT, "bench", "bench_flag_errors.py")


def _run(*args):
    return subprocess.run([sys.executable, BENCH, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_one_script_gets_a_row_with_its_error_line_and_a_summary():
    proc = _run("--scripts=build_vocab", "--runs=2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [ln for ln in proc.stdout.splitlines() if ln.startswith("build_vocab ")]
    assert len(rows) == 1, proc.stdout
    assert re.match(r"build_vocab\s+missing\s+\d+\.\d\d\s+\d+\.\d\d-\d+\.\d\d\s+yes\s+error: --", rows[0]), rows[0]
    assert proc.stdout.splitlines()[-1].startswith("1 command lines, ")


def test_fail_on_slow_exits_1_when_a_case_is_over_the_limit():
    proc = _run("--scripts=build_vocab", "--runs=1", "--max_seconds=0", "--fail_on_slow")
    assert proc.returncode == 1, proc.stdout + proc.stderr[-2000:]
    assert "SLOW" in proc.stdout and proc.stdout.splitlines()[-1].endswith("build_vocab missing")


def test_unknown_script_is_refused():
    proc = _run("--scripts=no_such_script")
    assert proc.returncode == 2 and "unknown no_such_script" in proc.stderr
