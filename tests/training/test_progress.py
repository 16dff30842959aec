"""training/progress.py and its use: throttled progress lines (a fake clock), lines from run_training while one
execution of many steps runs (the callbacks only run between executions), and from run_predictions when stdout is
not a terminal."""
import threading

import keras
import numpy as np
import tensorflow as tf

from training import classifier_eval as C
from training import progress as P
from training import trainer as T


def test_lines_are_throttled_and_say_rate_and_time_left():
    now = [0.0]
    lines = []
    p = P.Progress("eval dev", 100, interval=30, print_fn=lines.append, clock=lambda: now[0])
    assert p.line() == "eval dev: 0/100 examples (0%), starting"
    now[0] = 1.0
    p.start(10)
    for t, done in ((10.0, 20), (31.0, 50), (40.0, 60), (61.0, 90)):
        now[0] = t
        p.update(done)
    # 50 at t=31: 40 examples in 30 s since start(10) at t=1; 60 at t=40 is 9 s after the last line: not printed
    assert lines == ["eval dev: 50/100 examples (50%), 1.3 examples/s, about 38s left",
                     "eval dev: 90/100 examples (90%), 1.3 examples/s, about 8s left"]
    steps = P.Progress("train", 1000, unit="steps", per_unit=32, interval=0, print_fn=lines.append,
                       clock=lambda: now[0])
    steps.start(0)
    now[0] += 100.0
    steps.update(10)
    assert lines[-1] == "train: 10/1000 steps (1%), 3.2 examples/s, about 2h45m left"
    assert P.format_duration(59.4) == "59s" and P.format_duration(61) == "1m01s"


class Toy(keras.Model):
    def __init__(self):
        super().__init__()
        self.out = keras.layers.Dense(1)

    def call(self, features, training=False):
        return {"pred": self.out(features["x"])[:, 0]}


def _loss(features, outputs):
    return tf.reduce_mean(tf.square(outputs["pred"] - features["y"])), {}


def test_training_lines_come_while_one_long_execution_runs(tmp_path):
    """One execution of all 12 steps; its input blocks at the 6th batch until a progress line is printed. Only the
    progress thread can print then (no callback runs inside an execution)."""
    printed_inside = threading.Event()
    lines = []
    blocked = []

    def print_fn(line):
        lines.append(line)
        if line.startswith("train: ") and blocked:
            printed_inside.set()

    def slow(i):
        if int(i) == 5:
            blocked.append(True)
            printed_inside.wait(120)  # a guard against hanging; the assertion below says whether it came
        return np.float32(i)

    def dataset_fn(ctx):
        ds = tf.data.Dataset.range(1000).map(lambda i: tf.py_function(slow, [i], tf.float32))
        return ds.map(lambda v: {"x": tf.fill([2, 3], v * 0.01), "y": tf.zeros([2])})

    net = Toy()
    tr = T.TrainerModel(net, _loss, [])
    tr.compile(optimizer=keras.optimizers.SGD(0.01), steps_per_execution=12)
    res = T.run_training(tr, dataset_fn, strategy=tf.distribute.get_strategy(), output_dir=str(tmp_path),
                         num_train_steps=12, steps_per_checkpoint=12,
                         checkpoint_items={"net": net, "optimizer": tr.optimizer, "global_step": tr.global_step},
                         examples_per_step=2, print_fn=print_fn, progress_interval=0.0)
    assert res["global_step"] == 12
    assert printed_inside.is_set(), lines
    assert any(line.startswith("train: ") and "/12 steps (" in line for line in lines)


def test_prediction_lines_when_stdout_is_not_a_terminal():
    batches = [{"label_ids": np.zeros(4, np.int64), "is_real_example": np.ones(4, np.int64),
                "example_index": np.arange(4) + 4 * i} for i in range(3)]
    lines = []
    out = C.run_predictions(lambda f: np.zeros((4, 2), np.float32), batches, description="eval dev",
                            print_fn=lines.append, total=12, progress_interval=0.0)
    assert out["logits"].shape == (12, 2)
    progress = [line for line in lines if "/12 examples" in line]
    assert progress[0].startswith("eval dev: 8/12 examples (67%), ") and "left" in progress[0], lines
    assert lines[-1].startswith("eval dev: 12 examples in ")
