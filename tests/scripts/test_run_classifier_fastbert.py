"""run_classifier.py --fastbert in-process on a tiny 3-layer BERT and a 3-class task: stage finetune (branches saved
untrained), stage distill (backbone and final classifier unchanged, branches trained on the KL, speed evaluation in
eval_results.txt / speed_table.txt / TensorBoard), --distill_file with a plain text file, export gets the branches."""
import json
import os

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VOCAB = os.path.join(ROOT, "tests", "data_files", "bert_uncased_vocab.txt")
SEQ = 32
SPEEDS = "0,0.3,1"


import bertkit_errors  # noqa: E402
from tests.scripts.classifier_helpers import run  # noqa: E402

WORDS = {"red": "apple cherry ruby blood rose fire", "green": "grass leaf lime frog moss forest",
         "blue": "sky ocean sea water ice whale"}


def _write_data(data_dir):
    os.makedirs(data_dir, exist_ok=True)
    rng = np.random.RandomState(0)
    for split, n in (("train", 12), ("dev", 9)):
        with open(os.path.join(data_dir, f"{split}.tsv"), "w") as f:
            f.write("sentence\tcolour\n")
            for i in range(n):
                label = list(WORDS)[i % 3]
                f.write(f"the {' '.join(rng.choice(WORDS[label].split(), 4))} thing\t{label}\n")


def _task(data_dir, config_file, **kw):
    args = dict(task_name="custom", data_dir=data_dir, text_a_column="sentence", label_column="colour",
                vocab_file=VOCAB, bert_config_file=config_file, max_seq_length=SEQ, train_batch_size=4,
                eval_batch_size=4, learning_rate=2e-3, seed=1, fastbert=True, branch_hidden_size=16)
    args.update(kw)
    return args


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fastbert")
    with open(os.path.join(ROOT, "configs", "tiny_bert.json")) as f:
        cfg = json.load(f)
    cfg.update(vocab_size=30522, num_hidden_layers=3)
    config_file = str(tmp / "bert_config.json")
    with open(config_file, "w") as f:
        json.dump(cfg, f)
    data = str(tmp / "data")
    _write_data(data)
    s1, s2 = str(tmp / "stage1"), str(tmp / "stage2")
    log1 = run(**_task(data, config_file, output_dir=s1, do_train=True, do_eval=True, num_train_epochs=2.0))
    args2 = _task(data, config_file, output_dir=s2, fastbert_stage="distill", init_checkpoint=s1,
                  num_train_epochs=3.0, speed=SPEEDS)
    log2 = run(**args2, do_train=True, do_eval=True)
    return dict(tmp=tmp, data=data, config_file=config_file, s1=s1, s2=s2, log1=log1, log2=log2, args2=args2)


def _tops(prefix):
    import tensorflow as tf

    return {name.split("/")[0] for name, _ in tf.train.list_variables(prefix)}


def _load(config_file, prefix, branch_hidden_size=16):
    import tensorflow as tf

    from modeling import ModelConfig, build_classifier
    from training import fastbert

    config = ModelConfig.from_json_file(config_file)
    model = build_classifier(config, 3)
    branches = fastbert.BranchSet(config.num_hidden_layers, 3, branch_hidden_size)
    for b in branches:
        b.build((None, None, config.hidden_size))
    tf.train.Checkpoint(encoder=model.encoder, classifier_head=model.head, branches=branches).restore(
        prefix).expect_partial().assert_existing_objects_matched()
    return model, branches


def test_stage_finetune_saves_untrained_branches(dirs):
    import tensorflow as tf

    s1, log = dirs["s1"], dirs["log1"]
    prefix = tf.train.latest_checkpoint(s1)
    assert {"encoder", "classifier_head", "branches", "optimizer"} <= _tops(prefix)
    assert os.path.isfile(os.path.join(s1, "best", "best.json"))  # the usual best-by-accuracy selection
    assert "the early-exit speeds are evaluated there" in log
    assert not os.path.exists(os.path.join(s1, "speed_table.txt"))
    assert json.load(open(os.path.join(s1, "bertkit.json")))["fastbert"]["stage"] == "finetune"
    # saved, untrained: the branches are the same after epoch 1 and epoch 2, the classifier moved
    assert prefix.endswith("ckpt-6")
    m3, b3 = _load(dirs["config_file"], os.path.join(s1, "ckpt-3"))
    m6, b6 = _load(dirs["config_file"], prefix)
    assert len(b6) == 2 and len(b6.trainable_variables) == len(b3.trainable_variables) > 0
    for a, b in zip(b3.trainable_variables, b6.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert any(np.abs(a.numpy() - b.numpy()).max() > 0 for a, b in zip(m3.trainable_variables,
                                                                         m6.trainable_variables))


def test_stage_distill_trains_branches_only(dirs):
    import tensorflow as tf

    from training.best_checkpoint import BestCheckpoint

    s1, s2, log = dirs["s1"], dirs["s2"], dirs["log2"]
    init = BestCheckpoint(s1, None).prefix()
    assert f"initialised from {init} (with its classifier head)" in log
    steps = [line for line in log.splitlines() if line.startswith("step ")]
    assert steps and all("kl_layer_1=" in line and "kl_layer_2=" in line and "mean_agreement=" in line
                         for line in steps)
    assert "accuracy=" not in "".join(steps)
    assert not os.path.exists(os.path.join(s2, "best"))  # the final classifier is frozen: the latest is kept
    latest = tf.train.latest_checkpoint(s2)
    assert f"using the latest checkpoint {latest}" in log
    before, b_before = _load(dirs["config_file"], init)
    after, b_after = _load(dirs["config_file"], latest)
    assert len(after.encoder.trainable_variables) > 20
    # (the trainable weights: dropout seed-generator states are variables too, and move)
    for a, b in zip(before.encoder.trainable_variables + before.head.trainable_variables,
                    after.encoder.trainable_variables + after.head.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # the branches are trained in stage 2 (different from the stage-1 (untrained) ones and from a fresh start)
    moved = [np.abs(a.numpy() - b.numpy()).max() for a, b in zip(b_before.trainable_variables,
                                                                   b_after.trainable_variables)]
    assert max(moved) > 0
    info = json.load(open(os.path.join(s2, "bertkit.json")))["fastbert"]
    assert info["stage"] == "distill" and info["branch_hidden_size"] == 16


def test_stage_distill_speed_evaluation(dirs):
    from training.trainer import read_eval_results

    s2 = dirs["s2"]
    results = read_eval_results(os.path.join(s2, "eval_results.txt"))
    assert {"accuracy", "eval_loss", "global_step", "full_model_examples_per_second"} <= set(results)
    for s in SPEEDS.split(","):
        for key in ("accuracy", "avg_exit_layer", "relative_flops", "examples_per_second"):
            assert f"speed_{s}_{key}" in results, (s, key)
    # speed 0 never exits early: the full model's accuracy, every example through all 3 layers
    assert results["speed_0_accuracy"] == pytest.approx(results["accuracy"], abs=1e-9)
    assert results["speed_0_avg_exit_layer"] == 3.0
    assert 1.0 <= results["speed_0.3_avg_exit_layer"] <= 3.0
    # speed 1: every branch distribution short of exactly uniform is confident enough: all leave after layer 1
    assert results["speed_1_avg_exit_layer"] == 1.0 and results["speed_1_relative_flops"] < 0.5
    table = open(os.path.join(s2, "speed_table.txt")).read()
    assert "accuracy" in table and len(table.strip().splitlines()) == 2 + len(SPEEDS.split(","))
    assert table.strip() in dirs["log2"]
    assert any("events" in f for f in os.listdir(os.path.join(s2, "logs", "eval")))


def test_distill_file_plain_text(dirs):
    import tensorflow as tf

    texts = dirs["tmp"] / "unlabelled.txt"
    texts.write_text("".join(f"a {w} and a {v}\n" for w, v in zip(
        " ".join(WORDS.values()).split(), reversed(" ".join(WORDS.values()).split()))))
    out = str(dirs["tmp"] / "stage2_text")
    args = dict(dirs["args2"], output_dir=out, distill_file=str(texts), num_train_epochs=1.0)
    args.pop("speed")
    log = run(**args, do_train=True)
    # 18 lines, batch 4, 1 epoch: 5 steps
    assert "training: 18 examples" in log and "global_step=5" in log
    _load(dirs["config_file"], tf.train.latest_checkpoint(out))  # encoder, classifier_head and branches
    assert json.load(open(os.path.join(out, "bertkit.json")))["fastbert"]["distill_file"] == str(texts)
    # no records needed, but the directory is a classifier model directory all the same
    assert json.load(open(os.path.join(out, "task_meta.json")))["labels"] == ["blue", "green", "red"]
    assert not any(f.endswith(".tf_record") for f in os.listdir(out))


def test_export_passes_the_trained_branches(dirs, monkeypatch):
    """--do_export hands the distilled branches to export_classifier (the SavedModel with early exit itself is
    tested in tests/serving/test_export.py; not repeated here to keep this file fast)."""
    import tensorflow as tf

    from serving import export

    calls = []

    def spy(classifier, **kw):
        calls.append((classifier, kw))
        return os.path.join(kw["export_base"], "1")

    monkeypatch.setattr(export, "export_classifier", spy)
    log = run(**dirs["args2"], do_export=True)
    assert len(calls) == 1
    classifier, kw = calls[0]
    assert kw["labels"] == ["blue", "green", "red"] and kw["is_regression"] is False
    assert f"exported {os.path.join(dirs['s2'], 'export', '1')}" in log
    _, trained = _load(dirs["config_file"], tf.train.latest_checkpoint(dirs["s2"]))
    assert len(kw["branches"]) == 2
    for a, b in zip(kw["branches"].trainable_variables, trained.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_errors(dirs):
    data, cfg, tmp = dirs["data"], dirs["config_file"], dirs["tmp"]
    cases = [
        (_task(data, cfg, output_dir=str(tmp / "e1"), fastbert_stage="distill", do_train=True),
         "--fastbert_stage=distill: --init_checkpoint required"),
        (_task(data, cfg, output_dir=dirs["s1"] + "_x", fastbert_stage="distill", init_checkpoint=dirs["s1"],
               do_eval=True, speed="0,2"), "--speed=0,2: 2 is not in [0, 1]"),
        (dict(_task(data, cfg, output_dir=str(tmp / "e3"), do_train=True, distill_file=__file__), fastbert=False),
         "--distill_file: only with --fastbert"),
        (_task(data, cfg, output_dir=str(tmp / "e4"), do_train=True, distill_file=__file__),
         "--distill_file: only with --fastbert_stage=distill"),
    ]
    for args, expect in cases:
        if args.get("fastbert") is False:
            args.pop("fastbert")
            args.pop("branch_hidden_size")
        with pytest.raises(bertkit_errors.UserError) as e:
            run(**args)
        assert expect in str(e.value), (args, str(e.value))
