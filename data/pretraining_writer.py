"""Streaming driver of create_pretraining_data.py: read -> tokenize -> build (worker processes) -> write.

- Input is read in chunks of `docs_per_chunk` documents (one sentence a line, blank line between documents, a new
  file starts a new document); memory does not grow with the corpus.
- The main process tokenizes a whole chunk with one `encode_batch` call and hands the id arrays to a worker pool that
  was forked BEFORE TensorFlow was imported (workers only use numpy: data/pretraining.py).
- Results are merged in chunk order and distributed round-robin over the output files (as the original script does),
  so the bytes do not depend on the number of workers.
- Outputs are written under temporary names and renamed when everything succeeded; the JSON summary is written last.
"""
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
import zlib
from collections import deque

import bertkit_errors
import bertkit_io
from data import pretraining, pretraining_records

_READ_BLOCK = 1 << 22


# ---------------------------------------------------------------------------------------------------------------
# Input
# ---------------------------------------------------------------------------------------------------------------
def _decode_block(data, path, first_line):
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = first_line + data[:e.start].count(b"\n")
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise bertkit_errors.UserError(
            f"{path}:{line}: invalid UTF-8 (byte 0x{data[e.start]:02x} at column {column}); "
            f"the input must be UTF-8 text") from None


def iter_lines(path):
    """Lines (without the newline) of a UTF-8 text file, read in large blocks; UserError naming file and line on
    bad bytes."""
    line_no = 1
    rest = b""
    try:
        f = open(path, "rb")
    except OSError as e:
        raise bertkit_errors.UserError(f"{path}: cannot read input file ({e.strerror})") from None
    with f:
        while True:
            block = f.read(_READ_BLOCK)
            if not block:
                break
            block = rest + block
            cut = block.rfind(b"\n") + 1
            if cut == 0:
                rest = block
                continue
            rest = block[cut:]
            text = _decode_block(block[:cut], path, line_no)
            if line_no == 1 and text.startswith("\ufeff"):  # a UTF-8 byte order mark is not text
                text = text[1:]
            lines = text.split("\n")
            lines.pop()  # after the final newline
            line_no += len(lines)
            yield from lines
        if rest:
            yield _decode_block(rest, path, line_no)


def iter_document_chunks(files, docs_per_chunk):
    """Yield lists of documents (each a list of non-empty stripped sentences), about docs_per_chunk at a time."""
    chunk = []
    for path in files:
        doc = []
        for line in iter_lines(path):
            line = line.strip()
            if line:
                doc.append(line)
            elif doc:
                chunk.append(doc)
                doc = []
                if len(chunk) >= docs_per_chunk:
                    yield chunk
                    chunk = []
        if doc:
            chunk.append(doc)
            if len(chunk) >= docs_per_chunk:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


# ---------------------------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------------------------
def output_paths(output_file, num_output_shards=0):
    """'a,b' -> ['a', 'b']; with num_output_shards=N, 'out.tfrecord' -> ['out-00000-of-0000N.tfrecord', ...]."""
    names = [p.strip() for p in str(output_file).split(",") if p.strip()]
    if not names:
        raise bertkit_errors.UserError("--output_file: no output file given")
    if num_output_shards:
        if len(names) != 1:
            raise bertkit_errors.UserError(
                "--output_file: give one name (a prefix) with --num_output_shards, not a list")
        root, ext = os.path.splitext(names[0])
        names = [f"{root}-{i:05d}-of-{num_output_shards:05d}{ext}" for i in range(num_output_shards)]
    if len(set(names)) != len(names):
        raise bertkit_errors.UserError("--output_file: the same file is listed twice")
    for name in names:
        parent = os.path.dirname(os.path.abspath(name))
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as e:
            raise bertkit_errors.UserError(f"--output_file={name}: cannot create {parent} ({e.strerror})") from None
        if not os.access(parent, os.W_OK):
            raise bertkit_errors.UserError(f"--output_file={name}: directory {parent} is not writable")
    return names


def summary_path(output_file):
    first = [p.strip() for p in str(output_file).split(",") if p.strip()][0]
    return os.path.splitext(first)[0] + ".summary.json"


class _Outputs:
    """Output files under temporary names (opened at the first write); `commit` renames them, `abort` removes them.
    Until `commit`, no file carries its final name. Records are distributed round-robin over the files.

    Framed input (TFRecord framing done by the workers, data/pretraining_records.frame_tfrecords) is written with
    plain file writes (gzip: one zlib stream per file); unframed records go through tf.io.TFRecordWriter."""

    def __init__(self, paths, gzip_compress, framed):
        self.paths = paths
        for p in paths:  # what killed runs into the same files left behind
            bertkit_io.remove_stale_temps_of(p)
        self.temps = [bertkit_io.temp_name(p) for p in paths]
        self.gzip_compress = gzip_compress
        self.framed = framed
        self.files = None
        self.count = 0

    def _open(self):
        self.files = []
        if self.framed:
            for t in self.temps:
                f = open(t, "wb")
                z = zlib.compressobj(6, zlib.DEFLATED, 31) if self.gzip_compress else None
                self.files.append((f, z))
            return
        import tensorflow as tf  # local: the numpy workers are forked before TensorFlow is imported

        options = tf.io.TFRecordOptions(compression_type="GZIP" if self.gzip_compress else "")
        for t in self.temps:
            self.files.append((tf.io.TFRecordWriter(t, options), None))

    def _write_bytes(self, k, data):
        f, z = self.files[k]
        f.write(z.compress(data) if z is not None else data)

    def write_blob(self, blob, ends):
        if self.files is None:
            self._open()
        n = len(self.files)
        if self.framed and n == 1:
            self._write_bytes(0, blob)
        elif self.framed:
            starts = [0] + ends[:-1].tolist()
            parts = [[] for _ in range(n)]
            for k, (s, e) in enumerate(zip(starts, ends.tolist()), self.count):
                parts[k % n].append(blob[s:e])
            for k in range(n):
                self._write_bytes(k, b"".join(parts[k]))
        else:
            starts = [0] + ends[:-1].tolist()
            writers = [f for f, _ in self.files]
            for k, (s, e) in enumerate(zip(starts, ends.tolist()), self.count):
                writers[k % n].write(blob[s:e])
        self.count += len(ends)

    def commit(self):
        if self.files is None:
            self._open()
        for f, z in self.files:
            if z is not None:
                f.write(z.flush())
            f.close()
        self.files = []
        for t, p in zip(self.temps, self.paths):
            os.replace(t, p)

    def abort(self):
        for f, _ in self.files or []:
            try:
                f.close()
            except Exception:  # noqa: BLE001 - best effort on the error path
                pass
        self.files = []
        for t in self.temps:
            try:
                os.remove(t)
            except FileNotFoundError:
                pass


# ---------------------------------------------------------------------------------------------------------------
# Workers
# ---------------------------------------------------------------------------------------------------------------
_WORKER_CFG = None


def _init_worker(cfg):
    global _WORKER_CFG
    _WORKER_CFG = cfg
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process handles interrupts and terminates the pool


def build_and_frame(chunk, chunk_index, cfg, framed):
    blob, ends, stats = pretraining.build_chunk_records(chunk, chunk_index, cfg)
    if framed:
        blob, ends = pretraining_records.frame_tfrecords(blob, ends)
    return blob, ends, stats


def _work(args):
    chunk, chunk_index, framed = args
    return build_and_frame(chunk, chunk_index, _WORKER_CFG, framed)


def start_pool(num_workers, cfg):
    """A fork-based pool (call BEFORE importing TensorFlow), or None to build in-process when num_workers <= 1."""
    if num_workers <= 1:
        return None
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    return multiprocessing.get_context(method).Pool(num_workers, initializer=_init_worker, initargs=(cfg,))


class _Progress:
    def __init__(self, stream=sys.stderr, every=1.0):
        self.stream = stream
        self.every = every
        self.t0 = time.time()
        self.last = 0.0
        self.tty = hasattr(stream, "isatty") and stream.isatty()

    def update(self, docs, instances, final=False):
        now = time.time()
        if not final and now - self.last < self.every:
            return
        self.last = now
        dt = max(now - self.t0, 1e-9)
        msg = (f"documents {docs:,} ({docs / dt:,.0f}/s), instances {instances:,} ({instances / dt:,.0f}/s), "
               f"{dt:.1f} s")
        if self.tty:
            self.stream.write("\r" + msg + ("\n" if final else ""))
        else:
            self.stream.write(msg + "\n")
        self.stream.flush()


def _raise_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def run(input_files, output_files, encode_batch, cfg, pool=None, gzip_compress=False, docs_per_chunk=500,
        summary_file=None, flags=None, progress=True, t_start=None, num_workers=1, framed=None):
    """Build all instances and write them. Returns the summary dict (also written to `summary_file`)."""
    t_start = t_start or time.time()
    previous = signal.signal(signal.SIGTERM, _raise_on_sigterm) if _is_main_thread() else None
    outputs = None
    totals = {"instances": 0, "documents": 0}
    timing = {"startup_s": time.time() - t_start, "read_s": 0.0, "first_tokenize_s": 0.0, "tokenize_s": 0.0,
              "build_s": 0.0, "wait_for_workers_s": 0.0, "write_s": 0.0}
    shown = _Progress() if progress else None
    try:
        framed = pretraining_records.HAVE_FAST_CRC32C if framed is None else framed
        outputs = _Outputs(output_files, gzip_compress, framed)
        pending = deque()
        max_pending = num_workers + 1

        def drain_one():
            t = time.time()
            blob, ends, stats = pending.popleft().get()
            t1 = time.time()
            outputs.write_blob(blob, ends)
            timing["wait_for_workers_s"] += t1 - t
            timing["write_s"] += time.time() - t1
            pretraining.merge_stats(totals, stats)
            if shown:
                shown.update(totals["documents"], totals["instances"])

        chunks = iter_document_chunks(input_files, docs_per_chunk)
        index = 0
        while True:
            t = time.time()
            docs = next(chunks, None)
            t1 = time.time()
            timing["read_s"] += t1 - t
            if docs is None:
                break
            chunk = pretraining.tokenize_documents(docs, encode_batch)
            # the first call also imports TensorFlow and builds the tokenizer
            timing["first_tokenize_s" if index == 0 else "tokenize_s"] += time.time() - t1
            if pool is None:
                t = time.time()
                blob, ends, stats = build_and_frame(chunk, index, cfg, framed)
                t1 = time.time()
                outputs.write_blob(blob, ends)
                timing["build_s"] += t1 - t
                timing["write_s"] += time.time() - t1
                index += 1
                pretraining.merge_stats(totals, stats)
                if shown:
                    shown.update(totals["documents"], totals["instances"])
                continue
            pending.append(pool.apply_async(_work, ((chunk, index, framed),)))
            index += 1
            while len(pending) >= max_pending:
                drain_one()
        while pending:
            drain_one()
        if totals["documents"] == 0:
            names = ", ".join(input_files)
            raise bertkit_errors.UserError(f"--input_file={names}: no documents (the corpus is empty)")
        elapsed = time.time() - t_start
        summary = _summary(totals, elapsed, input_files, output_files, flags, cfg)
        t = time.time()
        outputs.commit()
        timing["write_s"] += time.time() - t
        summary["main_process_timing"] = {k: round(v, 3) for k, v in timing.items()}
        if summary_file:
            with bertkit_io.atomic_write(summary_file) as f:
                json.dump(summary, f, indent=2, sort_keys=True)
                f.write("\n")
        if shown:
            shown.update(totals["documents"], totals["instances"], final=True)
        return summary
    except BaseException as e:
        if pool is not None:
            pool.terminate()
        if outputs is not None:
            outputs.abort()
        if bertkit_io.is_no_space(e):
            raise bertkit_errors.UserError(
                f"{', '.join(output_files)}: no space left on device while writing records") from None
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _is_main_thread():
    return threading.current_thread() is threading.main_thread()


def _summary(t, elapsed, input_files, output_files, flags, cfg):
    n = max(t["instances"], 1)
    masked = max(t.get("masked", 0), 1)
    return {
        "instances": t["instances"],
        "documents": t["documents"],
        "sentences": t.get("sentences", 0),
        "tokens": t.get("tokens", 0),
        "masked_lm_predictions": t.get("masked", 0),
        "masked_fraction": t.get("masked", 0) / max(t.get("tokens", 0), 1),
        "masked_fraction_of_candidates": t.get("masked", 0) / max(t.get("candidate_tokens", 0), 1),
        "masked_as_mask_fraction": t.get("masked_as_mask", 0) / masked,
        "masked_kept_fraction": t.get("masked_kept", 0) / masked,
        "masked_random_fraction": t.get("masked_random", 0) / masked,
        "task": "sop" if cfg.sentence_order_prediction else "nsp",
        "label_1_fraction": t.get("label_1", 0) / n,
        "seconds": round(elapsed, 3),
        "instances_per_second": round(t["instances"] / max(elapsed, 1e-9), 1),
        "input_files": list(input_files),
        "output_files": list(output_files),
        "flags": flags or {},
    }


def worker_count(requested):
    if requested and requested > 0:
        return requested
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
