"""Run one of the scripts from a bench, its output appended to a log file; a failure ends the bench with the log's
tail (the benches that drive whole recipes: bench_reference_recipe.py, bench_mobilebert_transfer.py)."""
import os
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_logged(cmd, log, what):
    """Run `cmd` in the repository root, stdout and stderr appended to `log`; SystemExit naming `what` and showing the
    log's last 2,000 characters when it fails. Returns the seconds it took."""
    start = time.perf_counter()
    with open(log, "a", encoding="utf-8") as f:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        with open(log, encoding="utf-8", errors="replace") as f:
            tail = f.read()[-2000:]
        raise SystemExit(f"error: {what} exited {proc.returncode} (log {log}):\n{tail}")
    return time.perf_counter() - start
