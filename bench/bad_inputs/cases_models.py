"""The bad-input cases of export_model.py, convert_checkpoint.py, augment_data.py and demo.py."""
import json
import os

from bench.bad_inputs.common import SEQ, latest_ckpt_data, tmpfs, truncate, write
from bench.bad_inputs.runner import Case, Result, kill_when, proc_result, run_process
from bench.bad_inputs.setups import AD, CC, DM, EX, config_variant, copy_of, seq, vocab_variant


def add(C, E, W):
    """Append this group's cases to C (E: an error case, W: a warning case)."""
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
