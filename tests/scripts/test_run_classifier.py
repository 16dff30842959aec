"""run_classifier.py in-process (absl FLAGS parsing + main) with a tiny BERT on the GLUE fixtures and a custom 3-class
task: metric keys per task, best checkpoint, resume, predictions equal to the in-memory model's, init from a
run_pretraining-style checkpoint, export, and one-line errors (one subprocess)."""
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GLUE = os.path.join(ROOT, "tests", "fixtures", "glue")
VOCAB = os.path.join(ROOT, "tests", "data_files", "bert_uncased_vocab.txt")
SEQ = 32


import bertkit_errors  # noqa: E402
from tests.scripts.classifier_helpers import run  # noqa: E402



@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    """configs/tiny_bert.json with the BERT uncased vocabulary's size."""
    with open(os.path.join(ROOT, "configs", "tiny_bert.json")) as f:
        cfg = json.load(f)
    cfg["vocab_size"] = 30522
    path = tmp_path_factory.mktemp("cfg") / "bert_config.json"
    path.write_text(json.dumps(cfg))
    return str(path)


def base(config_file, **kw):
    args = dict(vocab_file=VOCAB, bert_config_file=config_file, max_seq_length=SEQ, train_batch_size=2,
                eval_batch_size=2, predict_batch_size=3, learning_rate=1e-3, save_checkpoints_steps=1000, seed=1)
    args.update(kw)
    return args


def ckpt_steps(d):
    return sorted(int(f[5:-6]) for f in os.listdir(d) if f.startswith("ckpt-") and f.endswith(".index"))


# ----------------------------------------------------------------------------------------------------------------
# MRPC: a GLUE pair task, trained twice (resume)

@pytest.fixture(scope="module")
def mrpc(config_file, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("mrpc"))
    args = base(config_file, task_name="MRPC", data_dir=os.path.join(GLUE, "MRPC"), output_dir=out, do_train=True,
                do_eval=True, do_predict=True, num_train_epochs=2.0)
    log = run(**args)
    return out, args, log


def test_mrpc_trains_evaluates_and_writes_model_dir(mrpc):
    import tensorflow as tf

    from training.trainer import read_eval_results

    out, _, log = mrpc
    results = read_eval_results(os.path.join(out, "eval_results.txt"))
    assert {"accuracy", "f1", "acc_and_f1", "eval_loss", "global_step"} <= set(results)
    assert 0.0 <= results["accuracy"] <= 1.0 and np.isfinite(results["eval_loss"])
    # 3 training examples, batch 2, 2 epochs: ceil(3) steps; epochs end at steps 2 and 3, each checkpointed
    assert ckpt_steps(out) == [2, 3]
    assert "epoch 1/2 done at global step 2" in log and "epoch 2/2 done at global step 3" in log
    for name in ("bert_config.json", "vocab.txt", "bertkit.json", "task_meta.json", "train.tf_record",
                 "dev.tf_record", "test.tf_record", "test_results.tsv", "predictions.tsv"):
        assert os.path.isfile(os.path.join(out, name)), name
    assert os.listdir(os.path.join(out, "logs", "train")) and os.listdir(os.path.join(out, "logs", "eval"))
    with open(os.path.join(out, "bertkit.json")) as f:
        info = json.load(f)
    assert info["do_lower_case"] is True and info["max_seq_length"] == SEQ
    assert info["created_by"] == "run_classifier.py"
    tops = {name.split("/")[0] for name, _ in tf.train.list_variables(os.path.join(out, "ckpt-3"))}
    assert {"encoder", "classifier_head", "optimizer", "global_step"} <= tops

    best = json.load(open(os.path.join(out, "best", "best.json")))
    assert best["metric"] == "f1" and best["step"] in (2, 3)
    assert tf.train.latest_checkpoint(os.path.join(out, "best")).endswith(f"ckpt-{best['step']}")
    # the final evaluation is of the best checkpoint, and says so
    assert results["global_step"] == best["step"]
    assert f"using the best checkpoint {os.path.join(out, 'best', 'ckpt-' + str(best['step']))}" in log
    history = json.load(open(os.path.join(out, "eval_history.json")))
    assert set(history) == {"2", "3"}
    assert best["value"] == max(history[k]["f1"] for k in history)

    # test_results.tsv: 2 test rows of 2 probabilities; predictions.tsv: id (the index column), label, probability
    probs = np.loadtxt(os.path.join(out, "test_results.tsv"), delimiter="\t", ndmin=2)
    assert probs.shape == (2, 2) and np.allclose(probs.sum(1), 1.0, atol=1e-5)
    lines = open(os.path.join(out, "predictions.tsv")).read().splitlines()
    assert lines[0] == "id\tlabel\tprobability"
    rows = [line.split("\t") for line in lines[1:]]
    assert [r[0] for r in rows] == ["0", "1"]
    for r, p in zip(rows, probs):
        assert r[1] == str(int(np.argmax(p))) and abs(float(r[2]) - p.max()) < 1e-6


def test_mrpc_final_evaluation_reuses_the_best_checkpoints_results(mrpc):
    """The dev set is evaluated once per epoch, not again at the end; eval_results.txt holds the best checkpoint's
    results as recorded then, and the TensorBoard eval curve has one point per step, in order."""
    import re

    import tensorflow as tf

    from training.trainer import read_eval_results

    out, _, log = mrpc
    best = json.load(open(os.path.join(out, "best", "best.json")))
    assert len(re.findall(r"^eval dev: \d+ examples", log, re.M)) == 2  # after epochs 1 and 2 only
    assert f"eval: the results of step {best['step']} from eval_history.json" in log
    history = json.load(open(os.path.join(out, "eval_history.json")))
    results = read_eval_results(os.path.join(out, "eval_results.txt"))
    assert results == {k: float(v) for k, v in history[str(best["step"])].items()}
    assert {"num_examples", "global_step", "f1", "accuracy", "eval_loss"} <= set(results)
    steps = []
    for path in sorted(glob.glob(os.path.join(out, "logs", "eval", "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            steps += [event.step for v in event.summary.value if v.tag == "eval_loss"]
    assert steps == [2, 3]


def test_mrpc_rerun_resumes_without_training(mrpc):
    out, args, _ = mrpc
    before = {f: os.path.getmtime(os.path.join(out, f)) for f in os.listdir(out) if f.startswith("ckpt-")}
    log = run(**args)
    assert "reusing the records" in log
    assert "nothing to train" in log and "trained 0 steps" in log
    assert ckpt_steps(out) == [2, 3]
    assert {f: os.path.getmtime(os.path.join(out, f)) for f in os.listdir(out) if f.startswith("ckpt-")} == before


# ----------------------------------------------------------------------------------------------------------------
# STS-B: regression

def test_stsb_regression_metrics_and_scores(config_file, tmp_path):
    from training.trainer import read_eval_results

    out = str(tmp_path / "stsb")
    run(**base(config_file, task_name="STS-B", data_dir=os.path.join(GLUE, "STS-B"), output_dir=out, do_train=True,
               do_eval=True, do_predict=True, num_train_epochs=1.0))
    results = read_eval_results(os.path.join(out, "eval_results.txt"))
    assert {"pearson", "spearman", "eval_loss", "global_step"} <= set(results)
    assert "accuracy" not in results
    scores = np.loadtxt(os.path.join(out, "test_results.tsv"), delimiter="\t", ndmin=2)
    assert scores.shape == (2, 1)
    meta = json.load(open(os.path.join(out, "task_meta.json")))
    assert meta["is_regression"] is True
    best = json.load(open(os.path.join(out, "best", "best.json")))
    assert best["metric"] == "spearman"


# ----------------------------------------------------------------------------------------------------------------
# Custom 3-class task from --records_dir; prediction in a later run equals the in-memory model's; export

WORDS = {"red": "apple cherry ruby blood rose fire", "green": "grass leaf lime frog moss forest",
         "blue": "sky ocean sea water ice whale"}


def _write_custom(data_dir):
    os.makedirs(data_dir, exist_ok=True)
    rng = np.random.RandomState(0)
    for split, n in (("train", 18), ("dev", 9)):
        with open(os.path.join(data_dir, f"{split}.tsv"), "w") as f:
            f.write("uid\tsentence\tcolour\n")
            for i in range(n):
                label = list(WORDS)[i % 3]
                words = rng.choice(WORDS[label].split(), 4)
                f.write(f"{split}{i:03d}\tthe {' '.join(words)} thing\t{label}\n")
    # the test file is the dev file (labels present but unused), to compare predictions with evaluation
    with open(os.path.join(data_dir, "dev.tsv")) as fin, open(os.path.join(data_dir, "test.tsv"), "w") as fout:
        fout.write(fin.read())


@pytest.fixture(scope="module")
def custom(config_file, tmp_path_factory):
    from data import finetuning, processors
    from tokenization import FullTokenizer

    tmp = tmp_path_factory.mktemp("custom")
    data_dir, records, out = str(tmp / "data"), str(tmp / "records"), str(tmp / "out")
    _write_custom(data_dir)
    proc = processors.get_processor("custom", text_a_column="sentence", label_column="colour", id_column="uid")
    finetuning.write_task_records(proc, data_dir, FullTokenizer(VOCAB, do_lower_case=True), records, SEQ,
                                  vocab_file=VOCAB, do_lower_case=True)
    args = base(config_file, task_name="custom", records_dir=records, output_dir=out, learning_rate=2e-3)
    args.pop("max_seq_length")  # taken from the records
    args.pop("vocab_file")      # taken from the records' task_meta.json
    log = run(**args, do_train=True, do_eval=True, num_train_epochs=3.0)
    return {"data": data_dir, "records": records, "out": out, "args": args, "log": log}


def test_custom_train_eval(custom):
    from training.trainer import read_eval_results

    out = custom["out"]
    results = read_eval_results(os.path.join(out, "eval_results.txt"))
    assert {"accuracy", "macro_f1", "eval_loss", "global_step"} <= set(results)
    meta = json.load(open(os.path.join(out, "task_meta.json")))
    assert meta["labels"] == ["blue", "green", "red"]
    assert ckpt_steps(out) == [9, 18, 27]
    assert os.path.isfile(os.path.join(out, "vocab.txt"))


def test_custom_predict_later_run_matches_model(custom, config_file):
    import tensorflow as tf

    from data import pipeline
    from modeling import ModelConfig, build_classifier
    from training.trainer import read_eval_results

    out = custom["out"]
    log = run(**custom["args"], do_predict=True)
    assert "using the best checkpoint" in log
    probs = np.loadtxt(os.path.join(out, "test_results.tsv"), delimiter="\t", ndmin=2)
    assert probs.shape == (9, 3)

    # the best checkpoint loaded into a fresh classifier, on the dev records (= the test rows)
    best = json.load(open(os.path.join(out, "best", "best.json")))
    model = build_classifier(ModelConfig.from_json_file(config_file), 3)
    tf.train.Checkpoint(encoder=model.encoder, classifier_head=model.head).restore(
        os.path.join(out, "best", best["checkpoint"])).expect_partial()
    ds = pipeline.finetuning_dataset(os.path.join(custom["records"], "dev.tf_record"), SEQ, 4, is_training=False)
    logits, labels = [], []
    for batch in ds:
        logits.append(model({k: batch[k] for k in ("input_ids", "input_mask", "segment_ids")}).numpy())
        labels.append(batch["label_ids"].numpy().reshape(-1))
    logits, labels = np.concatenate(logits), np.concatenate(labels)
    expected = tf.nn.softmax(logits).numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-5)

    # predictions.tsv: the uid column, label names; its accuracy is the evaluation's (best checkpoint)
    rows = [line.split("\t") for line in open(os.path.join(out, "predictions.tsv")).read().splitlines()[1:]]
    assert [r[0] for r in rows] == [f"dev{i:03d}" for i in range(9)]
    names = ["blue", "green", "red"]
    assert [r[1] for r in rows] == [names[i] for i in expected.argmax(1)]
    results = read_eval_results(os.path.join(out, "eval_results.txt"))
    acc = float(np.mean(expected.argmax(1) == labels))
    assert abs(results["accuracy"] - acc) < 1e-9
    assert results["global_step"] == best["step"]


def test_custom_export(custom):
    import importlib.util

    if importlib.util.find_spec("serving.export") is None:
        pytest.skip("serving/export.py not there yet")
    log = run(**custom["args"], do_export=True)
    base_dir = os.path.join(custom["out"], "export")
    versions = [d for d in os.listdir(base_dir) if d.isdigit()]
    assert len(versions) == 1 and f"exported {os.path.join(base_dir, versions[0])}" in log
    assert os.path.isfile(os.path.join(base_dir, versions[0], "saved_model.pb"))


# ----------------------------------------------------------------------------------------------------------------
# --init_checkpoint: a run_pretraining-style bertkit model directory

def test_init_from_pretraining_model_dir(config_file, tmp_path):
    import tensorflow as tf

    from modeling import ModelConfig, build_encoder

    pre = tmp_path / "pretrain"
    pre.mkdir()
    config = ModelConfig.from_json_file(config_file)
    enc = build_encoder(config)
    rng = np.random.RandomState(3)
    for v in enc.variables:
        v.assign(rng.normal(0, 0.05, v.shape).astype(np.float32))
    tf.train.Checkpoint(encoder=enc).save(str(pre / "ckpt"))
    config.to_json_file(str(pre / "bert_config.json"))
    with open(VOCAB) as fin:
        (pre / "vocab.txt").write_text(fin.read())
    (pre / "bertkit.json").write_text(json.dumps({"do_lower_case": True, "created_by": "run_pretraining.py"}))

    out = str(tmp_path / "out")
    # no --bert_config_file / --vocab_file: they come from the model directory; learning rate 0 keeps the weights
    log = run(task_name="RTE", data_dir=os.path.join(GLUE, "RTE"), init_checkpoint=str(pre), output_dir=out,
              do_train=True, max_seq_length=SEQ, train_batch_size=2, num_train_epochs=1.0, learning_rate=0.0)
    assert f"initialised from {tf.train.latest_checkpoint(str(pre))}" in log
    # the fine-tuned checkpoint's encoder is the pretraining one, unchanged (learning rate 0); restored by object
    # graph (the saved key names of encoder variables may run through the optimizer's variable list)
    enc2 = build_encoder(config)
    status = tf.train.Checkpoint(encoder=enc2).restore(tf.train.latest_checkpoint(out))
    status.expect_partial().assert_existing_objects_matched()
    assert len(enc.trainable_variables) == len(enc2.trainable_variables) > 20
    for a, b in zip(enc.trainable_variables, enc2.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert json.load(open(os.path.join(out, "bert_config.json")))["vocab_size"] == 30522


# ----------------------------------------------------------------------------------------------------------------
# Errors

@pytest.fixture(scope="module")
def error_dirs(tmp_path_factory, custom):
    tmp = tmp_path_factory.mktemp("err")
    (tmp / "empty").mkdir()
    (tmp / "a_file").write_text("x")
    return tmp


def _error_cases(config_file, custom, tmp):
    mrpc = os.path.join(GLUE, "MRPC")
    common = dict(vocab_file=VOCAB, bert_config_file=config_file, output_dir=str(tmp / "o"), do_train=True)
    return [
        (dict(common, data_dir=mrpc), "--task_name: required"),
        (dict(common, task_name="nope", data_dir=mrpc), "nope"),
        (dict(common, task_name="MRPC", data_dir=str(tmp / "empty")), "train"),
        (dict(common, task_name="MRPC", data_dir=mrpc, max_seq_length=600), "max_position_embeddings"),
        (dict(common, task_name="custom", records_dir=custom["records"], max_seq_length=64),
         "max_seq_length 32"),
        (dict(common, task_name="MRPC", data_dir=mrpc, output_dir=str(tmp / "a_file" / "sub")), "--output_dir="),
        (dict(common, task_name="custom", data_dir=custom["data"], text_a_column="sentence", label_column="colour",
              labels="red,green,blue", init_checkpoint=custom["out"], max_seq_length=SEQ),
         "labels blue,green,red differ"),
        (dict(common, task_name="MRPC"), "--data_dir / --records_dir"),
    ]


def test_errors_in_process(config_file, custom, error_dirs):
    for args, expect in _error_cases(config_file, custom, error_dirs):
        with pytest.raises(bertkit_errors.UserError) as e:
            run(**args)
        assert expect in str(e.value), (args, str(e.value))


def test_error_is_one_line_and_exit_1(config_file, tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "run_classifier.py"), "--task_name=MRPC",
                           f"--data_dir={os.path.join(GLUE, 'MRPC')}", f"--vocab_file={VOCAB}",
                           f"--bert_config_file={config_file}", f"--output_dir={tmp_path / 'o'}", "--do_train",
                           "--max_seq_length=600"], capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: --max_seq_length=600: longer than")
    assert "Traceback" not in proc.stderr


# ----------------------------------------------------------------------------------------------------------------
# issue 19: a rerun into a finished model directory with other settings is refused before anything is written

def _snapshot(d):
    return {os.path.relpath(os.path.join(r, f), d): open(os.path.join(r, f), "rb").read()
            for r, _, files in os.walk(d) for f in files}


def test_rerun_with_other_settings_leaves_the_model_dir_alone(config_file, tmp_path):
    out = str(tmp_path / "rte")
    args = base(config_file, task_name="RTE", data_dir=os.path.join(GLUE, "RTE"), output_dir=out, do_train=True,
                do_eval=True, num_train_epochs=1.0)
    run(**args)
    before = _snapshot(out)
    assert "dev.tf_record" in before and "vocab.txt" in before
    cfg = json.load(open(config_file))
    cfg["num_hidden_layers"] = 1
    (tmp_path / "other_config.json").write_text(json.dumps(cfg))
    vocab = open(VOCAB, encoding="utf-8").read().split("\n")
    vocab[1000], vocab[1001] = vocab[1001], vocab[1000]
    (tmp_path / "other_vocab.txt").write_text("\n".join(vocab), encoding="utf-8")
    cases = [
        (dict(bert_config_file=str(tmp_path / "other_config.json")), "num_hidden_layers=1, but the model in"),
        (dict(vocab_file=str(tmp_path / "other_vocab.txt")), "first difference at line 1001"),
        (dict(do_lower_case=False), "--do_lower_case=False: the model in --output_dir="),
        (dict(max_seq_length=SEQ // 2), f"--max_seq_length={SEQ // 2}: the model in --output_dir="),
        (dict(task_name="MRPC", data_dir=os.path.join(GLUE, "MRPC")), "labels"),
        (dict(init_checkpoint=out), "is the same file as --init_checkpoint="),
    ]
    for change, expect in cases:
        with pytest.raises(bertkit_errors.UserError, match=expect):
            run(**{**args, "do_train": False, "do_predict": True, **change})
        assert _snapshot(out) == before, change
    # Same settings, the vocabulary at another path (content, not path): resumes as before.
    (tmp_path / "same_vocab.txt").write_bytes(open(VOCAB, "rb").read())
    run(**{**args, "vocab_file": str(tmp_path / "same_vocab.txt")})
    after = _snapshot(out)
    assert all(after[k] == before[k] for k in ("bert_config.json", "vocab.txt", "dev.tf_record"))
