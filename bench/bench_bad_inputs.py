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

The parts live in bench/bad_inputs/: the case catalog per script (catalog.py, cases_*.py), the runner and its judges
(runner.py), the fixtures (fixtures.py), the HTTP cases' server (http_cases.py); this file is the command line.
"""
import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.bad_inputs.catalog import EXTENDED, cases  # noqa: E402
from bench.bad_inputs.fixtures import Fixtures  # noqa: E402
from bench.bad_inputs.http_cases import Server  # noqa: E402
from bench.bad_inputs.runner import Ctx, Result, run_case  # noqa: E402


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
