"""Accuracy parity on BBC News (issue 18): fine-tune all-MiniLM-L6-v2 with run_classifier.py on the reference recipe,
one run per seed, and print the dev accuracy after every epoch next to the HuggingFace reference.

The recipe (the issue's HuggingFace transformers + torch reference): AdamW, weight decay 0.01, 10% linear warm-up then
linear decay, batch 16, max length 128, learning rate 1e-4, 5 epochs. Each seed is one `run_classifier.py` run as a
user types it, output in `<output_dir>/seed_<N>` (log `<output_dir>/seed_<N>.log`); the dev accuracy of each epoch is
read from that directory's eval_history.json. Rerunning the same command reuses finished runs (run_classifier.py
resumes an interrupted one and does not train a finished one again).

    .venv/bin/python bench/bench_reference_recipe.py --output_dir=/tmp/recipe            # seeds 1,2,3, 5 epochs
    .venv/bin/python bench/bench_reference_recipe.py --output_dir=/tmp/recipe --seeds=1 --epochs=1   # a short run
    .venv/bin/python bench/bench_reference_recipe.py --output_dir=/tmp/recipe --report_only   # the table so far

The reference's 3-epoch and 5-epoch figures are separate HuggingFace runs (a 3-epoch and a 5-epoch schedule); the
issue compares both with this run's epochs 3 and 5 of one 5-epoch schedule, and so does the table here.
"""
import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from absl import app, flags  # noqa: E402

from bench.logged_run import run_logged  # noqa: E402
from modeling import packaged  # noqa: E402
from training import classifier as classifier_lib  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", None, "Where the runs go: <output_dir>/seed_<N> (+ .log), the BBC split in "
                    "<output_dir>/data unless --data_dir is given.")
flags.DEFINE_string("init_checkpoint", None, "HuggingFace BERT directory (default: the packaged all-MiniLM-L6-v2).")
flags.DEFINE_string("data_dir", None, "BBC train.tsv/dev.tsv (default: written by `python -m data.bbc` into "
                    "<output_dir>/data).")
flags.DEFINE_string("seeds", "1,2,3", "Comma-separated seeds, one run each, in this order.")
flags.DEFINE_integer("epochs", 5, "--num_train_epochs of each run.")
flags.DEFINE_integer("max_seq_length", 128, "--max_seq_length.")
flags.DEFINE_float("learning_rate", 1e-4, "--learning_rate.")
flags.DEFINE_integer("train_batch_size", 16, "--train_batch_size.")
flags.DEFINE_integer("eval_batch_size", 32, "--eval_batch_size.")
flags.DEFINE_bool("report_only", False, "Run nothing: print the table of the runs already in <output_dir>/seed_<N> "
                  "(finished or not; a seed_<N> may be a link to a run made elsewhere with the same recipe).")

# The reference: HuggingFace transformers + torch from the same weights on the same split, one run per seed.
REFERENCE = {3: (96.17, 96.62, 97.75), 5: (96.17, 97.07, 96.85)}
REFERENCE_MEAN = {3: 96.85, 5: 96.70}
TOLERANCE = 0.5


def ensure_data(output_dir):
    data_dir = os.path.join(output_dir, "data")
    if not (os.path.isfile(os.path.join(data_dir, "train.tsv")) and os.path.isfile(os.path.join(data_dir, "dev.tsv"))):
        cmd = [sys.executable, "-m", "data.bbc", f"--output_dir={data_dir}"]
        print("$ " + " ".join(cmd), flush=True)
        subprocess.run(cmd, cwd=ROOT, check=True)
    return data_dir


def run_seed(seed, data_dir, model_dir):
    out = os.path.join(FLAGS.output_dir, f"seed_{seed}")
    cmd = [sys.executable, os.path.join(ROOT, "run_classifier.py"), "--task_name=bbc", "--do_train", "--do_eval",
           f"--data_dir={data_dir}", f"--init_checkpoint={model_dir}",
           f"--max_seq_length={FLAGS.max_seq_length}", f"--train_batch_size={FLAGS.train_batch_size}",
           f"--eval_batch_size={FLAGS.eval_batch_size}", f"--learning_rate={FLAGS.learning_rate:g}",
           f"--num_train_epochs={FLAGS.epochs}", "--warmup_proportion=0.1", f"--seed={seed}", f"--output_dir={out}"]
    log = out + ".log"
    print("$ " + " ".join(cmd) + f"  > {log} 2>&1", flush=True)
    print(f"seed {seed}: {run_logged(cmd, log, f'seed {seed}: run_classifier.py'):.0f} s", flush=True)
    return out


def epoch_accuracies(run_dir, epochs, batch_size):
    """[dev accuracy in % or None] per epoch from run_dir's eval_history.json (epoch ends from the train set size in
    its task_meta.json)."""
    with open(os.path.join(run_dir, "task_meta.json"), encoding="utf-8") as f:
        meta = json.load(f)
    num_train = meta["splits"]["train"]["num_real_examples"]
    ends = classifier_lib.epoch_end_steps(num_train, batch_size, epochs)
    path = os.path.join(run_dir, classifier_lib.EVAL_HISTORY_FILE)
    history = {}
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            history = json.load(f)
    return [100.0 * history[str(end)]["accuracy"] if str(end) in history else None for end in ends]


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _cell(value, width=8):
    return f"{value:{width}.2f}" if value is not None else f"{'-':>{width}}"


def format_table(seeds, accuracies):
    """accuracies: {seed: [accuracy % per epoch]}. The epoch x seed table with the mean, the reference mean and the
    difference of the means."""
    epochs = max(len(a) for a in accuracies.values())
    head = "epoch " + "".join(f"{'seed ' + str(s):>9}" for s in seeds) + "     mean  HF mean  bertkit - HF"
    lines = [head]
    for e in range(1, epochs + 1):
        row = [accuracies[s][e - 1] if e <= len(accuracies[s]) else None for s in seeds]
        mean = _mean(row)
        ref = REFERENCE_MEAN.get(e)
        diff = mean - ref if mean is not None and ref is not None else None
        verdict = ""
        done = sum(v is not None for v in row)
        if diff is not None and done < len(row):
            verdict = f"  ({done} of {len(row)} seeds so far)"
        elif diff is not None:
            verdict = "  within 0.5" if abs(diff) <= TOLERANCE else "  OFF BY MORE THAN 0.5"
        lines.append(f"{e:>5} " + "".join(f" {_cell(v)}" for v in row) + f" {_cell(mean)} {_cell(ref)}"
                     + (f" {diff:+12.2f}{verdict}" if diff is not None else f" {'-':>12}"))
    return "\n".join(lines)


def format_reference():
    lines = ["HuggingFace reference (issue 18; separate 3- and 5-epoch runs):",
             "epochs   seed 1   seed 2   seed 3     mean"]
    for e, values in sorted(REFERENCE.items()):
        lines.append(f"{e:>6} " + "".join(f" {_cell(v)}" for v in values) + f" {_cell(REFERENCE_MEAN[e])}")
    return "\n".join(lines)


def main(argv):
    del argv
    if not FLAGS.output_dir:
        raise SystemExit("error: --output_dir: required")
    try:
        seeds = [int(s) for s in FLAGS.seeds.split(",") if s.strip()]
    except ValueError:
        raise SystemExit(f"error: --seeds={FLAGS.seeds}: expected comma-separated integers") from None
    if not seeds:
        raise SystemExit(f"error: --seeds={FLAGS.seeds}: no seed given")
    if FLAGS.report_only:
        accuracies = {}
        for seed in seeds:
            run_dir = os.path.join(FLAGS.output_dir, f"seed_{seed}")
            if not os.path.isfile(os.path.join(run_dir, "task_meta.json")):
                print(f"seed {seed}: no run in {run_dir} yet")
                accuracies[seed] = [None] * FLAGS.epochs
                continue
            accuracies[seed] = epoch_accuracies(run_dir, FLAGS.epochs, FLAGS.train_batch_size)
        print_tables(seeds, accuracies)
        return
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    model_dir = FLAGS.init_checkpoint or packaged.minilm_dir()
    data_dir = FLAGS.data_dir or ensure_data(FLAGS.output_dir)
    print(f"recipe: learning rate {FLAGS.learning_rate:g}, batch {FLAGS.train_batch_size}, length "
          f"{FLAGS.max_seq_length}, {FLAGS.epochs} epochs, 10% warm-up, seeds {','.join(map(str, seeds))}", flush=True)
    accuracies = {}
    for seed in seeds:
        run_dir = run_seed(seed, data_dir, model_dir)
        accuracies[seed] = epoch_accuracies(run_dir, FLAGS.epochs, FLAGS.train_batch_size)
        print("dev accuracy (%) after each epoch: " + ", ".join(_cell(a, 0) for a in accuracies[seed]), flush=True)
    print()
    print_tables(seeds, accuracies)


def print_tables(seeds, accuracies):
    print("bertkit run_classifier.py, BBC dev accuracy (%) after each epoch:")
    print(format_table(seeds, accuracies))
    print()
    print(format_reference())


if __name__ == "__main__":
    app.run(main)
