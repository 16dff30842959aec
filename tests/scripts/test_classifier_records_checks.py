"""run_classifier.py (in-process) checks its records before training or evaluating: pair data with
type_vocab_size 1, and a dev file shorter than task_meta.json says, are one-line UserErrors naming the file."""
import json
import os

import pytest
import tensorflow as tf

import bertkit_errors
from tests.scripts.classifier_helpers import run

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GLUE = os.path.join(ROOT, "tests", "fixtures", "glue")
VOCAB = os.path.join(ROOT, "tests", "data_files", "bert_uncased_vocab.txt")


def _config(tmp_path, **changes):
    with open(os.path.join(ROOT, "configs", "tiny_bert.json")) as f:
        cfg = json.load(f)
    cfg.update(vocab_size=30522, **changes)
    path = tmp_path / f"config_{len(changes)}.json"
    path.write_text(json.dumps(cfg))
    return str(path)


def _args(tmp_path, config_file, **kw):
    return dict(task_name="MRPC", data_dir=os.path.join(GLUE, "MRPC"), output_dir=str(tmp_path / "out"),
                vocab_file=VOCAB, bert_config_file=config_file, max_seq_length=32, train_batch_size=2,
                eval_batch_size=2, **kw)


def test_pairs_with_type_vocab_size_1_then_a_shortened_dev_file(tmp_path):
    one = _config(tmp_path, type_vocab_size=1)
    with pytest.raises(bertkit_errors.UserError,
                       match=r"train.tf_record: records hold segment id 1 \(sentence pairs\), but type_vocab_size "
                             r"is 1 in .*config_1.json"):
        run(**_args(tmp_path, one, do_train=True, do_eval=True))
    dev = tmp_path / "out" / "dev.tf_record"
    expected = json.loads((tmp_path / "out" / "task_meta.json").read_text())["splits"]["dev"]["num_examples"]
    first = next(iter(tf.data.TFRecordDataset(str(dev)))).numpy()
    with open(dev, "r+b") as f:  # cut after the first record: evaluating it would report on 1 example
        f.truncate(8 + 4 + len(first) + 4)
    with pytest.raises(bertkit_errors.UserError,
                       match=rf"dev.tf_record: 1 records, but .*task_meta.json says {expected}"):
        run(**_args(tmp_path, _config(tmp_path), do_train=True, do_eval=True))
