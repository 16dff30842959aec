"""Benchmark create_pretraining_data.py end to end on the BBC News corpus (1 copy and 4 copies).

Each run is a fresh subprocess (Python + TensorFlow start-up included), with the issue's flags:
--max_seq_length=128 --max_predictions_per_seq=20 --dupe_factor=5 and the bert-base-uncased vocab.
Reported: instances, wall seconds, instances/s, CPU seconds (getrusage of the children), peak RSS of the largest
process and peak of the summed RSS of the whole process tree (psutil, sampled every 20 ms per run; forked workers
share pages, so the sum over-counts), next to the original Google script's published numbers.

    .venv/bin/python bench/bench_pretraining_data.py [--copies 1 4] [--repeats 1] [--num_workers 0]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import psutil  # noqa: E402

from data import bbc  # noqa: E402

# Google's original create_pretraining_data.py on this 2-core machine (one core), from the issue.
ORIGINAL = {1: {"instances": 61455, "seconds": 23.0, "peak_rss_mib": 847},
            4: {"instances": 246141, "seconds": 96.0, "peak_rss_mib": 1520}}
FLAGS = ["--max_seq_length=128", "--max_predictions_per_seq=20", "--dupe_factor=5", "--do_lower_case=true",
         "--noprogress"]


def _tree_rss(proc):
    """(summed RSS of the process tree, RSS of its largest process) in bytes."""

    try:
        p = psutil.Process(proc.pid)
        sizes = [p.memory_info().rss]
        for c in p.children(recursive=True):
            try:
                sizes.append(c.memory_info().rss)
            except psutil.Error:
                pass
        return sum(sizes), max(sizes)
    except psutil.Error:
        return 0, 0


def run_once(corpus, out_dir, vocab, num_workers):
    out = os.path.join(out_dir, "bench.tfrecord")
    cmd = [sys.executable, os.path.join(ROOT, "create_pretraining_data.py"), f"--input_file={corpus}",
           f"--output_file={out}", f"--vocab_file={vocab}", f"--num_workers={num_workers}"] + FLAGS
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    peak = [0, 0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            total, largest = _tree_rss(proc)
            peak[0], peak[1] = max(peak[0], total), max(peak[1], largest)
            done.wait(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    done.set()
    thread.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark run failed ({proc.returncode}):\n{stderr.decode()[-3000:]}")
    summary = json.load(open(os.path.join(out_dir, "bench.summary.json")))
    return {"instances": summary["instances"], "seconds": wall, "instances_per_second": summary["instances"] / wall,
            "peak_rss_mib_largest_process": peak[1] / 2 ** 20,
            "peak_rss_mib_tree_sum": peak[0] / 2 ** 20,
            # getrusage's ru_maxrss is the maximum over every child so far: exact, but only for the first run
            "ru_maxrss_mib_children_so_far": after.ru_maxrss / 1024,
            "cpu_seconds": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
            "output_mib": os.path.getsize(os.path.join(out_dir, "bench.tfrecord")) / 2 ** 20}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--copies", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--num_workers", type=int, default=0)
    parser.add_argument("--vocab_file", default=os.path.join(ROOT, "tests", "data_files", "bert_uncased_vocab.txt"))
    parser.add_argument("--work_dir", default=None, help="where the corpora and outputs go (default: a temp dir)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()

    if args.work_dir is None:
        with tempfile.TemporaryDirectory(prefix="bench_pretraining_") as work:
            return bench(args, work)
    os.makedirs(args.work_dir, exist_ok=True)
    return bench(args, args.work_dir)


def bench(args, work):
    built = bbc.build_bbc(os.path.join(work, "bbc"), corpus_copies=[c for c in args.copies if c > 1])
    print(f"machine: {os.cpu_count()} cores, load average at start {os.getloadavg()[0]:.2f} "
          f"(timings are noisy on a shared machine)")
    results = []
    for copies in args.copies:
        corpus = built["corpus"] if copies == 1 else built[f"corpus_x{copies}"]
        size = os.path.getsize(corpus) / 2 ** 20
        for rep in range(args.repeats):
            out_dir = os.path.join(work, f"out_x{copies}")
            os.makedirs(out_dir, exist_ok=True)
            r = run_once(corpus, out_dir, args.vocab_file, args.num_workers)
            r.update(copies=copies, corpus_mib=size, repeat=rep, load_average=os.getloadavg()[0])
            results.append(r)
            orig = ORIGINAL.get(copies)
            speedup = ""
            if orig:
                speedup = (f"  | original: {orig['instances']:,} in {orig['seconds']:.0f} s = "
                           f"{orig['instances'] / orig['seconds']:,.0f}/s, {orig['peak_rss_mib']:,} MiB"
                           f"  | speed-up x{r['instances_per_second'] / (orig['instances'] / orig['seconds']):.1f}")
            print(f"x{copies} ({size:.1f} MiB): {r['instances']:,} instances in {r['seconds']:.2f} s = "
                  f"{r['instances_per_second']:,.0f} instances/s, CPU {r['cpu_seconds']:.1f} s, peak RSS "
                  f"{r['peak_rss_mib_largest_process']:,.0f} MiB (largest process, sampled), "
                  f"{r['peak_rss_mib_tree_sum']:,.0f} MiB (process tree sum), load {r['load_average']:.2f}"
                  f"{speedup}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    print("target: >= 10x the original's instances/s end to end on the 4-copy corpus "
          f"(>= {10 * ORIGINAL[4]['instances'] / ORIGINAL[4]['seconds']:,.0f}/s), peak RSS < 1 GiB not growing "
          "with the corpus")


if __name__ == "__main__":
    main()
