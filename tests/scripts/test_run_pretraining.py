"""run_pretraining.py end to end on the BBC corpus with a tiny BERT: learning (MLM + NSP, MLM + SOP), resume after
SIGKILL, multi_worker_mirrored with two local workers, mirrored on CPU, and one-line errors for bad input.

The records are written here (same schema as create_pretraining_data.py: data/schema.py) from real BBC articles
tokenized with the BERT uncased vocabulary, restricted to the corpus' most frequent word pieces to keep the tiny
model's softmax small.
"""
import collections
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PY = sys.executable
SEQ, PREDS = 64, 10
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _env():
    env = dict(os.environ)
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["CUDA_VISIBLE_DEVICES"] = ""
    env.pop("TF_CONFIG", None)
    env["PYTHONPATH"] = ROOT
    return env


def _feature_int(values):
    import tensorflow as tf
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def _write_records(path, instances, vocab_size, seed):
    """instances: (tokens_a ids, tokens_b ids, label). Writes masked pre-training records (80/10/10)."""
    import tensorflow as tf

    rng = random.Random(seed)
    cls, sep, mask = 2, 3, 4
    with tf.io.TFRecordWriter(path) as writer:
        for a, b, label in instances:
            ids = [cls] + a + [sep] + b + [sep]
            segs = [0] * (len(a) + 2) + [1] * (len(b) + 1)
            cand = [i for i, t in enumerate(ids) if t not in (cls, sep)]
            n = min(PREDS, max(1, int(round(len(ids) * 0.15))))
            pos = sorted(rng.sample(cand, n))
            labels = [ids[p] for p in pos]
            for p in pos:
                r = rng.random()
                ids[p] = mask if r < 0.8 else (ids[p] if r < 0.9 else rng.randrange(5, vocab_size))
            pad = SEQ - len(ids)
            feats = {
                "input_ids": _feature_int(ids + [0] * pad), "input_mask": _feature_int([1] * len(ids) + [0] * pad),
                "segment_ids": _feature_int(segs + [0] * pad),
                "masked_lm_positions": _feature_int(pos + [0] * (PREDS - n)),
                "masked_lm_ids": _feature_int(labels + [0] * (PREDS - n)),
                "masked_lm_weights": tf.train.Feature(float_list=tf.train.FloatList(value=[1.0] * n + [0.0] * (PREDS - n))),
                "next_sentence_labels": _feature_int([label]),
            }
            writer.write(tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString())


def _instances(docs, task, rng):
    """NSP: label 1 = B is from another document; SOP: label 1 = A and B swapped. Pairs fill SEQ-3 tokens."""
    budget = SEQ - 3
    out = []
    for d, doc in enumerate(docs):
        chunk = []
        for sent in doc:
            chunk.append(sent)
            if sum(map(len, chunk)) < budget and sent is not doc[-1]:
                continue
            if len(chunk) >= 2:
                cut = rng.randrange(1, len(chunk))
                a = [t for s in chunk[:cut] for t in s]
                b = [t for s in chunk[cut:] for t in s]
                label = int(rng.random() < 0.5)
                if label and task == "nsp":
                    other = docs[(d + rng.randrange(1, len(docs))) % len(docs)]
                    start = rng.randrange(len(other))
                    b = [t for s in other[start:start + 3] for t in s]
                elif label:
                    a, b = b, a
                while len(a) + len(b) > budget:  # truncate the longer side, as the original
                    (a if len(a) > len(b) else b).pop()
                if a and b:
                    out.append((a, b, label))
            chunk = []
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """BBC articles -> vocab.txt (specials + the 1995 most frequent pieces), nsp/sop train + eval records."""
    from data.bbc import build_bbc
    from tokenization import FullTokenizer

    tmp = tmp_path_factory.mktemp("bbc")
    info = build_bbc(str(tmp))
    with open(info["corpus"], encoding="utf-8") as f:
        docs = [d.strip().split("\n") for d in f.read().split("\n\n") if d.strip()]
    rng = random.Random(7)
    rng.shuffle(docs)
    docs = docs[:240]
    tok = FullTokenizer(os.path.join(ROOT, "tests", "data_files", "bert_uncased_vocab.txt"), do_lower_case=True)
    flat = tok.tokenize_batch([s for d in docs for s in d])
    counts = collections.Counter(t for s in flat for t in s)
    pieces = [t for t, _ in counts.most_common(2000 - len(SPECIALS)) if t not in SPECIALS]
    vocab = SPECIALS + pieces
    index = {t: i for i, t in enumerate(vocab)}
    vocab_file = tmp / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    it = iter(flat)
    id_docs = [[[index.get(t, 1) for t in next(it)] for _ in d] for d in docs]
    id_docs = [[s for s in d if s] for d in id_docs]
    id_docs = [d for d in id_docs if len(d) >= 2]
    train_docs, eval_docs = id_docs[:200], id_docs[200:]
    paths = {}
    for task in ("nsp", "sop"):
        train = _instances(train_docs, task, random.Random(1)) + _instances(train_docs, task, random.Random(2))
        ev = _instances(eval_docs, task, random.Random(3))
        paths[task] = str(tmp / f"{task}_train.tfrecord")
        paths[task + "_eval"] = str(tmp / f"{task}_eval.tfrecord")
        _write_records(paths[task], train, len(vocab), seed=11)
        _write_records(paths[task + "_eval"], ev, len(vocab), seed=12)
        paths[task + "_count"] = len(train)
    config = json.load(open(os.path.join(ROOT, "configs", "tiny_bert.json")))
    config.update(vocab_size=len(vocab), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=128, max_position_embeddings=SEQ)
    paths["config"] = str(tmp / "bert_config.json")
    json.dump(config, open(paths["config"], "w"))
    paths["vocab"] = str(vocab_file)
    paths["dir"] = str(tmp)
    return paths


def _cmd(corpus, out, task="nsp", steps=300, **extra):
    args = {
        "bert_config_file": corpus["config"], "input_file": corpus[task], "output_dir": out,
        "vocab_file": corpus["vocab"], "max_seq_length": SEQ, "max_predictions_per_seq": PREDS,
        "train_batch_size": 32, "eval_batch_size": 32, "learning_rate": 2e-3, "num_train_steps": steps,
        "num_warmup_steps": steps // 10, "save_checkpoints_steps": 100, "iterations_per_loop": 20,
        "max_eval_steps": 20, "seed": 3, "log_steps": 20, "do_export": False,
    }
    args.update(extra)
    cmd = [PY, os.path.join(ROOT, "run_pretraining.py")]
    for k, v in args.items():
        if isinstance(v, bool):
            cmd.append(f"--{k}" if v else f"--no{k}")
        elif v is not None:
            cmd.append(f"--{k}={v}")
    return cmd


def _run(cmd, timeout=600, env=None):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env or _env(), cwd=ROOT)


def _logged(stdout, key):
    """[(step, value)] of `key` from the 'step N/M key=value ...' log lines."""
    out = []
    for line in stdout.splitlines():
        if line.startswith("step ") and f" {key}=" in line:
            step = int(line.split()[1].split("/")[0])
            out.append((step, float(line.split(f" {key}=")[1].split()[0])))
    return out


def _eval_results(out):
    from training.trainer import read_eval_results
    return read_eval_results(os.path.join(out, "eval_results.txt"))


def _ckpt_step(out):
    import tensorflow as tf
    latest = tf.train.latest_checkpoint(out)
    return int(tf.train.load_checkpoint(latest).get_tensor("global_step/.ATTRIBUTES/VARIABLE_VALUE"))


def test_nsp_pretraining_learns_and_writes_model_dir(corpus, tmp_path):
    out = str(tmp_path / "nsp")
    r = _run(_cmd(corpus, out, "nsp", steps=300, do_train=True, do_eval=True,
                  eval_input_file=corpus["nsp_eval"], do_export=True))
    assert r.returncode == 0, r.stderr[-3000:]
    mlm = _logged(r.stdout, "masked_lm_loss")
    assert mlm[0][0] <= 40 and mlm[-1][0] == 300, mlm
    # ln(2000) = 7.6 at the start; unigram statistics alone bring it to ~6, context below that.
    assert mlm[-1][1] < mlm[0][1] - 1.5, mlm
    res = _eval_results(out)
    assert set(res) >= {"global_step", "loss", "masked_lm_accuracy", "masked_lm_loss", "next_sentence_accuracy",
                        "next_sentence_loss"}
    assert res["global_step"] == 300
    assert res["masked_lm_loss"] < 6.0, res
    # The tiny model is still on the MLM unigram plateau after 300 steps, where NSP accuracy stays near chance; what
    # can be asserted is that the NSP head trains (its loss falls from the initial value to <= ln 2 + 0.002).
    nsp = _logged(r.stdout, "next_sentence_loss")
    assert res["next_sentence_loss"] < nsp[0][1] and res["next_sentence_loss"] < 0.6952, (nsp, res)
    assert 0.0 <= res["next_sentence_accuracy"] <= 1.0
    for name in ("bert_config.json", "vocab.txt", "bertkit.json", "checkpoint"):
        assert os.path.exists(os.path.join(out, name)), name
    meta = json.load(open(os.path.join(out, "bertkit.json")))
    assert meta["do_lower_case"] is True and meta["max_seq_length"] == SEQ
    assert os.listdir(os.path.join(out, "logs", "train")) and os.listdir(os.path.join(out, "logs", "eval"))
    import tensorflow as tf
    names = {n.split("/")[0] for n, _ in tf.train.list_variables(tf.train.latest_checkpoint(out))}
    assert {"encoder", "mlm_head", "nsp_head", "optimizer", "global_step"} <= names
    # The encoder is exported as a raw-text SavedModel, vocabulary as an asset.
    assert os.listdir(os.path.join(out, "export")) == ["1"]
    assert os.path.exists(os.path.join(out, "export", "1", "saved_model.pb"))
    assert os.path.exists(os.path.join(out, "export", "1", "assets", "vocab.txt"))


def test_sop_pretraining_trains_sentence_order(corpus, tmp_path):
    out = str(tmp_path / "sop")
    r = _run(_cmd(corpus, out, "sop", steps=300, do_train=True, do_eval=True, sentence_order_prediction=True,
                  eval_input_file=corpus["sop_eval"]))
    assert r.returncode == 0, r.stderr[-3000:]
    res = _eval_results(out)
    assert "sentence_order_accuracy" in res and "next_sentence_accuracy" not in res
    mlm = _logged(r.stdout, "masked_lm_loss")
    assert mlm[-1][1] < mlm[0][1] - 1.5, mlm
    sop = _logged(r.stdout, "sentence_order_loss")
    assert res["sentence_order_loss"] < sop[0][1] and res["sentence_order_loss"] < 0.6952, (sop, res)


def test_resume_after_sigkill_ends_at_same_step(corpus, tmp_path):
    out = str(tmp_path / "resume")
    cmd = _cmd(corpus, out, "nsp", steps=200, do_train=True, save_checkpoints_steps=50, iterations_per_loop=10,
               log_steps=10)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT)
    deadline = time.time() + 300
    while time.time() < deadline:
        if os.path.exists(os.path.join(out, "ckpt-50.index")):
            break
        if proc.poll() is not None:
            pytest.fail("run ended before it could be killed: " + proc.stderr.read()[-2000:])
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("no checkpoint within 300 s")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = _ckpt_step(out)
    assert 50 <= killed_at < 200
    r = _run(cmd)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"global step {killed_at})" in r.stdout  # resumed, did not start from 0
    first_logged = _logged(r.stdout, "loss")[0][0]
    assert first_logged > killed_at
    assert _ckpt_step(out) == 200
    # a third run has nothing left to do
    r = _run(cmd)
    assert r.returncode == 0 and "nothing to train" in r.stdout


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_multi_worker_mirrored_two_local_workers_identical(corpus, tmp_path):
    out = str(tmp_path / "mwms")
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    cmd = _cmd(corpus, out, "nsp", steps=40, do_train=True, distribution_strategy="multi_worker_mirrored",
               save_checkpoints_steps=20, iterations_per_loop=10, log_steps=10)
    procs = []
    for i in range(2):
        env = _env()
        env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                      cwd=ROOT))
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (so, se) in zip(procs, outs):
        assert p.returncode == 0, se[-3000:]
    import tensorflow as tf
    chief = tf.train.load_checkpoint(tf.train.latest_checkpoint(out))
    worker_dir = os.path.join(out, ".worker_tmp", "worker_1")
    worker = tf.train.load_checkpoint(tf.train.latest_checkpoint(worker_dir))
    names = [n for n in chief.get_variable_to_shape_map() if n.startswith(("encoder/", "mlm_head/", "nsp_head/"))]
    assert len(names) > 10
    for n in names:
        np.testing.assert_array_equal(chief.get_tensor(n), worker.get_tensor(n), err_msg=n)
    assert chief.get_tensor("global_step/.ATTRIBUTES/VARIABLE_VALUE") == 40
    # the replicas really trained the same model jointly: weights moved from the initialisation
    assert "training done: global_step=40" in outs[0][0]


def test_mirrored_on_cpu_with_accumulation(corpus, tmp_path):
    out = str(tmp_path / "mirrored")
    r = _run(_cmd(corpus, out, "nsp", steps=20, do_train=True, distribution_strategy="mirrored",
                  gradient_accumulation_steps=2, save_checkpoints_steps=10, iterations_per_loop=5, log_steps=5,
                  dynamic_masking=True))
    assert r.returncode == 0, r.stderr[-3000:]
    assert _ckpt_step(out) == 20


@pytest.mark.parametrize("change,expect", [
    ({"input_file": "/nonexistent/*.tfrecord"}, "--input_file=/nonexistent/*.tfrecord: no file matches"),
    ({"max_seq_length": 32}, "records have max_seq_length 64, but --max_seq_length=32"),
    ({"max_predictions_per_seq": 20}, "records have max_predictions_per_seq 10, but --max_predictions_per_seq=20"),
    ({"bert_config_file": None}, "--bert_config_file: required"),
    ({"output_dir": "/proc/forbidden"}, "--output_dir=/proc/forbidden"),
    ({"gradient_accumulation_steps": 3}, "--gradient_accumulation_steps=3"),
])
def test_bad_input_one_line_error(corpus, tmp_path, change, expect):
    args = dict(do_train=True, steps=5)
    cmd = _cmd(corpus, str(tmp_path / "bad"), "nsp", **args)
    for k, v in change.items():
        cmd = [c for c in cmd if not c.startswith(f"--{k}=")]
        if v is not None:
            cmd.append(f"--{k}={v}")
    r = _run(cmd)
    assert r.returncode == 1, r.stderr[-2000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and expect in last, r.stderr[-2000:]


def test_init_checkpoint_shape_mismatch_names_variable(corpus, tmp_path):
    """A checkpoint from a wider model: the error names the variable and both shapes."""
    import tensorflow as tf

    from modeling import ModelConfig, build_pretraining_model

    cfg = json.load(open(corpus["config"]))
    cfg["intermediate_size"] = 96
    wide = tmp_path / "wide.json"
    wide.write_text(json.dumps(cfg))
    model = build_pretraining_model(ModelConfig.from_json_file(str(wide)))
    prefix = tf.train.Checkpoint(encoder=model.encoder).save(str(tmp_path / "init" / "ckpt"))
    r = _run(_cmd(corpus, str(tmp_path / "out"), "nsp", steps=5, do_train=True, init_checkpoint=prefix))
    assert r.returncode == 1, r.stderr[-2000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: --init_checkpoint={prefix}: variable ") and "intermediate" in last, last
    assert "has shape (128,) in the model but (96,) in the checkpoint" in last or \
        "has shape (64, 128) in the model but (64, 96) in the checkpoint" in last, last


def _snapshot(d):
    return {os.path.relpath(os.path.join(r, f), d): open(os.path.join(r, f), "rb").read()
            for r, _, files in os.walk(d) for f in files}


def test_rerun_with_other_settings_leaves_the_model_dir_alone(corpus, tmp_path):
    """issue 19: a rerun with another config overwrote bert_config.json before the restore failed; now a difference
    is refused before anything is written (lower-casing and length: test_run_classifier, same check_rerun)."""
    out = str(tmp_path / "out")
    r = _run(_cmd(corpus, out, "nsp", steps=2, do_train=True))
    assert r.returncode == 0, r.stderr[-3000:]
    before = _snapshot(out)
    other_config = json.load(open(corpus["config"]))
    other_config["intermediate_size"] = 96
    (tmp_path / "other_config.json").write_text(json.dumps(other_config))
    vocab = open(corpus["vocab"], encoding="utf-8").read().split("\n")
    vocab[10], vocab[11] = vocab[11], vocab[10]
    (tmp_path / "other_vocab.txt").write_text("\n".join(vocab), encoding="utf-8")
    for change, expect in ((dict(bert_config_file=str(tmp_path / "other_config.json")),
                            "intermediate_size=96, but the model in --output_dir="),
                           (dict(vocab_file=str(tmp_path / "other_vocab.txt")),
                            "not the vocabulary the model in --output_dir="),
                           (dict(init_checkpoint=out), "is the same file as --init_checkpoint=")):
        r = _run(_cmd(corpus, out, "nsp", steps=4, do_train=True, **change))
        last = r.stderr.strip().splitlines()[-1]
        assert r.returncode == 1 and last.startswith("error: ") and expect in last, (change, r.stderr[-3000:])
        assert "Traceback" not in r.stderr
        assert _snapshot(out) == before, change
    # The same settings (a copy of the vocabulary at another path: content, not path) still resume.
    (tmp_path / "same_vocab.txt").write_bytes(open(corpus["vocab"], "rb").read())
    r = _run(_cmd(corpus, out, "nsp", steps=4, do_train=True, vocab_file=str(tmp_path / "same_vocab.txt")))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "(global step 2)" in r.stdout and "training done: global_step=4" in r.stdout, r.stdout[-3000:]
