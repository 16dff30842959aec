"""augment_data.py (TinyBERT data augmentation) with a tiny random teacher model directory: N+1 rows per input row,
labels and ids kept, the original row first, deterministic for a seed (whatever the batch size), words replaced at
about the asked rate by vocabulary words, batched teacher calls, CSV/JSONL round trips, one-line errors."""
import csv
import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest

from tests.data import test_pretraining_helpers as H

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
N, P, M = 6, 0.4, 5


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A bertkit model directory (as run_pretraining writes it) with a random 2-layer teacher."""
    import tensorflow as tf

    from modeling import ModelConfig, build_pretraining_model

    d = tmp_path_factory.mktemp("teacher")
    H.write_tiny_vocab(d / "vocab.txt")
    cfg = json.load(open(os.path.join(ROOT, "configs", "tiny_bert.json")))
    cfg.update(vocab_size=len(H.tiny_vocab_tokens()), hidden_size=32, num_attention_heads=2, intermediate_size=64,
               max_position_embeddings=64)
    json.dump(cfg, open(d / "bert_config.json", "w"))
    json.dump({"do_lower_case": True}, open(d / "bertkit.json", "w"))
    tf.keras.utils.set_random_seed(0)
    model = build_pretraining_model(ModelConfig.from_json_file(str(d / "bert_config.json")))
    tf.train.Checkpoint(encoder=model.encoder, mlm_head=model.mlm_head, nsp_head=model.nsp_head).save(str(d / "ckpt"))
    return str(d)


def _write_tsv(path, rows=12, seed=0):
    rng = random.Random(seed)
    lines = ["id\tlabel\ttext"]
    for i in range(rows):
        words = []
        for _ in range(rng.randint(3, 9)):
            w = rng.choice(H.WORDS)
            if rng.random() < 0.25:
                w += f"p{rng.randrange(30)}"  # two pieces: w3 ##p7
            words.append(w)
        lines.append(f"r{i}\t{rng.choice(['pos', 'neg', 'neutral'])}\t{' '.join(words)} .")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def aug(teacher):
    from data import augmentation as augment_data
    from training import tinybert

    encoder, mlm_head, tok = augment_data.load_teacher(teacher)
    return lambda batch_size=64: tinybert.Augmenter(encoder, mlm_head, tok, max_seq_length=16, candidates=M,
                                                    batch_size=batch_size)


def _read_tsv(path):
    lines = open(path, encoding="utf-8").read().rstrip("\n").split("\n")
    return lines[0], [ln.split("\t") for ln in lines[1:]]


def test_augmented_tsv(tmp_path, aug):
    from data import augmentation as augment_data

    src = _write_tsv(tmp_path / "train.tsv")
    header, rows = _read_tsv(src)
    out = str(tmp_path / "out" / "train.tsv")
    a = aug(batch_size=32)
    summary = augment_data.augment_file(src, out, a, num_aug=N, replace_prob=P, seed=3, progress=False)
    got_header, got = _read_tsv(out)
    assert got_header == header and len(got) == len(rows) * (N + 1) == summary["output_rows"]
    vocab = set(H.tiny_vocab_tokens())
    single = multi = 0
    for i, row in enumerate(rows):
        block = got[i * (N + 1):(i + 1) * (N + 1)]
        assert block[0] == row  # the original first, verbatim
        words = row[2].split(" ")
        for copy in block[1:]:
            assert copy[:2] == row[:2]  # id and label copied
            new = copy[2].split(" ")
            assert len(new) == len(words) and new[-1] == "."  # punctuation has no candidates
            for w, n in zip(words, new):
                if n != w:
                    assert n in vocab and not n.startswith("##") and not n.startswith("[")
                    single += w in vocab
                    multi += w not in vocab
    assert single > 0 and multi > 0  # both candidate sources used
    assert 0.3 < summary["replaced_fraction"] < 0.5
    n_single_words = sum(1 for r in rows for w in r[2].split(" ") if w in vocab)
    assert summary["model_calls"] == -(-n_single_words // 32) < n_single_words / 10  # batched masked LM

    out2 = str(tmp_path / "again.tsv")
    augment_data.augment_file(src, out2, aug(batch_size=7), num_aug=N, replace_prob=P, seed=3, progress=False)
    assert open(out2, "rb").read() == open(out, "rb").read()
    out3 = str(tmp_path / "other_seed.tsv")
    augment_data.augment_file(src, out3, a, num_aug=N, replace_prob=P, seed=4, progress=False)
    assert open(out3, "rb").read() != open(out, "rb").read()
    assert not [f for f in os.listdir(tmp_path / "out") if ".tmp-" in f]


def test_candidates(aug):
    a = aug()
    (words, cands), = a.candidates_for(["w1 w2p3 w5 , w7"])
    assert words == ["w1", "w2p3", "w5", ",", "w7"]
    assert sorted(cands) == [0, 1, 2, 4]
    for wi, c in cands.items():
        assert len(c) == M and words[wi] not in c and len(set(c)) == M
        assert all(t in H.WORDS for t in c)
    # a multi-piece word: the nearest whole words to the mean of its pieces' embeddings (cosine)
    emb = a.encoder.word_embeddings.numpy()
    vocab = H.tiny_vocab()
    q = emb[[vocab["w2"], vocab["##p3"]]].mean(0)
    sims = {w: emb[vocab[w]] @ q / np.linalg.norm(emb[vocab[w]]) for w in H.WORDS if w != "w2"}
    sims["w2"] = -np.inf  # its own piece is excluded
    assert cands[1] == sorted(sims, key=lambda w: -sims[w])[:M]


def test_csv_and_jsonl(tmp_path, aug):
    from data import augmentation as augment_data

    src = tmp_path / "t.csv"
    src.write_text('sentence,label\n"w1, w2 w3",a\nw4 w5p1,b\n', encoding="utf-8")
    augment_data.augment_file(str(src), str(tmp_path / "o.csv"), aug(), num_aug=2, replace_prob=1.0, seed=0,
                              progress=False)
    rows = list(csv.reader(open(tmp_path / "o.csv", encoding="utf-8")))
    assert rows[0] == ["sentence", "label"] and rows[1] == ["w1, w2 w3", "a"] and len(rows) == 7
    assert [r[1] for r in rows[1:]] == ["a"] * 3 + ["b"] * 3
    assert rows[2][0].split(" ")[1] == ","  # p=1: every word with candidates replaced, punctuation kept
    assert all(w in H.WORDS for w in rows[2][0].replace(",", "").split())

    src = tmp_path / "t.jsonl"
    src.write_text(json.dumps({"body": "w1 w2", "y": 1}) + "\n", encoding="utf-8")
    augment_data.augment_file(str(src), str(tmp_path / "o.jsonl"), aug(), text_column="body", num_aug=3,
                              replace_prob=P, seed=0, progress=False)
    objs = [json.loads(ln) for ln in open(tmp_path / "o.jsonl", encoding="utf-8")]
    assert len(objs) == 4 and objs[0] == {"body": "w1 w2", "y": 1} and all(o["y"] == 1 for o in objs)


def test_errors(tmp_path, teacher):
    from data import augmentation as augment_data
    from bertkit_errors import UserError

    src = tmp_path / "bad.tsv"
    src.write_text("id\tlabel\tbody\n1\ta\tw1\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"bad\.tsv: no text column 'text or sentence' .*id\\tlabel\\tbody"):
        augment_data.read_table(str(src))
    with pytest.raises(UserError, match=r"no such file"):
        augment_data.load_teacher(teacher, bert_config_file=str(tmp_path / "none.json"))
    with pytest.raises(UserError, match=r"--teacher_checkpoint=.*no checkpoint"):
        augment_data.load_teacher(str(tmp_path))

    # the script: one line, exit 1
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
    r = subprocess.run([sys.executable, os.path.join(ROOT, "augment_data.py"), f"--input_file={src}",
                        f"--output_file={tmp_path / 'o.tsv'}", f"--teacher_checkpoint={teacher}"],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1].startswith(f"error: {src}: no text column")
    assert not os.path.exists(tmp_path / "o.tsv")
