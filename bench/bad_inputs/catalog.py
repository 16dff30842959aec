"""The case catalog: every case of every script, in order, and the EXTENDED ones (run with --extended)."""
from bench.bad_inputs import cases_data, cases_models, cases_serve, cases_training
from bench.bad_inputs.runner import Case, Result, proc_result, run_process

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

    for group in (cases_data, cases_training, cases_models, cases_serve):
        group.add(C, E, W)
    return C
