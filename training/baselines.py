"""Non-neural baselines for text classification tasks: TF-IDF + logistic regression (scikit-learn).

    >>> from training import baselines
    >>> result = baselines.tfidf_baseline(data_dir, "bbc")   # {"accuracy", "macro_f1", ...} on the task's dev set

The reference point BERT fine-tuning results are read against (bench/bench_tfidf_baseline.py, demo.py's summary).
"""
import time

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from data.processors import get_processor
from training import metrics


def tfidf_baseline(data_dir, task_name="bbc", C=10.0):
    """Fit TF-IDF (1-2 grams, sublinear tf, min_df 2) + logistic regression on the task's train split of `data_dir`
    and score its dev split: {"accuracy", "macro_f1", ..., "num_train", "num_dev", "num_features", "seconds"}."""
    proc = get_processor(task_name)
    label_id = {x: i for i, x in enumerate(proc.get_labels())}
    train = proc.get_train_examples(data_dir)
    dev = proc.get_dev_examples(data_dir)
    y_train = np.array([label_id[e.label] for e in train])
    y_dev = np.array([label_id[e.label] for e in dev])
    start = time.perf_counter()
    vectorizer = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2, lowercase=True)
    x_train = vectorizer.fit_transform([e.text_a for e in train])
    x_dev = vectorizer.transform([e.text_a for e in dev])
    clf = LogisticRegression(C=C, max_iter=2000)
    clf.fit(x_train, y_train)
    pred = clf.predict(x_dev)
    result = dict(metrics.compute_metrics(task_name, pred, y_dev))
    result.update(num_train=len(train), num_dev=len(dev), num_features=x_train.shape[1],
                  seconds=time.perf_counter() - start)
    return result
