"""Non-neural baseline for the BBC News task: TF-IDF + logistic regression (scikit-learn, a dev dependency).

Uses the train/dev split of `data.bbc.build_bbc` (the same files the fine-tuned models read) through the `bbc` task
processor, and prints dev accuracy (and macro F1) so BERT fine-tuning results have a reference point.

    .venv/bin/python bench/bench_tfidf_baseline.py [--data_dir DIR]   # DIR: an existing build_bbc output
"""
import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from data import bbc  # noqa: E402
from data.processors import get_processor  # noqa: E402
from training import metrics  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default=None, help="folder with train.tsv/dev.tsv (default: build a fresh one)")
    parser.add_argument("--seed", type=int, default=12345, help="build_bbc split seed (default: build_bbc's)")
    parser.add_argument("--C", type=float, default=10.0, help="inverse regularisation strength")
    args = parser.parse_args()
    try:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        sys.exit("error: scikit-learn is needed (pip install -r requirements-dev.txt)")

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir
        if data_dir is None:
            data_dir = tmp
            bbc.build_bbc(data_dir, seed=args.seed)
        proc = get_processor("bbc")
        labels = proc.get_labels()
        train = proc.get_train_examples(data_dir)
        dev = proc.get_dev_examples(data_dir)

    label_id = {x: i for i, x in enumerate(labels)}
    y_train = np.array([label_id[e.label] for e in train])
    y_dev = np.array([label_id[e.label] for e in dev])
    start = time.perf_counter()
    vectorizer = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2, lowercase=True)
    x_train = vectorizer.fit_transform([e.text_a for e in train])
    x_dev = vectorizer.transform([e.text_a for e in dev])
    clf = LogisticRegression(C=args.C, max_iter=2000)
    clf.fit(x_train, y_train)
    pred = clf.predict(x_dev)
    seconds = time.perf_counter() - start
    result = metrics.compute_metrics("bbc", pred, y_dev)
    print(f"BBC News TF-IDF (1-2 grams, sublinear tf) + logistic regression (C={args.C})")
    print(f"train {len(train)} / dev {len(dev)} articles, {x_train.shape[1]} features, fit+predict {seconds:.1f}s")
    print(f"dev accuracy: {result['accuracy']:.4f}  ({int(round(result['accuracy'] * len(dev)))}/{len(dev)})")
    print(f"dev macro F1: {result['macro_f1']:.4f}")


if __name__ == "__main__":
    main()
