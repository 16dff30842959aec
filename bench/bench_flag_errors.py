"""How fast every top-level script rejects a bad command line (issue 20): seconds to its `error:` line.

    .venv/bin/python bench/bench_flag_errors.py [--scripts=run_classifier,serve] [--runs=5] [--max_seconds=1.0]
        [--fail_on_slow] [--timeout=60]

For each script, up to three bad command lines, each run --runs times as a fresh subprocess (Python start-up
included, the environment as given):
  missing   no flags at all: a required flag is missing (not for demo.py, which has no required flag and, without
            flags, runs the whole 15-minute demo);
  task      --task_name=no_such_task with the other required flags set (scripts that have --task_name);
  enum      a value outside an enum flag's choices (scripts that have an enum flag).
Every command line fails in its flag checks, before any work: each run is killed (its process group) after
--timeout seconds anyway. The files the task cases need (a vocabulary, a config, a data folder) are made in a
temporary folder.

Prints per case the median seconds (and the range) from the start of the process to the line on stderr that starts
with `error:` (to the exit when there is none), whether stderr's last line starts with `error:`, and that line.
Exits 0 whatever the figures (a benchmark), unless --fail_on_slow and some case's median is over --max_seconds or
its last stderr line is not an `error:` line.
"""
import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ("build_vocab", "create_pretraining_data", "create_finetuning_data", "run_pretraining", "run_classifier",
           "export_model", "convert_checkpoint", "augment_data", "serve", "demo")


def bad_command_lines(script, tmp):
    """[(case, args)] for `script`; `tmp` holds vocab.txt, bert_config.json and data/ for the task cases."""
    vocab, config, data = (os.path.join(tmp, name) for name in ("vocab.txt", "bert_config.json", "data"))
    out = os.path.join(tmp, "out", script)
    cases = {
        "build_vocab": [("missing", [])],
        "create_pretraining_data": [("missing", [])],
        "create_finetuning_data": [
            ("missing", []),
            ("task", ["--task_name=no_such_task", f"--data_dir={data}", f"--vocab_file={vocab}",
                      f"--output_dir={out}"])],
        "run_pretraining": [("missing", []), ("enum", ["--optimizer=no_such_optimizer"])],
        "run_classifier": [
            ("missing", []),
            ("task", ["--task_name=no_such_task", "--do_train", f"--data_dir={data}", f"--vocab_file={vocab}",
                      f"--bert_config_file={config}", f"--output_dir={out}"]),
            ("enum", ["--optimizer=no_such_optimizer"])],
        "export_model": [("missing", []), ("enum", ["--pooling=no_such_pooling"])],
        "convert_checkpoint": [("missing", [])],
        "augment_data": [("missing", [])],
        "serve": [("missing", [])],
        # never without a failing flag: demo.py with no flags runs the whole demo
        "demo": [("enum", ["--recipe=no_such_recipe"])],
    }
    return cases[script]


def make_fixtures(tmp):
    """The files the --task_name cases name (a task check may look at them after the name)."""
    with open(os.path.join(tmp, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a"]) + "\n")
    shutil.copy(os.path.join(ROOT, "configs", "tiny_bert.json"), os.path.join(tmp, "bert_config.json"))
    os.makedirs(os.path.join(tmp, "data"))
    for split in ("train", "dev"):
        with open(os.path.join(tmp, "data", f"{split}.tsv"), "w", encoding="utf-8") as f:
            f.write("id\tlabel\ttext\n0\tsport\tthe a\n")


def time_to_error(script, args, timeout):
    """(seconds to the first stderr line starting with `error:` or to the exit, stderr's last non-empty line)."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, f"{script}.py"), *args], cwd=ROOT,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, errors="replace", start_new_session=True)
    seen = {}
    lines = []

    def read():
        for line in proc.stderr:
            if "error" not in seen and line.startswith("error:"):
                seen["error"] = time.perf_counter() - start
            if line.strip():
                lines.append(line.rstrip("\n"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        lines.append(f"(killed after {timeout} s)")
    ended = time.perf_counter() - start
    reader.join(timeout=5)
    return seen.get("error", ended), (lines[-1] if lines else "")


def run_case(script, case, args, runs, timeout):
    times, last = [], ""
    for _ in range(runs):
        seconds, last = time_to_error(script, args, timeout)
        times.append(seconds)
    return {"script": script, "case": case, "args": " ".join(args), "median": statistics.median(times),
            "min": min(times), "max": max(times), "error_line": last.startswith("error:"), "last": last}


HEADER = f"{'script':<24} {'case':<8} {'median s':>8} {'range s':>13}  {'error: last':<11} last stderr line"


def format_row(r, max_seconds):
    slow = " SLOW" if r["median"] > max_seconds else ""
    return (f"{r['script']:<24} {r['case']:<8} {r['median']:>8.2f} {r['min']:>6.2f}-{r['max']:<6.2f}  "
            f"{'yes' if r['error_line'] else 'NO':<11} {r['last'][:90]}{slow}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scripts", default=",".join(SCRIPTS), help="comma-separated script names (without .py)")
    ap.add_argument("--runs", type=int, default=5, help="runs per command line (the median is reported)")
    ap.add_argument("--max_seconds", type=float, default=1.0, help="a median above this is marked SLOW")
    ap.add_argument("--fail_on_slow", action="store_true",
                    help="exit 1 when a median is over --max_seconds or a last stderr line is not `error:`")
    ap.add_argument("--timeout", type=float, default=60.0, help="kill a run after this many seconds")
    args = ap.parse_args()
    scripts = [s.strip().removesuffix(".py") for s in args.scripts.split(",") if s.strip()]
    unknown = [s for s in scripts if s not in SCRIPTS]
    if unknown or args.runs < 1:
        ap.error(f"--scripts: unknown {', '.join(unknown)} (choose from {', '.join(SCRIPTS)})" if unknown
                 else "--runs: must be >= 1")
    print(f"{args.runs} runs per command line, {os.cpu_count()} CPUs, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    print(HEADER, flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_flag_errors_") as tmp:
        make_fixtures(tmp)
        for script in scripts:
            for case, case_args in bad_command_lines(script, tmp):
                results.append(run_case(script, case, case_args, args.runs, args.timeout))
                print(format_row(results[-1], args.max_seconds), flush=True)
    bad = [r for r in results if r["median"] > args.max_seconds or not r["error_line"]]
    names = ", ".join(r["script"] + " " + r["case"] for r in bad) or "none"
    print(f"{len(results)} command lines, {len(bad)} slower than {args.max_seconds:g} s or without an `error:` "
          f"last line: {names}", flush=True)
    if args.fail_on_slow and bad:
        sys.exit(1)


if __name__ == "__main__":
    main()
