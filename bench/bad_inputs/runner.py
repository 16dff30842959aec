"""Cases and results, and how a case runs and is judged (exit status, last line, inputs and model dirs unchanged,
no leftovers), with the helpers of the custom cases (kill and rerun, record and checkpoint counts)."""
import contextlib
import dataclasses
import glob
import os
import re
import shutil
import signal
import subprocess
import time

from bench.bad_inputs.common import CLEAN_TEMP, ENV, PY, ROOT, last_line, temp_leftovers, tree_hashes


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
