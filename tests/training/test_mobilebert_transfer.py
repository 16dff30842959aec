"""training/mobilebert_transfer.py: the three losses against hand-computed values, the stage plan, the teacher copy,
and which variables each stage trains (checked by what one optimizer step changes)."""
import math

import numpy as np
import pytest
import tensorflow as tf

import bertkit_errors
from modeling import ModelConfig, build_pretraining_model
from training import mobilebert_transfer as mt

V, T = 40, 8


# ------------------------------------------------------------------------------------------------ losses
def test_feature_map_loss_by_hand():
    t = np.array([[[1.0, 2.0], [3.0, 4.0]]])
    s = np.array([[[1.0, 0.0], [0.0, 4.0]]])
    # token 0: (0^2 + 2^2) / 2 = 2; token 1: (3^2 + 0^2) / 2 = 4.5
    assert float(mt.feature_map_loss(t, s, np.array([[1, 1]]))) == pytest.approx(3.25)
    assert float(mt.feature_map_loss(t, s, np.array([[1, 0]]))) == pytest.approx(2.0)  # padding left out


def test_attention_transfer_loss_by_hand():
    # one head, two real tokens and one padded key/query (its scores must not matter)
    t = np.array([[[[0.0, math.log(3.0), 5.0], [0.0, 0.0, -2.0], [7.0, 1.0, 3.0]]]])
    s = np.array([[[[0.0, 0.0, -4.0], [0.0, 0.0, 9.0], [0.0, 2.0, 1.0]]]])
    mask = np.array([[1, 1, 0]])
    # query 0: teacher [1/4, 3/4], student [1/2, 1/2]: KL = 1/4 ln(1/2) + 3/4 ln(3/2); query 1: equal -> 0
    kl0 = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    assert float(mt.attention_transfer_loss(t, s, mask)) == pytest.approx(kl0 / 2, rel=1e-5)
    # two heads: the mean over heads
    t2, s2 = np.concatenate([t, t], axis=1), np.concatenate([s, t], axis=1)
    assert float(mt.attention_transfer_loss(t2, s2, mask)) == pytest.approx(kl0 / 4, rel=1e-5)
    assert float(mt.attention_transfer_loss(t, t, mask)) == pytest.approx(0.0, abs=1e-7)


def test_pretraining_distillation_loss_by_hand():
    student = np.log(np.array([[[1.0, 2.0, 1.0], [5.0, 1.0, 1.0]]]))       # probabilities [1/4, 1/2, 1/4], ...
    teacher = np.log(np.array([[[1.0, 1.0, 2.0], [1.0, 1.0, 1.0]]]))       # [1/4, 1/4, 1/2]
    labels, weights = np.array([[1, 0]]), np.array([[1.0, 0.0]])           # the second position is padding
    # alpha 0.5: target [1/8, 5/8, 1/4]; CE = -(1/8 ln 1/4 + 5/8 ln 1/2 + 1/4 ln 1/4)
    expected = -(0.125 * math.log(0.25) + 0.625 * math.log(0.5) + 0.25 * math.log(0.25))
    loss, per_position = mt.pretraining_distillation_loss(student, teacher, labels, weights, alpha=0.5)
    assert float(loss) == pytest.approx(expected / (1 + 1e-5), rel=1e-5)
    assert float(per_position[0, 0]) == pytest.approx(expected, rel=1e-5)
    hard, _ = mt.pretraining_distillation_loss(student, teacher, labels, weights, alpha=1.0)   # plain MLM
    assert float(hard) == pytest.approx(math.log(2) / (1 + 1e-5), rel=1e-5)
    # temperature 2 softens the teacher: softmax(ln[1,1,2] / 2) = [1, 1, sqrt 2] / (2 + sqrt 2)
    soft, _ = mt.pretraining_distillation_loss(student, teacher, labels, weights, alpha=0.0, temperature=2.0)
    q = np.array([1.0, 1.0, math.sqrt(2)]) / (2 + math.sqrt(2))
    assert float(soft) == pytest.approx(-(q * np.log([0.25, 0.5, 0.25])).sum() / (1 + 1e-5), rel=1e-5)


# ------------------------------------------------------------------------------------------------ stages
def test_stage_plan_and_stage_at():
    plan = mt.stage_plan(4, None, 10, 65)
    assert [(s.index, s.start, s.end, s.layers) for s in plan] == [
        (0, 0, 10, (0, 1)), (1, 10, 20, (1, 2)), (2, 20, 30, (2, 3)), (3, 30, 40, (3, 4)), (4, 40, 65, None)]
    assert [mt.stage_at(plan, step).index for step in (0, 9, 10, 19, 20, 39, 40, 64, 65, 99)] == \
        [0, 0, 1, 1, 2, 3, 4, 4, 4, 4]
    grouped = mt.stage_plan(4, 2, 10, 30)
    assert [s.layers for s in grouped] == [(0, 2), (2, 4), None]
    assert "layers 2-3" in mt.describe(grouped[1]) and "layers 0-1 frozen" in mt.describe(grouped[1])
    for args, match in (((4, 5, 10, 100), "num_progressive_stages=5"), ((4, None, 10, 40), "num_train_steps=40"),
                        ((4, None, 0, 40), "steps_per_stage=0")):
        with pytest.raises(bertkit_errors.UserError, match=match):
            mt.stage_plan(*args)


def _configs():
    student = ModelConfig(model_type="mobilebert", vocab_size=V, hidden_size=32, num_hidden_layers=3,
                          num_attention_heads=2, intermediate_size=32, embedding_size=16, intra_bottleneck_size=16,
                          num_feedforward_networks=2, max_position_embeddings=16, attention_probs_dropout_prob=0.0,
                          classifier_activation=False, initializer_range=0.2)  # peaked attention: real gradients
    teacher = student.replace(intra_bottleneck_size=64, true_hidden_size=64, intermediate_size=96,
                              key_query_shared_bottleneck=False, num_feedforward_networks=1,
                              normalization_type="layer_norm", hidden_act="gelu")
    return student, teacher


def _batch(batch=4):
    rng = np.random.default_rng(0)
    ids = rng.integers(5, V, size=(batch, T)).astype(np.int32)
    mask = np.ones((batch, T), np.int32)
    mask[1, 5:] = 0
    return {"input_ids": ids, "input_mask": mask, "segment_ids": np.zeros((batch, T), np.int32),
            "masked_lm_positions": np.tile(np.array([[1, 2, 3]], np.int32), (batch, 1)),
            "masked_lm_ids": rng.integers(5, V, size=(batch, 3)).astype(np.int32),
            "masked_lm_weights": np.ones((batch, 3), np.float32),
            "next_sentence_labels": rng.integers(0, 2, size=(batch, 1)).astype(np.int32)}


@pytest.fixture(scope="module")
def pair():
    tf.keras.utils.set_random_seed(3)
    student_config, teacher_config = _configs()
    mt.check_pair(student_config, teacher_config)
    student, teacher = build_pretraining_model(student_config), build_pretraining_model(teacher_config)
    teacher.has_nsp_head = True
    return student, teacher


def _snapshot(model):
    """{"<part>:<n>": value} over the parts of a PretrainingModel (variable paths are not unique across layers)."""
    parts = [("embeddings", model.encoder.embeddings), ("mlm_head", model.mlm_head), ("nsp_head", model.nsp_head)]
    parts += [(f"layer_{i}", getattr(model.encoder, f"layer_{i}")) for i in range(model.encoder.num_layers)]
    out = {f"{name}:{n}": v.numpy().copy() for name, part in parts for n, v in enumerate(part.weights)}
    assert len(out) == len({id(v) for v in model.weights})   # every variable is in exactly one part
    return out


def _key_biases(model, layers):
    out = set()
    for i in layers:
        block = getattr(model.encoder, f"layer_{i}")
        out |= {f"layer_{i}:{n}" for n, v in enumerate(block.weights) if v is block.key.bias}
    assert len(out) == len(layers)
    return out


def _same_up_to_key_bias(changed, expected, model, layers):
    """changed == expected, except that a key bias may stay put: its gradient is ~0 (it adds the same q.b to every
    key's score of a query, which the softmax ignores)."""
    return changed <= expected and expected - changed <= _key_biases(model, layers)


def _one_step(stage, student, teacher):
    trainer = mt.build_stage_trainer(stage, student, teacher, learning_rate=1e-2, num_warmup_steps=0)
    data = tf.data.Dataset.from_tensors(_batch()).repeat()
    trainer.build_for(data.element_spec)
    before_s, before_t = _snapshot(student), _snapshot(teacher)
    logs = trainer.fit(data, epochs=1, steps_per_epoch=1, verbose=0).history
    after_s, after_t = _snapshot(student), _snapshot(teacher)
    assert before_t.keys() == after_t.keys() and all(np.array_equal(before_t[k], after_t[k]) for k in before_t)
    changed = {k for k in before_s if not np.array_equal(before_s[k], after_s[k])}
    return changed, set(before_s), logs


def test_copy_from_teacher(pair):
    student, teacher = pair
    assert mt.copy_from_teacher(teacher, student) == ["embeddings", "mlm_head", "nsp_head"]
    for src, dst in ((teacher.encoder.embeddings, student.encoder.embeddings), (teacher.mlm_head, student.mlm_head),
                     (teacher.nsp_head, student.nsp_head)):
        for a, b in zip(src.weights, dst.weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    other = build_pretraining_model(_configs()[0].replace(embedding_size=8))
    with pytest.raises(bertkit_errors.UserError, match="the teacher's embeddings shapes"):
        mt.copy_from_teacher(teacher, other)


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_layer_stage_trains_exactly_its_layer(pair, layer):
    student, teacher = pair
    plan = mt.stage_plan(3, None, 5, 20)
    changed, everything, logs = _one_step(plan[layer], student, teacher)
    mine = {k for k in everything if k.startswith(f"layer_{layer}:")}
    assert mine and _same_up_to_key_bias(changed, mine, student, [layer]), (sorted(changed ^ mine))
    assert logs[f"stage{layer}_feature_map_loss"][0] > 0 and logs[f"stage{layer}_attention_loss"][0] > 0


def test_grouped_stage_trains_its_group(pair):
    student, teacher = pair
    plan = mt.stage_plan(3, 2, 5, 20)
    assert [s.layers for s in plan] == [(0, 2), (2, 3), None]
    changed, everything, _ = _one_step(plan[0], student, teacher)   # layers 0-1 of 3
    mine = {k for k in everything if k.startswith(("layer_0:", "layer_1:"))}
    assert _same_up_to_key_bias(changed, mine, student, [0, 1]), sorted(changed ^ mine)


def test_final_stage_trains_the_whole_student(pair):
    student, teacher = pair
    plan = mt.stage_plan(3, None, 5, 20)
    changed, everything, logs = _one_step(plan[-1], student, teacher)
    # embeddings, every layer, MLM and NSP heads
    assert _same_up_to_key_bias(changed, everything, student, [0, 1, 2]), sorted(changed ^ everything)
    assert {"stage3_masked_lm_loss", "stage3_masked_lm_accuracy", "stage3_next_sentence_loss"} <= set(logs)
