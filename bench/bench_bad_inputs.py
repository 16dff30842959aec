"""Issue 19's bad-input campaign: every script and serve.py, fed what a careless or unlucky user feeds them.

    .venv/bin/python bench/bench_bad_inputs.py [--work_dir=DIR] [--only=SUBSTRING] [--list] [--fail_on_fail]

Builds its own fixtures (a small BBC corpus and TSVs, a vocab, pretraining records, fine-tuning records, a tiny
pretrained model dir, a tiny fine-tuned classifier dir and its export) under --work_dir (default: a temporary
folder), then runs each case as a subprocess with a timeout (the HTTP cases against one serve.py it starts on
127.0.0.1 with a free port) and judges it:

  ok    exit status 1 with a last stderr line `error: ...` naming the flag / file / line, no traceback, inputs and
        finished model dirs unchanged (hashed before and after), no temporary leftovers; HTTP: a 4xx whose JSON
        `error` names the thing. For a case where success is right (a resume after a kill): success, right results.
  weak  nothing lost, but a traceback, a FATAL absl line, a 5xx, a timeout, a temporary leftover, files added to a
        finished model dir, or an unclear message (no `error:` line naming the thing).
  fail  an input or a fixture changed, a finished model dir's files changed or vanished, exit 0 / 2xx on bad input,
        or a finished-looking output file left behind by a run that failed or was killed.

Prints a table (case, script, exit status, last line, verdict), the counts per verdict and the cases that are not
ok. Exits 0 whatever the verdicts (a bench), unless --fail_on_fail and some case is `fail`. It spawns hundreds of
processes: not part of `make test`.
"""
import argparse
import contextlib
import dataclasses
import glob
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1", "CUDA_VISIBLE_DEVICES": "-1"}
TEMP_PATTERNS = ("*.tmp-*", "*_temp*", ".tmp-*")
CLEAN_TEMP = re.compile(r"(\.tmp-|_temp)")

SEQ = 32
PRED = 5


# --------------------------------------------------------------------------------------------------------- helpers

def sh(args, timeout=900, check=True, cwd=ROOT):
    proc = subprocess.run([PY, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"fixture command failed ({proc.returncode}): {' '.join(args)}\n{proc.stderr[-3000:]}")
    return proc


def tree_hashes(path):
    """{relative path: sha256} of a file or of every file under a folder (symlinks followed for files)."""
    out = {}
    if os.path.isfile(path):
        with open(path, "rb") as f:
            out[""] = hashlib.sha256(f.read()).hexdigest()
    elif os.path.isdir(path):
        for dirpath, _, files in os.walk(path):
            for name in files:
                p = os.path.join(dirpath, name)
                try:
                    with open(p, "rb") as f:
                        out[os.path.relpath(p, path)] = hashlib.sha256(f.read()).hexdigest()
                except OSError:
                    out[os.path.relpath(p, path)] = "unreadable"
    return out


def temp_leftovers(path):
    found = []
    for dirpath, dirs, files in os.walk(path):
        for name in files + dirs:
            if CLEAN_TEMP.search(name):
                found.append(os.path.join(dirpath, name))
    return found


NOISE = re.compile(r"^([IWE]\d{4} \d\d:\d\d:[\d.]+ +\d+ \S+\]|WARNING: All log messages before absl)")


def last_line(text):
    """The last non-blank line, passing over TensorFlow's C++ log lines (I0000 ...) that follow a clean exit."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    real = [ln for ln in lines if not NOISE.match(ln)]
    return (real or lines or [""])[-1]


def write(path, data, mode="w"):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    kw = {} if "b" in mode else {"encoding": "utf-8"}
    with open(path, mode, **kw) as f:
        f.write(data)
    return path


def copy(src, dst):
    if os.path.isdir(src):
        shutil.copytree(src, dst, symlinks=True)
    else:
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy(src, dst)
    return dst


def latest_ckpt_data(model_dir):
    files = sorted(glob.glob(os.path.join(model_dir, "ckpt-*.data-*")),
                   key=lambda p: int(re.search(r"ckpt-(\d+)", p).group(1)))
    return files[-1]


def truncate(path, fraction=0.5):
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(int(size * fraction))


def flip_bytes(path, at=0.5, n=16):
    with open(path, "r+b") as f:
        data = bytearray(f.read())
        i = int(len(data) * at)
        for k in range(i, min(i + n, len(data))):
            data[k] ^= 0xFF
        f.seek(0)
        f.write(data)


@contextlib.contextmanager
def tmpfs(path, size=None, ro=False):
    """Mount a tmpfs at `path` (root only); yields False when mounting is refused (the case is then skipped)."""
    os.makedirs(path, exist_ok=True)
    opts = ",".join(x for x in (f"size={size}" if size else "", "ro" if ro else "") if x) or "defaults"
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", path], capture_output=True, text=True)
    try:
        yield r.returncode == 0
    finally:
        if r.returncode == 0:
            subprocess.run(["umount", "-l", path], capture_output=True)


# --------------------------------------------------------------------------------------------------------- fixtures

class Fixtures:
    def __init__(self, root):
        self.root = root
        os.makedirs(root, exist_ok=True)
        j = lambda *p: os.path.join(root, *p)  # noqa: E731
        self.data = j("data")
        self.corpus = j("data", "corpus.txt")
        self.train_tsv = j("data", "train.tsv")
        self.vocab = j("vocab.txt")
        self.records = j("pre.tfrecord")
        self.ft_records = j("ft_records")
        self.pretrain = j("pretrain")
        self.clf = j("clf")
        self.export = j("clf", "export")
        self.config = os.path.join(ROOT, "configs", "tiny_bert.json")
        self.mrpc = os.path.join(ROOT, "tests", "fixtures", "glue", "MRPC")
        self.sst2 = os.path.join(ROOT, "tests", "fixtures", "glue", "SST-2")

    # placeholder -> the last fixture step it needs (steps: data, vocab, records, ft_records, pretrain, clf)
    STEP_OF = {"data": 0, "corpus": 0, "train_tsv": 0, "vocab": 1, "records": 2, "ft_records": 3, "pretrain": 4,
               "clf": 5, "export": 5}

    def steps_needed(self, selected):
        """Cases with a setup or a custom run may read any fixture; the others need what their args name."""
        need = -1
        for c in selected:
            if c.setup is not None or c.run is not None:
                return 5
            for a in c.args:
                for key in re.findall(r"\{(\w+)\}", a):
                    need = max(need, self.STEP_OF.get(key, -1))
        return need

    def build(self, log, upto=5):
        steps = [
            (self.corpus, ["-m", "data.bbc", f"--output_dir={self.data}", "--max_docs_per_label=6"]),
            (self.vocab, ["build_vocab.py", f"--input_file={self.corpus}", f"--output_file={self.vocab}",
                          "--vocab_size=1000"]),
            (self.records, ["create_pretraining_data.py", f"--input_file={self.corpus}",
                            f"--output_file={self.records}", f"--vocab_file={self.vocab}", f"--max_seq_length={SEQ}",
                            f"--max_predictions_per_seq={PRED}", "--dupe_factor=1", "--num_workers=1",
                            "--noprogress"]),
            (os.path.join(self.ft_records, "task_meta.json"),
             ["create_finetuning_data.py", "--task_name=bbc", f"--data_dir={self.data}", f"--vocab_file={self.vocab}",
              f"--max_seq_length={SEQ}", f"--output_dir={self.ft_records}", "--splits=train,dev"]),
            (os.path.join(self.pretrain, "checkpoint"),
             ["run_pretraining.py", f"--bert_config_file={self.config}", f"--input_file={self.records}",
              f"--output_dir={self.pretrain}", f"--vocab_file={self.vocab}", "--do_train",
              f"--max_seq_length={SEQ}", f"--max_predictions_per_seq={PRED}", "--train_batch_size=8",
              "--num_train_steps=2", "--num_warmup_steps=1", "--save_checkpoints_steps=2", "--seed=1",
              "--nodo_export"]),
            (os.path.join(self.clf, "export"),
             ["run_classifier.py", f"--bert_config_file={self.config}", f"--init_checkpoint={self.pretrain}",
              f"--output_dir={self.clf}", "--task_name=bbc", f"--data_dir={self.data}", f"--vocab_file={self.vocab}",
              f"--max_seq_length={SEQ}", "--train_batch_size=8", "--eval_batch_size=16", "--do_train", "--do_eval",
              "--num_train_epochs=1", "--seed=1", "--do_export"]),
        ]
        for done, args in steps[:upto + 1]:
            if os.path.exists(done):
                continue
            t = time.time()
            sh(args)
            log(f"fixture {os.path.relpath(done, self.root)}: {time.time() - t:.1f} s")
        self.export_version = sorted(os.listdir(self.export), key=int)[-1] if os.path.isdir(self.export) else None

    def paths(self):
        return dict(vocab=self.vocab, corpus=self.corpus, data=self.data, records=self.records,
                    ft_records=self.ft_records, pretrain=self.pretrain, clf=self.clf, export=self.export,
                    config=self.config, mrpc=self.mrpc, sst2=self.sst2, train_tsv=self.train_tsv,
                    repo=ROOT)

    def protected(self):
        return [self.data, self.vocab, self.records, self.ft_records, self.pretrain, self.clf,
                os.path.join(ROOT, "configs"), os.path.join(ROOT, "tests", "fixtures")]


# --------------------------------------------------------------------------------------------------------- cases

@dataclasses.dataclass
class Case:
    id: str
    script: str
    args: list = dataclasses.field(default_factory=list)    # formatted with the fixture paths and {d} (case dir)
    names: tuple = ()               # the error line must mention one of these (case-insensitive)
    expect: str = "error"           # error | custom | http
    setup: object = None            # fn(ctx, d) before the run (may return a context manager in `mount`)
    models: tuple = ()              # finished model dirs (case copies) that must stay unchanged, {d}-relative
    no_new: tuple = ()              # paths that must not appear as finished-looking outputs after a failure
    timeout: int = 300
    run: object = None              # fn(ctx, d) -> Result, for custom and HTTP cases
    note: str = ""
    zero_is_weak: bool = False      # exit 0 leaving every input intact is weak (output = input through a symlink)

    @property
    def needs_tf(self):
        return self.expect != "error" or any(x in " ".join(map(str, self.args)) for x in ("{pretrain}", "{clf}"))


@dataclasses.dataclass
class Result:
    status: object
    last: str
    verdict: str
    why: str = ""


def fmt(s, ctx, d):
    return s.format(d=d, **ctx.paths)


class Ctx:
    def __init__(self, fx, work):
        self.fx = fx
        self.work = work
        self.paths = fx.paths()
        self.server = None


def run_process(ctx, case, d, args=None, timeout=None):
    argv = [PY, case.script] + [fmt(a, ctx, d) for a in (case.args if args is None else args)]
    try:
        proc = subprocess.run(argv, cwd=ROOT, env=ENV, capture_output=True, text=True, errors="replace",
                              timeout=timeout or case.timeout)
        return proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        return "timeout", out, err


def judge_error(rc, out, err, names, changed, new_outputs, leftovers, model_changes, zero_is_weak=False):
    """The verdict for a case whose right answer is a clean `error:` exit."""
    text = out + "\n" + err
    last = last_line(err) or last_line(out)
    if changed:
        return "fail", f"input changed: {', '.join(changed[:3])}"
    if model_changes.get("modified") or model_changes.get("deleted"):
        return "fail", f"finished model dir changed: {model_changes}"
    if rc == 0 and zero_is_weak and not new_outputs:
        return "weak", "exit 0: the link was replaced, its target kept"
    if rc == 0:
        return "fail", "exit 0 on bad input"
    if new_outputs:
        return "fail", f"finished-looking output left: {', '.join(new_outputs[:3])}"
    if rc == "timeout":
        return "weak", "timeout"
    if leftovers:
        return "weak", f"temporary leftovers: {', '.join(os.path.basename(x) for x in leftovers[:3])}"
    if model_changes.get("added"):
        return "weak", f"files added to a model or input folder: {', '.join(model_changes['added'][:3])}"
    if "Traceback (most recent call last)" in text:
        return "weak", "traceback"
    if re.search(r"^FATAL|\bFatal Python error", text, re.M):
        return "weak", "FATAL line"
    if rc != 1:
        return "weak", f"exit status {rc}"
    if not last.startswith("error:"):
        return "weak", "last line is not `error: ...`"
    if names and not any(n.lower() in last.lower() for n in names):
        return "weak", f"error line names none of {names}"
    return "ok", ""


def compare_models(before, after):
    mod = [k for k in before if k in after and before[k] != after[k]]
    dele = [k for k in before if k not in after]
    add = [k for k in after if k not in before and not CLEAN_TEMP.search(k)]
    return {k: v for k, v in (("modified", mod), ("deleted", dele), ("added", add)) if v}


def run_case(ctx, case):
    d = os.path.join(ctx.work, "cases", case.id)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    prot = ctx.fx.protected()
    before = {p: tree_hashes(p) for p in prot}
    with contextlib.ExitStack() as stack:
        if case.setup is not None:
            r = case.setup(ctx, d)
            if r is not None and hasattr(r, "__enter__"):
                if stack.enter_context(r) is False:
                    return Result("-", "mount refused: case skipped", "skip")
        # inputs named on the command line that exist now (besides the fixtures)
        inputs = []
        for a in case.args:
            v = fmt(a, ctx, d).split("=", 1)[-1]
            for part in v.split(","):
                if part and os.path.exists(part) and not any(part.startswith(p) for p in prot) \
                        and os.path.abspath(part) != os.path.abspath(d):
                    inputs.append(os.path.realpath(part))
        models = [fmt(m, ctx, d) for m in case.models]
        in_before = {p: tree_hashes(p) for p in inputs}
        m_before = {m: tree_hashes(m) for m in models}
        no_new = [fmt(p, ctx, d) for p in case.no_new]
        existed = {p: os.path.exists(p) for p in no_new}
        pre_left = set(temp_leftovers(d)) | set(temp_leftovers(ctx.fx.root))
        if case.run is not None:
            res = case.run(ctx, case, d)
            rc, out, err = res.status, "", ""
        else:
            res = None
            rc, out, err = run_process(ctx, case, d)
        after = {p: tree_hashes(p) for p in prot}
        changed, added = [], []
        for p, b, a in [(p, before[p], after[p]) for p in prot] + [
                (p, in_before[p], tree_hashes(p)) for p in inputs if p not in models]:
            diff = compare_models(b, a)
            if diff.get("modified") or diff.get("deleted"):
                rel = (diff.get("modified") or diff.get("deleted"))[0]
                entry = os.path.join(p, rel) if rel else p
                if entry not in changed:
                    changed.append(entry)
            elif diff.get("added"):
                added.append(os.path.join(p, diff["added"][0]))
        mc = {}
        for m in models:
            for k, v in compare_models(m_before[m], tree_hashes(m)).items():
                mc.setdefault(k, []).extend(v)
        if added and not mc.get("added"):
            mc["added"] = added    # files written into an input folder or a fixture: weak, nothing lost
        leftovers = sorted((set(temp_leftovers(d)) | set(temp_leftovers(ctx.fx.root))) - pre_left)
        new_outputs = [p for p in no_new if not existed[p] and os.path.isfile(p)]
        if res is not None:
            if changed:
                return Result(res.status, res.last, "fail", f"input changed: {', '.join(changed[:3])}")
            if mc.get("modified") or mc.get("deleted"):
                return Result(res.status, res.last, "fail", f"finished model dir changed: {mc}")
            if res.verdict == "ok" and leftovers and case.expect != "http":
                return Result(res.status, res.last, "weak", f"temporary leftovers: {leftovers[:3]}")
            return res
        verdict, why = judge_error(rc, out, err, case.names, changed, new_outputs, leftovers, mc, case.zero_is_weak)
        return Result(rc, last_line(err) or last_line(out), verdict, why)


# ------------------------------------------------------------------------------------------- custom case helpers

def proc_result(rc, out, err, verdict, why=""):
    return Result(rc, last_line(err) or last_line(out), verdict, why)


def kill_and_rerun(ctx, d, argv, out, finished):
    """SIGKILL `argv` once its first checkpoint is in `out`, rerun the same command. A Result when the case is decided
    (skip, weak, fail); else (rc, stdout, stderr, steps at the kill, steps after the rerun) for the caller to judge
    the resume. `finished(steps, first)`: the rerun's checkpoints end where they should."""
    killed = kill_when(argv, lambda: bool(ckpt_steps(out)), timeout=300)
    if not killed:
        return Result("-", "run finished before it could be killed", "skip")
    first = ckpt_steps(out)
    rc, so, se = run_process(ctx, Case("", argv[0]), d, argv[1:], timeout=500)
    if rc != 0:
        return proc_result(rc, so, se, "weak", "rerun after kill failed")
    steps = ckpt_steps(out)
    if not steps or not finished(steps, first):
        return proc_result(rc, so, se, "fail", f"checkpoints after resume: {steps} (killed at {first})")
    if temp_leftovers(out):
        return proc_result(rc, so, se, "weak", f"leftovers: {temp_leftovers(out)[:3]}")
    return rc, so, se, first, steps


def kill_when(argv, predicate, timeout=300, poll=0.05):
    """Start argv, SIGKILL it as soon as predicate() is true; returns True when it was killed mid-run."""
    p = subprocess.Popen([PY, *argv], cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    try:
        while time.time() - t0 < timeout:
            if p.poll() is not None:
                return False
            if predicate():
                p.send_signal(signal.SIGKILL)
                p.wait()
                return True
            time.sleep(poll)
        p.kill()
        p.wait()
        return True
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def count_records(path):
    code = ("import sys,tensorflow as tf\nn=0\n"
            "for _ in tf.data.TFRecordDataset(sys.argv[1]): n+=1\nprint(n)")
    r = subprocess.run([PY, "-c", code, path], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    return int(r.stdout.strip()) if r.returncode == 0 else None


def ckpt_steps(model_dir):
    return sorted(int(m.group(1)) for p in glob.glob(os.path.join(model_dir, "ckpt-*.index"))
                  if (m := re.search(r"ckpt-(\d+)\.index$", p)))


# --------------------------------------------------------------------------------------------------------- HTTP

class Server:
    def __init__(self, ctx):
        self.ctx = ctx
        self.base = os.path.join(ctx.work, "serve_base")
        shutil.rmtree(self.base, ignore_errors=True)
        copy(os.path.join(ctx.fx.export, ctx.fx.export_version), os.path.join(self.base, "1"))
        self.proc = None
        self.port = None
        self.log = os.path.join(ctx.work, "serve.log")

    def start(self):
        f = open(self.log, "w")
        self.proc = subprocess.Popen(
            [PY, "serve.py", "--model_name=clf", f"--model_base_path={self.base}", "--rest_api_port=0",
             "--file_system_poll_wait_seconds=0.5", "--max_request_bytes=1048576", "--rest_api_num_threads=2",
             "--tensorflow_intra_op_parallelism=1"], cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=f, text=True)
        t0 = time.time()
        while time.time() - t0 < 240:
            line = self.proc.stdout.readline()
            if not line:
                break
            m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
            if m:
                self.port = int(m.group(1))
                break
        if self.port is None:
            raise RuntimeError(f"serve.py did not start: {open(self.log).read()[-2000:]}")
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()
        # wait for version 1 to be available
        while time.time() - t0 < 240:
            st, body = self.request("GET", "/v1/models/clf")
            if st == 200 and '"AVAILABLE"' in body:
                return
            time.sleep(0.3)
        raise RuntimeError("serve.py never made version 1 available")

    def request(self, method, path, body=None, headers=None, timeout=60):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body)
            if isinstance(body, str):
                body = body.encode("utf-8")
            conn.request(method, path, body=body, headers=headers or {"Content-Type": "application/json"})
            r = conn.getresponse()
            return r.status, r.read().decode("utf-8", errors="replace")
        except (OSError, http.client.HTTPException) as e:
            return "conn-error", f"{type(e).__name__}: {e}"
        finally:
            conn.close()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def judge_http(status, body, names, good=False):
    try:
        msg = json.loads(body).get("error", "") if isinstance(body, str) and body.startswith("{") else body
    except (ValueError, AttributeError):
        msg = body
    msg = str(msg)
    last = f"{msg[:200]}"
    if good:
        return Result(status, last, "ok" if status == 200 else ("weak" if status != "conn-error" else "weak"),
                      "" if status == 200 else f"expected 200, got {status}")
    if status == "conn-error":
        return Result(status, last, "weak", "connection error, no answer")
    if isinstance(status, int) and 200 <= status < 300:
        return Result(status, last, "fail", "2xx on bad input")
    if isinstance(status, int) and status >= 500:
        return Result(status, last, "weak", "5xx")
    if not (isinstance(status, int) and 400 <= status < 500):
        return Result(status, last, "weak", f"status {status}")
    if "Traceback" in msg:
        return Result(status, last, "weak", "traceback in the answer")
    if names and not any(n.lower() in msg.lower() for n in names):
        return Result(status, last, "weak", f"message names none of {names}")
    return Result(status, last, "ok")


def http_case(cid, method, path, body, names=(), good=False, headers=None, note=""):
    def run(ctx, case, d):
        st, text = ctx.server.request(method, path, body, headers=headers)
        return judge_http(st, text, names, good)
    return Case(cid, "serve.py", expect="http", run=run, names=names, note=note, timeout=60)


def raw_http_case(cid, send, names=(), note=""):
    """send(sock) writes raw bytes; the server must answer 4xx (or close) and keep serving (checked after)."""
    def run(ctx, case, d):
        s = socket.create_connection(("127.0.0.1", ctx.server.port), timeout=30)
        status, text = None, ""
        try:
            send(s)
            try:
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            except (TimeoutError, ConnectionError, OSError):
                pass
            text = data.decode("utf-8", errors="replace")
            m = re.match(r"HTTP/1\.\d (\d+)", text)
            status = int(m.group(1)) if m else "closed"
        finally:
            s.close()
        alive, _ = ctx.server.request("GET", "/v1/models/clf")
        if alive != 200:
            return Result(status, f"server no longer answers ({alive})", "weak", "server died")
        body = text.split("\r\n\r\n", 1)[-1]
        if status == "closed":
            return Result(status, "connection closed, server still answers", "ok")
        return judge_http(status, body, names)
    return Case(cid, "serve.py", expect="http", run=run, names=names, note=note, timeout=60)


GOOD = {"instances": ["shares rose on the market"]}


def serve_ids_body(ids, mask, seg):
    return {"signature_name": "serve_ids", "instances": [{"input_ids": ids, "input_mask": mask, "segment_ids": seg}]}


def version_in_two_steps(ctx, case, d):
    """A new version folder appears in two steps (variables first, saved_model.pb a few seconds later)."""
    srv = ctx.server
    src = os.path.join(ctx.fx.export, ctx.fx.export_version)
    dst = os.path.join(srv.base, "2")
    os.makedirs(dst)
    for name in os.listdir(src):
        if name != "saved_model.pb":
            copy(os.path.join(src, name), os.path.join(dst, name))
    time.sleep(3)
    shutil.copy(os.path.join(src, "saved_model.pb"), os.path.join(dst, "saved_model.pb"))
    t0 = time.time()
    st, text = None, ""
    while time.time() - t0 < 60:
        st, text = srv.request("POST", "/v1/models/clf/versions/2:predict", GOOD)
        if st == 200:
            return Result(st, "version 2 served after it was complete", "ok")
        time.sleep(1)
    _, status = srv.request("GET", "/v1/models/clf/versions/2")
    return Result(st, f"version 2 never served: {status[:120]}", "weak", "a version written in two steps never loads")


def server_still_good(ctx, case, d):
    st, text = ctx.server.request("POST", "/v1/models/clf:predict", GOOD)
    ok = st == 200 and "predictions" in text
    return Result(st, text[:100], "ok" if ok else "weak", "" if ok else "the server stopped answering well")


# More cases of the same kinds, run with --extended (the default set keeps a full run near 40 minutes on two
# shared CPU cores; each case that gets as far as importing TensorFlow costs 20-30 s there).
EXTENDED = set("""
cpd-seq-above-512 cpd-zero-predictions cpd-utf16-input cpd-vocab-is-dir cpd-vocab-binary cpd-output-is-input-symlink
cpd-shards-negative cpd-ngram-zero cpd-readonly-dir cpd-vocab-empty cpd-negative-dupe
cfd-header-only cfd-latin1-train cfd-csv-not-tsv cfd-vocab-no-unk cfd-custom-bad-regression cfd-negative-pad
cfd-mrpc-missing-test cfd-data-dir-is-file cfd-binary-train
rp-negative-lr rp-zero-steps rp-accum-not-divisor rp-missing-config rp-config-is-dir rp-config-bad-value
rp-config-string-int rp-config-unknown-act rp-records-are-text rp-records-empty rp-pred-mismatch rp-finetune-records
rp-init-missing rp-output-is-file rp-rerun-other-case rp-teacher-missing rp-bad-layer-mapping rp-dynamic-no-vocab
rp-readonly-output
rc-no-output rc-negative-epochs rc-warmup-above-1 rc-zero-batch rc-bad-speed rc-bad-layerwise rc-missing-data-dir
rc-missing-init rc-init-is-file rc-init-index-missing rc-vocab-over-vocab-size rc-vocab-missing-cls
rc-vocab-other-than-init rc-seq-above-positions rc-records-dir-missing rc-records-seq-mismatch rc-records-other-task
rc-rerun-other-config rc-rerun-other-case rc-teacher-missing rc-teacher-not-classifier rc-fastbert-distill-no-file
rc-predict-no-test rc-export-dir-is-file rc-kill-resume
ex-no-export-dir ex-bad-seq ex-init-empty-dir ex-garbage-checkpoint-file ex-task-meta-missing ex-task-meta-no-labels
ex-vocab-over-vocab-size ex-vocab-missing ex-seq-above-positions ex-export-into-model-dir
cc-no-output cc-input-is-text cc-input-empty-dir cc-output-is-file cc-config-mismatch cc-vocab-missing
cc-vocab-over-vocab-size cc-hf-dir-no-weights
ad-no-teacher ad-bad-num-aug ad-zero-candidates ad-input-is-dir ad-unknown-text-column ad-bad-jsonl ad-binary-input
ad-latin1-input ad-output-format-differs ad-teacher-missing ad-teacher-truncated ad-vocab-over-vocab-size
""".split())


# --------------------------------------------------------------------------------------------------------- catalog

def cases():
    C = []

    def E(cid, script, args, names=(), **kw):
        C.append(Case(cid, script, list(args), tuple(names), **kw))

    def W(cid, script, args, words, **kw):
        """A questionable input the original accepts (issue 19: a vocabulary with duplicate tokens): the run must
        succeed, with a warning line holding every one of `words`."""
        def run(ctx, case, d):
            rc, so, se = run_process(ctx, case, d)
            lines = [ln for ln in (so + "\n" + se).splitlines() if all(w.lower() in ln.lower() for w in words)]
            if rc != 0:
                return proc_result(rc, so, se, "weak", "the run failed; the original accepts this input")
            if not lines:
                return proc_result(rc, so, se, "fail", f"accepted silently: no warning naming {', '.join(words)}")
            return Result(rc, lines[0].strip(), "ok")
        C.append(Case(cid, script, list(args), tuple(words), expect="custom", run=run, **kw))

    # setup helpers -------------------------------------------------------------------------------------------
    def mk(path_fn):   # setup writing a file; path_fn(ctx, d)
        def setup(ctx, d):
            path_fn(ctx, d)
        return setup

    def copy_of(key, rel):
        def setup(ctx, d):
            copy(ctx.paths[key], os.path.join(d, rel))
        return setup

    def seq(*fns):
        def setup(ctx, d):
            r = None
            for f in fns:
                r = f(ctx, d) or r
            return r
        return setup

    def vocab_variant(transform, name="vocab.txt"):
        def setup(ctx, d):
            with open(ctx.fx.vocab, encoding="utf-8") as f:
                toks = f.read().splitlines()
            write(os.path.join(d, name), "\n".join(transform(toks)) + "\n")
        return setup

    def config_variant(**over):
        def setup(ctx, d):
            with open(ctx.fx.config) as f:
                cfg = json.load(f)
            cfg.update(over)
            write(os.path.join(d, "cfg.json"), json.dumps(cfg))
        return setup

    def bbc_variant(train_text):
        def setup(ctx, d):
            os.makedirs(os.path.join(d, "data"))
            shutil.copy(os.path.join(ctx.fx.data, "dev.tsv"), os.path.join(d, "data", "dev.tsv"))
            write(os.path.join(d, "data", "train.tsv"), train_text, "wb" if isinstance(train_text, bytes) else "w")
        return setup

    BV = "build_vocab.py"
    CPD = "create_pretraining_data.py"
    CFD = "create_finetuning_data.py"
    RP = "run_pretraining.py"
    RC = "run_classifier.py"
    EX = "export_model.py"
    CC = "convert_checkpoint.py"
    AD = "augment_data.py"
    SV = "serve.py"
    DM = "demo.py"

    # ---------------------------------------------------------------------------------------- build_vocab.py
    bv_ok = ["--input_file={corpus}", "--output_file={d}/v.txt", "--vocab_size=500"]
    E("bv-no-input", BV, ["--output_file={d}/v.txt"], ["input_file"], no_new=("{d}/v.txt",))
    E("bv-no-output", BV, ["--input_file={corpus}"], ["output_file"])
    E("bv-unknown-flag", BV, bv_ok + ["--vocabsize=500"], ["vocabsize"], no_new=("{d}/v.txt",))
    E("bv-bad-int", BV, ["--input_file={corpus}", "--output_file={d}/v.txt", "--vocab_size=lots"], ["vocab_size"],
      no_new=("{d}/v.txt",))
    E("bv-zero-size", BV, ["--input_file={corpus}", "--output_file={d}/v.txt", "--vocab_size=0"], ["vocab_size"],
      no_new=("{d}/v.txt",))
    E("bv-size-too-small", BV, ["--input_file={corpus}", "--output_file={d}/v.txt", "--vocab_size=3"],
      ["vocab_size"], no_new=("{d}/v.txt",))
    E("bv-missing-input", BV, ["--input_file={d}/nope.txt", "--output_file={d}/v.txt", "--vocab_size=500"],
      ["nope.txt"], no_new=("{d}/v.txt",))
    E("bv-input-is-dir", BV, ["--input_file={d}/adir", "--output_file={d}/v.txt", "--vocab_size=500"],
      ["adir"], setup=lambda c, d: os.makedirs(os.path.join(d, "adir")), no_new=("{d}/v.txt",))
    E("bv-empty-input", BV, ["--input_file={d}/empty.txt", "--output_file={d}/v.txt", "--vocab_size=500"],
      ["empty.txt"], setup=lambda c, d: write(os.path.join(d, "empty.txt"), ""), no_new=("{d}/v.txt",))
    E("bv-binary-input", BV, ["--input_file={d}/bin.txt", "--output_file={d}/v.txt", "--vocab_size=500"],
      ["bin.txt"], setup=lambda c, d: write(os.path.join(d, "bin.txt"), os.urandom(4096), "wb"),
      no_new=("{d}/v.txt",))
    E("bv-latin1-input", BV, ["--input_file={d}/l1.txt", "--output_file={d}/v.txt", "--vocab_size=500"],
      ["l1.txt"], setup=lambda c, d: write(os.path.join(d, "l1.txt"), "caf\xe9 cr\xe8me br\xfbl\xe9e\n".encode(
          "latin-1") * 50, "wb"), no_new=("{d}/v.txt",))
    E("bv-output-is-input", BV, ["--input_file={d}/c.txt", "--output_file={d}/c.txt", "--vocab_size=500"],
      ["c.txt", "output_file"], setup=copy_of("corpus", "c.txt"))
    E("bv-output-is-input-symlink", BV, ["--input_file={d}/c.txt", "--output_file={d}/link.txt",
                                          "--vocab_size=500"], ["link.txt", "c.txt", "output_file"],
      setup=seq(copy_of("corpus", "c.txt"), lambda c, d: os.symlink(os.path.join(d, "c.txt"),
                                                                    os.path.join(d, "link.txt"))), zero_is_weak=True)
    E("bv-output-is-input-dotdot", BV, ["--input_file={d}/c.txt", "--output_file={d}/sub/../c.txt",
                                         "--vocab_size=500"], ["c.txt", "output_file"],
      setup=seq(copy_of("corpus", "c.txt"), lambda c, d: os.makedirs(os.path.join(d, "sub"))))
    E("bv-output-is-dir", BV, ["--input_file={corpus}", "--output_file={d}/outdir", "--vocab_size=500"],
      ["outdir", "output_file"], setup=lambda c, d: os.makedirs(os.path.join(d, "outdir")))
    E("bv-negative-unused", BV, bv_ok + ["--num_unused=-3"], ["num_unused"], no_new=("{d}/v.txt",))
    E("bv-bad-bool", BV, bv_ok + ["--do_lower_case=maybe"], ["do_lower_case"], no_new=("{d}/v.txt",))
    E("bv-glob-nothing", BV, ["--input_file={d}/*.nothing", "--output_file={d}/v.txt", "--vocab_size=500"],
      ["nothing"], no_new=("{d}/v.txt",))

    def bv_disk_full(ctx, d):
        return tmpfs(os.path.join(d, "full"), size="4k")
    E("bv-disk-full", BV, ["--input_file={corpus}", "--output_file={d}/full/v.txt", "--vocab_size=1000"],
      ["v.txt", "space", "output_file"], setup=seq(bv_disk_full), no_new=("{d}/full/v.txt",))

    def ro_mount(rel):
        def setup(ctx, d):
            return tmpfs(os.path.join(d, rel), size="1m", ro=True)
        return setup
    E("bv-readonly-dir", BV, ["--input_file={corpus}", "--output_file={d}/ro/v.txt", "--vocab_size=500"],
      ["ro", "output_file", "read-only"], setup=ro_mount("ro"))

    # ---------------------------------------------------------------------------------- create_pretraining_data
    cp_base = ["--vocab_file={vocab}", f"--max_seq_length={SEQ}", f"--max_predictions_per_seq={PRED}",
               "--dupe_factor=1", "--num_workers=1", "--noprogress"]
    cp_ok = ["--input_file={corpus}", "--output_file={d}/o.tfrecord"] + cp_base
    NN = ("{d}/o.tfrecord",)
    E("cpd-no-vocab", CPD, ["--input_file={corpus}", "--output_file={d}/o.tfrecord"], ["vocab_file"], no_new=NN)
    E("cpd-no-output", CPD, ["--input_file={corpus}"] + cp_base, ["output_file"])
    E("cpd-misspelt-flag", CPD, cp_ok + ["--max_seq_len=64"], ["max_seq_len"], no_new=NN)
    E("cpd-bad-float", CPD, cp_ok + ["--masked_lm_prob=high"], ["masked_lm_prob"], no_new=NN)
    E("cpd-prob-above-1", CPD, cp_ok + ["--masked_lm_prob=1.5"], ["masked_lm_prob"], no_new=NN)
    E("cpd-seq-too-short", CPD, cp_ok + ["--max_seq_length=2"], ["max_seq_length"], no_new=NN)
    E("cpd-seq-above-512", CPD, cp_ok[:-4] + ["--max_seq_length=100000", "--dupe_factor=1", "--num_workers=1",
                                             "--noprogress"], ["max_seq_length"], no_new=NN, timeout=120)
    E("cpd-negative-dupe", CPD, cp_ok + ["--dupe_factor=-1"], ["dupe_factor"], no_new=NN)
    E("cpd-zero-predictions", CPD, cp_ok + ["--max_predictions_per_seq=0"], ["max_predictions_per_seq"],
      no_new=NN)
    E("cpd-missing-input", CPD, ["--input_file={d}/nope.txt", "--output_file={d}/o.tfrecord"] + cp_base,
      ["nope.txt"], no_new=NN)
    E("cpd-input-is-dir", CPD, ["--input_file={d}", "--output_file={d}/o.tfrecord"] + cp_base,
      ["input_file", "director"], no_new=NN)
    E("cpd-empty-input", CPD, ["--input_file={d}/e.txt", "--output_file={d}/o.tfrecord"] + cp_base, ["e.txt"],
      setup=lambda c, d: write(os.path.join(d, "e.txt"), ""), no_new=NN)
    E("cpd-binary-input", CPD, ["--input_file={d}/b.txt", "--output_file={d}/o.tfrecord"] + cp_base, ["b.txt"],
      setup=lambda c, d: write(os.path.join(d, "b.txt"), os.urandom(20000), "wb"), no_new=NN)
    E("cpd-utf16-input", CPD, ["--input_file={d}/u16.txt", "--output_file={d}/o.tfrecord"] + cp_base,
      ["u16.txt"], setup=lambda c, d: write(os.path.join(d, "u16.txt"),
                                          open(c.fx.corpus, encoding="utf-8").read().encode("utf-16"), "wb"),
      no_new=NN)
    E("cpd-missing-vocab", CPD, ["--input_file={corpus}", "--output_file={d}/o.tfrecord",
                                 "--vocab_file={d}/novocab.txt"] + cp_base[1:], ["novocab.txt"], no_new=NN)
    E("cpd-vocab-is-dir", CPD, ["--input_file={corpus}", "--output_file={d}/o.tfrecord",
                                "--vocab_file={d}"] + cp_base[1:], ["vocab_file", "director"], no_new=NN)
    E("cpd-vocab-empty", CPD, ["--input_file={corpus}", "--output_file={d}/o.tfrecord",
                               "--vocab_file={d}/vocab.txt"] + cp_base[1:], ["vocab.txt"],
      setup=lambda c, d: write(os.path.join(d, "vocab.txt"), ""), no_new=NN)
    E("cpd-vocab-no-mask", CPD, ["--input_file={corpus}", "--output_file={d}/o.tfrecord",
                                 "--vocab_file={d}/vocab.txt"] + cp_base[1:], ["vocab.txt", "[MASK]"],
      setup=vocab_variant(lambda t: [x for x in t if x != "[MASK]"]), no_new=NN)
    W("cpd-vocab-duplicates", CPD, ["--input_file={corpus}", "--output_file={d}/o.tfrecord",
                                    "--vocab_file={d}/vocab.txt"] + cp_base[1:], ["vocab.txt", "duplicate"],
      setup=vocab_variant(lambda t: t[:50] + t[40:]))
    E("cpd-vocab-binary", CPD, ["--input_file={corpus}", "--output_file={d}/o.tfrecord",
                                "--vocab_file={d}/vocab.txt"] + cp_base[1:], ["vocab.txt"],
      setup=lambda c, d: write(os.path.join(d, "vocab.txt"), os.urandom(3000), "wb"), no_new=NN)
    E("cpd-output-is-input", CPD, ["--input_file={d}/c.txt", "--output_file={d}/c.txt"] + cp_base,
      ["c.txt", "output_file"], setup=copy_of("corpus", "c.txt"))
    E("cpd-output-is-input-symlink", CPD, ["--input_file={d}/c.txt", "--output_file={d}/l.txt"] + cp_base,
      ["l.txt", "c.txt", "output_file"],
      setup=seq(copy_of("corpus", "c.txt"),
                lambda c, d: os.symlink(os.path.join(d, "c.txt"), os.path.join(d, "l.txt"))), zero_is_weak=True)
    E("cpd-output-is-vocab", CPD, ["--input_file={corpus}", "--output_file={d}/vocab.txt",
                                   "--vocab_file={d}/vocab.txt"] + cp_base[1:], ["vocab.txt", "output_file"],
      setup=copy_of("vocab", "vocab.txt"))
    E("cpd-output-is-dir", CPD, ["--input_file={corpus}", "--output_file={d}/od"] + cp_base, ["od", "output_file"],
      setup=lambda c, d: os.makedirs(os.path.join(d, "od")))
    E("cpd-shards-negative", CPD, cp_ok + ["--num_output_shards=-2"], ["num_output_shards"], no_new=NN)
    E("cpd-ngram-zero", CPD, cp_ok + ["--max_ngram_size=0"], ["max_ngram_size"], no_new=NN)

    def cpd_disk_full(ctx, d):
        return tmpfs(os.path.join(d, "full"), size="16k")
    E("cpd-disk-full", CPD, ["--input_file={corpus}", "--output_file={d}/full/o.tfrecord"] + cp_base,
      ["o.tfrecord", "space", "output_file"], setup=cpd_disk_full, no_new=("{d}/full/o.tfrecord",))
    E("cpd-readonly-dir", CPD, ["--input_file={corpus}", "--output_file={d}/ro/o.tfrecord"] + cp_base,
      ["ro", "output_file", "read-only"], setup=ro_mount("ro"))

    def cpd_kill_rerun(ctx, case, d):
        """SIGKILL while the output is written, then rerun: a complete file, same as an uninterrupted run."""
        big = os.path.join(d, "big.txt")
        with open(ctx.fx.corpus, encoding="utf-8") as f:
            text = f.read()
        write(big, text * 3)
        out = os.path.join(d, "o.tfrecord")
        argv = ["create_pretraining_data.py", f"--input_file={big}", f"--output_file={out}",
                f"--vocab_file={ctx.fx.vocab}", f"--max_seq_length={SEQ}", f"--max_predictions_per_seq={PRED}",
                "--dupe_factor=3", "--num_workers=1", "--noprogress", "--docs_per_chunk=5"]
        killed = kill_when(argv, lambda: bool(glob.glob(out + "*")), timeout=240, poll=0.01)
        if not killed:
            return Result("-", "run finished before it could be killed", "skip")
        if os.path.exists(out):
            return Result(-9, "killed run left a finished-looking o.tfrecord", "fail", "half-written output")
        rc, so, se = run_process(ctx, Case("", "create_pretraining_data.py"), d, argv[1:], timeout=300)
        if rc != 0:
            return proc_result(rc, so, se, "weak", "rerun after kill failed")
        left = [p for p in glob.glob(out + "*") if p != out]
        n = count_records(out)
        if not n:
            return proc_result(rc, so, se, "fail", "rerun wrote an unreadable file")
        if left:
            return proc_result(rc, so, se, "weak", f"killed run's temporary file left after the rerun: {left}")
        return Result(rc, f"rerun: {n} records, readable, no leftovers", "ok")
    C.append(Case("cpd-kill-rerun", CPD, expect="custom", run=cpd_kill_rerun))

    # --------------------------------------------------------------------------------- create_finetuning_data
    cf_base = ["--vocab_file={vocab}", f"--max_seq_length={SEQ}", "--output_dir={d}/out"]
    cf_ok = ["--task_name=bbc", "--data_dir={data}"] + cf_base
    NF = ("{d}/out/train.tf_record", "{d}/out/task_meta.json")
    E("cfd-no-task", CFD, ["--data_dir={data}"] + cf_base, ["task_name"], no_new=NF)
    E("cfd-unknown-task", CFD, ["--task_name=bcc", "--data_dir={data}"] + cf_base, ["task_name", "bcc"], no_new=NF)
    E("cfd-unknown-split", CFD, cf_ok + ["--splits=train,valid"], ["splits", "valid"], no_new=NF)
    E("cfd-bad-seq", CFD, cf_ok + ["--max_seq_length=1"], ["max_seq_length"], no_new=NF)
    E("cfd-seq-not-int", CFD, cf_ok + ["--max_seq_length=12.5"], ["max_seq_length"], no_new=NF)
    E("cfd-missing-data-dir", CFD, ["--task_name=bbc", "--data_dir={d}/nodata"] + cf_base, ["nodata"], no_new=NF)
    E("cfd-data-dir-is-file", CFD, ["--task_name=bbc", "--data_dir={train_tsv}"] + cf_base,
      ["data_dir", "train.tsv"], no_new=NF)
    E("cfd-empty-train", CFD, ["--task_name=bbc", "--data_dir={d}/data"] + cf_base, ["train.tsv"],
      setup=bbc_variant(""), no_new=NF)
    E("cfd-header-only", CFD, ["--task_name=bbc", "--data_dir={d}/data"] + cf_base, ["train.tsv"],
      setup=bbc_variant("id\tlabel\ttext\n"), no_new=NF)
    E("cfd-short-row", CFD, ["--task_name=bbc", "--data_dir={d}/data"] + cf_base, ["train.tsv", "line"],
      setup=bbc_variant("id\tlabel\ttext\n1\tsport\tA fine match.\n2\tsport\n"), no_new=NF)
    E("cfd-unknown-label", CFD, ["--task_name=bbc", "--data_dir={d}/data"] + cf_base, ["train.tsv", "weather"],
      setup=bbc_variant("id\tlabel\ttext\n1\tsport\tA fine match.\n2\tweather\tRain again.\n"), no_new=NF)
    E("cfd-binary-train", CFD, ["--task_name=bbc", "--data_dir={d}/data"] + cf_base, ["train.tsv"],
      setup=bbc_variant(os.urandom(5000)), no_new=NF)
    E("cfd-latin1-train", CFD, ["--task_name=bbc", "--data_dir={d}/data"] + cf_base, ["train.tsv"],
      setup=bbc_variant("id\tlabel\ttext\n1\tsport\tCaf\xe9 match.\n".encode("latin-1")), no_new=NF)
    E("cfd-csv-not-tsv", CFD, ["--task_name=bbc", "--data_dir={d}/data"] + cf_base, ["train.tsv"],
      setup=bbc_variant("id,label,text\n1,sport,A fine match.\n2,tech,New phones.\n"), no_new=NF)
    E("cfd-missing-vocab", CFD, ["--task_name=bbc", "--data_dir={data}", "--vocab_file={d}/nv.txt",
                                 f"--max_seq_length={SEQ}", "--output_dir={d}/out"], ["nv.txt"], no_new=NF)
    E("cfd-vocab-no-unk", CFD, ["--task_name=bbc", "--data_dir={data}", "--vocab_file={d}/vocab.txt",
                                f"--max_seq_length={SEQ}", "--output_dir={d}/out"], ["vocab.txt", "[UNK]"],
      setup=vocab_variant(lambda t: [x for x in t if x != "[UNK]"]), no_new=NF)
    E("cfd-output-is-file", CFD, ["--task_name=bbc", "--data_dir={data}", "--vocab_file={vocab}",
                                  f"--max_seq_length={SEQ}", "--output_dir={d}/f.txt"], ["output_dir", "f.txt"],
      setup=lambda c, d: write(os.path.join(d, "f.txt"), "keep me\n"))
    E("cfd-output-into-model-dir", CFD, ["--task_name=bbc", "--data_dir={data}", "--vocab_file={vocab}",
                                         "--max_seq_length=64", "--output_dir={d}/clf"],
      ["output_dir", "clf", "task_meta"], setup=copy_of("clf", "clf"), models=("{d}/clf",))
    E("cfd-custom-no-columns", CFD, ["--task_name=custom", "--data_dir={data}"] + cf_base,
      ["text_a_column", "column"], no_new=NF)
    E("cfd-custom-bad-column", CFD, ["--task_name=custom", "--data_dir={data}", "--text_a_column=body",
                                     "--label_column=label"] + cf_base, ["body"], no_new=NF)
    E("cfd-custom-bad-regression", CFD, ["--task_name=custom", "--data_dir={data}", "--text_a_column=text",
                                         "--label_column=label", "--is_regression"] + cf_base,
      ["label", "sport", "business", "train.tsv", "number"], no_new=NF)
    E("cfd-negative-pad", CFD, cf_ok + ["--pad_to_multiple_of=-4"], ["pad_to_multiple_of"], no_new=NF)
    E("cfd-rerun-other-length", CFD, ["--task_name=bbc", "--data_dir={data}", "--vocab_file={vocab}",
                                      "--max_seq_length=64", "--output_dir={d}/ftr"],
      ["max_seq_length", "ftr", "task_meta"], setup=copy_of("ft_records", "ftr"), models=("{d}/ftr",))
    E("cfd-mrpc-missing-test", CFD, ["--task_name=mrpc", "--data_dir={d}/m", "--vocab_file={vocab}",
                                     f"--max_seq_length={SEQ}", "--output_dir={d}/out", "--splits=test"],
      ["test.tsv", "test"], setup=lambda c, d: os.makedirs(os.path.join(d, "m")), no_new=NF)

    def cfd_disk_full(ctx, d):
        return tmpfs(os.path.join(d, "full"), size="8k")
    E("cfd-disk-full", CFD, ["--task_name=bbc", "--data_dir={data}", "--vocab_file={vocab}",
                             f"--max_seq_length={SEQ}", "--output_dir={d}/full"], ["full", "space", "output_dir"],
      # complete per-split files may stay; task_meta.json is what marks the set finished (run_classifier reads it)
      setup=cfd_disk_full, no_new=("{d}/full/task_meta.json",))

    # ---------------------------------------------------------------------------------------- run_pretraining
    rp_base = ["--vocab_file={vocab}", f"--max_seq_length={SEQ}", f"--max_predictions_per_seq={PRED}",
               "--train_batch_size=4", "--num_train_steps=2", "--num_warmup_steps=1", "--save_checkpoints_steps=2",
               "--seed=1", "--nodo_export"]
    rp_ok = ["--bert_config_file={config}", "--input_file={records}", "--output_dir={d}/out", "--do_train"] + rp_base
    NP = ("{d}/out/checkpoint",)
    E("rp-no-config", RP, [a for a in rp_ok if "bert_config" not in a], ["bert_config_file"], no_new=NP)
    E("rp-no-output", RP, [a for a in rp_ok if "output_dir" not in a], ["output_dir"])
    E("rp-no-action", RP, [a for a in rp_ok if a != "--do_train"], ["do_train", "do_eval"], no_new=NP)
    E("rp-unknown-flag", RP, rp_ok + ["--num_train_step=5"], ["num_train_step"], no_new=NP)
    E("rp-bad-enum", RP, rp_ok + ["--optimizer=sgd"], ["optimizer"], no_new=NP)
    E("rp-bad-precision", RP, rp_ok + ["--mixed_precision=fp16"], ["mixed_precision"], no_new=NP)
    E("rp-bad-lr", RP, rp_ok + ["--learning_rate=fast"], ["learning_rate"], no_new=NP)
    E("rp-negative-lr", RP, rp_ok + ["--learning_rate=-1e-3"], ["learning_rate"], no_new=NP)
    E("rp-zero-batch", RP, rp_ok + ["--train_batch_size=0"], ["train_batch_size"], no_new=NP)
    E("rp-zero-steps", RP, rp_ok + ["--num_train_steps=0"], ["num_train_steps"], no_new=NP)
    E("rp-accum-not-divisor", RP, rp_ok + ["--gradient_accumulation_steps=3"], ["gradient_accumulation_steps"],
      no_new=NP)
    E("rp-missing-config", RP, ["--bert_config_file={d}/nocfg.json"] + rp_ok[1:], ["nocfg.json"], no_new=NP)
    E("rp-config-not-json", RP, ["--bert_config_file={d}/cfg.json"] + rp_ok[1:], ["cfg.json"],
      setup=lambda c, d: write(os.path.join(d, "cfg.json"), '{"hidden_size": 64,\n "num_hidden_layers": 2,,}'),
      no_new=NP)
    E("rp-config-is-dir", RP, ["--bert_config_file={d}"] + rp_ok[1:], ["bert_config_file"], no_new=NP)
    E("rp-config-bad-value", RP, ["--bert_config_file={d}/cfg.json"] + rp_ok[1:],
      ["cfg.json", "num_attention_heads", "hidden_size"], setup=config_variant(num_attention_heads=3), no_new=NP)
    E("rp-config-string-int", RP, ["--bert_config_file={d}/cfg.json"] + rp_ok[1:], ["cfg.json", "hidden_size"],
      setup=config_variant(hidden_size="sixty-four"), no_new=NP)
    E("rp-config-unknown-act", RP, ["--bert_config_file={d}/cfg.json"] + rp_ok[1:], ["cfg.json", "hidden_act"],
      setup=config_variant(hidden_act="swishy"), no_new=NP)
    E("rp-vocab-over-vocab-size", RP, ["--bert_config_file={d}/cfg.json"] + rp_ok[1:],
      ["vocab_size", "vocab.txt"], setup=config_variant(vocab_size=200), no_new=NP)
    E("rp-missing-records", RP, ["--bert_config_file={config}", "--input_file={d}/nothing*.tfrecord",
                                 "--output_dir={d}/out", "--do_train"] + rp_base, ["nothing", "input_file"],
      no_new=NP)
    E("rp-records-are-text", RP, ["--bert_config_file={config}", "--input_file={corpus}", "--output_dir={d}/out",
                                  "--do_train"] + rp_base, ["corpus.txt", "input_file"], no_new=NP)
    E("rp-records-truncated", RP, ["--bert_config_file={config}", "--input_file={d}/r.tfrecord",
                                   "--output_dir={d}/out", "--do_train"] + rp_base, ["r.tfrecord"],
      setup=seq(copy_of("records", "r.tfrecord"), lambda c, d: truncate(os.path.join(d, "r.tfrecord"), 0.5)),
      no_new=NP)
    E("rp-records-corrupt", RP, ["--bert_config_file={config}", "--input_file={d}/r.tfrecord",
                                 "--output_dir={d}/out", "--do_train"] + rp_base, ["r.tfrecord"],
      setup=seq(copy_of("records", "r.tfrecord"), lambda c, d: flip_bytes(os.path.join(d, "r.tfrecord"), 0.3)),
      no_new=NP)
    E("rp-records-empty", RP, ["--bert_config_file={config}", "--input_file={d}/r.tfrecord",
                               "--output_dir={d}/out", "--do_train"] + rp_base, ["r.tfrecord"],
      setup=lambda c, d: write(os.path.join(d, "r.tfrecord"), b"", "wb"), no_new=NP)
    E("rp-seq-mismatch", RP, rp_ok + ["--max_seq_length=64"], ["max_seq_length", "pre.tfrecord"], no_new=NP)
    E("rp-pred-mismatch", RP, rp_ok + ["--max_predictions_per_seq=20"], ["max_predictions_per_seq"], no_new=NP)
    E("rp-finetune-records", RP, ["--bert_config_file={config}", "--input_file={ft_records}/train.tf_record",
                                  "--output_dir={d}/out", "--do_train"] + rp_base, ["train.tf_record"], no_new=NP)
    E("rp-type-vocab-1", RP, ["--bert_config_file={d}/cfg.json"] + rp_ok[1:], ["type_vocab_size", "segment"],
      setup=config_variant(type_vocab_size=1), no_new=NP)
    E("rp-init-missing", RP, rp_ok + ["--init_checkpoint={d}/noinit"], ["noinit", "init_checkpoint"], no_new=NP)
    E("rp-init-truncated", RP, rp_ok + ["--init_checkpoint={d}/pt"], ["pt", "ckpt", "init_checkpoint"],
      setup=seq(copy_of("pretrain", "pt"), lambda c, d: truncate(latest_ckpt_data(os.path.join(d, "pt")), 0.4)),
      no_new=NP)
    E("rp-output-is-file", RP, ["--bert_config_file={config}", "--input_file={records}",
                                "--output_dir={d}/f.txt", "--do_train"] + rp_base, ["output_dir", "f.txt"],
      setup=lambda c, d: write(os.path.join(d, "f.txt"), "keep\n"))
    E("rp-rerun-other-config", RP, ["--bert_config_file={repo}/configs/tiny_albert.json", "--input_file={records}",
                                    "--output_dir={d}/pt", "--do_train"] + rp_base,
      ["pt", "config", "output_dir"], setup=copy_of("pretrain", "pt"), models=("{d}/pt",))
    E("rp-rerun-other-vocab", RP, ["--bert_config_file={config}", "--input_file={records}", "--output_dir={d}/pt",
                                   "--do_train", "--vocab_file={repo}/tests/data_files/bert_uncased_vocab.txt"]
      + rp_base[1:], ["vocab", "pt"], setup=copy_of("pretrain", "pt"), models=("{d}/pt",))
    E("rp-rerun-other-case", RP, ["--bert_config_file={config}", "--input_file={records}", "--output_dir={d}/pt",
                                  "--do_train", "--nodo_lower_case"] + rp_base,
      ["do_lower_case", "pt"], setup=copy_of("pretrain", "pt"), models=("{d}/pt",))
    E("rp-teacher-missing", RP, rp_ok + ["--teacher_config_file={config}", "--teacher_checkpoint={d}/noteacher"],
      ["noteacher", "teacher_checkpoint"], no_new=NP)
    E("rp-bad-layer-mapping", RP, rp_ok + ["--teacher_config_file={config}", "--teacher_checkpoint={pretrain}",
                                           "--layer_mapping=0:7"], ["layer_mapping"], no_new=NP)
    E("rp-dynamic-no-vocab", RP, [a for a in rp_ok if not a.startswith("--vocab_file")] + ["--dynamic_masking"],
      ["vocab_file", "dynamic_masking"], no_new=NP)

    def rp_disk_full(ctx, d):
        return tmpfs(os.path.join(d, "full"), size="200k")
    E("rp-disk-full", RP, ["--bert_config_file={config}", "--input_file={records}", "--output_dir={d}/full",
                           "--do_train"] + rp_base, ["full", "space", "output_dir"], setup=rp_disk_full,
      no_new=("{d}/full/checkpoint",))
    E("rp-readonly-output", RP, ["--bert_config_file={config}", "--input_file={records}", "--output_dir={d}/ro/o",
                                 "--do_train"] + rp_base, ["ro", "output_dir", "read-only"], setup=ro_mount("ro"))

    def rp_kill_resume(ctx, case, d):
        """SIGKILL after the first checkpoint, rerun the same command: it resumes and ends at the last step (40)."""
        out = os.path.join(d, "out")
        argv = ["run_pretraining.py", f"--bert_config_file={ctx.fx.config}", f"--input_file={ctx.fx.records}",
                f"--output_dir={out}", f"--vocab_file={ctx.fx.vocab}", "--do_train", f"--max_seq_length={SEQ}",
                f"--max_predictions_per_seq={PRED}", "--train_batch_size=4", "--num_train_steps=40",
                "--num_warmup_steps=1", "--save_checkpoints_steps=2", "--iterations_per_loop=1", "--seed=1",
                "--nodo_export"]
        res = kill_and_rerun(ctx, d, argv, out, lambda steps, first: max(steps) == 40)
        if not isinstance(res, tuple):
            return res
        rc, so, se, first, steps = res
        resumed = re.search(r"(restor|resum)\w*", so + se, re.I)
        return Result(rc, f"resumed from step {max(first)}, ended at {max(steps)}"
                      + ("" if resumed else " (no resume message)"), "ok")
    C.append(Case("rp-kill-resume", RP, expect="custom", run=rp_kill_resume, timeout=700))

    # ---------------------------------------------------------------------------------------- run_classifier
    rc_base = ["--vocab_file={vocab}", f"--max_seq_length={SEQ}", "--train_batch_size=8", "--eval_batch_size=16",
               "--num_train_epochs=1", "--seed=1"]
    rc_ok = ["--bert_config_file={config}", "--init_checkpoint={pretrain}", "--output_dir={d}/out",
             "--task_name=bbc", "--data_dir={data}", "--do_train"] + rc_base
    NC = ("{d}/out/checkpoint", "{d}/out/predictions.tsv")
    E("rc-no-task", RC, [a for a in rc_ok if "task_name" not in a], ["task_name"], no_new=NC)
    E("rc-unknown-task", RC, [a for a in rc_ok if "task_name" not in a] + ["--task_name=bbcnews"],
      ["task_name", "bbcnews"], no_new=NC)
    E("rc-no-action", RC, [a for a in rc_ok if a != "--do_train"], ["do_train", "do_eval", "do_predict"], no_new=NC)
    E("rc-no-data", RC, [a for a in rc_ok if "data_dir" not in a], ["data_dir", "records_dir"], no_new=NC)
    E("rc-no-output", RC, [a for a in rc_ok if "output_dir" not in a], ["output_dir"])
    E("rc-misspelt-flag", RC, rc_ok + ["--num_train_epoch=2"], ["num_train_epoch"], no_new=NC)
    E("rc-bad-epochs", RC, rc_ok + ["--num_train_epochs=three"], ["num_train_epochs"], no_new=NC)
    E("rc-negative-epochs", RC, rc_ok + ["--num_train_epochs=-1"], ["num_train_epochs"], no_new=NC)
    E("rc-warmup-above-1", RC, rc_ok + ["--warmup_proportion=2"], ["warmup_proportion"], no_new=NC)
    E("rc-zero-batch", RC, rc_ok + ["--train_batch_size=0"], ["train_batch_size"], no_new=NC)
    E("rc-bad-distill-stage", RC, rc_ok + ["--distill_stage=all"], ["distill_stage"], no_new=NC)
    E("rc-bad-speed", RC, rc_ok + ["--fastbert", "--speed=0,1.5"], ["speed"], no_new=NC)
    E("rc-bad-layerwise", RC, rc_ok + ["--layerwise_lr_decay=0"], ["layerwise_lr_decay"], no_new=NC)
    E("rc-missing-data-dir", RC, [a for a in rc_ok if "data_dir" not in a] + ["--data_dir={d}/nodata"],
      ["nodata"], no_new=NC)
    E("rc-malformed-train", RC, [a for a in rc_ok if "data_dir" not in a] + ["--data_dir={d}/data"],
      ["train.tsv"], setup=bbc_variant("id\tlabel\ttext\n1\tsport\tA fine match.\n2\n3\ttech\tNew phones.\n"),
      no_new=NC)
    E("rc-unknown-label", RC, [a for a in rc_ok if "data_dir" not in a] + ["--data_dir={d}/data"],
      ["train.tsv", "weather"], setup=bbc_variant("id\tlabel\ttext\n1\tsport\tA match.\n2\tweather\tRain.\n"),
      no_new=NC)
    E("rc-missing-init", RC, [a for a in rc_ok if "init_checkpoint" not in a] + ["--init_checkpoint={d}/noinit"],
      ["noinit", "init_checkpoint"], no_new=NC)
    E("rc-init-is-file", RC, [a for a in rc_ok if "init_checkpoint" not in a] + ["--init_checkpoint={corpus}"],
      ["corpus.txt", "init_checkpoint"], no_new=NC)
    E("rc-init-truncated", RC, [a for a in rc_ok if "init_checkpoint" not in a] + ["--init_checkpoint={d}/pt"],
      ["pt", "ckpt", "init_checkpoint"],
      setup=seq(copy_of("pretrain", "pt"), lambda c, d: truncate(latest_ckpt_data(os.path.join(d, "pt")), 0.4)),
      no_new=NC)
    E("rc-init-index-missing", RC, [a for a in rc_ok if "init_checkpoint" not in a] + ["--init_checkpoint={d}/pt"],
      ["pt", "ckpt", "init_checkpoint", "index"],
      setup=seq(copy_of("pretrain", "pt"),
                lambda c, d: [os.remove(p) for p in glob.glob(os.path.join(d, "pt", "ckpt-*.index"))]), no_new=NC)
    E("rc-config-mismatch-init", RC, ["--bert_config_file={repo}/configs/tiny_albert.json"] + rc_ok[1:],
      ["init_checkpoint", "config", "pretrain"], no_new=NC)
    E("rc-vocab-over-vocab-size", RC, ["--bert_config_file={d}/cfg.json"]
      + [a for a in rc_ok[1:] if "init_checkpoint" not in a], ["vocab_size", "vocab.txt"],
      setup=config_variant(vocab_size=200), no_new=NC)
    E("rc-pair-type-vocab-1", RC, ["--bert_config_file={d}/cfg.json", "--output_dir={d}/out", "--task_name=mrpc",
                                   "--data_dir={mrpc}", "--do_train"] + rc_base, ["type_vocab_size", "pair"],
      setup=config_variant(type_vocab_size=1), no_new=NC)
    E("rc-vocab-missing-cls", RC, [a for a in rc_ok if "vocab_file" not in a] + ["--vocab_file={d}/vocab.txt"],
      ["vocab.txt", "[CLS]"], setup=vocab_variant(lambda t: [x for x in t if x != "[CLS]"]), no_new=NC)
    W("rc-vocab-duplicates", RC, [a for a in rc_ok if "vocab_file" not in a] + ["--vocab_file={d}/vocab.txt"],
      ["vocab.txt", "duplicate"], setup=vocab_variant(lambda t: t + t[200:210]))
    E("rc-vocab-other-than-init", RC, [a for a in rc_ok if "vocab_file" not in a]
      + ["--vocab_file={repo}/tests/data_files/bert_uncased_vocab.txt"], ["vocab", "init_checkpoint"], no_new=NC)
    E("rc-seq-above-positions", RC, rc_ok + ["--max_seq_length=1024"], ["max_seq_length",
                                                                      "max_position_embeddings"], no_new=NC)
    E("rc-records-dir-missing", RC, ["--bert_config_file={config}", "--init_checkpoint={pretrain}",
                                     "--output_dir={d}/out", "--task_name=bbc", "--records_dir={d}/norec",
                                     "--do_train"] + rc_base, ["norec", "records_dir"], no_new=NC)
    E("rc-records-corrupt", RC, ["--bert_config_file={config}", "--init_checkpoint={pretrain}",
                                 "--output_dir={d}/out", "--task_name=bbc", "--records_dir={d}/ftr",
                                 "--do_train"] + rc_base, ["train.tf_record", "ftr"],
      setup=seq(copy_of("ft_records", "ftr"),
                lambda c, d: flip_bytes(os.path.join(d, "ftr", "train.tf_record"), 0.5)), no_new=NC)
    E("rc-records-seq-mismatch", RC, ["--bert_config_file={config}", "--init_checkpoint={pretrain}",
                                      "--output_dir={d}/out", "--task_name=bbc", "--records_dir={ft_records}",
                                      "--do_train", "--vocab_file={vocab}", "--max_seq_length=64",
                                      "--train_batch_size=8", "--num_train_epochs=1"],
      ["max_seq_length", "task_meta"], no_new=NC)
    E("rc-records-other-task", RC, ["--bert_config_file={config}", "--init_checkpoint={pretrain}",
                                    "--output_dir={d}/out", "--task_name=sst-2", "--records_dir={ft_records}",
                                    "--do_train"] + rc_base, ["task", "sst-2", "bbc"], no_new=NC)
    E("rc-rerun-other-task", RC, ["--bert_config_file={config}", "--init_checkpoint={pretrain}",
                                  "--output_dir={d}/clf", "--task_name=sst-2", "--data_dir={sst2}", "--do_train"]
      + rc_base, ["task", "clf", "output_dir"], setup=copy_of("clf", "clf"), models=("{d}/clf",))
    E("rc-rerun-other-length", RC, [a for a in rc_ok if "output_dir" not in a and "max_seq" not in a]
      + ["--output_dir={d}/clf", "--max_seq_length=64"], ["max_seq_length", "clf"],
      setup=copy_of("clf", "clf"), models=("{d}/clf",))
    E("rc-rerun-other-config", RC, ["--bert_config_file={repo}/configs/tiny_albert.json", "--output_dir={d}/clf",
                                    "--task_name=bbc", "--data_dir={data}", "--do_train"] + rc_base,
      ["config", "clf"], setup=copy_of("clf", "clf"), models=("{d}/clf",))
    E("rc-rerun-other-vocab", RC, [a for a in rc_ok if "output_dir" not in a and "vocab_file" not in a]
      + ["--output_dir={d}/clf", "--vocab_file={repo}/tests/data_files/bert_uncased_vocab.txt"],
      ["vocab", "clf"], setup=copy_of("clf", "clf"), models=("{d}/clf",))
    E("rc-rerun-other-case", RC, [a for a in rc_ok if "output_dir" not in a]
      + ["--output_dir={d}/clf", "--nodo_lower_case"], ["do_lower_case", "clf"],
      setup=copy_of("clf", "clf"), models=("{d}/clf",))
    E("rc-output-is-data-dir", RC, [a for a in rc_ok if "output_dir" not in a and "data_dir" not in a]
      + ["--data_dir={d}/data", "--output_dir={d}/data"], ["output_dir", "data_dir"], setup=copy_of("data", "data"))
    E("rc-teacher-missing", RC, rc_ok + ["--teacher_checkpoint={d}/noteacher"], ["noteacher",
                                                                                "teacher_checkpoint"], no_new=NC)
    E("rc-teacher-not-classifier", RC, rc_ok + ["--teacher_checkpoint={pretrain}"],
      ["teacher_checkpoint", "task_meta", "pretrain"], no_new=NC)
    E("rc-fastbert-distill-no-file", RC, rc_ok + ["--fastbert", "--fastbert_stage=distill",
                                                  "--distill_file={d}/nofile.txt"], ["nofile.txt"], no_new=NC)
    E("rc-predict-no-test", RC, ["--bert_config_file={config}", "--init_checkpoint={clf}", "--output_dir={d}/out",
                                 "--task_name=bbc", "--data_dir={data}", "--do_predict"] + rc_base,
      ["test", "data"], no_new=("{d}/out/predictions.tsv",))
    E("rc-export-dir-is-file", RC, rc_ok + ["--do_export", "--export_dir={d}/f.txt"], ["export_dir", "f.txt"],
      setup=lambda c, d: write(os.path.join(d, "f.txt"), "keep\n"))

    def rc_disk_full(ctx, d):
        return tmpfs(os.path.join(d, "full"), size="300k")
    E("rc-disk-full", RC, [a for a in rc_ok if "output_dir" not in a] + ["--output_dir={d}/full"],
      ["full", "space", "output_dir"], setup=rc_disk_full, no_new=("{d}/full/checkpoint",))
    E("rc-readonly-output", RC, [a for a in rc_ok if "output_dir" not in a] + ["--output_dir={d}/ro/o"],
      ["ro", "output_dir", "read-only"], setup=ro_mount("ro"))

    def rc_kill_resume(ctx, case, d):
        out = os.path.join(d, "out")
        argv = ["run_classifier.py", f"--bert_config_file={ctx.fx.config}", f"--init_checkpoint={ctx.fx.pretrain}",
                f"--output_dir={out}", "--task_name=bbc", f"--data_dir={ctx.fx.data}",
                f"--vocab_file={ctx.fx.vocab}", f"--max_seq_length={SEQ}", "--train_batch_size=2", "--do_train",
                "--num_train_epochs=3", "--save_checkpoints_steps=2", "--iterations_per_loop=1", "--seed=1"]
        res = kill_and_rerun(ctx, d, argv, out, lambda steps, first: max(steps) > max(first))
        if not isinstance(res, tuple):
            return res
        rc, so, se, first, steps = res
        return Result(rc, f"killed at step {max(first)}, rerun ended at {max(steps)}", "ok")
    C.append(Case("rc-kill-resume", RC, expect="custom", run=rc_kill_resume, timeout=900))

    # ---------------------------------------------------------------------------------------- export_model
    ex_ok = ["--init_checkpoint={clf}", "--task_meta={clf}/task_meta.json", "--export_dir={d}/exp"]
    NE = ("{d}/exp/1/saved_model.pb",)
    E("ex-no-init", EX, ["--export_dir={d}/exp"], ["init_checkpoint"], no_new=NE)
    E("ex-no-export-dir", EX, ["--init_checkpoint={clf}"], ["export_dir"])
    E("ex-bad-pooling", EX, ex_ok + ["--pooling=max"], ["pooling"], no_new=NE)
    E("ex-bad-seq", EX, ex_ok + ["--max_seq_length=0"], ["max_seq_length"], no_new=NE)
    E("ex-missing-init", EX, ["--init_checkpoint={d}/nomodel", "--export_dir={d}/exp"], ["nomodel"], no_new=NE)
    E("ex-init-empty-dir", EX, ["--init_checkpoint={d}/emptydir", "--export_dir={d}/exp"], ["emptydir"],
      setup=lambda c, d: os.makedirs(os.path.join(d, "emptydir")), no_new=NE)
    E("ex-truncated-ckpt", EX, ["--init_checkpoint={d}/clf", "--export_dir={d}/exp"], ["clf", "ckpt"],
      setup=seq(copy_of("clf", "clf"), lambda c, d: truncate(latest_ckpt_data(os.path.join(d, "clf")), 0.3)),
      no_new=NE)
    E("ex-garbage-checkpoint-file", EX, ["--init_checkpoint={d}/clf", "--export_dir={d}/exp"],
      ["clf", "checkpoint"], setup=seq(copy_of("clf", "clf"),
                                       lambda c, d: write(os.path.join(d, "clf", "checkpoint"), os.urandom(300),
                                                          "wb")), no_new=NE)
    E("ex-task-meta-missing", EX, ["--init_checkpoint={clf}", "--task_meta={d}/nometa.json",
                                   "--export_dir={d}/exp"], ["nometa.json"], no_new=NE)
    E("ex-task-meta-bad-json", EX, ["--init_checkpoint={clf}", "--task_meta={d}/meta.json", "--export_dir={d}/exp"],
      ["meta.json"], setup=lambda c, d: write(os.path.join(d, "meta.json"), "{labels: [a, b"), no_new=NE)
    E("ex-task-meta-no-labels", EX, ["--init_checkpoint={clf}", "--task_meta={d}/meta.json",
                                     "--export_dir={d}/exp"], ["meta.json", "labels"],
      setup=lambda c, d: write(os.path.join(d, "meta.json"), json.dumps({"task": "bbc", "max_seq_length": SEQ})),
      no_new=NE)
    E("ex-task-meta-wrong-count", EX, ["--init_checkpoint={clf}", "--task_meta={d}/meta.json",
                                       "--export_dir={d}/exp"], ["meta.json", "labels", "num_labels"],
      setup=lambda c, d: write(os.path.join(d, "meta.json"), json.dumps(
          {"task": "bbc", "labels": ["a", "b", "c"], "max_seq_length": SEQ, "is_regression": False})), no_new=NE)
    E("ex-config-mismatch", EX, ex_ok + ["--bert_config_file={repo}/configs/tiny_albert.json"],
      ["config", "clf", "checkpoint"], no_new=NE)
    E("ex-vocab-over-vocab-size", EX, ex_ok + ["--bert_config_file={d}/cfg.json"], ["vocab_size", "vocab"],
      setup=config_variant(vocab_size=200), no_new=NE)
    E("ex-vocab-missing", EX, ex_ok + ["--vocab_file={d}/nov.txt"], ["nov.txt"], no_new=NE)
    E("ex-vocab-no-sep", EX, ex_ok + ["--vocab_file={d}/vocab.txt"], ["vocab.txt", "[SEP]"],
      setup=vocab_variant(lambda t: [x for x in t if x != "[SEP]"]), no_new=NE)
    E("ex-seq-above-positions", EX, ex_ok + ["--max_seq_length=4096"], ["max_seq_length",
                                                                       "max_position_embeddings"], no_new=NE)
    E("ex-export-dir-is-file", EX, ["--init_checkpoint={clf}", "--export_dir={d}/f.txt"], ["export_dir", "f.txt"],
      setup=lambda c, d: write(os.path.join(d, "f.txt"), "keep\n"))
    E("ex-export-into-model-dir", EX, ["--init_checkpoint={d}/clf", "--export_dir={d}/clf"],
      ["export_dir", "clf"], setup=copy_of("clf", "clf"), models=("{d}/clf",))

    def ex_disk_full(ctx, d):
        return tmpfs(os.path.join(d, "full"), size="100k")
    E("ex-disk-full", EX, ["--init_checkpoint={clf}", "--task_meta={clf}/task_meta.json",
                           "--export_dir={d}/full"], ["full", "space", "export_dir"], setup=ex_disk_full,
      no_new=("{d}/full/1/saved_model.pb",))

    def ex_kill_rerun(ctx, case, d):
        """SIGKILL export mid-way, rerun: no half version folder is servable; the rerun's version is complete."""
        exp = os.path.join(d, "exp")
        argv = ["export_model.py", f"--init_checkpoint={ctx.fx.clf}", f"--task_meta={ctx.fx.clf}/task_meta.json",
                f"--export_dir={exp}"]
        killed = kill_when(argv, lambda: os.path.isdir(exp) and bool(os.listdir(exp)), timeout=300, poll=0.01)
        if not killed:
            return Result("-", "export finished before it could be killed", "skip")
        half = [v for v in (os.listdir(exp) if os.path.isdir(exp) else []) if v.isdigit()]
        rc, so, se = run_process(ctx, Case("", "export_model.py"), d, argv[1:], timeout=400)
        if rc != 0:
            return proc_result(rc, so, se, "weak", "rerun after kill failed")
        versions = [v for v in os.listdir(exp) if v.isdigit()]
        incomplete = [v for v in versions if not os.path.isfile(os.path.join(exp, v, "saved_model.pb"))
                      or not os.path.isdir(os.path.join(exp, v, "variables"))]
        if half and incomplete:
            return proc_result(rc, so, se, "fail", f"killed export left numbered version folder(s) {incomplete}")
        return Result(rc, f"versions after rerun: {sorted(versions, key=int)}, all complete", "ok")
    C.append(Case("ex-kill-rerun", EX, expect="custom", run=ex_kill_rerun, timeout=700))

    # ---------------------------------------------------------------------------------------- convert_checkpoint
    cc_ok = ["--input_checkpoint={pretrain}", "--output_dir={d}/conv"]
    NCC = ("{d}/conv/checkpoint",)
    E("cc-no-input", CC, ["--output_dir={d}/conv"], ["input_checkpoint"], no_new=NCC)
    E("cc-no-output", CC, ["--input_checkpoint={pretrain}"], ["output_dir"])
    E("cc-unknown-flag", CC, cc_ok + ["--lower_case"], ["lower_case"], no_new=NCC)
    E("cc-missing-input", CC, ["--input_checkpoint={d}/nock", "--output_dir={d}/conv"], ["nock"], no_new=NCC)
    E("cc-input-is-text", CC, ["--input_checkpoint={corpus}", "--output_dir={d}/conv"], ["corpus.txt"],
      no_new=NCC)
    E("cc-input-empty-dir", CC, ["--input_checkpoint={d}/e", "--output_dir={d}/conv"], ["e", "input_checkpoint"],
      setup=lambda c, d: os.makedirs(os.path.join(d, "e")), no_new=NCC)
    E("cc-truncated", CC, ["--input_checkpoint={d}/pt", "--output_dir={d}/conv"], ["pt", "ckpt"],
      setup=seq(copy_of("pretrain", "pt"), lambda c, d: truncate(latest_ckpt_data(os.path.join(d, "pt")), 0.5)),
      no_new=NCC)
    E("cc-output-is-input", CC, ["--input_checkpoint={d}/pt", "--output_dir={d}/pt"], ["output_dir", "pt"],
      setup=copy_of("pretrain", "pt"), models=("{d}/pt",))
    E("cc-output-is-input-dotdot", CC, ["--input_checkpoint={d}/pt", "--output_dir={d}/pt/../pt"],
      ["output_dir", "pt"], setup=copy_of("pretrain", "pt"), models=("{d}/pt",))
    E("cc-output-finished-model", CC, ["--input_checkpoint={pretrain}", "--output_dir={d}/clf"],
      ["output_dir", "clf"], setup=copy_of("clf", "clf"), models=("{d}/clf",))
    E("cc-output-is-file", CC, ["--input_checkpoint={pretrain}", "--output_dir={d}/f.txt"], ["output_dir", "f.txt"],
      setup=lambda c, d: write(os.path.join(d, "f.txt"), "keep\n"))
    E("cc-config-mismatch", CC, cc_ok + ["--bert_config_file={repo}/configs/tiny_albert.json"],
      ["config", "checkpoint", "pretrain"], no_new=NCC)
    E("cc-config-bad-json", CC, cc_ok + ["--bert_config_file={d}/c.json"], ["c.json"],
      setup=lambda c, d: write(os.path.join(d, "c.json"), "not json at all"), no_new=NCC)
    E("cc-vocab-missing", CC, cc_ok + ["--vocab_file={d}/nv.txt"], ["nv.txt"], no_new=NCC)
    E("cc-vocab-over-vocab-size", CC, ["--input_checkpoint={pretrain}", "--output_dir={d}/conv",
                                       "--vocab_file={repo}/tests/data_files/bert_uncased_vocab.txt"],
      ["vocab", "vocab_size"], no_new=NCC)
    E("cc-hf-dir-no-weights", CC, ["--input_checkpoint={d}/hf", "--output_dir={d}/conv"], ["hf", "weights",
                                                                                          "model"],
      setup=lambda c, d: write(os.path.join(d, "hf", "config.json"), json.dumps(
          {"model_type": "bert", "vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 1,
           "num_attention_heads": 2, "intermediate_size": 64})), no_new=NCC)

    def cc_disk_full(ctx, d):
        return tmpfs(os.path.join(d, "full"), size="200k")
    E("cc-disk-full", CC, ["--input_checkpoint={pretrain}", "--output_dir={d}/full"],
      ["full", "space", "output_dir"], setup=cc_disk_full, no_new=("{d}/full/checkpoint",))

    # ---------------------------------------------------------------------------------------- augment_data
    ad_base = ["--teacher_checkpoint={pretrain}", "--num_aug=1", "--candidates=3", f"--max_seq_length={SEQ}",
               "--batch_size=16", "--noprogress"]
    ad_ok = ["--input_file={d}/in.tsv", "--output_file={d}/aug.tsv"] + ad_base
    NA = ("{d}/aug.tsv",)

    def small_tsv(ctx, d):
        write(os.path.join(d, "in.tsv"), "id\tlabel\ttext\n1\tsport\tthe match was won in the last minute\n"
                                         "2\ttech\tnew phones were shown at the fair\n")
    E("ad-no-input", AD, ["--output_file={d}/aug.tsv"] + ad_base, ["input_file"], no_new=NA)
    E("ad-no-teacher", AD, ["--input_file={d}/in.tsv", "--output_file={d}/aug.tsv", "--noprogress"],
      ["teacher_checkpoint"], setup=small_tsv, no_new=NA)
    E("ad-bad-num-aug", AD, ad_ok + ["--num_aug=-1"], ["num_aug"], setup=small_tsv, no_new=NA)
    E("ad-bad-prob", AD, ad_ok + ["--replace_prob=1.7"], ["replace_prob"], setup=small_tsv, no_new=NA)
    E("ad-prob-not-float", AD, ad_ok + ["--replace_prob=half"], ["replace_prob"], setup=small_tsv, no_new=NA)
    E("ad-zero-candidates", AD, ad_ok + ["--candidates=0"], ["candidates"], setup=small_tsv, no_new=NA)
    E("ad-missing-input", AD, ad_ok, ["in.tsv"], no_new=NA)
    E("ad-input-is-dir", AD, ["--input_file={d}/in.tsv", "--output_file={d}/aug.tsv"] + ad_base, ["in.tsv"],
      setup=lambda c, d: os.makedirs(os.path.join(d, "in.tsv")), no_new=NA)
    E("ad-empty-input", AD, ad_ok, ["in.tsv"], setup=lambda c, d: write(os.path.join(d, "in.tsv"), ""), no_new=NA)
    E("ad-no-text-column", AD, ad_ok, ["in.tsv", "text", "text_column"],
      setup=lambda c, d: write(os.path.join(d, "in.tsv"), "id\tlabel\tbody\n1\tsport\ta match\n"), no_new=NA)
    E("ad-unknown-text-column", AD, ad_ok + ["--text_column=sentence"], ["sentence", "text_column"],
      setup=small_tsv, no_new=NA)
    E("ad-short-row", AD, ad_ok, ["in.tsv", "line"],
      setup=lambda c, d: write(os.path.join(d, "in.tsv"), "id\tlabel\ttext\n1\tsport\ta match\n2\tsport\n"),
      no_new=NA)
    E("ad-bad-jsonl", AD, ["--input_file={d}/in.jsonl", "--output_file={d}/aug.jsonl"] + ad_base,
      ["in.jsonl", "line"], setup=lambda c, d: write(os.path.join(d, "in.jsonl"),
                                                   '{"text": "a match", "label": "sport"}\n{"text": "oops\n'),
      no_new=("{d}/aug.jsonl",))
    E("ad-binary-input", AD, ad_ok, ["in.tsv"], setup=lambda c, d: write(os.path.join(d, "in.tsv"),
                                                                        os.urandom(3000), "wb"), no_new=NA)
    E("ad-latin1-input", AD, ad_ok, ["in.tsv"], setup=lambda c, d: write(
        os.path.join(d, "in.tsv"), "id\tlabel\ttext\n1\tsport\tcaf\xe9 match\n".encode("latin-1"), "wb"),
      no_new=NA)
    E("ad-output-is-input", AD, ["--input_file={d}/in.tsv", "--output_file={d}/in.tsv"] + ad_base,
      ["in.tsv", "output_file"], setup=small_tsv)
    E("ad-output-is-input-symlink", AD, ["--input_file={d}/in.tsv", "--output_file={d}/ln.tsv"] + ad_base,
      ["in.tsv", "ln.tsv", "output_file"],
      setup=seq(small_tsv, lambda c, d: os.symlink(os.path.join(d, "in.tsv"), os.path.join(d, "ln.tsv"))),
      zero_is_weak=True)
    E("ad-output-is-input-dotdot", AD, ["--input_file={d}/in.tsv", "--output_file={d}/x/../in.tsv"] + ad_base,
      ["in.tsv", "output_file"], setup=seq(small_tsv, lambda c, d: os.makedirs(os.path.join(d, "x"))))
    E("ad-output-format-differs", AD, ["--input_file={d}/in.tsv", "--output_file={d}/aug.jsonl"] + ad_base,
      ["aug.jsonl", "output_file", "format"], setup=small_tsv, no_new=("{d}/aug.jsonl",))
    E("ad-teacher-missing", AD, ["--input_file={d}/in.tsv", "--output_file={d}/aug.tsv",
                                 "--teacher_checkpoint={d}/not", "--noprogress"], ["not", "teacher_checkpoint"],
      setup=small_tsv, no_new=NA)
    E("ad-teacher-no-mlm", AD, ["--input_file={d}/in.tsv", "--output_file={d}/aug.tsv",
                                "--teacher_checkpoint={clf}", "--noprogress", "--num_aug=1"],
      ["teacher_checkpoint", "mlm", "masked", "clf"], setup=small_tsv, no_new=NA)
    E("ad-teacher-truncated", AD, ["--input_file={d}/in.tsv", "--output_file={d}/aug.tsv",
                                   "--teacher_checkpoint={d}/pt", "--noprogress", "--num_aug=1"], ["pt", "ckpt"],
      setup=seq(small_tsv, copy_of("pretrain", "pt"),
                lambda c, d: truncate(latest_ckpt_data(os.path.join(d, "pt")), 0.5)), no_new=NA)
    E("ad-vocab-over-vocab-size", AD, ad_ok + ["--vocab_file={repo}/tests/data_files/bert_uncased_vocab.txt"],
      ["vocab", "vocab_size"], setup=small_tsv, no_new=NA)

    def ad_disk_full(ctx, d):
        small_tsv(ctx, d)
        with open(os.path.join(d, "in.tsv"), "a", encoding="utf-8") as f:
            for i in range(3, 60):
                f.write(f"{i}\tsport\tthe match was won in the last minute of a long and hard game number {i}\n")
        return tmpfs(os.path.join(d, "full"), size="4k")
    E("ad-disk-full", AD, ["--input_file={d}/in.tsv", "--output_file={d}/full/aug.tsv"] + ad_base[:1]
      + ["--num_aug=4", "--candidates=3", f"--max_seq_length={SEQ}", "--noprogress"],
      ["aug.tsv", "space", "output_file"], setup=ad_disk_full, no_new=("{d}/full/aug.tsv",))

    # ---------------------------------------------------------------------------------------- demo.py
    E("demo-unknown-flag", DM, ["--fats", "--dry_run", "--output_dir={d}/demo"], ["fats"])
    E("demo-bad-port", DM, ["--fast", "--dry_run", "--output_dir={d}/demo", "--port=-5"], ["port"])
    E("demo-port-not-int", DM, ["--fast", "--dry_run", "--output_dir={d}/demo", "--port=http"], ["port"])
    E("demo-output-is-file", DM, ["--fast", "--output_dir={d}/f.txt", "--noserve"], ["output_dir", "f.txt"],
      setup=lambda c, d: write(os.path.join(d, "f.txt"), "keep\n"), timeout=300)
    E("demo-bad-bool", DM, ["--fast=perhaps", "--dry_run", "--output_dir={d}/demo"], ["fast"])

    def demo_dry_run(ctx, case, d):
        """--dry_run must print the steps and create nothing."""
        out = os.path.join(d, "demo")
        rc, so, se = run_process(ctx, case, d, ["--fast", "--dry_run", f"--output_dir={out}"], timeout=60)
        if rc != 0:
            return proc_result(rc, so, se, "weak", "dry run failed")
        if os.path.exists(out):
            return proc_result(rc, so, se, "weak", "--dry_run created the output dir "
                               f"({sum(len(f) + len(x) for _, x, f in os.walk(out))} entries inside)")
        return Result(rc, f"{so.count('=== step')} steps printed, nothing created", "ok")
    C.append(Case("demo-dry-run-writes-nothing", DM, expect="custom", run=demo_dry_run))

    # ---------------------------------------------------------------------------------------- serve.py (CLI)
    E("sv-no-model", SV, ["--rest_api_port=0"], ["model_base_path", "model_config_file"], timeout=60)
    E("sv-missing-base", SV, ["--model_base_path={d}/nobase", "--rest_api_port=0"], ["nobase"], timeout=60)
    E("sv-base-is-file", SV, ["--model_base_path={corpus}", "--rest_api_port=0"], ["corpus.txt"], timeout=60)
    E("sv-bad-port", SV, ["--model_base_path={export}", "--rest_api_port=70000"], ["rest_api_port"], timeout=60)
    E("sv-port-not-int", SV, ["--model_base_path={export}", "--rest_api_port=http"], ["rest_api_port"], timeout=60)
    E("sv-bad-name", SV, ["--model_base_path={export}", "--model_name=a/b", "--rest_api_port=0"], ["model_name"],
      timeout=60)
    E("sv-both-configs", SV, ["--model_base_path={export}", "--model_config_file={d}/m.config",
                              "--rest_api_port=0"], ["model_config_file", "model_base_path"],
      setup=lambda c, d: write(os.path.join(d, "m.config"), "model_config_list {}"), timeout=60)
    E("sv-config-missing", SV, ["--model_config_file={d}/none.config", "--rest_api_port=0"], ["none.config"],
      timeout=60)
    E("sv-config-garbage", SV, ["--model_config_file={d}/m.config", "--rest_api_port=0"], ["m.config"],
      setup=lambda c, d: write(os.path.join(d, "m.config"), "model_config_list { config { name: 'x' base_path: "),
      timeout=60)
    E("sv-config-no-base-path", SV, ["--model_config_file={d}/m.config", "--rest_api_port=0"],
      ["m.config", "base_path"], setup=lambda c, d: write(
          os.path.join(d, "m.config"), "model_config_list { config { name: 'x' model_platform: 'tensorflow' } }"),
      timeout=60)
    E("sv-zero-max-batch", SV, ["--model_base_path={export}", "--max_batch_size=0", "--rest_api_port=0"],
      ["max_batch_size"], timeout=60)
    E("sv-negative-timeout", SV, ["--model_base_path={export}", "--batch_timeout_micros=-1", "--rest_api_port=0"],
      ["batch_timeout_micros"], timeout=60)
    E("sv-unknown-flag", SV, ["--model_base_path={export}", "--rest_port=8600"], ["rest_port"], timeout=60)

    def sv_port_taken(ctx, case, d):
        srv = ctx.server
        argv = ["--model_name=x", f"--model_base_path={srv.base}", f"--rest_api_port={srv.port}"]
        rc, so, se = run_process(ctx, case, d, argv, timeout=120)
        v, why = judge_error(rc, so, se, ("rest_api_port", str(srv.port), "listen"), [], [], [], {})
        return Result(rc, last_line(se) or last_line(so), v, why)
    C.append(Case("sv-port-in-use", SV, expect="custom", run=sv_port_taken, names=("rest_api_port",)))

    # ---------------------------------------------------------------------------------------- serve.py (HTTP)
    P = "/v1/models/clf:predict"
    C.append(http_case("http-good-request", "POST", P, GOOD, good=True, note="sanity: the server answers"))
    C.append(http_case("http-bad-json", "POST", P, '{"instances": ["a", }', ["json", "parse"]))
    C.append(http_case("http-not-json", "POST", P, b"\x00\xff\xfe binary", ["json", "parse", "utf"]))
    C.append(http_case("http-empty-body", "POST", P, b"", ["json", "body", "empty"]))
    C.append(http_case("http-deep-nesting", "POST", P, '{"instances": ' + "[" * 100000 + "]" * 100000 + "}",
                       ["nest", "deep", "json", "instances"]))
    C.append(http_case("http-deep-object", "POST", P, '{"a":' * 50000 + "1" + "}" * 50000,
                       ["nest", "deep", "json", "instances"]))
    C.append(http_case("http-json-list-top", "POST", P, '["just", "a", "list"]', ["object", "instances", "json"]))
    C.append(http_case("http-no-instances", "POST", P, {"foo": ["bar"]}, ["instances", "inputs"]))
    C.append(http_case("http-both-instances-inputs", "POST", P, {"instances": ["a"], "inputs": ["b"]},
                       ["instances", "inputs"]))
    C.append(http_case("http-empty-instances", "POST", P, {"instances": []}, ["instances", "empty"]))
    C.append(http_case("http-wrong-signature", "POST", P, {"signature_name": "serve_idz", "instances": ["a"]},
                       ["serve_idz"]))
    C.append(http_case("http-signature-not-string", "POST", P, {"signature_name": 5, "instances": ["a"]},
                       ["signature_name"]))
    C.append(http_case("http-number-for-text", "POST", P, {"instances": [12345]}, ["string", "type", "text"]))
    C.append(http_case("http-null-instance", "POST", P, {"instances": [None]}, ["null", "string", "type"]))
    C.append(http_case("http-nested-text", "POST", P, {"instances": [["a", ["b"]]]}, ["shape", "rank", "nest",
                                                                                        "string", "list"]))
    C.append(http_case("http-ids-unequal-lengths", "POST", P, serve_ids_body([2, 5, 3], [1, 1], [0, 0, 0]),
                       ["input_mask", "length", "shape"]))
    C.append(http_case("http-ids-ragged-rows", "POST", P,
                       {"signature_name": "serve_ids", "instances": [
                           {"input_ids": [2, 5, 3], "input_mask": [1, 1, 1], "segment_ids": [0, 0, 0]},
                           {"input_ids": [2, 3], "input_mask": [1, 1], "segment_ids": [0, 0]}]},
                       ["length", "shape", "ragged", "same", "input_ids"]))
    C.append(http_case("http-ids-strings", "POST", P, serve_ids_body(["a", "b"], [1, 1], [0, 0]),
                       ["input_ids", "int", "type"]))
    C.append(http_case("http-ids-out-of-vocab", "POST", P, serve_ids_body([2, 99999999, 3], [1, 1, 1], [0, 0, 0]),
                       ["input_ids", "vocab", "range"]))
    C.append(http_case("http-ids-negative", "POST", P, serve_ids_body([2, -7, 3], [1, 1, 1], [0, 0, 0]),
                       ["input_ids", "range", "negative"]))
    C.append(http_case("http-ids-segment-2", "POST", P, serve_ids_body([2, 5, 3], [1, 1, 1], [0, 2, 0]),
                       ["segment_ids", "range", "type_vocab"]))
    C.append(http_case("http-ids-too-long", "POST", P, serve_ids_body([2] * 600, [1] * 600, [0] * 600),
                       ["length", "max", "position", "input_ids"]))
    C.append(http_case("http-ids-missing-input", "POST", P,
                       {"signature_name": "serve_ids", "instances": [{"input_ids": [2, 5, 3]}]},
                       ["input_mask", "segment_ids", "missing"]))
    C.append(http_case("http-ids-extra-input", "POST", P,
                       {"signature_name": "serve_ids", "instances": [
                           {"input_ids": [2, 3], "input_mask": [1, 1], "segment_ids": [0, 0], "foo": [1, 1]}]},
                       ["foo"]))
    C.append(http_case("http-int-overflow", "POST", P, serve_ids_body([2, 2 ** 70, 3], [1, 1, 1], [0, 0, 0]),
                       ["input_ids", "range", "int"]))
    C.append(http_case("http-unknown-model", "POST", "/v1/models/nosuch:predict", GOOD, ["nosuch"]))
    C.append(http_case("http-unknown-version", "POST", "/v1/models/clf/versions/99:predict", GOOD, ["99"]))
    C.append(http_case("http-version-not-int", "POST", "/v1/models/clf/versions/latest:predict", GOOD,
                       ["version", "latest"]))
    C.append(http_case("http-unknown-label", "POST", "/v1/models/clf/labels/canary:predict", GOOD, ["canary"]))
    C.append(http_case("http-unknown-verb", "POST", "/v1/models/clf:explain", GOOD, ["explain"]))
    C.append(http_case("http-get-predict", "GET", P, None, ["predict", "POST", "GET", "method"]))
    C.append(http_case("http-status-unknown-model", "GET", "/v1/models/nosuch", None, ["nosuch"]))
    C.append(http_case("http-metadata-unknown-version", "GET", "/v1/models/clf/versions/7/metadata", None, ["7"]))
    C.append(http_case("http-classify-text", "POST", "/v1/models/clf:classify", {"examples": ["not an example"]},
                       ["example", "feature"]))
    C.append(http_case("http-classify-no-examples", "POST", "/v1/models/clf:classify", {"instances": ["a"]},
                       ["examples"]))
    C.append(http_case("http-regress-classifier", "POST", "/v1/models/clf:regress",
                       {"examples": [{"text": "a match"}]}, ["regress", "signature", "feature"]))
    C.append(http_case("http-output-filter-unknown", "POST", P, {"instances": ["a"], "output_filter": ["nope"]},
                       ["nope"]))
    C.append(http_case("http-huge-body", "POST", P, '{"instances": ["' + "x" * (2 << 20) + '"]}',
                       ["max_request_bytes", "large"]))
    C.append(http_case("http-instances-not-list", "POST", P, {"instances": "a text"}, ["instances", "list"]))
    C.append(http_case("http-wrong-content-type", "POST", P, "instances=a", ["json", "parse"],
                       headers={"Content-Type": "application/x-www-form-urlencoded"}))
    C.append(http_case("http-b64-bad", "POST", P, {"instances": [{"b64": "!!!notbase64"}]}, ["b64", "base64"]))

    def send_partial(s):
        s.sendall(b"POST /v1/models/clf:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 1000\r\n\r\n{\"instances\": [\"a")
        s.shutdown(socket.SHUT_WR)
    C.append(raw_http_case("http-client-disconnects-mid-body", send_partial, ["body", "incomplete", "length"]))

    def send_lying_length(s):
        s.sendall(b"POST /v1/models/clf:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 999999999999\r\n\r\n{}")
        s.shutdown(socket.SHUT_WR)
    C.append(raw_http_case("http-huge-content-length", send_lying_length, ["max_request_bytes", "large"]))

    def send_bad_request_line(s):
        s.sendall(b"GARBAGE\r\n\r\n")
        s.shutdown(socket.SHUT_WR)
    C.append(raw_http_case("http-garbage-request-line", send_bad_request_line, ["bad", "request", "method"]))
    C.append(Case("http-version-in-two-steps", SV, expect="http", run=version_in_two_steps, timeout=120))
    C.append(Case("http-still-serving-after-all", SV, expect="http", run=server_still_good, timeout=60))
    return C


# --------------------------------------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work_dir", default=None, help="fixtures and case folders (kept); default: a temp dir")
    ap.add_argument("--only", default=None, help="run only the cases whose id contains this (comma: any of)")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--fail_on_fail", action="store_true", help="exit 1 when a case is `fail`")
    ap.add_argument("--extended", action="store_true", help=f"also run the {len(EXTENDED)} extended cases")
    args = ap.parse_args()

    all_cases = cases()
    ids = [c.id for c in all_cases]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    unknown = EXTENDED - set(ids)
    assert not unknown, f"unknown ids in EXTENDED: {unknown}"
    selected = [c for c in all_cases if args.extended or c.id not in EXTENDED]
    if args.only:
        keys = [k for k in args.only.split(",") if k]
        selected = [c for c in selected if any(k in c.id for k in keys)]
    if args.list:
        for c in selected:
            print(f"{c.id:38s} {c.script:28s} {' '.join(c.args)[:150] if c.args else c.expect}")
        print(f"{len(selected)} cases")
        return 0

    work = args.work_dir or tempfile.mkdtemp(prefix="bench_bad_inputs_")
    work = os.path.abspath(work)
    os.makedirs(work, exist_ok=True)
    t_start = time.time()
    log = lambda m: print(m, flush=True)  # noqa: E731
    fx = Fixtures(os.path.join(work, "fixtures"))
    # the cheap cases (flag errors, no model needed) run without the trained fixtures
    fx.build(log, fx.steps_needed(selected))
    ctx = Ctx(fx, work)
    http_cases = [c for c in selected if c.expect == "http" or c.id == "sv-port-in-use"]
    rows = []

    def show(c, r):
        last = str(r.last).replace("\n", " ")
        last = last if len(last) <= 80 else last[:77] + "..."
        print(f"{c.id:36s} {c.script:28s} {str(r.status):>8s}  {r.verdict:5s} {last}", flush=True)
        rows.append((c, r))

    print(f"{'case':36s} {'script':28s} {'exit':>8s}  {'verdict':5s} last line", flush=True)
    for c in selected:
        if c in http_cases:
            continue
        t = time.time()
        try:
            r = run_case(ctx, c)
        except Exception as e:  # noqa: BLE001 - a bench bug in one case should not hide the others
            r = Result("-", f"bench error: {type(e).__name__}: {e}", "error")
        r.why = (r.why + f" [{time.time() - t:.0f}s]").strip()
        show(c, r)
    if http_cases:
        ctx.server = Server(ctx)
        try:
            ctx.server.start()
            for c in http_cases:
                try:
                    r = run_case(ctx, c)
                except Exception as e:  # noqa: BLE001
                    r = Result("-", f"bench error: {type(e).__name__}: {e}", "error")
                show(c, r)
        finally:
            ctx.server.stop()

    counts = {}
    for _, r in rows:
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    print()
    print(f"{len(rows)} cases in {time.time() - t_start:.0f} s: "
          + ", ".join(f"{counts.get(v, 0)} {v}" for v in ("ok", "weak", "fail", "skip", "error") if counts.get(v)
                      or v in ("ok", "weak", "fail")))
    not_ok = [(c, r) for c, r in rows if r.verdict != "ok"]
    if not_ok:
        print("\nnot ok:")
        for c, r in not_ok:
            print(f"  {r.verdict:5s} {c.id} ({c.script}, exit {r.status}): {r.why}\n        last line: {r.last}")
    print(f"\nwork dir: {work}")
    if args.fail_on_fail and counts.get("fail"):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
