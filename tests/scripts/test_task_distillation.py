"""run_classifier.py --teacher_checkpoint (TinyBERT task distillation) in-process: a 4-layer teacher fine-tuned by
run_classifier on a tiny 3-class task, a 2-layer narrower student initialised from a general-distillation-style
directory (encoder + fit_dense), stage intermediate then prediction; the teacher's files stay unchanged; a teacher
with another label order is a one-line error."""
import hashlib
import json
import os
import shutil

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VOCAB = os.path.join(ROOT, "tests", "data_files", "bert_uncased_vocab.txt")
SEQ = 32


import bertkit_errors  # noqa: E402
from tests.scripts.classifier_helpers import run  # noqa: E402

WORDS = {"red": "apple cherry ruby blood rose fire", "green": "grass leaf lime frog moss forest",
         "blue": "sky ocean sea water ice whale"}


def _config(tmp, name, **changes):
    with open(os.path.join(ROOT, "configs", "tiny_bert.json")) as f:
        cfg = json.load(f)
    cfg.update(vocab_size=30522, **changes)
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(cfg))
    return str(path)


def _write_data(data_dir):
    os.makedirs(data_dir, exist_ok=True)
    rng = np.random.RandomState(0)
    for split, n in (("train", 12), ("dev", 6)):
        with open(os.path.join(data_dir, f"{split}.tsv"), "w") as f:
            f.write("sentence\tcolour\n")
            for i in range(n):
                label = list(WORDS)[i % 3]
                f.write(f"the {' '.join(rng.choice(WORDS[label].split(), 4))} thing\t{label}\n")


def _digest(directory):
    out = {}
    for dirpath, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, directory)] = (hashlib.sha256(f.read()).hexdigest(), os.path.getmtime(path))
    return out


def _task(data_dir, **kw):
    args = dict(task_name="custom", data_dir=data_dir, text_a_column="sentence", label_column="colour",
                max_seq_length=SEQ, train_batch_size=4, eval_batch_size=4, learning_rate=1e-3, seed=1,
                num_train_epochs=1.0)
    args.update(kw)
    return args


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    import tensorflow as tf

    from modeling import ModelConfig, build_encoder, build_fit_dense

    tmp = tmp_path_factory.mktemp("td")
    data = str(tmp / "data")
    _write_data(data)
    teacher_cfg = _config(tmp, "teacher", num_hidden_layers=4)
    student_cfg = _config(tmp, "student", hidden_size=32, intermediate_size=64)
    teacher = str(tmp / "teacher")
    run(**_task(data, vocab_file=VOCAB, bert_config_file=teacher_cfg, output_dir=teacher, do_train=True,
                do_eval=True))
    # a general-distillation output directory: student encoder + fit_dense (32 -> 64)
    gd = tmp / "general"
    gd.mkdir()
    config = ModelConfig.from_json_file(student_cfg)
    encoder, fit_dense = build_encoder(config), build_fit_dense(config, 64)
    rng = np.random.RandomState(5)
    for v in fit_dense.variables:
        v.assign(rng.normal(0, 0.3, v.shape).astype(np.float32))
    tf.train.Checkpoint(encoder=encoder, fit_dense=fit_dense).save(str(gd / "ckpt"))
    config.to_json_file(str(gd / "bert_config.json"))
    shutil.copy(VOCAB, gd / "vocab.txt")
    (gd / "bertkit.json").write_text(json.dumps({"do_lower_case": True, "created_by": "run_pretraining.py"}))
    before = _digest(teacher)
    s1, s2 = str(tmp / "stage1"), str(tmp / "stage2")
    log1 = run(**_task(data, init_checkpoint=str(gd), teacher_checkpoint=teacher, distill_stage="intermediate",
                       output_dir=s1, do_train=True, do_eval=True))
    log2 = run(**_task(data, init_checkpoint=s1, teacher_checkpoint=teacher, distill_stage="prediction",
                       output_dir=s2, do_train=True, do_eval=True, temperature=2.0))
    return dict(tmp=tmp, data=data, teacher=teacher, gd=str(gd), s1=s1, s2=s2, log1=log1, log2=log2,
                before=before, fit_dense=[v.numpy() for v in fit_dense.variables], student_cfg=student_cfg)


def _tops(prefix):
    import tensorflow as tf

    return {name.split("/")[0] for name, _ in tf.train.list_variables(prefix)}


def test_intermediate_stage(dirs):
    import tensorflow as tf

    from training.trainer import read_eval_results

    s1, log = dirs["s1"], dirs["log1"]
    assert "teacher: bert 4 layers, hidden 64" in log
    assert "(with its fit_dense)" in log and "initialised from" in log
    # the intermediate losses are logged, no prediction loss
    steps = [line for line in log.splitlines() if line.startswith("step ")]
    assert steps and all("embedding_loss=" in line and "hidden_loss=" in line and "attention_loss=" in line
                         for line in steps)
    assert "prediction_loss" not in log
    # checkpoints hold fit_dense; no best/ (the head is untrained): the latest is used
    latest = tf.train.latest_checkpoint(s1)
    assert {"encoder", "classifier_head", "fit_dense", "optimizer", "global_step"} <= _tops(latest)
    assert not os.path.exists(os.path.join(s1, "best"))
    assert f"using the latest checkpoint {latest}" in log
    assert "accuracy" in read_eval_results(os.path.join(s1, "eval_results.txt"))
    info = json.load(open(os.path.join(s1, "bertkit.json")))
    assert info["task_distillation"]["stage"] == "intermediate"
    assert info["task_distillation"]["teacher_checkpoint"] == os.path.abspath(dirs["teacher"])
    # fit_dense was trained from the general-distillation values (loaded, then moved)
    from modeling import ModelConfig, build_fit_dense

    fd = build_fit_dense(ModelConfig.from_json_file(dirs["student_cfg"]), 64)
    tf.train.Checkpoint(fit_dense=fd).restore(latest).expect_partial().assert_existing_objects_matched()
    for new, old in zip(fd.variables, dirs["fit_dense"]):
        assert new.shape == old.shape
        assert 0 < np.abs(new.numpy() - old).max() < 0.1  # close to the loaded values, not a fresh init


def test_prediction_stage_and_student_loads_as_plain_classifier(dirs):
    import tensorflow as tf

    from modeling import ModelConfig, build_classifier
    from training.trainer import read_eval_results

    s2, log = dirs["s2"], dirs["log2"]
    assert f"initialised from {tf.train.latest_checkpoint(dirs['s1'])} (with its classifier head)" in log
    steps = [line for line in log.splitlines() if line.startswith("step ")]
    assert steps and all("prediction_loss=" in line for line in steps)
    assert "hidden_loss" not in log
    results = read_eval_results(os.path.join(s2, "eval_results.txt"))
    assert {"accuracy", "eval_loss", "global_step"} <= set(results)
    assert os.path.isfile(os.path.join(s2, "best", "best.json"))
    prefix = tf.train.latest_checkpoint(s2)
    assert "fit_dense" not in _tops(prefix)
    assert json.load(open(os.path.join(s2, "task_meta.json")))["labels"] == ["blue", "green", "red"]
    assert json.load(open(os.path.join(s2, "bert_config.json")))["hidden_size"] == 32
    info = json.load(open(os.path.join(s2, "bertkit.json")))["task_distillation"]
    assert info["stage"] == "prediction" and info["temperature"] == 2.0
    model = build_classifier(ModelConfig.from_json_file(os.path.join(s2, "bert_config.json")), 3)
    tf.train.Checkpoint(encoder=model.encoder, classifier_head=model.head).restore(
        prefix).expect_partial().assert_existing_objects_matched()


def test_teacher_files_unchanged(dirs):
    assert _digest(dirs["teacher"]) == dirs["before"]


def test_teacher_with_other_label_order_is_an_error(dirs):
    other = dirs["tmp"] / "teacher_other_order"
    shutil.copytree(dirs["teacher"], other)
    meta_path = other / "task_meta.json"
    meta = json.loads(meta_path.read_text())
    meta["labels"] = ["red", "green", "blue"]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(bertkit_errors.UserError) as e:
        run(**_task(dirs["data"], init_checkpoint=dirs["gd"], teacher_checkpoint=str(other),
                    output_dir=str(dirs["tmp"] / "bad"), do_train=True))
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"--teacher_checkpoint={other}: the teacher was trained with the same labels in another "
                          "order")


def test_distillation_flags_need_a_teacher(dirs):
    with pytest.raises(bertkit_errors.UserError, match="--distill_stage: only for task distillation"):
        run(**_task(dirs["data"], init_checkpoint=dirs["gd"], distill_stage="prediction",
                    output_dir=str(dirs["tmp"] / "bad2"), do_train=True))


def test_init_from_teacher_prunes_the_teacher(dirs):
    """--init_from_teacher: the student starts as the teacher cut to its shape (layers of the uniform mapping: 1, 3)."""
    import tensorflow as tf

    out = str(dirs["tmp"] / "pruned")
    log = run(**_task(dirs["data"], bert_config_file=dirs["student_cfg"], vocab_file=VOCAB, init_from_teacher=True,
                      teacher_checkpoint=dirs["teacher"], distill_stage="intermediate", output_dir=out,
                      do_train=True, learning_rate=1e-6))
    assert "initialised from the teacher, pruned: its layers [1, 3], hidden 64 -> 32, intermediate 128 -> 64" in log
    student = tf.train.load_checkpoint(tf.train.latest_checkpoint(out))
    teacher = tf.train.load_checkpoint(tf.train.latest_checkpoint(dirs["teacher"]))

    def var(reader, suffix):
        names = [n for n in reader.get_variable_to_shape_map() if n.startswith("encoder/") and n.endswith(suffix)
                 and "OPTIMIZER_SLOT" not in n]
        assert len(names) == 1, names
        return reader.get_tensor(names[0])

    s, t = var(student, "word_embeddings/.ATTRIBUTES/VARIABLE_VALUE"), var(teacher,
                                                                          "word_embeddings/.ATTRIBUTES/VARIABLE_VALUE")
    assert s.shape == (t.shape[0], 32)
    # each student column is one of the teacher's columns (three steps at lr 1e-6 move it by ~1e-6)
    distance = np.abs(s[:, :, None] - t[:, None, :]).max(axis=0)  # [32, 64]
    assert (distance.min(axis=1) < 1e-4).all()
    assert len(set(distance.argmin(axis=1))) == 32


def test_init_from_teacher_errors(dirs):
    with pytest.raises(bertkit_errors.UserError, match="--init_from_teacher / --init_checkpoint: not together"):
        run(**_task(dirs["data"], init_checkpoint=dirs["gd"], init_from_teacher=True,
                    teacher_checkpoint=dirs["teacher"], output_dir=str(dirs["tmp"] / "bad3"), do_train=True))
    wide = _config(dirs["tmp"], "wide", hidden_size=96, intermediate_size=64)
    with pytest.raises(bertkit_errors.UserError, match=r"^--init_from_teacher: pruning: the student's hidden_size "
                                                      r"\(96\) is larger than the teacher's \(64\)$"):
        run(**_task(dirs["data"], bert_config_file=wide, vocab_file=VOCAB, init_from_teacher=True,
                    teacher_checkpoint=dirs["teacher"], output_dir=str(dirs["tmp"] / "bad4"), do_train=True))
    assert not os.path.exists(dirs["tmp"] / "bad4" / "checkpoint")
