"""CPU inference speed of exported models, taking turns: the way `make demo`'s summary times the teacher and the
student (demo.inference_speeds: each newest export's serve_ids signature on one batch of full-length ids, `repeats`
calls per model per round, the fastest call), printed with the ratio to the first model.

    .venv/bin/python bench/bench_export_speed.py demo_output/teacher_classifier/export \
        demo_output/student_classifier/export [--seq_length=128 --batch_size=32 --rounds=8]
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from absl import app, flags  # noqa: E402

import demo  # noqa: E402

flags.DEFINE_integer("seq_length", 128, "Sequence length of the batch.")
flags.DEFINE_integer("batch_size", 32, "Examples per call.")
flags.DEFINE_integer("rounds", 8, "Rounds in which every model takes its turn.")
flags.DEFINE_integer("repeats", 3, "Calls per model per round.")
FLAGS = flags.FLAGS


def main(argv):
    bases = argv[1:]
    if not bases:
        raise SystemExit("error: give one or more export base directories (each holding numbered versions)")
    demo._load()
    speeds = demo.inference_speeds(bases, FLAGS.seq_length, FLAGS.batch_size, FLAGS.rounds, FLAGS.repeats)
    print(f"batch {FLAGS.batch_size}, length {FLAGS.seq_length}, {FLAGS.rounds} rounds x {FLAGS.repeats} calls, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for base, eps in zip(bases, speeds):
        ratio = f"{eps / speeds[0]:.2f}x" if eps and speeds[0] else "n/a"
        print(f"{base}: {eps:.1f} examples/s ({ratio})" if eps else f"{base}: no export")


if __name__ == "__main__":
    app.run(main)
