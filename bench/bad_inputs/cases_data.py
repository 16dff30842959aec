"""The bad-input cases of build_vocab.py, create_pretraining_data.py and create_finetuning_data.py."""
import glob
import os

from bench.bad_inputs.common import PRED, SEQ, tmpfs, write
from bench.bad_inputs.runner import Case, Result, count_records, kill_when, proc_result, run_process
from bench.bad_inputs.setups import BV, CFD, CPD, bbc_variant, copy_of, ro_mount, seq, vocab_variant


def add(C, E, W):
    """Append this group's cases to C (E: an error case, W: a warning case)."""
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
