"""training.baselines: TF-IDF + logistic regression on a task's train/dev split."""
from training import baselines

WORDS = {"business": "shares profit market bank", "entertainment": "film actor music award",
         "politics": "minister election party vote", "sport": "match goal team coach", "tech": "software phone web chip"}


def _write(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        f.write("id\tlabel\ttext\n")
        for i, (label, text) in enumerate(rows):
            f.write(f"{label}_{i:03d}\t{label}\t{text}\n")


def test_tfidf_baseline_separates_distinct_vocabularies_and_counts(tmp_path):
    train = [(label, f"{words} report number {i}") for label, words in WORDS.items() for i in range(6)]
    dev = [(label, f"the {words.split()[i % 4]} story") for label, words in WORDS.items() for i in range(2)]
    _write(tmp_path / "train.tsv", train)
    _write(tmp_path / "dev.tsv", dev)
    result = baselines.tfidf_baseline(str(tmp_path), "bbc")
    assert result["accuracy"] == 1.0
    assert (result["num_train"], result["num_dev"]) == (30, 10)
    assert result["num_features"] > 20 and 0.0 <= result["macro_f1"] <= 1.0


def test_tfidf_baseline_is_wrong_when_dev_labels_are_swapped(tmp_path):
    train = [(label, f"{words} report number {i}") for label, words in WORDS.items() for i in range(6)]
    swapped = dict(zip(WORDS, list(WORDS)[1:] + list(WORDS)[:1]))
    dev = [(swapped[label], f"the {words.split()[i % 4]} story") for label, words in WORDS.items() for i in range(2)]
    _write(tmp_path / "train.tsv", train)
    _write(tmp_path / "dev.tsv", dev)
    assert baselines.tfidf_baseline(str(tmp_path), "bbc")["accuracy"] == 0.0
