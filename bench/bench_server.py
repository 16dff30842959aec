"""Benchmark serve.py on loopback: batch-1 latency next to a direct SavedModel call, and throughput of 32
concurrent clients without and with dynamic batching.

    .venv/bin/python bench/bench_server.py                 # a real bertkit export (serving/export.py): a
                                                           # TinyBERT-shaped classifier (4 layers, hidden 312) on raw
                                                           # text, tokenized in-graph, max_seq_length 128
    .venv/bin/python bench/bench_server.py --text_words=4,8,12     # short texts (queries, titles)
    .venv/bin/python bench/bench_server.py --config=configs/mobilebert_uncased.json
    .venv/bin/python bench/bench_server.py --model=toy     # toy text model doing real matmuls (~ms per call)
    .venv/bin/python bench/bench_server.py --model=bert    # a small BERT encoder from modeling/ (serve_ids-style)
    .venv/bin/python bench/bench_server.py --tensorflow_intra_op_parallelism=1   # one TF thread per op, for
                                                           # both servers and the direct calls

Targets: server latency at batch 1 no more than 10% above the direct call; throughput with --enable_batching at
least 3x the throughput without. Latency is measured with a minimal keep-alive HTTP/1.1 client that sends each request
in one write and reads the response by its Content-Length (what curl does), so the figure is the server's own cost:
HTTP on loopback, JSON, the hand-off to a model thread. Python's `http.client` adds about half a millisecond of its own
(it sends headers and body in two writes and parses response headers with the `email` package); its figure is printed
too. Everything runs on 127.0.0.1 with bounded request counts. The server runs as a
`serve.py` subprocess so that client and server do not share a Python interpreter; on a small, busy machine the
client competes with the server for CPU, so read the figures next to the load average printed with them.

Throughput runs both servers at once (one without, one with --enable_batching, by default with serve.py's
--num_batch_threads: one per CPU, as TF Serving) and measures them in --rounds timed rounds of --clients x
--requests_per_client requests, the two taking turns within each round, each first in turn. Each client is one
keep-alive connection sending pre-encoded requests (as the latency client does), so the load generator costs the
two cores it shares with the servers little.
It prints each server's median and range and the batched/unbatched ratio round by round (median and range): on a
shared machine a slow spell then falls on both servers. (Before, each server got one timed run of 256 requests,
one server after the other: five runs of the same command on 4-12-word texts gave 2.83x to 4.15x.)

After the throughput figures, the bench times direct SavedModel calls on many requests at once, without a server,
in the shapes the clients can fill: 32 clients fill one call of 32 at a time or, with two batch threads, two calls of
16 at a time. The best of these is the most dynamic batching can give against the unbatched server on this machine
and model. An export runs each call on its longest text (serving/export.py), so request length matters: texts of
16-32 words cost a batch-1 call about half of what max_seq_length would, and the shorter the texts, the more of a
call is fixed cost that batching shares out.

The toy model is one vector per request, so a batch-1 call is memory-bound and batching pays off on CPU. A BERT
request is a [tokens, hidden] matrix: on a CPU with few cores, a merged call does the same work per token, so batching
shares out only a call's fixed cost (graph dispatch, the tokenizer's ops). That is most of a call on a short text and
little of a call on a 128-token one (on accelerators, batch-1 calls are mostly fixed cost at any length).
"""
import argparse
import asyncio
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_text  # noqa: E402,F401  (the exports tokenize in-graph with tf-text ops)

from modeling import ModelConfig, build_classifier, build_encoder  # noqa: E402
from serving import export  # noqa: E402

WORDS = ("the market rallied as shares in the technology sector rose sharply after strong results were reported "
         "by several large companies while the central bank kept interest rates unchanged").split()


def sample_text(i, n_words=24):
    return " ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(n_words))


def build_toy(path, hidden=3072, layers=4):
    """text -> hashed word embeddings -> mean -> `layers` dense layers of `hidden` units -> 5 class probabilities."""
    tf.random.set_seed(0)

    class Toy(tf.Module):
        def __init__(self):
            super().__init__()
            init = tf.random_normal_initializer(stddev=0.02)
            self.emb = tf.Variable(init([32768, 512]))
            dims = [512] + [hidden] * layers
            self.ws = [tf.Variable(init([a, b])) for a, b in zip(dims[:-1], dims[1:])]
            for i, w in enumerate(self.ws):
                setattr(self, f"w{i}", w)
            self.out = tf.Variable(init([hidden, 5]))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def serve(self, text):
            ids = tf.strings.to_hash_bucket_fast(tf.strings.split(text), 32768)
            h = tf.reduce_mean(tf.ragged.map_flat_values(tf.nn.embedding_lookup, self.emb, ids), axis=1)
            for w in self.ws:
                h = tf.nn.relu(tf.matmul(h, w))
            logits = tf.matmul(h, self.out)
            return {"probabilities": tf.nn.softmax(logits), "label_id": tf.argmax(logits, axis=1)}

    m = Toy()
    tf.saved_model.save(m, path, signatures={"serving_default": m.serve})
    return {"text": None}


def build_bert(path, seq_len=64):
    """A small BERT encoder (hidden 256, 4 layers, seq 64) from modeling/, served on token ids."""
    cfg = {"vocab_size": 8000, "hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4,
           "intermediate_size": 1024, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
           "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 128, "type_vocab_size": 2,
           "initializer_range": 0.02}
    cfg_path = os.path.join(os.path.dirname(os.path.dirname(path)), "bert_config.json")
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    encoder = build_encoder(ModelConfig.from_json_file(cfg_path))
    spec = tf.TensorSpec([None, seq_len], tf.int32)

    class Wrapper(tf.Module):
        def __init__(self):
            super().__init__()
            self.encoder = encoder

        @tf.function(input_signature=[spec, spec, spec])
        def serve(self, input_ids, input_mask, segment_ids):
            out = self.encoder({"input_ids": input_ids, "input_mask": input_mask, "segment_ids": segment_ids},
                               training=False)
            return {"pooled_output": out["pooled_output"]}

    w = Wrapper()
    w.serve.get_concrete_function()
    tf.saved_model.save(w, path, signatures={"serving_default": w.serve})
    return {"seq_len": seq_len}


def build_export(base, config_file, seq_len=128):
    """A classifier of the given config (random weights, 5 labels) exported with serving/export.py; requests are raw
    text (serving_default), tokenized and packed in the graph."""
    config = ModelConfig.from_json_file(config_file)
    vocab = os.path.join(ROOT, "tests", "data_files", "bert_uncased_vocab.txt")
    if config.vocab_size < 30522:
        raise SystemExit(f"{config.vocab_size=}: smaller than the test vocabulary")
    classifier = build_classifier(config, 5)
    version_dir = export.export_classifier(
        classifier, vocab_file=vocab, do_lower_case=True, max_seq_length=seq_len,
        labels=["business", "entertainment", "politics", "sport", "tech"], export_base=base)
    return {"seq_len": seq_len, "version_dir": version_dir}


def make_instance(kind, i, info):
    if kind == "toy":
        return sample_text(i)
    if kind == "export":
        words = info["text_words"]
        return sample_text(i, n_words=words[i % len(words)])
    n = info["seq_len"]
    length = 16 + (i % 3) * 8
    ids = [101] + [1000 + (i * 31 + j) % 7000 for j in range(length - 2)] + [102] + [0] * (n - length)
    return {"input_ids": ids, "input_mask": [1] * length + [0] * (n - length), "segment_ids": [0] * n}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, base_path, batching, max_batch_size, batch_timeout_micros, num_batch_threads=0, intra_op=0):
        self.port = free_port()
        args = [sys.executable, os.path.join(ROOT, "serve.py"), "--model_name=m", f"--model_base_path={base_path}",
                f"--rest_api_port={self.port}", "--file_system_poll_wait_seconds=0",
                f"--tensorflow_intra_op_parallelism={intra_op}"]
        if batching:
            args += ["--enable_batching", f"--max_batch_size={max_batch_size}",
                     f"--batch_timeout_micros={batch_timeout_micros}", f"--num_batch_threads={num_batch_threads}"]
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 180
        lines = []
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line and self.proc.poll() is not None:
                raise RuntimeError("serve.py exited:\n" + "".join(lines[-20:]))
            lines.append(line)
            if line.startswith("serving "):
                return
        raise RuntimeError("serve.py did not start:\n" + "".join(lines[-20:]))

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def post_request(path, body):
    """The bytes of one keep-alive HTTP/1.1 POST of a JSON body: headers and body, to be sent in one write."""
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("ascii") + body


def status_and_length(head_lines):
    """(status, Content-Length) of a response head given as its lines, the status line first."""
    length = None
    for line in head_lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length is None:
        raise RuntimeError("response without Content-Length")
    return int(head_lines[0].split()[1]), length


class LeanConnection:
    """A keep-alive HTTP/1.1 connection that sends each request in one write (headers and body together, as curl
    does) and reads the response by its Content-Length: the least a client can add to the server's latency."""

    def __init__(self, port, timeout=60):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.file = self.sock.makefile("rb")

    def post(self, path, body):
        self.sock.sendall(post_request(path, body))
        lines = [self.file.readline()]
        while lines[-1] not in (b"\r\n", b"\n", b""):
            lines.append(self.file.readline())
        status, length = status_and_length(lines)
        return status, self.file.read(length)

    def close(self):
        self.file.close()
        self.sock.close()


def http_client_post(conn):
    """A post(body) -> (status, data) over an http.client connection, as LeanConnection.post is over its socket."""
    def post(body):
        conn.request("POST", "/v1/models/m:predict", body=body, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        return r.status, r.read()
    return post


def server_latencies(post, payloads):
    """Time each request; post(body) -> (status, data)."""
    out = []
    for body in payloads:
        t0 = time.perf_counter()
        status, data = post(body)
        out.append(time.perf_counter() - t0)
        if status != 200:
            raise RuntimeError(data[:500])
    return out


def direct_feed(kind, rows):
    """The serving_default inputs of a direct SavedModel call on the request instances `rows`."""
    if kind == "toy":
        return {"text": tf.constant(rows)}
    if kind == "export":
        return {"text_a": tf.constant(rows)}
    return {k: tf.constant(np.asarray([r[k] for r in rows], np.int32)) for k in rows[0]}


def direct_latencies(fn, kind, instances):
    out = []
    for inst in instances:
        t0 = time.perf_counter()
        {k: v.numpy() for k, v in fn(**direct_feed(kind, [inst])).items()}
        out.append(time.perf_counter() - t0)
    return out


def direct_batch_rate(fn, kind, instances, batch, threads=1, calls=8):
    """Examples/s of direct SavedModel calls on `batch` requests at once, `threads` calls in flight at a time (as the
    batched server's --num_batch_threads), each thread making `calls` calls after two warm-up calls: what merged
    calls give without any server, hence the most dynamic batching can reach against the unbatched server here."""
    feed = direct_feed(kind, [instances[i % len(instances)] for i in range(batch)])
    for _ in range(2):   # warm-up (a new batch size is traced once)
        {k: v.numpy() for k, v in fn(**feed).items()}

    def work():
        for _ in range(calls):
            {k: v.numpy() for k, v in fn(**feed).items()}
    workers = [threading.Thread(target=work) for _ in range(threads)]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return batch * calls * threads / (time.perf_counter() - t0)


async def throughput_rounds(ports, kind, info, clients, per_client, rounds):
    """Requests/s of `clients` closed-loop clients (each sends its next request when the last is answered) against
    each server in `ports`, in `rounds` timed rounds of clients * per_client requests. The servers take turns inside
    each round, each first in turn, so a slow spell of a shared machine falls on both. -> {port: [rate per round]}

    Each client is one keep-alive connection speaking the least HTTP/1.1 it can (as LeanConnection): requests are
    encoded before the clock starts and sent in one write each, responses are read by their Content-Length. The
    load generator shares the machine's cores with the servers, so the less it costs, the more of them the servers
    get: an aiohttp client used 2-3x the CPU time and cost the batched server 8-15% of its throughput in three
    paired runs on 2 cores."""
    requests = []
    for c in range(clients):
        mine = []
        for k in range(per_client):
            body = json.dumps({"instances": [make_instance(kind, c * per_client + k, info)]}).encode()
            mine.append(post_request("/v1/models/m:predict", body))
        requests.append(mine)
    conns = {}
    for p in ports:
        conns[p] = []
        for _ in range(clients):
            reader, writer = await asyncio.open_connection("127.0.0.1", p)
            writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conns[p].append((reader, writer))
    try:
        async def client(port, c):
            reader, writer = conns[port][c]
            for req in requests[c]:
                writer.write(req)
                head = await reader.readuntil(b"\r\n\r\n")
                status, length = status_and_length(head.split(b"\r\n"))
                data = await reader.readexactly(length)
                if status != 200:
                    raise RuntimeError(data[:500])

        async def timed(port):
            t0 = time.perf_counter()
            await asyncio.gather(*(client(port, c) for c in range(clients)))
            return clients * per_client / (time.perf_counter() - t0)

        for p in ports:   # warm-up: every connection, the batch sizes' first calls
            await timed(p)
        rates = {p: [] for p in ports}
        for r in range(rounds):
            order = ports[r % len(ports):] + ports[:r % len(ports)]
            for p in order:
                rates[p].append(await timed(p))
        return rates
    finally:
        for pairs in conns.values():
            for _, writer in pairs:
                writer.close()


def spread(xs, fmt):
    """'median M, LO-HI' of xs, each number written with the format string fmt."""
    return f"median {fmt.format(statistics.median(xs))}, {fmt.format(min(xs))}-{fmt.format(max(xs))}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["toy", "bert", "export"], default="export")
    ap.add_argument("--config", default=os.path.join(ROOT, "configs", "tinybert_4l_312.json"),
                    help="--model=export: the model config to export (random weights)")
    ap.add_argument("--text_words", default="16,24,32",
                    help="--model=export: words per request text, cycled (each word is one wordpiece here)")
    ap.add_argument("--hidden", type=int, default=3072, help="toy model: width of its dense layers")
    ap.add_argument("--layers", type=int, default=4, help="toy model: number of dense layers")
    ap.add_argument("--latency_iters", type=int, default=60, help="batch-1 requests per round (3 rounds each)")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--requests_per_client", type=int, default=8, help="requests per client in each round")
    ap.add_argument("--rounds", type=int, default=5, help="timed throughput rounds (each server once a round)")
    ap.add_argument("--max_batch_size", type=int, default=32)
    ap.add_argument("--batch_timeout_micros", type=int, default=2000)
    ap.add_argument("--num_batch_threads", type=int, default=0,
                    help="batched server's merged calls in flight (0: the CPU count, serve.py's default)")
    ap.add_argument("--tensorflow_intra_op_parallelism", type=int, default=0,
                    help="both servers' and the direct calls' TensorFlow intra-op threads (0: TF's default)")
    args = ap.parse_args()

    if args.tensorflow_intra_op_parallelism:
        tf.config.threading.set_intra_op_parallelism_threads(args.tensorflow_intra_op_parallelism)

    tmp = tempfile.mkdtemp(prefix="bench_server_")
    try:
        run_benchmarks(args, tmp, tf, psutil)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_benchmarks(args, tmp, tf, psutil):
    base = os.path.join(tmp, "model")
    if args.model == "toy":
        info = build_toy(os.path.join(base, "1"), hidden=args.hidden, layers=args.layers)
    elif args.model == "export":
        info = build_export(base, args.config)
        info["text_words"] = [int(x) for x in args.text_words.split(",")]
    else:
        info = build_bert(os.path.join(base, "1"))
    fn = tf.saved_model.load(os.path.join(base, "1")).signatures["serving_default"]
    instances = [make_instance(args.model, i, info) for i in range(args.latency_iters)]
    payloads = [json.dumps({"instances": [inst]}).encode() for inst in instances]
    direct_latencies(fn, args.model, instances[:10])   # warm-up

    what = f"export of {os.path.basename(args.config)}, texts of {args.text_words} words" if args.model == "export" \
        else args.model
    print(f"model: {what}; cpus: {os.cpu_count()}; tensorflow_intra_op_parallelism: "
          f"{args.tensorflow_intra_op_parallelism or 'TF default'}; load average before: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    srv = Server(base, batching=False, max_batch_size=args.max_batch_size,
                 batch_timeout_micros=args.batch_timeout_micros, intra_op=args.tensorflow_intra_op_parallelism)
    try:
        lean = LeanConnection(srv.port)                                         # one keep-alive connection
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)   # and another, with http.client
        post_lean = lambda body: lean.post("/v1/models/m:predict", body)   # noqa: E731
        post_http = http_client_post(conn)
        server_latencies(post_lean, payloads[:10])      # warm-up
        server_latencies(post_http, payloads[:10])
        direct, served, served_http = [], [], []
        calls = [lambda inst, body: direct.extend(direct_latencies(fn, args.model, [inst])),
                 lambda inst, body: served.extend(server_latencies(post_lean, [body])),
                 lambda inst, body: served_http.extend(server_latencies(post_http, [body]))]
        for r in range(3):   # interleave the three, each first in turn (the first after a pause is slower)
            for i, (inst, body) in enumerate(zip(instances, payloads)):
                k = (i + r) % 3
                for call in calls[k:] + calls[:k]:
                    call(inst, body)
        batch_threads = args.num_batch_threads or os.cpu_count() or 1
        # merged calls the clients can fill: 32 closed-loop clients fill one call of 32 at a time, or (with two
        # batch threads) two of 16 at a time; the best of these is the ceiling
        shapes = [(min(args.max_batch_size, args.clients // k), k)
                  for k in range(1, min(batch_threads, args.clients) + 1)]
        direct_rates = [(k, rows, direct_batch_rate(fn, args.model, instances, rows, k)) for rows, k in shapes]
        fn = None  # let the SavedModel go before the throughput rounds
        d_med, s_med = statistics.median(direct) * 1e3, statistics.median(served) * 1e3
        h_med = statistics.median(served_http) * 1e3
        print(f"batch-1 latency, median of {len(direct)}: direct SavedModel call {d_med:.2f} ms, "
              f"serve.py {s_med:.2f} ms -> {(s_med / d_med - 1) * 100:+.1f}% "
              f"({s_med - d_med:+.2f} ms; target <= +10%)", flush=True)
        print(f"  the same requests from Python's http.client: {h_med:.2f} ms -> {(h_med / d_med - 1) * 100:+.1f}%",
              flush=True)
        p90 = lambda xs: statistics.quantiles(xs, n=10)[-1] * 1e3   # noqa: E731
        print(f"  p90: direct {p90(direct):.2f} ms, serve.py {p90(served):.2f} ms", flush=True)
        lean.close()
        conn.close()
        batched = Server(base, batching=True, max_batch_size=args.max_batch_size,
                         batch_timeout_micros=args.batch_timeout_micros, num_batch_threads=args.num_batch_threads,
                         intra_op=args.tensorflow_intra_op_parallelism)
        try:
            rates = asyncio.run(throughput_rounds([srv.port, batched.port], args.model, info, args.clients,
                                                  args.requests_per_client, args.rounds))
        finally:
            batched.stop()
    finally:
        srv.stop()
    plain, merged = rates[srv.port], rates[batched.port]
    ratios = [m / p for p, m in zip(plain, merged)]
    n = args.clients * args.requests_per_client
    print(f"throughput, {args.clients} concurrent clients, {args.rounds} rounds of {n} requests each, the two servers "
          f"taking turns:", flush=True)
    print(f"  batching off: {spread(plain, '{:.1f}')} requests/s", flush=True)
    print(f"  batching on (max_batch_size={args.max_batch_size}, batch_timeout_micros={args.batch_timeout_micros}, "
          f"num_batch_threads={batch_threads}): {spread(merged, '{:.1f}')} requests/s", flush=True)
    print(f"  batching on / off, round by round: {spread(ratios, '{:.2f}x')} (target >= 3x)", flush=True)
    best = max(r for _, _, r in direct_rates)
    print("  direct SavedModel calls, no server: "
          + ", ".join(f"{k} x {rows} requests at a time {r:.1f} examples/s" for k, rows, r in direct_rates)
          + f"; the best is {best / statistics.median(plain):.2f}x the unbatched server's median (the most batching "
          f"can give here)", flush=True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"cpu busy now {psutil.cpu_percent(interval=0.5):.0f}%", flush=True)


if __name__ == "__main__":
    main()
