"""The HTTP cases: one serve.py on 127.0.0.1 for all of them, requests (well-formed and raw bytes), and their judge."""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

from bench.bad_inputs.common import ENV, PY, ROOT, copy
from bench.bad_inputs.runner import Case, Result


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
