import numpy as np
import pytest
import tensorflow as tf
import keras

from training import fastbert as fb
from training import fastbert_speed as fs

H, LAYERS, LABELS, VOCAB, T = 8, 3, 3, 20, 5


class ToyEncoder(keras.Model):
    """Implements the DESIGN.md layer-by-layer encoder contract with one masked single-head attention per layer."""

    def __init__(self):
        super().__init__(name="toy_encoder")
        self.num_layers = LAYERS
        self.emb = keras.layers.Embedding(VOCAB, H, name="word_embeddings")
        self.seg = keras.layers.Embedding(2, H, name="segment_embeddings")
        self._layers = []
        for i in range(LAYERS):
            d = keras.layers.Dense(H, name=f"layer_{i}")
            setattr(self, f"layer_{i}", d)
            self._layers.append(d)
        self.pooler = keras.layers.Dense(H, activation="tanh", name="pooler")

    def embed(self, inputs, training=False):
        h = self.emb(inputs["input_ids"]) + self.seg(inputs["segment_ids"])
        mask = tf.cast(inputs["input_mask"], tf.float32)
        return h, (1.0 - mask)[:, None, None, :] * -10000.0

    def run_layer(self, i, h, mask_bias, training=False):
        scores = tf.einsum("btd,bsd->bts", h, h)[:, None] / np.sqrt(H)  # [B, 1, T, T], before the mask
        probs = tf.nn.softmax(scores + mask_bias, axis=-1)[:, 0]
        return h + tf.tanh(self._layers[i](tf.einsum("bts,bsd->btd", probs, h))), scores

    def pool(self, sequence_output):
        return self.pooler(sequence_output[:, 0])

    def call(self, inputs, training=False):
        h, mb = self.embed(inputs, training)
        for i in range(self.num_layers):
            h, _ = self.run_layer(i, h, mb, training)
        return {"sequence_output": h, "pooled_output": self.pool(h)}


def _setup(seed=0, sharpen=8.0):
    keras.utils.set_random_seed(seed)
    enc = ToyEncoder()
    branches = fb.BranchSet(LAYERS, LABELS, branch_hidden_size=8, num_heads=2)
    final = fb.BranchClassifier(LABELS, branch_hidden_size=8, num_heads=2, name="final_head")
    rng = np.random.RandomState(seed)
    b = 8
    ids = rng.randint(1, VOCAB, size=(b, T)).astype(np.int32)
    lengths = rng.randint(2, T + 1, size=b)
    mask = (np.arange(T)[None, :] < lengths[:, None]).astype(np.int32)
    inputs = {"input_ids": ids * mask, "input_mask": mask, "segment_ids": np.zeros_like(ids)}
    fb.run_with_branches(enc, branches, final, inputs)  # build
    for head in list(branches) + [final]:  # spread the entropies so that examples leave at different layers
        head.classifier.kernel.assign(head.classifier.kernel * sharpen)
    return enc, branches, final, inputs


def test_normalized_entropy_rule():
    p = tf.constant([[1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    np.testing.assert_allclose(fb.normalized_entropy(p).numpy(), [1.0, 0.0, np.log(2) / np.log(3)], rtol=1e-6)
    assert fb.normalized_entropy(tf.constant([[0.0, 1.0]])).numpy()[0] == 0.0  # no NaN from 0 * log 0


def test_self_distillation_loss_matches_hand_computation():
    rng = np.random.RandomState(0)
    final = rng.randn(4, 3).astype(np.float32)
    branches = [rng.randn(4, 3).astype(np.float32) for _ in range(2)]

    def sm(x):
        e = np.exp(x - x.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    pt = sm(final)
    expect = sum((pt * (np.log(pt) - np.log(sm(b)))).sum(-1).mean() for b in branches)
    assert float(fb.self_distillation_loss(branches, final)) == pytest.approx(expect, rel=1e-5)
    # the teacher side gets no gradient
    final_t = tf.constant(final)
    b0 = tf.Variable(branches[0])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(final_t)
        loss = fb.self_distillation_loss([b0], final_t)
    assert tape.gradient(loss, final_t) is None and tape.gradient(loss, b0) is not None


def test_speed_zero_equals_full_model():
    enc, branches, final, inputs = _setup()
    probs, exits = fb.early_exit_predict(enc, branches, final, inputs, speed=0.0)
    full = fb.make_full_model_fn(enc, final)({k: tf.constant(v) for k, v in inputs.items()})
    np.testing.assert_array_equal(exits.numpy(), np.full([8], LAYERS))
    np.testing.assert_array_equal(probs.numpy(), full.numpy())  # bit for bit under the same input signature
    # and against the plain eager forward pass
    seq = enc(inputs)["sequence_output"]
    np.testing.assert_allclose(probs.numpy(), tf.nn.softmax(final(seq, inputs["input_mask"])).numpy(), atol=1e-6)


def _reference_exits(enc, branches, final, inputs, speed):
    branch_logits, final_logits = fb.run_with_branches(enc, branches, final, inputs)
    ents = np.stack([fb.normalized_entropy(tf.nn.softmax(lg)).numpy() for lg in branch_logits], 1)  # [B, L-1]
    exits = []
    for row in ents:
        below = np.nonzero(row < speed)[0]
        exits.append(int(below[0]) + 1 if len(below) else LAYERS)
    return np.array(exits), ents


def test_mixed_exits_match_running_each_example_alone():
    enc, branches, final, inputs = _setup()
    _, ents = _reference_exits(enc, branches, final, inputs, 0.0)
    # choose the speed giving the most distinct exit layers among the batch
    best = max(
        (len(set(_reference_exits(enc, branches, final, inputs, s)[0])), s)
        for s in np.unique(ents) + 1e-4
    )
    speed = float(best[1])
    expected_exits, _ = _reference_exits(enc, branches, final, inputs, speed)
    assert len(set(expected_exits)) == LAYERS, expected_exits  # exits at layers 1, 2 and 3 in one batch

    probs, exits = fb.early_exit_predict(enc, branches, final, inputs, speed)
    np.testing.assert_array_equal(exits.numpy(), expected_exits)
    for b in range(len(expected_exits)):
        one = {k: v[b:b + 1] for k, v in inputs.items()}
        p1, e1 = fb.early_exit_predict(enc, branches, final, one, speed)
        assert int(e1[0]) == expected_exits[b]
        np.testing.assert_allclose(probs.numpy()[b], p1.numpy()[0], rtol=1e-5, atol=1e-6)
        # and it is the distribution of the head at its exit layer
        branch_logits, final_logits = fb.run_with_branches(enc, branches, final, one)
        logits = (branch_logits + [final_logits])[expected_exits[b] - 1]
        np.testing.assert_allclose(probs.numpy()[b], tf.nn.softmax(logits).numpy()[0], rtol=1e-5, atol=1e-6)
    # speed above 1: everybody leaves at layer 1 (normalized entropy <= 1)
    _, exits = fb.early_exit_predict(enc, branches, final, inputs, 1.01)
    np.testing.assert_array_equal(exits.numpy(), np.ones(8))


def test_early_exit_function_exports(tmp_path):
    enc, branches, final, inputs = _setup(seed=1)
    module = tf.Module()
    module.enc, module.branches, module.final = enc, branches, final
    module.early_exit = fb.make_early_exit_fn(enc, branches, final)
    tf.saved_model.save(module, str(tmp_path / "m"))
    loaded = tf.saved_model.load(str(tmp_path / "m"))
    feed = {k: tf.constant(v[:3]) for k, v in inputs.items()}
    out = loaded.early_exit(feed, tf.constant(0.5))
    ref_p, ref_e = fb.early_exit_predict(enc, branches, final, feed, 0.5)
    np.testing.assert_allclose(out["probabilities"].numpy(), ref_p.numpy(), atol=1e-6)
    np.testing.assert_array_equal(out["exit_layer"].numpy(), ref_e.numpy())


def test_branch_set_checkpoint_tracks_every_branch(tmp_path):
    enc, branches, final, inputs = _setup()
    path = tf.train.Checkpoint(branches=branches).save(str(tmp_path / "ckpt"))
    names = [n for n, _ in tf.train.list_variables(path)]
    for i in range(LAYERS - 1):
        assert any(f"branches/branch_{i}/self_attention" in n for n in names), names
        assert any(f"branches/branch_{i}/classifier/_kernel" in n for n in names), names
    saved = [n for n in names if n.startswith("branches/") and n.endswith("VARIABLE_VALUE")]
    assert len(saved) == sum(len(b.weights) for b in branches) == 2 * 14  # 3 dense layers + 4 attention projections, kernel + bias


def test_flops():
    f = fb.flops_per_layer(seq_length=128, hidden_size=768, intermediate_size=3072, num_labels=2)
    assert f["layer"] == 2 * 4 * 128 * 768 * 768 + 4 * 128 * 128 * 768 + 4 * 128 * 768 * 3072
    assert 0 < f["branch"] < f["layer"] / 10
    full = 12 * f["layer"] + f["final_head"]
    assert fb.relative_flops([12, 12], 12, f) == pytest.approx((full + 11 * f["branch"]) / full)
    assert fb.relative_flops([1, 12], 12, f) == pytest.approx(
        ((f["layer"] + f["branch"]) + (full + 11 * f["branch"])) / (2 * full))
    with pytest.raises(ValueError):
        fb.example_flops(0, 12, f)


# --------------------------------------------------------------------------------------------------------------------
# Stage 2 training, unlabelled text, evaluation over speeds

import glob  # noqa: E402
import os  # noqa: E402

import bertkit_errors  # noqa: E402

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs")
VOCAB_FILE = os.path.join(os.path.dirname(__file__), "..", "data_files", "bert_uncased_vocab.txt")


def _random_features(rng, n, t, vocab, num_labels):
    lengths = rng.randint(3, t + 1, size=n)
    mask = (np.arange(t)[None, :] < lengths[:, None]).astype(np.int32)
    ids = rng.randint(5, vocab, size=(n, t)).astype(np.int32) * mask
    return {"input_ids": ids, "input_mask": mask, "segment_ids": np.zeros_like(ids),
            "label_ids": rng.randint(0, num_labels, size=n).astype(np.int32),
            "is_real_example": np.ones(n, np.int32)}


@pytest.fixture(scope="module")
def distilled():
    """A tiny BERT classifier (3 layers, sharpened head) whose branches were trained by self-distillation; returns
    (classifier, branches, data, kl_before, kl_after, frozen_before, frozen_after)."""
    from modeling import ModelConfig, build_classifier
    from training.trainer import TrainerModel

    keras.utils.set_random_seed(3)
    config = ModelConfig.from_json_file(os.path.join(CONFIGS, "tiny_bert.json")).replace(num_hidden_layers=3)
    clf = build_classifier(config, LABELS)
    rng = np.random.RandomState(3)
    data = _random_features(rng, 64, 16, config.vocab_size, LABELS)
    clf({k: v[:1] for k, v in data.items()})
    clf.head.dense.kernel.assign(clf.head.dense.kernel * 60.0)  # a confident, non-uniform teacher
    branches = fb.BranchSet(config.num_hidden_layers, LABELS, branch_hidden_size=32, num_heads=2)
    net = fb.SelfDistillationNetwork(clf.encoder, clf.head, branches)
    loss_fn = fb.self_distillation_loss_fn()
    trainer = TrainerModel(net, loss_fn, fb.self_distillation_metric_names(len(branches)),
                           trainable_variables_fn=lambda: branches.trainable_variables)
    trainer.compile(optimizer=keras.optimizers.Adam(3e-3))
    ds = tf.data.Dataset.from_tensor_slices(data).repeat().shuffle(64, seed=0).batch(16, drop_remainder=True)
    trainer.build_for(ds.element_spec)

    def kl():
        return float(loss_fn(data, net(data, training=False))[0])

    frozen = lambda: [v.numpy().copy() for v in clf.encoder.weights + clf.head.weights]  # noqa: E731
    kl_before, frozen_before = kl(), frozen()
    trainer.fit(ds, epochs=1, steps_per_epoch=40, verbose=0)
    return clf, branches, data, kl_before, kl(), frozen_before, frozen()


def test_self_distillation_trains_branches_only(distilled):
    clf, branches, data, kl_before, kl_after, frozen_before, frozen_after = distilled
    assert kl_before > 0.2, kl_before  # the sharpened teacher is far from the untrained branches
    assert kl_after < 0.5 * kl_before, (kl_before, kl_after)
    assert len(frozen_before) == len(frozen_after) > 10
    for before, after in zip(frozen_before, frozen_after):  # backbone and final classifier exactly unchanged
        np.testing.assert_array_equal(before, after)
    out = fb.SelfDistillationNetwork(clf.encoder, clf.head, branches)(data, training=False)
    assert len(out["branch_logits"]) == 2
    np.testing.assert_allclose(out["final_logits"].numpy(), clf(data, training=False).numpy(), rtol=1e-5, atol=1e-5)


def test_self_distillation_network_gradients_reach_branches_only():
    enc, branches, final, inputs = _setup()
    net = fb.SelfDistillationNetwork(enc, final, branches)
    loss_fn = fb.self_distillation_loss_fn()
    with tf.GradientTape() as tape:
        loss, metrics = loss_fn(inputs, net(inputs, training=True))
    grads = tape.gradient(loss, enc.trainable_variables + final.trainable_variables)
    assert all(g is None for g in grads)
    assert all(g is not None for g in tape_free_grads(net, inputs, loss_fn, branches))
    assert sorted(metrics) == sorted(fb.self_distillation_metric_names(LAYERS - 1))
    # the loss is self_distillation_loss (no weights key) and the weights key only masks rows
    loss, _ = loss_fn(inputs, net(inputs, training=False))
    bl, fl = fb.run_with_branches(enc, branches, final, inputs)
    assert float(loss) == pytest.approx(float(fb.self_distillation_loss(bl, fl)), rel=1e-5)
    half = dict(inputs, is_real_example=np.array([1, 1, 1, 1, 0, 0, 0, 0]))
    masked, _ = loss_fn(half, net(half))
    first = {k: v[:4] for k, v in inputs.items()}
    assert float(masked) == pytest.approx(float(loss_fn(first, net(first))[0]), rel=1e-5)


def tape_free_grads(net, inputs, loss_fn, branches):
    with tf.GradientTape() as tape:
        loss, _ = loss_fn(inputs, net(inputs, training=True))
    return tape.gradient(loss, branches.trainable_variables)


@pytest.fixture(scope="module")
def tokenizer():
    from tokenization import FullTokenizer
    return FullTokenizer(VOCAB_FILE, do_lower_case=True)


def _ids(tokenizer, text, t):
    ids = [tokenizer.vocab["[CLS]"]] + tokenizer.convert_tokens_to_ids(tokenizer.tokenize(text))[:t - 2]
    return ids + [tokenizer.vocab["[SEP]"]]


def test_unlabelled_text_dataset_text_file(tmp_path, tokenizer):
    path = tmp_path / "unlabelled.txt"
    texts = ["The market rose sharply.", "Elections were held today", "A new phone was released by the company"]
    path.write_text(texts[0] + "\n\n" + texts[1] + "\n  \n" + texts[2] + "\n", encoding="utf-8")
    assert fb.read_unlabelled_texts(str(path)) == texts
    batches = list(fb.unlabelled_text_dataset(str(path), tokenizer, 8, 2, is_training=False))
    assert [int(b["input_ids"].shape[0]) for b in batches] == [2, 1]
    got = np.concatenate([b["input_ids"].numpy() for b in batches])
    assert sorted(batches[0]) == ["input_ids", "input_mask", "segment_ids"]
    assert all(b[k].dtype == tf.int32 for b in batches for k in b)
    for row, text in zip(got, texts):
        want = _ids(tokenizer, text, 8)
        assert list(row[:len(want)]) == want and not row[len(want):].any()
    # training: repeated, shuffled, fixed batch size
    train = fb.unlabelled_text_dataset(str(path), tokenizer, 8, 2, seed=1)
    rows = [tuple(r) for b in train.take(6) for r in b["input_ids"].numpy()]
    assert len(rows) == 12 and set(rows) == {tuple(r) for r in got}
    assert train.element_spec["input_ids"].shape.as_list() == [2, 8]


def test_unlabelled_text_dataset_tsv_and_csv(tmp_path, tokenizer):
    tsv = tmp_path / "train.tsv"
    tsv.write_text("id\tlabel\ttext\n1\tsport\tThe team won the cup\n2\ttech\tChips got faster\n", encoding="utf-8")
    assert fb.read_unlabelled_texts(str(tsv)) == ["The team won the cup", "Chips got faster"]
    assert fb.read_unlabelled_texts(str(tsv), text_column="label") == ["sport", "tech"]
    batch = next(iter(fb.unlabelled_text_dataset(str(tsv), tokenizer, 16, 4, is_training=False)))
    want = _ids(tokenizer, "Chips got faster", 16)
    assert list(batch["input_ids"].numpy()[1][:len(want)]) == want
    # a header with a "sentence" column is recognised even without the .tsv extension
    glue = tmp_path / "sst"
    glue.write_text("sentence\tlabel\nit is good\t1\n", encoding="utf-8")
    assert fb.read_unlabelled_texts(str(glue)) == ["it is good"]
    csv_path = tmp_path / "texts.csv"
    csv_path.write_text('id,text\n1,"Hello, world"\n2,plain\n', encoding="utf-8")
    assert fb.read_unlabelled_texts(str(csv_path)) == ["Hello, world", "plain"]


def test_unlabelled_text_errors_name_file_and_line(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n", encoding="utf-8")
    with pytest.raises(bertkit_errors.UserError, match=r"empty\.txt: no text"):
        fb.read_unlabelled_texts(str(empty))
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\nalso fine\nbroken \xff\xfe here\n")
    with pytest.raises(bertkit_errors.UserError, match=r"bad\.txt:3: not valid UTF-8"):
        fb.read_unlabelled_texts(str(bad))
    tsv = tmp_path / "x.tsv"
    tsv.write_text("id\tlabel\n1\tsport\n", encoding="utf-8")
    with pytest.raises(bertkit_errors.UserError, match=r"x\.tsv:1: no 'text' or 'sentence' column"):
        fb.read_unlabelled_texts(str(tsv))
    short = tmp_path / "short.tsv"
    short.write_text("id\tlabel\ttext\n1\tsport\tok\n2\tsport\n", encoding="utf-8")
    with pytest.raises(bertkit_errors.UserError, match=r"short\.tsv:3: 2 fields"):
        fb.read_unlabelled_texts(str(short))
    header_only = tmp_path / "h.tsv"
    header_only.write_text("text\n", encoding="utf-8")
    with pytest.raises(bertkit_errors.UserError, match=r"h\.tsv: no text in column 'text'"):
        fb.read_unlabelled_texts(str(header_only))
    with pytest.raises(bertkit_errors.UserError, match="cannot read"):
        fb.read_unlabelled_texts(str(tmp_path / "missing.txt"))


SPEEDS = [0.0, 0.9, 0.93, 0.95, 0.98, 1.0]  # the toy branches' entropies lie in 0.85..1
TOY_FLOPS = {"layer": 100.0, "branch": 10.0, "final_head": 5.0}


def _toy_eval_dataset(inputs):
    rng = np.random.RandomState(5)
    data = dict(inputs, label_ids=rng.randint(0, LABELS, size=8).astype(np.int32),
                is_real_example=np.array([1, 1, 1, 1, 1, 1, 0, 0], np.int32))  # two padding rows
    return data, tf.data.Dataset.from_tensor_slices(data).batch(3)


@pytest.fixture(scope="module")
def toy_rows():
    enc, branches, final, inputs = _setup()
    data, ds = _toy_eval_dataset(inputs)
    rows = fs.evaluate_speeds(enc, branches, final, ds, SPEEDS, flops=TOY_FLOPS)
    return enc, branches, final, data, rows


def test_evaluate_speeds_toy(toy_rows):
    enc, branches, final, data, rows = toy_rows
    assert [r["name"] for r in rows] == ["full_model"] + [f"speed_{s:g}" for s in SPEEDS]
    full, by_speed = rows[0], rows[1:]
    real = data["is_real_example"] == 1
    full_probs = fb.make_full_model_fn(enc, final)({k: tf.constant(data[k]) for k in fs._FEATURE_KEYS})
    assert full["accuracy"] == pytest.approx(np.mean(full_probs.numpy().argmax(-1)[real] == data["label_ids"][real]))
    assert by_speed[0]["accuracy"] == full["accuracy"] and by_speed[0]["agreement"] == 1.0
    assert by_speed[0]["avg_exit_layer"] == LAYERS
    for row in rows:
        assert row["num_examples"] == 6 and row["examples_per_second"] > 0
    # each row is what early_exit_predict gives, counted over the real rows only
    for row in by_speed:
        probs, exits = fb.early_exit_predict(enc, branches, final, data, row["speed"])
        pred, exits = probs.numpy().argmax(-1)[real], exits.numpy()[real]
        assert row["accuracy"] == pytest.approx(np.mean(pred == data["label_ids"][real]))
        assert row["avg_exit_layer"] == pytest.approx(exits.mean())
        assert row["relative_flops"] == pytest.approx(fb.relative_flops(exits, LAYERS, TOY_FLOPS))
    flops = [r["relative_flops"] for r in by_speed]
    assert all(a >= b for a, b in zip(flops, flops[1:])), flops
    assert flops[0] > 1.0 and flops[-1] < 0.5  # branches cost extra at speed 0; at speed 1 all leave at layer 1
    exits = [r["avg_exit_layer"] for r in by_speed]
    assert len(set(exits)) >= 3 and all(a >= b for a, b in zip(exits, exits[1:]))


def test_evaluate_speeds_tiny_bert(distilled):
    clf, branches, data, *_ = distilled
    ds = tf.data.Dataset.from_tensor_slices(data).batch(32)
    rows = fs.evaluate_speeds(clf.encoder, branches, clf.head, ds, [0.0, 0.5, 1.0])
    full, s0 = rows[0], rows[1]
    assert s0["accuracy"] == full["accuracy"] and s0["avg_exit_layer"] == 3 and s0["agreement"] == 1.0
    assert full["accuracy"] == pytest.approx(np.mean(clf(data).numpy().argmax(-1) == data["label_ids"]))
    flops = [r["relative_flops"] for r in rows[1:]]
    assert flops[0] > 1.0 and all(a >= b for a, b in zip(flops, flops[1:])) and rows[-1]["avg_exit_layer"] == 1
    with pytest.raises(bertkit_errors.UserError, match="--speed=1.5"):
        fs.evaluate_speeds(clf.encoder, branches, clf.head, ds, [1.5])


def test_eval_file_table_and_tensorboard(toy_rows, tmp_path):
    rows = toy_rows[-1]
    flat = fs.speed_results_for_eval_file(rows)
    assert flat["speed_0.93_accuracy"] == rows[3]["accuracy"]
    assert flat["speed_0_avg_exit_layer"] == LAYERS
    for key in ("speed_0.95_relative_flops", "speed_1_examples_per_second", "speed_0.9_agreement",
                "full_model_examples_per_second", "full_model_accuracy"):
        assert isinstance(flat[key], float), key
    table = fs.format_speed_table(rows).splitlines()
    assert len(table) == 1 + len(rows) and table[1].split()[0] == "full" and table[1].split()[-1] == "1.00x"
    assert table[4].split()[0] == "0.93"

    fs.log_speed_curve(str(tmp_path / "eval"), rows, step=7)
    events = glob.glob(str(tmp_path / "eval" / "events.out.tfevents.*"))
    assert len(events) == 1
    seen = {}
    for event in tf.compat.v1.train.summary_iterator(events[0]):
        for value in event.summary.value:
            seen.setdefault(value.tag, []).append(event.step)
    assert sorted(seen["fastbert/accuracy_by_speed"]) == [0, 90, 93, 95, 98, 100]
    assert sorted(seen["fastbert/relative_flops_by_speed"]) == [0, 90, 93, 95, 98, 100]
    assert seen["fastbert/full_model_examples_per_second"] == [7]
    assert seen["fastbert/speed_accuracy_curve"] == [7] and seen["fastbert/speed_table"] == [7]
    img = fs.render_speed_curve(rows)
    assert img.shape == (360, 480, 3) and img.dtype == np.uint8
    assert ((img == [210, 30, 30]).all(-1)).sum() >= 50  # the full model's red marker
    assert ((img == [40, 90, 200]).all(-1)).sum() >= 200  # the speed curve
