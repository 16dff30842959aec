"""bench/bench_server.py runs end to end and prints every figure it promises (a smoke test: no timing asserted)."""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_bench_server_prints_latency_throughput_and_ceiling():
    cmd = [sys.executable, os.path.join(ROOT, "bench", "bench_server.py"),
           "--config", os.path.join(ROOT, "configs", "tinybert_4l_128.json"), "--text_words=3,5",
           "--latency_iters=3", "--clients=4", "--requests_per_client=2", "--rounds=2", "--max_batch_size=4",
           "--num_batch_threads=2", "--tensorflow_intra_op_parallelism=1"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    number = r"[0-9]+\.[0-9]+"
    assert "tensorflow_intra_op_parallelism: 1;" in out, out
    assert re.search(rf"batch-1 latency, median of 9: direct SavedModel call {number} ms, serve.py {number} ms",
                     out), out
    assert "4 concurrent clients, 2 rounds of 8 requests each" in out, out
    assert re.search(rf"batching off: median {number}, {number}-{number} requests/s", out), out
    assert re.search(rf"batching on \(max_batch_size=4, .*\): median {number}, {number}-{number} requests/s", out), out
    assert re.search(rf"batching on / off, round by round: median {number}x, {number}x-{number}x", out), out
    assert re.search(rf"direct SavedModel calls, no server: 1 x 4 requests at a time {number} examples/s, "
                     rf"2 x 2 requests at a time {number} examples/s; the best is {number}x", out), out
