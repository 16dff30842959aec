"""Non-neural baseline for the BBC News task: TF-IDF + logistic regression (scikit-learn, a dev dependency).

Uses the train/dev split of `data.bbc.build_bbc` (the same files the fine-tuned models read) through the `bbc` task
processor, and prints dev accuracy (and macro F1) so BERT fine-tuning results have a reference point.

    .venv/bin/python bench/bench_tfidf_baseline.py [--data_dir DIR]   # DIR: an existing build_bbc output
"""
import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data import bbc  # noqa: E402
from training import baselines  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default=None, help="folder with train.tsv/dev.tsv (default: build a fresh one)")
    parser.add_argument("--seed", type=int, default=12345, help="build_bbc split seed (default: build_bbc's)")
    parser.add_argument("--C", type=float, default=10.0, help="inverse regularisation strength")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir
        if data_dir is None:
            data_dir = tmp
            bbc.build_bbc(data_dir, seed=args.seed)
        result = baselines.tfidf_baseline(data_dir, "bbc", C=args.C)

    print(f"BBC News TF-IDF (1-2 grams, sublinear tf) + logistic regression (C={args.C})")
    n_dev = result["num_dev"]
    print(f"train {result['num_train']} / dev {n_dev} articles, {result['num_features']} features, "
          f"fit+predict {result['seconds']:.1f}s")
    print(f"dev accuracy: {result['accuracy']:.4f}  ({int(round(result['accuracy'] * n_dev))}/{n_dev})")
    print(f"dev macro F1: {result['macro_f1']:.4f}")


if __name__ == "__main__":
    main()
