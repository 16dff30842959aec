"""MobileBERT progressive knowledge transfer on BBC News (issue 21): a tiny IB-BERT teacher, a tiny MobileBERT student
transferred from it (run_pretraining.py --distillation=mobilebert), the same student pretrained without transfer for
the same number of steps, and both fine-tuned on BBC (run_classifier.py), one fine-tuning run per seed.

Everything is a script run as a user types it (commands and logs under --output_dir), in this order: the BBC split and
corpus (`python -m data.bbc`), a WordPiece vocabulary (build_vocab.py), pretraining records (create_pretraining_data.py,
length --max_seq_length), the teacher (configs/tiny_ibbert.json, --teacher_steps of MLM + NSP), the transferred student
(configs/tiny_mobilebert_student.json: one layer stage of --steps_per_stage per layer, then pre-training distillation
to --student_steps), the baseline student (--student_steps of MLM + NSP from scratch), then the fine-tuning runs.
Finished steps are reused on a rerun. The table: the per-stage losses of the transfer (first and last logged values
of each stage), the teacher's and baseline's last MLM losses, and the dev accuracy of each fine-tuned student per seed.

    .venv/bin/python bench/bench_mobilebert_transfer.py --output_dir=/tmp/mbt      # the README figures
    .venv/bin/python bench/bench_mobilebert_transfer.py --output_dir=/tmp/mbt --report_only
"""
import json
import os
import re
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from bench.logged_run import run_logged  # noqa: E402
FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", None, "Where everything goes.")
flags.DEFINE_string("seeds", "1,2,3", "Fine-tuning seeds (one run per student and seed).")
flags.DEFINE_integer("vocab_size", 8000, "build_vocab.py --vocab_size.")
flags.DEFINE_integer("max_seq_length", 64, "Sequence length of pretraining and fine-tuning.")
flags.DEFINE_integer("max_predictions_per_seq", 10, "Masked positions per pretraining sequence.")
flags.DEFINE_integer("dupe_factor", 3, "create_pretraining_data.py --dupe_factor.")
flags.DEFINE_integer("train_batch_size", 32, "Pretraining batch size (teacher and students).")
flags.DEFINE_float("learning_rate", 1e-3, "Pretraining learning rate (teacher, every transfer stage, baseline).")
flags.DEFINE_integer("teacher_steps", 3000, "Pretraining steps of the IB-BERT teacher.")
flags.DEFINE_integer("steps_per_stage", 100, "Steps of each layer stage of the transfer.")
flags.DEFINE_integer("student_steps", 800, "Total pretraining steps of each student (transfer: layer stages + "
                     "pre-training distillation; baseline: MLM + NSP from scratch).")
flags.DEFINE_float("finetune_learning_rate", 2e-3, "run_classifier.py --learning_rate.")
flags.DEFINE_integer("finetune_epochs", 5, "run_classifier.py --num_train_epochs.")
flags.DEFINE_integer("finetune_batch_size", 16, "run_classifier.py --train_batch_size.")
flags.DEFINE_bool("report_only", False, "Run nothing; print the table of what is in --output_dir.")

STUDENTS = ("transfer", "baseline")


def _path(*parts):
    return os.path.join(FLAGS.output_dir, *parts)


def _run(cmd, log, done):
    """Run `cmd` (appending to `log`) unless `done()` already holds."""
    if done():
        print(f"reusing {log}", flush=True)
        return
    print("$ " + " ".join(cmd) + f"  > {log} 2>&1", flush=True)
    print(f"  {run_logged(cmd, log, cmd[1]):.0f} s", flush=True)


def _step_of(model_dir):
    latest = tf.train.latest_checkpoint(model_dir) if os.path.isdir(model_dir) else None
    if not latest:
        return 0
    return int(tf.train.load_checkpoint(latest).get_tensor("global_step/.ATTRIBUTES/VARIABLE_VALUE"))


def _config(name, vocab_size):
    with open(os.path.join(ROOT, "configs", name + ".json"), encoding="utf-8") as f:
        cfg = json.load(f)
    cfg["vocab_size"] = vocab_size
    path = _path("configs", name + ".json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2)
    return path


def _pretrain_cmd(config, out, steps, *extra):
    return [sys.executable, os.path.join(ROOT, "run_pretraining.py"), f"--bert_config_file={config}",
            f"--input_file={_path('records', 'train.tfrecord')}", f"--output_dir={out}",
            f"--vocab_file={_path('vocab.txt')}", f"--max_seq_length={FLAGS.max_seq_length}",
            f"--max_predictions_per_seq={FLAGS.max_predictions_per_seq}", "--do_train",
            f"--train_batch_size={FLAGS.train_batch_size}", f"--learning_rate={FLAGS.learning_rate:g}",
            f"--num_train_steps={steps}", f"--num_warmup_steps={steps // 10}", "--save_checkpoints_steps=100",
            "--iterations_per_loop=50", "--log_steps=50", "--seed=1", "--nodo_export", *extra]


def prepare():
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    py = sys.executable
    data = _path("data")
    _run([py, "-m", "data.bbc", f"--output_dir={data}"], _path("data.log"),
         lambda: os.path.isfile(os.path.join(data, "dev.tsv")))
    _run([py, os.path.join(ROOT, "build_vocab.py"), f"--input_file={data}/corpus.txt",
          f"--output_file={_path('vocab.txt')}", f"--vocab_size={FLAGS.vocab_size}"], _path("vocab.log"),
         lambda: os.path.isfile(_path("vocab.txt")))
    os.makedirs(_path("records"), exist_ok=True)
    records = _path("records", "train.tfrecord")
    _run([py, os.path.join(ROOT, "create_pretraining_data.py"), f"--input_file={data}/corpus.txt",
          f"--output_file={records}", f"--vocab_file={_path('vocab.txt')}",
          f"--max_seq_length={FLAGS.max_seq_length}", f"--max_predictions_per_seq={FLAGS.max_predictions_per_seq}",
          f"--dupe_factor={FLAGS.dupe_factor}", "--progress=false"], _path("records.log"),
         lambda: os.path.isfile(records))
    with open(_path("vocab.txt"), encoding="utf-8") as f:
        vocab_size = sum(1 for _ in f)
    return _config("tiny_ibbert", vocab_size), _config("tiny_mobilebert_student", vocab_size)


def pretrain(teacher_config, student_config):
    teacher = _path("teacher")
    _run(_pretrain_cmd(teacher_config, teacher, FLAGS.teacher_steps), _path("teacher.log"),
         lambda: _step_of(teacher) >= FLAGS.teacher_steps)
    transfer = _path("transfer")
    _run(_pretrain_cmd(student_config, transfer, FLAGS.student_steps, f"--teacher_config_file={teacher_config}",
                       f"--teacher_checkpoint={teacher}", "--distillation=mobilebert",
                       f"--steps_per_stage={FLAGS.steps_per_stage}"),
         _path("transfer.log"), lambda: _step_of(transfer) >= FLAGS.student_steps)
    baseline = _path("baseline")
    _run(_pretrain_cmd(student_config, baseline, FLAGS.student_steps), _path("baseline.log"),
         lambda: _step_of(baseline) >= FLAGS.student_steps)


def _accuracy(run_dir):
    path = os.path.join(run_dir, "eval_results.txt")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        for line in f:
            key, _, value = line.partition("=")
            if key.strip() in ("accuracy", "eval_accuracy"):
                return 100.0 * float(value)
    return None


def finetune(seeds):
    for name in STUDENTS:
        for seed in seeds:
            out = _path(f"finetune_{name}_seed{seed}")
            cmd = [sys.executable, os.path.join(ROOT, "run_classifier.py"), "--task_name=bbc", "--do_train",
                   "--do_eval", f"--data_dir={_path('data')}", f"--init_checkpoint={_path(name)}",
                   f"--max_seq_length={FLAGS.max_seq_length}", f"--train_batch_size={FLAGS.finetune_batch_size}",
                   "--eval_batch_size=64", f"--learning_rate={FLAGS.finetune_learning_rate:g}",
                   f"--num_train_epochs={FLAGS.finetune_epochs}", "--warmup_proportion=0.1", f"--seed={seed}",
                   f"--output_dir={out}"]
            _run(cmd, out + ".log", lambda: _accuracy(out) is not None)


def _logged(log):
    """[(step, {key: value})] of the 'step N/M key=value ...' lines of a log."""
    out = []
    if not os.path.isfile(log):
        return out
    with open(log, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = re.match(r"^step (\d+)/\d+ (.*)$", line.strip())
            if m:
                out.append((int(m.group(1)), {k: float(v) for k, v in re.findall(r"(\w+)=([-\d.e+nainf]+)",
                                                                                   m.group(2))}))
    return out


def stage_table():
    """Per stage of the transfer: (stage, steps, metric, first logged, last logged)."""
    rows = []
    lines = _logged(_path("transfer.log"))
    stages = sorted({int(k.split("_")[0][5:]) for _, d in lines for k in d if re.match(r"stage\d+_", k)})
    for s in stages:
        for metric in ("feature_map_loss", "attention_loss", "masked_lm_loss", "masked_lm_accuracy",
                       "next_sentence_accuracy"):
            key = f"stage{s}_{metric}"
            values = [(step, d[key]) for step, d in lines if key in d]
            if values:
                rows.append((s, f"{values[0][0]}-{values[-1][0]}", metric, values[0][1], values[-1][1]))
    return rows


def report(seeds):
    print("\nprogressive knowledge transfer, per stage (first and last logged value):")
    print(f"{'stage':>5} {'steps':>10} {'metric':<24} {'first':>8} {'last':>8}")
    for s, steps, metric, first, last in stage_table():
        print(f"{s:>5} {steps:>10} {metric:<24} {first:8.4f} {last:8.4f}")
    for name, log in (("teacher", "teacher.log"), ("baseline student", "baseline.log")):
        lines = [(step, d) for step, d in _logged(_path(log)) if "masked_lm_loss" in d]
        if lines:
            print(f"{name}: step {lines[-1][0]} masked_lm_loss {lines[-1][1]['masked_lm_loss']:.4f} "
                  f"masked_lm_accuracy {lines[-1][1].get('masked_lm_accuracy', float('nan')):.4f}")
    print(f"\nBBC dev accuracy (%) after {FLAGS.finetune_epochs} epochs of fine-tuning, each student pretrained "
          f"{FLAGS.student_steps} steps:")
    print(f"{'student':<10}" + "".join(f"{'seed ' + str(s):>9}" for s in seeds) + f"{'mean':>9}")
    means = {}
    for name in STUDENTS:
        accs = [_accuracy(_path(f"finetune_{name}_seed{s}")) for s in seeds]
        done = [a for a in accs if a is not None]
        means[name] = sum(done) / len(done) if done else None
        cells = "".join(f"{a:9.2f}" if a is not None else f"{'-':>9}" for a in accs)
        print(f"{name:<10}{cells}" + (f"{means[name]:9.2f}" if means[name] is not None else f"{'-':>9}"))
    if None not in means.values():
        print(f"transfer - baseline: {means['transfer'] - means['baseline']:+.2f} points")


def main(argv):
    del argv
    if not FLAGS.output_dir:
        raise SystemExit("error: --output_dir: required")
    seeds = [int(s) for s in FLAGS.seeds.split(",") if s.strip()]
    if not FLAGS.report_only:
        start = time.perf_counter()
        teacher_config, student_config = prepare()
        pretrain(teacher_config, student_config)
        finetune(seeds)
        print(f"all runs: {time.perf_counter() - start:.0f} s")
    report(seeds)


if __name__ == "__main__":
    app.run(main)
