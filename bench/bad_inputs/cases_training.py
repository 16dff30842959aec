"""The bad-input cases of run_pretraining.py and run_classifier.py."""
import glob
import os
import re

from bench.bad_inputs.common import PRED, SEQ, flip_bytes, latest_ckpt_data, tmpfs, truncate, write
from bench.bad_inputs.runner import Case, Result, kill_and_rerun
from bench.bad_inputs.setups import RC, RP, bbc_variant, config_variant, copy_of, ro_mount, seq, vocab_variant


def add(C, E, W):
    """Append this group's cases to C (E: an error case, W: a warning case)."""
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
