"""Published checkpoints end to end: a tiny HuggingFace BERT directory (config.json, model.safetensors,
tokenizer.json + tokenizer_config.json, no vocab.txt) and the bertkit directory convert_checkpoint.py makes of it,
each given to every script that takes --init_checkpoint / --teacher_checkpoint without --bert_config_file,
--vocab_file or --do_lower_case: run_classifier.py (train, eval, export; as a task-distillation teacher: a one-line
error, and the classifier fine-tuned from the HF directory works), run_pretraining.py (--init_checkpoint and, as
general distillation, --teacher_checkpoint; subprocesses) and export_model.py's export_checkpoint."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import bertkit_errors
from modeling import checkpoints, model_dirs
from tests.data import test_pretraining_helpers as H
from tests.scripts.classifier_helpers import run

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEQ, PREDS = 16, 3
SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
             max_position_embeddings=32, type_vocab_size=2)


def _write_task(data_dir):
    os.makedirs(data_dir)
    rng = np.random.RandomState(0)
    for split, n in (("train", 8), ("dev", 4)):
        with open(os.path.join(data_dir, f"{split}.tsv"), "w") as f:
            f.write("sentence\tlabel\n")
            for i in range(n):
                words = rng.choice(H.WORDS[:20] if i % 2 else H.WORDS[20:40], 5)
                f.write(f"{' '.join(words)}\t{'ab'[i % 2]}\n")


def _task(data_dir, output_dir, **kw):
    args = dict(task_name="custom", data_dir=data_dir, text_a_column="sentence", label_column="label",
                output_dir=output_dir, max_seq_length=SEQ, train_batch_size=4, eval_batch_size=4,
                learning_rate=1e-3, seed=1, num_train_epochs=1.0, save_checkpoints_steps=1000)
    args.update(kw)
    return args


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    from data import pretraining, pretraining_writer

    tmp = tmp_path_factory.mktemp("pretrained")
    torch.manual_seed(0)
    tokens = H.tiny_vocab_tokens()
    hf = str(tmp / "hf")
    transformers.BertModel(transformers.BertConfig(vocab_size=len(tokens), **SMALL)).eval().save_pretrained(
        hf, safe_serialization=True)
    vocab_file = H.write_tiny_vocab(tmp / "vocab.txt")
    transformers.BertTokenizerFast(vocab_file, do_lower_case=False).save_pretrained(hf)
    for name in os.listdir(hf):  # as published: the fast tokenizer's files only
        if name not in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
            os.remove(os.path.join(hf, name))
    converted = str(tmp / "converted")
    checkpoints.convert_to_bertkit(hf, converted)
    data = str(tmp / "data")
    _write_task(data)
    vocab = H.tiny_vocab()
    cfg = pretraining.InstanceConfig(max_seq_length=SEQ, max_predictions_per_seq=PREDS, dupe_factor=1,
                                     **pretraining.vocab_info(vocab))
    records = str(tmp / "train.tfrecord")
    pretraining_writer.run([H.write_text_corpus(tmp / "corpus.txt", num_docs=20)], [records],
                           lambda texts: [np.asarray([vocab[w] for w in t.split()], np.int32) for t in texts],
                           cfg, docs_per_chunk=20, progress=False)
    return dict(tmp=tmp, hf=hf, converted=converted, data=data, tokens=tokens, records=records)


@pytest.fixture(scope="module")
def hf_classifier(dirs):
    """run_classifier.py --init_checkpoint=<the HF directory> (no config, vocabulary or case flags), trained,
    evaluated and exported."""
    out = str(dirs["tmp"] / "clf_hf")
    log = run(**_task(dirs["data"], out, init_checkpoint=dirs["hf"], do_train=True, do_eval=True, do_export=True))
    return out, log


def _vocab(path):
    with open(path, encoding="utf-8") as f:
        return f.read().split("\n")[:-1]


def test_converted_dir_gets_vocab_and_case_from_tokenizer_json(dirs):
    conv = dirs["converted"]
    assert _vocab(os.path.join(conv, "vocab.txt")) == dirs["tokens"]
    with open(os.path.join(conv, "bertkit.json")) as f:
        assert json.load(f)["do_lower_case"] is False  # BertNormalizer lowercase: false
    d = model_dirs.model_dir_defaults(dirs["hf"])
    assert d["bert_config_file"] == os.path.join(dirs["hf"], "config.json") and d["do_lower_case"] is False
    assert "vocab_file" not in d  # written only where asked
    d = model_dirs.model_dir_defaults(conv)
    assert d["vocab_file"] == os.path.join(conv, "vocab.txt") and d["do_lower_case"] is False


def _tokenizer_dir(dirs, name, change):
    d = dirs["tmp"] / name
    d.mkdir()
    with open(os.path.join(dirs["hf"], "config.json")) as f:
        (d / "config.json").write_text(f.read())
    os.symlink(os.path.join(dirs["hf"], "model.safetensors"), d / "model.safetensors")
    with open(os.path.join(dirs["hf"], "tokenizer.json")) as f:
        tok = json.load(f)
    change(tok)
    (d / "tokenizer.json").write_text(json.dumps(tok))
    return str(d)


def test_other_tokenizers_are_refused_in_one_line(dirs):
    bpe = _tokenizer_dir(dirs, "bpe", lambda t: t["model"].update(type="BPE"))
    with pytest.raises(bertkit_errors.UserError, match=r"tokenizer.json: not a BERT WordPiece tokenizer "
                                                       r"\(model.type 'BPE'"):
        checkpoints.convert_to_bertkit(bpe, str(dirs["tmp"] / "bpe_out"))

    def gap(t):
        t["model"]["vocab"]["w0"] = 999
    holes = _tokenizer_dir(dirs, "holes", gap)
    with pytest.raises(bertkit_errors.UserError, match="vocabulary ids are not contiguous"):
        model_dirs.model_dir_defaults(holes, vocab_dir=str(dirs["tmp"] / "holes_out"))


def test_run_classifier_from_the_converted_dir(dirs):
    out = str(dirs["tmp"] / "clf_conv")
    log = run(**_task(dirs["data"], out, init_checkpoint=dirs["converted"], do_train=True, do_eval=True))
    assert f"initialised from {dirs['converted']}" in log
    assert os.path.isfile(os.path.join(out, "eval_results.txt"))
    assert _vocab(os.path.join(out, "vocab.txt")) == dirs["tokens"]


def test_run_classifier_from_the_hf_dir(dirs, hf_classifier):
    out, log = hf_classifier
    assert f"initialised from {dirs['hf']}" in log
    assert _vocab(os.path.join(out, "vocab.txt")) == dirs["tokens"]
    with open(os.path.join(out, "bertkit.json")) as f:
        assert json.load(f)["do_lower_case"] is False
    with open(os.path.join(out, "bert_config.json")) as f:
        assert json.load(f)["hidden_size"] == SMALL["hidden_size"]
    assert os.path.isfile(os.path.join(out, "eval_results.txt"))
    assert "exported " in log and os.listdir(os.path.join(out, "export"))


def test_teacher_checkpoint(dirs, hf_classifier):
    for teacher in (dirs["hf"], dirs["converted"]):
        with pytest.raises(bertkit_errors.UserError, match=rf"^--teacher_checkpoint={teacher}: no task_meta.json .*"
                                                           r"not a run_classifier.py output directory"):
            run(**_task(dirs["data"], str(dirs["tmp"] / "never"), init_checkpoint=dirs["converted"],
                        teacher_checkpoint=teacher, do_train=True))
    out = str(dirs["tmp"] / "student")
    log = run(**_task(dirs["data"], out, init_checkpoint=dirs["converted"], teacher_checkpoint=hf_classifier[0],
                      distill_stage="prediction", do_train=True, do_eval=True))
    assert "teacher: bert 2 layers" in log and f"initialised from {dirs['converted']}" in log
    assert os.path.isfile(os.path.join(out, "eval_results.txt"))


def test_export_checkpoint_from_both(dirs):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (the exports' ops)

    from serving import checkpoint_export

    texts = tf.constant(["w1 w2 w3p1", "w7"])
    outputs = []
    for name in ("hf", "converted"):
        version = checkpoint_export.export_checkpoint(dirs[name], export_dir=str(dirs["tmp"] / f"export_{name}"),
                                           max_seq_length=SEQ)
        loaded = tf.saved_model.load(version)
        outputs.append(loaded.signatures["encode"](text=texts)["embeddings"].numpy())
        with open(os.path.join(version, "assets.extra", "bertkit_export.json")) as f:
            assert json.load(f)["do_lower_case"] is False
    np.testing.assert_allclose(outputs[0], outputs[1], atol=1e-5)


def _pretrain(dirs, out, *extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", PYTHONPATH=ROOT)
    env.pop("TF_CONFIG", None)
    args = [sys.executable, os.path.join(ROOT, "run_pretraining.py"), f"--input_file={dirs['records']}",
            f"--output_dir={out}", f"--max_seq_length={SEQ}", f"--max_predictions_per_seq={PREDS}", "--do_train",
            "--train_batch_size=4", "--num_train_steps=2", "--num_warmup_steps=1", "--save_checkpoints_steps=2",
            "--iterations_per_loop=2", "--nodo_export", *extra]
    return subprocess.run(args, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)


@pytest.mark.parametrize("init,teacher", [("converted", "hf"), ("hf", "converted")])
def test_run_pretraining_init_and_teacher(dirs, init, teacher):
    """The student starts from one directory and distils from the other: no config, vocabulary or case flags."""
    out = str(dirs["tmp"] / f"pretrain_{init}")
    r = _pretrain(dirs, out, f"--init_checkpoint={dirs[init]}", f"--teacher_checkpoint={dirs[teacher]}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"encoder initialised from {dirs[init]}" in r.stdout
    assert f"from {dirs[teacher]}" in r.stdout and "training done: global_step=2" in r.stdout
    assert _vocab(os.path.join(out, "vocab.txt")) == dirs["tokens"]
    with open(os.path.join(out, "bertkit.json")) as f:
        info = json.load(f)
    assert info["do_lower_case"] is False and info["general_distillation"]["teacher_checkpoint"] == dirs[teacher]


def test_a_refused_command_leaves_no_new_output_dir(dirs):
    """The HF directory's tokenizer.json is written as output_dir/vocab.txt before the later checks; when one of them
    refuses the command, the directory this run created is gone again (run_classifier and run_pretraining)."""
    out = dirs["tmp"] / "refused_clf"
    with pytest.raises(bertkit_errors.UserError, match="--max_seq_length=64: longer than max_position_embeddings"):
        run(**_task(dirs["data"], str(out), init_checkpoint=dirs["hf"], do_train=True, max_seq_length=64))
    assert not out.exists()
    out = dirs["tmp"] / "refused_pre"
    proc = _pretrain(dirs, str(out), f"--init_checkpoint={dirs['hf']}", "--max_seq_length=64")
    assert proc.returncode == 1, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --max_seq_length=64: longer than"), proc.stderr[-2000:]
    assert not out.exists()
