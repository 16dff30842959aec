"""run_pretraining.py --distillation=mobilebert end to end: a 2-layer tiny MobileBERT student learns from a tiny IB-BERT
teacher in 2 layer stages + pre-training distillation; a run killed (SIGKILL) after a checkpoint resumes in the right
stage at the right step; the checkpoints show what each stage froze (the copied teacher embeddings stay until the
last stage, a layer below the stage's is unchanged); the TensorBoard scalars carry the stage; bad pairs are one-line
errors."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from tests.data import test_pretraining_helpers as H
from training import mobilebert_transfer as mt

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "run_pretraining.py")
SEQ, PREDS, STAGE, TOTAL = 32, 5, 10, 40


def _env():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", PYTHONPATH=ROOT)
    env.pop("TF_CONFIG", None)
    return env


def _config(path, name, **kw):
    cfg = json.load(open(os.path.join(ROOT, "configs", name + ".json")))
    cfg.update(vocab_size=len(H.tiny_vocab_tokens()), num_hidden_layers=2, max_position_embeddings=64, **kw)
    with open(path, "w") as f:
        json.dump(cfg, f)
    return str(path)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from modeling import ModelConfig, build_pretraining_model

    d = tmp_path_factory.mktemp("mbt")
    vocab_file, records, _ = H.write_tiny_pretraining_records(d, SEQ, PREDS)
    paths = {"dir": d, "vocab": vocab_file, "records": records,
             "teacher_config": _config(d / "teacher.json", "tiny_ibbert"),
             "student_config": _config(d / "student.json", "tiny_mobilebert_student")}
    tf.keras.utils.set_random_seed(0)
    teacher = build_pretraining_model(ModelConfig.from_json_file(paths["teacher_config"]))
    paths["teacher"] = str(d / "teacher")
    tf.train.Checkpoint(encoder=teacher.encoder, mlm_head=teacher.mlm_head, nsp_head=teacher.nsp_head).save(
        os.path.join(paths["teacher"], "ckpt"))
    return paths


def _args(setup, out, *extra):
    return [sys.executable, SCRIPT, f"--bert_config_file={setup['student_config']}",
            f"--input_file={setup['records']}", f"--output_dir={out}", f"--max_seq_length={SEQ}",
            f"--max_predictions_per_seq={PREDS}", f"--teacher_config_file={setup['teacher_config']}",
            f"--teacher_checkpoint={setup['teacher']}", "--distillation=mobilebert", f"--steps_per_stage={STAGE}",
            "--do_train", "--train_batch_size=8", "--learning_rate=5e-3", f"--num_train_steps={TOTAL}",
            "--num_warmup_steps=2", "--save_checkpoints_steps=5", "--iterations_per_loop=5", "--log_steps=5",
            "--keep_checkpoint_max=20", "--seed=1", "--nodo_export", *extra]


def _parts(config_file, prefix):
    """{"embeddings" | "layer_i": [arrays]} of the encoder in checkpoint `prefix`, read through the object graph
    (variable names in a checkpoint depend on the shortest path, e.g. through the optimizer's variable list)."""
    from modeling import ModelConfig, build_pretraining_model

    model = build_pretraining_model(ModelConfig.from_json_file(config_file))
    tf.train.Checkpoint(encoder=model.encoder).read(prefix).expect_partial()
    enc = model.encoder
    out = {"embeddings": [v.numpy() for v in enc.embeddings.weights]}
    for i in range(enc.num_layers):
        out[f"layer_{i}"] = [v.numpy() for v in getattr(enc, f"layer_{i}").weights]
    return out


def _equal(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_killed_run_resumes_in_the_right_stage(setup):
    out = str(setup["dir"] / "student")
    cmd = _args(setup, out)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT)
    deadline = time.time() + 300
    while not os.path.exists(os.path.join(out, "ckpt-15.index")):  # inside layer stage 1
        if proc.poll() is not None:
            pytest.fail("run ended before it could be killed: " + proc.stderr.read()[-3000:])
        if time.time() > deadline:
            proc.kill()
            pytest.fail("no checkpoint within 300 s")
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    first_out = proc.communicate()[0]
    assert "copied the teacher's embeddings, mlm_head, nsp_head into the student" in first_out
    killed_at = mt.checkpoint_step(out)
    assert 15 <= killed_at < TOTAL
    expected = mt.stage_at(mt.stage_plan(2, None, STAGE, TOTAL), killed_at)

    r = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"resuming in stage {expected.index} at step {killed_at}" in r.stdout, r.stdout[-3000:]
    assert "copied the teacher" not in r.stdout
    assert f"(global step {killed_at})" in r.stdout
    described = [int(line.split()[1].rstrip(":")) for line in r.stdout.splitlines() if line.startswith("stage ")]
    assert described == list(range(expected.index, 3)), r.stdout[-3000:]
    assert mt.checkpoint_step(out) == TOTAL and "global_step=40" in r.stdout

    # what each stage froze, across the kill: the teacher's embeddings until the last stage, layer 1 in stage 0,
    # the embeddings and layer 0 in stage 1
    c = {s: _parts(setup["student_config"], os.path.join(out, f"ckpt-{s}")) for s in (5, 10, 15, 20, 40)}
    teacher = _parts(setup["teacher_config"], tf.train.latest_checkpoint(setup["teacher"]))
    for s in (5, 10, 15, 20):
        assert _equal(c[s]["embeddings"], teacher["embeddings"]), s
    assert not _equal(c[40]["embeddings"], teacher["embeddings"])
    assert _equal(c[5]["layer_1"], c[10]["layer_1"]) and not _equal(c[5]["layer_0"], c[10]["layer_0"])
    assert _equal(c[10]["layer_0"], c[20]["layer_0"]) and not _equal(c[10]["layer_1"], c[20]["layer_1"])
    assert not _equal(c[20]["layer_0"], c[40]["layer_0"]) and not _equal(c[20]["layer_1"], c[40]["layer_1"])

    # per-stage scalars (stdout and TensorBoard), and a student model directory
    logged = first_out + r.stdout
    for name in ("stage0_feature_map_loss", "stage1_attention_loss", "stage2_masked_lm_loss",
                 "stage2_next_sentence_accuracy"):
        assert f" {name}=" in logged, name
    tags = set()
    log_dir = os.path.join(out, "logs", "train")
    for f in os.listdir(log_dir):
        for event in tf.compat.v1.train.summary_iterator(os.path.join(log_dir, f)):
            tags |= {v.tag for v in event.summary.value}
    assert {"stage0_feature_map_loss", "stage1_feature_map_loss", "stage2_masked_lm_loss"} <= tags, sorted(tags)
    assert json.load(open(os.path.join(out, "bertkit.json")))["general_distillation"]["method"] == "mobilebert"
    tops = {n.split("/")[0] for n, _ in tf.train.list_variables(tf.train.latest_checkpoint(out))}
    assert {"encoder", "mlm_head", "nsp_head", "optimizer_stage2", "global_step"} <= tops
    assert not any("teacher" in n for n in tops)


def _error(r):
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and lines and lines[-1].startswith("error: "), r.stderr[-2000:]
    return lines[-1]


def test_bad_pairs_and_plans_are_one_line_errors(setup, tmp_path):
    bert_student = _config(tmp_path / "bert.json", "tiny_bert")
    r = subprocess.run(_args(setup, str(tmp_path / "a"), f"--bert_config_file={bert_student}"), capture_output=True,
                       text=True, env=_env(), cwd=ROOT, timeout=300)
    assert "needs a MobileBERT student" in _error(r)
    narrow = _config(tmp_path / "narrow.json", "tiny_mobilebert_student", hidden_size=48)
    r = subprocess.run(_args(setup, str(tmp_path / "b"), f"--bert_config_file={narrow}"), capture_output=True,
                       text=True, env=_env(), cwd=ROOT, timeout=300)
    assert "hidden_size is 64 in the teacher but 48 in the student" in _error(r)
    r = subprocess.run(_args(setup, str(tmp_path / "c"), "--num_train_steps=20"), capture_output=True, text=True,
                       env=_env(), cwd=ROOT, timeout=300)
    assert "--num_train_steps=20: must exceed the 2 layer stages" in _error(r)
    assert not os.path.exists(tmp_path / "c" / "bert_config.json")   # refused before anything was written
    r = subprocess.run(_args(setup, str(tmp_path / "d"), f"--init_checkpoint={setup['teacher']}"),
                       capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=300)
    assert "not used with --distillation=mobilebert" in _error(r)
