"""run_pretraining.py --teacher_config_file/--teacher_checkpoint (TinyBERT general distillation), end to end:
a 2-layer 32-wide student learns from a 4-layer 64-wide teacher on records made by create_pretraining_data.py's
code; the loss falls, the teacher checkpoint is not rewritten and its weights are not in the student's checkpoint,
the output directory is a bertkit model directory whose encoder restores into the student config, resuming works,
and a missing teacher checkpoint is a one-line error (a mismatching one: test_tinybert.py; layer mappings:
test_distillation.py)."""
import json
import os
import re
import subprocess
import sys

import pytest

from tests.data import test_pretraining_helpers as H

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "run_pretraining.py")
SEQ, PREDS = 32, 5


def _run(args, timeout=300):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", PYTHONPATH=ROOT)
    env.pop("TF_CONFIG", None)
    return subprocess.run([sys.executable, SCRIPT] + args, capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=ROOT)


def _config(path, layers, hidden, **kw):
    cfg = json.load(open(os.path.join(ROOT, "configs", "tiny_bert.json")))
    cfg.update(vocab_size=len(H.tiny_vocab_tokens()), hidden_size=hidden, num_hidden_layers=layers,
               num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=64, **kw)
    with open(path, "w") as f:
        json.dump(cfg, f)
    return str(path)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import tensorflow as tf

    from modeling import ModelConfig, build_encoder

    d = tmp_path_factory.mktemp("gd")
    vocab_file, records, summary = H.write_tiny_pretraining_records(d, SEQ, PREDS)
    assert summary["instances"] > 100
    paths = {"dir": d, "vocab": vocab_file, "records": records,
             "teacher_config": _config(d / "teacher.json", 4, 64), "student_config": _config(d / "student.json", 2, 32)}
    tf.keras.utils.set_random_seed(0)
    teacher = build_encoder(ModelConfig.from_json_file(paths["teacher_config"]))
    paths["teacher"] = str(d / "teacher")
    tf.train.Checkpoint(encoder=teacher).save(os.path.join(paths["teacher"], "ckpt"))
    return paths


def _args(setup, out, steps, *extra):
    return [f"--bert_config_file={setup['student_config']}", f"--input_file={setup['records']}",
            f"--output_dir={out}", f"--max_seq_length={SEQ}",
            f"--max_predictions_per_seq={PREDS}", f"--teacher_config_file={setup['teacher_config']}",
            f"--teacher_checkpoint={setup['teacher']}", "--do_train", "--train_batch_size=16",
            "--learning_rate=5e-3", f"--num_train_steps={steps}", "--num_warmup_steps=3",
            "--save_checkpoints_steps=15", "--iterations_per_loop=5", "--log_steps=5", "--seed=1", *extra]


def _logs(stdout):
    out = []
    for m in re.finditer(r"^step (\d+)/\d+ (.*)$", stdout, re.M):
        out.append((int(m.group(1)), {k: float(v) for k, v in re.findall(r"(\w+)=([-\d.e+na]+)", m.group(2))}))
    return out


def test_general_distillation_trains_student_and_resumes(setup):
    import tensorflow as tf

    from modeling import ModelConfig, build_encoder
    from training.checkpointing import restore_encoder_weights

    teacher_files = {f: open(os.path.join(setup["teacher"], f), "rb").read() for f in os.listdir(setup["teacher"])}
    out = str(setup["dir"] / "student_out")
    r = _run(_args(setup, out, 20, "--distill_mlm"))
    assert r.returncode == 0, r.stderr[-3000:]
    logs = _logs(r.stdout)
    assert logs and logs[-1][0] == 20
    first, last = logs[0][1], logs[-1][1]
    for key in ("embedding_loss", "hidden_loss", "attention_loss", "masked_lm_loss", "masked_lm_accuracy", "loss"):
        assert key in first, first
    distill_first = first["embedding_loss"] + first["hidden_loss"] + first["attention_loss"]
    distill_last = last["embedding_loss"] + last["hidden_loss"] + last["attention_loss"]
    assert distill_last < 0.7 * distill_first, (first, last)

    # the teacher checkpoint is untouched; the student's checkpoint has no teacher and the DESIGN.md items
    assert {f: open(os.path.join(setup["teacher"], f), "rb").read() for f in os.listdir(setup["teacher"])} \
        == teacher_files
    latest = tf.train.latest_checkpoint(out)
    assert latest.endswith("ckpt-20")
    tops = {n.split("/")[0] for n, _ in tf.train.list_variables(latest)}
    assert {"encoder", "fit_dense", "mlm_head", "nsp_head", "optimizer", "global_step"} <= tops
    assert not any("teacher" in n for n, _ in tf.train.list_variables(latest))
    shapes = dict(tf.train.list_variables(latest))
    assert [s for n, s in shapes.items() if n.startswith("fit_dense/") and n.endswith("VARIABLE_VALUE")
            and len(s) == 2] == [[32, 64]]
    meta = json.load(open(os.path.join(out, "bertkit.json")))
    assert meta["general_distillation"]["teacher_hidden_size"] == 64
    student = build_encoder(ModelConfig.from_json_file(os.path.join(out, "bert_config.json")))
    assert student.num_layers == 2 and student.config.hidden_size == 32
    restore_encoder_weights(student, out)

    r = _run(_args(setup, out, 25, "--distill_mlm"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming from" in r.stdout and "global_step=25" in r.stdout
    assert tf.train.latest_checkpoint(out).endswith("ckpt-25")


def _error(r):
    assert r.returncode == 1, (r.stdout[-2000:], r.stderr[-2000:])
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and r.stderr.strip().endswith(lines[0]), r.stderr[-2000:]
    return lines[0]


def test_teacher_errors_are_one_line(setup):
    out = str(setup["dir"] / "bad")
    missing = str(setup["dir"] / "no_teacher")
    line = _error(_run(_args(setup, out, 5, f"--teacher_checkpoint={missing}")))
    assert line == f"error: --teacher_checkpoint={missing}: no such checkpoint"
    # a checkpoint not matching --teacher_config_file: same loader, tests/training/test_tinybert.py
