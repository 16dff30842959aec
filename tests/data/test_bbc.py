"""data.bbc: the BBC News corpus and the stratified train/dev split."""
import collections
import hashlib
import os

import pytest

from data import bbc


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("bbc")
    return out, bbc.build_bbc(str(out), corpus_copies=(2,))


def _digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_corpus_format(built):
    out, result = built
    assert result["num_documents"] == 2225
    text = open(result["corpus"], encoding="utf-8").read()  # valid UTF-8
    docs = text.rstrip("\n").split("\n\n")
    assert len(docs) == 2225
    assert all(doc.strip() and "\n\n" not in doc for doc in docs)
    lines = text.split("\n")
    assert all(line == line.strip() for line in lines)
    assert docs[0].split("\n")[:3] == [
        "Ad sales boost Time Warner profit",
        "Quarterly profits at US media giant TimeWarner jumped 76% to $1.13bn (\u00a3600m) for the three months to "
        "December, from $639m year-earlier.",
        "The firm, which is now one of the biggest investors in Google, benefited from sales of high-speed internet "
        "connections and higher advert sales."]
    assert "\u00a3" in text and "\ufffd" not in text  # the one cp1252 article is decoded, not dropped
    sentences = sum(len(d.split("\n")) for d in docs)
    assert 30000 < sentences < 60000


def test_split_is_stratified_and_fixed(built, tmp_path):
    out, result = built
    rows = {}
    for name in ("train", "dev"):
        with open(result[name], encoding="utf-8") as f:
            header = f.readline()
            assert header == "id\tlabel\ttext\n"
            rows[name] = [line.rstrip("\n").split("\t") for line in f]
        assert all(len(r) == 3 and r[2] and "\r" not in r[2] for r in rows[name])
    assert len(rows["train"]) + len(rows["dev"]) == 2225
    assert not {r[0] for r in rows["train"]} & {r[0] for r in rows["dev"]}
    counts = {k: collections.Counter(r[1] for r in v) for k, v in rows.items()}
    assert set(counts["train"]) == set(counts["dev"]) == set(bbc.LABELS)
    for label in bbc.LABELS:
        total = counts["train"][label] + counts["dev"][label]
        assert counts["dev"][label] == round(total * 0.2)
    # deterministic and idempotent: the same bytes again; another seed gives another split
    again = bbc.build_bbc(str(out))
    assert _digest(again["dev"]) == _digest(result["dev"]) and _digest(again["corpus"]) == _digest(result["corpus"])
    other = bbc.build_bbc(str(tmp_path), seed=1)
    assert _digest(other["dev"]) != _digest(result["dev"])
    assert not [f for f in os.listdir(out) if ".tmp-" in f]


def test_corpus_copies(built):
    out, result = built
    one = open(result["corpus"], "rb").read()
    two = open(result["corpus_x2"], "rb").read()
    assert two == one + b"\n" + one


@pytest.mark.parametrize("paragraph,expected", [
    ("Mr. Smith went to Washington. He said it was fine.", ["Mr. Smith went to Washington.", "He said it was fine."]),
    ("The U.S. economy grew 3.5% in 2004. Shares rose!  Why? \"Nobody knows,\" he said.",
     ["The U.S. economy grew 3.5% in 2004.", "Shares rose!", "Why?", "\"Nobody knows,\" he said."]),
    ("It cost $1.13bn. \"We are happy.\" The end", ["It cost $1.13bn.", "\"We are happy.\"", "The end"]),
    ("J. K. Rowling wrote it. no capital here. Next one.", ["J. K. Rowling wrote it. no capital here.", "Next one."]),
    ("  ", []),
])
def test_split_sentences(paragraph, expected):
    assert bbc.split_sentences(paragraph) == expected


def test_max_docs_per_label_keeps_a_balanced_slice(tmp_path):
    from data import bbc

    result = bbc.build_bbc(str(tmp_path), max_docs_per_label=10)
    assert result["num_documents"] == 50
    assert result["num_train"] + result["num_dev"] == 50
    with open(result["train"], encoding="utf-8") as f:
        labels = [line.split("\t")[1] for line in list(f)[1:]]
    assert sorted(set(labels)) == list(bbc.LABELS)
    assert all(labels.count(label) == 8 for label in bbc.LABELS)
