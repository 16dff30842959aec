"""training/tinybert.py: task distillation (student learns, teacher frozen, metric names per stage, regression),
general distillation network (trainable set, MLM head), teacher loading errors, label checks, augmentation sampling."""
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from bertkit_errors import UserError
from modeling import ModelConfig, build_classifier, build_encoder, build_fit_dense, build_pretraining_model
from training import distillation, tinybert
from training import trainer as trainer_lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VOCAB, SEQ, B = 60, 12, 8


def _config(layers, hidden, heads=2, **kw):
    cfg = json.load(open(os.path.join(ROOT, "configs", "tiny_bert.json")))
    cfg.update(vocab_size=VOCAB, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
               intermediate_size=2 * hidden, max_position_embeddings=32, hidden_dropout_prob=0.0,
               attention_probs_dropout_prob=0.0, **kw)
    return ModelConfig.from_dict(cfg)


def _features(seed=0, num_labels=3, regression=False):
    rng = np.random.RandomState(seed)
    lengths = rng.randint(5, SEQ + 1, size=B)
    mask = (np.arange(SEQ)[None, :] < lengths[:, None]).astype(np.int32)
    ids = rng.randint(5, VOCAB, size=(B, SEQ)).astype(np.int32) * mask
    labels = rng.rand(B, 1).astype(np.float32) if regression else rng.randint(0, num_labels, (B, 1)).astype(np.int32)
    return {"input_ids": ids, "input_mask": mask, "segment_ids": np.zeros_like(ids), "label_ids": labels,
            "is_real_example": np.ones([B, 1], np.int32)}


def _weights(model):
    return [v.numpy().copy() for v in model.weights]


@pytest.fixture(scope="module")
def pair():
    keras.utils.set_random_seed(0)
    teacher = build_classifier(_config(4, 48), 3)
    student = build_classifier(_config(2, 32), 3)
    k = teacher.head.dense.kernel
    k.assign(k * 40.0)  # a confident teacher: the soft cross-entropy starts well above its floor
    return student, teacher


def test_task_distillation_lowers_loss_and_keeps_teacher(pair):
    student, teacher = pair
    loss = distillation.DistillationLoss(32, 48, 2, 4, stage="both", hard_label_weight=0.1, temperature=2.0)
    net = tinybert.TaskDistillationNetwork(student, teacher, loss)
    names = tinybert.task_distillation_metric_names(loss)
    assert names == ["embedding_loss", "hidden_loss", "attention_loss", "prediction_loss", "hard_label_loss"]
    assert names == tinybert.task_distillation_metric_names("both", hard_label=True)
    trainer = trainer_lib.TrainerModel(net, tinybert.task_distillation_loss_fn(loss), names,
                                       trainable_variables_fn=net.student_trainable_variables)
    trainer.compile(optimizer=keras.optimizers.Adam(3e-3))
    feats = _features()
    ds = tf.data.Dataset.from_tensors(feats).repeat()
    trainer.build_for(ds.element_spec)
    train_ids = {id(v) for v in trainer._train_vars()}
    assert not train_ids & {id(v) for v in teacher.weights}
    assert id(loss.fit_dense.kernel) in train_ids
    before_teacher = _weights(teacher)
    out0 = net(feats, training=False)
    assert out0["logits"].shape == (B, 3)
    before = float(out0["total_loss"])
    history = trainer.fit(ds, epochs=1, steps_per_epoch=25, verbose=0, shuffle=False).history
    assert set(names) <= set(history)
    out1 = net(feats, training=False)
    assert float(out1["total_loss"]) < 0.7 * before
    assert float(out1["hidden_loss"]) < float(out0["hidden_loss"])
    assert float(out1["prediction_loss"]) < float(out0["prediction_loss"])
    for a, b in zip(before_teacher, _weights(teacher)):
        np.testing.assert_array_equal(a, b)


def test_stages_and_their_outputs(pair):
    student, teacher = pair
    feats = _features(1)
    inter = distillation.DistillationLoss(32, 48, 2, 4, stage="intermediate", attention_loss="none")
    out = tinybert.TaskDistillationNetwork(student, teacher, inter)(feats)
    loss, metrics = tinybert.task_distillation_loss_fn(inter)(feats, out)
    assert sorted(metrics) == sorted(tinybert.task_distillation_metric_names("intermediate", attention_loss=False))
    assert float(loss) == pytest.approx(float(out["embedding_loss"] + out["hidden_loss"]), rel=1e-5)

    pred = distillation.DistillationLoss(32, 48, 2, 4, stage="prediction", temperature=3.0)
    out = tinybert.TaskDistillationNetwork(student, teacher, pred)(feats)
    assert sorted(k for k in out if k != "logits") == ["prediction_loss", "total_loss"]
    t_logits = teacher(feats, training=False).numpy() / 3.0
    s_logits = out["logits"].numpy() / 3.0
    pt = np.exp(t_logits) / np.exp(t_logits).sum(-1, keepdims=True)
    log_ps = s_logits - np.log(np.exp(s_logits).sum(-1, keepdims=True))
    assert float(out["prediction_loss"]) == pytest.approx(-(pt * log_ps).sum(-1).mean(), rel=1e-4)
    with pytest.raises(UserError, match="--distill_stage"):
        tinybert.task_distillation_metric_names("all")


def test_regression_prediction_uses_mse():
    keras.utils.set_random_seed(1)
    student, teacher = build_classifier(_config(2, 32), 1), build_classifier(_config(2, 32), 1)
    feats = _features(2, regression=True)
    loss = distillation.DistillationLoss(32, 32, 2, 2, stage="prediction", is_regression=True, hard_label_weight=1.0)
    out = tinybert.TaskDistillationNetwork(student, teacher, loss)(feats)
    s, t = out["logits"].numpy()[:, 0], teacher(feats).numpy()[:, 0]
    assert float(out["prediction_loss"]) == pytest.approx(((s - t) ** 2).mean(), rel=1e-5)
    assert float(out["hard_label_loss"]) == pytest.approx(((s - feats["label_ids"][:, 0]) ** 2).mean(), rel=1e-5)


def test_check_teacher_labels():
    tinybert.check_teacher_labels(["a", "b"], ["a", "b"])
    with pytest.raises(UserError, match="--teacher_checkpoint: .*another order"):
        tinybert.check_teacher_labels(["b", "a"], ["a", "b"])
    with pytest.raises(UserError, match="different labels"):
        tinybert.check_teacher_labels(["a", "c"], ["a", "b"])


def test_general_distillation_network_and_teacher_errors(tmp_path):
    keras.utils.set_random_seed(2)
    t_cfg, s_cfg = _config(4, 48), _config(2, 32)
    teacher = build_encoder(t_cfg)
    tf.train.Checkpoint(encoder=teacher).save(str(tmp_path / "teacher" / "ckpt"))
    t_cfg.to_json_file(str(tmp_path / "teacher.json"))
    cfg, loaded = tinybert.load_teacher_encoder(str(tmp_path / "teacher.json"), str(tmp_path / "teacher"))
    assert not loaded.trainable and not loaded.trainable_variables
    np.testing.assert_array_equal(loaded.word_embeddings.numpy(), teacher.word_embeddings.numpy())

    _config(4, 40).to_json_file(str(tmp_path / "wrong.json"))
    with pytest.raises(UserError, match=r"^--teacher_checkpoint=.*teacher"):
        tinybert.load_teacher_encoder(str(tmp_path / "wrong.json"), str(tmp_path / "teacher"))
    with pytest.raises(UserError, match=r"^--teacher_checkpoint=.*no checkpoint"):
        tinybert.load_teacher_encoder(str(tmp_path / "teacher.json"), str(tmp_path / "missing"))

    student = build_pretraining_model(s_cfg)
    fit = build_fit_dense(s_cfg, 48)
    loss = distillation.DistillationLoss(32, 48, 2, 4, fit_dense=fit, attention_loss="kl")
    net = tinybert.GeneralDistillationNetwork(student, loaded, loss, distill_mlm=True)
    variables = {id(v) for v in net.student_trainable_variables()}
    assert id(fit.dense.kernel) in variables and not variables & {id(v) for v in loaded.weights}
    assert {id(v) for v in student.mlm_head.trainable_variables} <= variables
    assert not variables & {id(v) for v in student.nsp_head.weights}
    feats = _features(3)
    feats.update(masked_lm_positions=np.tile(np.array([[1, 2, 3]], np.int32), [B, 1]),
                 masked_lm_ids=np.full([B, 3], 7, np.int32), masked_lm_weights=np.ones([B, 3], np.float32))
    out = net(feats)
    total, metrics = tinybert.general_distillation_loss_fn(True)(feats, out)
    assert sorted(metrics) == sorted(tinybert.general_distillation_metric_names(loss, True))
    mlm = -np.log(tf.nn.softmax(out["mlm_logits"]).numpy()[..., 7]).mean()
    assert float(total) == pytest.approx(float(out["total_loss"]) + mlm, rel=1e-4)


def test_augment_words_sampling():
    words = ["a", "b", "c", "d"]
    cands = {0: ["x", "y"], 2: ["z"]}
    rows = tinybert.Augmenter.augment_words(words, cands, 400, 0.4, np.random.default_rng(0))
    assert len(rows) == 400
    split = [r.split(" ") for r in rows]
    assert all(s[1] == "b" and s[3] == "d" for s in split)
    assert {s[0] for s in split} == {"a", "x", "y"} and {s[2] for s in split} == {"c", "z"}
    rate = np.mean([s[0] != "a" for s in split] + [s[2] != "c" for s in split])
    assert 0.33 < rate < 0.47
    assert rows == tinybert.Augmenter.augment_words(words, cands, 400, 0.4, np.random.default_rng(0))
