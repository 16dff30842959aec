"""Examples -> features -> TFRecords: packing and truncation against the original BERT algorithm, the record schema,
metadata, and create_finetuning_data.py end to end on the GLUE fixtures."""
import json
import os
import subprocess
import sys

import pytest

from bertkit_errors import UserError
from data import finetuning
from data.processors import InputExample, get_processor

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GLUE = os.path.join(ROOT, "tests", "fixtures", "glue")
VOCAB = os.path.join(ROOT, "tests", "data_files", "bert_uncased_vocab.txt")


@pytest.fixture(scope="module")
def tokenizer():
    from tokenization import FullTokenizer
    return FullTokenizer(VOCAB, do_lower_case=True)


def _original_truncate(tokens_a, tokens_b, max_length):
    # google-research/bert run_classifier.py _truncate_seq_pair, verbatim logic
    while True:
        total_length = len(tokens_a) + len(tokens_b)
        if total_length <= max_length:
            break
        if len(tokens_a) > len(tokens_b):
            tokens_a.pop()
        else:
            tokens_b.pop()


def _original_convert(example, label_list, max_seq_length, tokenizer):
    """The original convert_single_example, on tokens: the oracle."""
    label_map = {label: i for i, label in enumerate(label_list)}
    tokens_a = tokenizer.tokenize(example.text_a)
    tokens_b = tokenizer.tokenize(example.text_b) if example.text_b else None
    if tokens_b:
        _original_truncate(tokens_a, tokens_b, max_seq_length - 3)
    elif len(tokens_a) > max_seq_length - 2:
        tokens_a = tokens_a[0:max_seq_length - 2]
    tokens = ["[CLS]"] + tokens_a + ["[SEP]"]
    segment_ids = [0] * len(tokens)
    if tokens_b:
        tokens += tokens_b + ["[SEP]"]
        segment_ids += [1] * (len(tokens_b) + 1)
    input_ids = tokenizer.convert_tokens_to_ids(tokens)
    input_mask = [1] * len(input_ids)
    pad = max_seq_length - len(input_ids)
    label = 0 if example.label is None else label_map[example.label]
    return input_ids + [0] * pad, input_mask + [0] * pad, segment_ids + [0] * pad, label


def test_truncated_lengths_equal_original_loop():
    for max_length in range(0, 12):
        for la in range(0, 14):
            for lb in range(0, 14):
                a, b = list(range(la)), list(range(lb))
                _original_truncate(a, b, max_length)
                assert finetuning.truncated_lengths(la, lb, max_length) == (len(a), len(b)), (la, lb, max_length)
                a2, b2 = list(range(la)), list(range(lb))
                finetuning.truncate_seq_pair(a2, b2, max_length)
                assert (a2, b2) == (a, b)


@pytest.mark.parametrize("task,folder,split,max_len", [
    ("mrpc", "MRPC", "train", 16), ("mrpc", "MRPC", "test", 64), ("cola", "CoLA", "train", 8),
    ("mnli", "MNLI", "dev_matched", 12), ("qnli", "QNLI", "train", 20), ("xnli", "XNLI", "train", 10)])
def test_features_equal_original_convert_single_example(tokenizer, task, folder, split, max_len):
    proc = get_processor(task)
    examples = proc.get_examples(os.path.join(GLUE, folder), split)
    stats = {}
    feats = finetuning.convert_examples_to_features(examples, proc.get_labels(), max_len, tokenizer, stats=stats)
    truncated = 0
    for i, ex in enumerate(examples):
        ids, mask, seg, label = _original_convert(ex, proc.get_labels(), max_len, tokenizer)
        assert feats["input_ids"][i].tolist() == ids
        assert feats["input_mask"][i].tolist() == mask
        assert feats["segment_ids"][i].tolist() == seg
        assert int(feats["label_ids"][i]) == label
        assert feats["example_index"][i] == ex.example_index and feats["is_real_example"][i] == 1
        na = len(tokenizer.tokenize(ex.text_a))
        nb = len(tokenizer.tokenize(ex.text_b)) if ex.text_b else 0
        truncated += (na + nb + (3 if nb else 2)) > max_len
    assert stats["num_truncated"] == truncated
    if max_len <= 16:
        assert truncated > 0          # the small lengths above do exercise truncation


def test_packing_details_and_padding(tokenizer):
    examples = [InputExample("a", "hello world", "good bye", "1", 0),
                InputExample("b", "hello", "   ", "0", 1),           # blank text_b: a single sentence
                InputExample("c", "the the the the the the", "x", None, 2)]
    feats = finetuning.convert_examples_to_features(examples, ["0", "1"], 8, tokenizer, pad_to_multiple_of=4)
    v = tokenizer.vocab
    cls, sep = v["[CLS]"], v["[SEP]"]
    assert feats["input_ids"][0].tolist() == [cls, v["hello"], v["world"], sep, v["good"], v["bye"], sep, 0]
    assert feats["segment_ids"][0].tolist() == [0, 0, 0, 0, 1, 1, 1, 0]
    assert feats["input_ids"][1].tolist() == [cls, v["hello"], sep, 0, 0, 0, 0, 0]
    assert feats["segment_ids"][1].tolist() == [0] * 8
    # a=6 tokens, b=1, room for 5: a loses 2
    assert feats["input_ids"][2].tolist() == [cls] + [v["the"]] * 4 + [sep, v["x"], sep]
    assert feats["label_ids"].tolist() == [1, 0, 0, 0]
    assert feats["is_real_example"].tolist() == [1, 1, 1, 0]
    assert feats["example_index"].tolist() == [0, 1, 2, -1]
    assert feats["input_mask"][3].tolist() == [0] * 8 and feats["input_ids"][3].tolist() == [0] * 8
    with pytest.raises(UserError, match="label 'maybe' is not in the label list"):
        finetuning.convert_examples_to_features([InputExample("z", "a", None, "maybe")], ["0", "1"], 8, tokenizer)
    with pytest.raises(UserError, match="max_seq_length=2"):
        finetuning.convert_examples_to_features(examples, ["0", "1"], 2, tokenizer)


def _read_records(path, max_len, regression=False):
    import tensorflow as tf
    from data import tfrecords
    spec = tfrecords.finetuning_feature_spec(max_len, is_regression=regression)
    ds = tfrecords.open_tfrecord_dataset(path).map(lambda r: tf.io.parse_single_example(r, spec))
    return [{k: v.numpy() for k, v in rec.items()} for rec in ds]


def test_write_task_records_regression_mnli_and_merge(tmp_path, tokenizer):
    out = str(tmp_path / "stsb")
    proc = get_processor("sts-b")
    meta = finetuning.write_task_records(proc, os.path.join(GLUE, "STS-B"), tokenizer, out, 32,
                                         splits="train,dev", pad_to_multiple_of=2)
    assert meta["is_regression"] and meta["labels"] == [] and meta["num_labels"] == 1
    assert meta["splits"]["train"]["num_examples"] == 4           # train is never padded
    assert meta["splits"]["dev"]["num_examples"] == 4 and meta["splits"]["dev"]["num_real_examples"] == 3
    recs = _read_records(os.path.join(out, "dev.tf_record"), 32, regression=True)
    assert [float(r["label_ids"][0]) for r in recs] == pytest.approx([5.0, 4.75, 5.0, 0.0])
    assert [int(r["is_real_example"][0]) for r in recs] == [1, 1, 1, 0]

    # a later run for the test split keeps the compatible train/dev entries
    meta = finetuning.write_task_records(proc, os.path.join(GLUE, "STS-B"), tokenizer, out, 32, splits=["test"])
    assert sorted(meta["splits"]) == ["dev", "test", "train"]
    assert not meta["splits"]["test"]["has_labels"]
    # a different max_seq_length drops (and deletes) the old records
    meta = finetuning.write_task_records(proc, os.path.join(GLUE, "STS-B"), tokenizer, out, 16, splits=["test"])
    assert sorted(meta["splits"]) == ["test"]
    assert sorted(os.listdir(out)) == ["task_meta.json", "test.tf_record"]

    out = str(tmp_path / "mnli")
    meta = finetuning.write_task_records(get_processor("mnli"), os.path.join(GLUE, "MNLI"), tokenizer, out, 32,
                                         splits="dev")
    assert sorted(meta["splits"]) == ["dev_matched", "dev_mismatched"]
    recs = _read_records(os.path.join(out, "dev_mismatched.tf_record"), 32)
    assert [int(r["label_ids"][0]) for r in recs] == [0, 0]         # contradiction = id 0
    with open(os.path.join(out, "task_meta.json")) as f:
        assert json.load(f) == meta


def test_bbc_records_skip_test_split(tmp_path, tokenizer):
    d = tmp_path / "bbc"
    d.mkdir()
    (d / "train.tsv").write_text("id\tlabel\ttext\ns_1\tsport\tA goal.\nt_1\ttech\tA phone.\n", encoding="utf-8")
    (d / "dev.tsv").write_text("id\tlabel\ttext\np_1\tpolitics\tA vote.\n", encoding="utf-8")
    meta = finetuning.write_task_records(get_processor("bbc"), str(d), tokenizer, str(tmp_path / "out"), 16,
                                         splits="train,dev,test")
    assert sorted(meta["splits"]) == ["dev", "train"]
    assert meta["labels"] == ["business", "entertainment", "politics", "sport", "tech"]
    recs = _read_records(str(tmp_path / "out" / "train.tf_record"), 16)
    assert [int(r["label_ids"][0]) for r in recs] == [3, 4]


def _run_script(args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, os.path.join(ROOT, "create_finetuning_data.py")] + args, cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)


def test_create_finetuning_data_script_end_to_end(tmp_path, tokenizer):
    out = tmp_path / "mrpc"
    r = _run_script(["--task_name=MRPC", f"--data_dir={GLUE}/MRPC", f"--vocab_file={VOCAB}", "--do_lower_case",
                     "--max_seq_length=24", f"--output_dir={out}", "--pad_to_multiple_of=4"])
    assert r.returncode == 0, r.stderr
    with open(out / "task_meta.json") as f:
        meta = json.load(f)
    assert meta["task"] == "mrpc" and meta["labels"] == ["0", "1"] and meta["max_seq_length"] == 24
    assert meta["do_lower_case"] is True and meta["vocab_file"] == os.path.abspath(VOCAB)
    assert meta["main_metric"] == "f1" and meta["is_regression"] is False
    assert {k: (v["num_real_examples"], v["num_examples"]) for k, v in meta["splits"].items()} == \
        {"train": (3, 3), "dev": (3, 4), "test": (2, 4)}
    proc = get_processor("mrpc")
    for split in ("train", "dev", "test"):
        recs = _read_records(str(out / meta["splits"][split]["file"]), 24)
        examples = proc.get_examples(os.path.join(GLUE, "MRPC"), split)
        assert len(recs) == meta["splits"][split]["num_examples"]
        for rec, ex in zip(recs, examples):
            ids, mask, seg, label = _original_convert(ex, ["0", "1"], 24, tokenizer)
            assert rec["input_ids"].tolist() == ids and rec["input_mask"].tolist() == mask
            assert rec["segment_ids"].tolist() == seg and int(rec["label_ids"][0]) == label
        assert meta["splits"][split]["num_truncated"] == len(examples)    # every MRPC pair exceeds 24 tokens

    # custom task: label order from --labels is the id order, saved in the metadata
    d = tmp_path / "custom"
    d.mkdir()
    (d / "train.csv").write_text('txt,stars\n"good, really",5\nbad,1\nok,3\n', encoding="utf-8")
    (d / "dev.jsonl").write_text('{"txt": "fine", "stars": 3}\n', encoding="utf-8")
    r = _run_script(["--task_name=custom", f"--data_dir={d}", f"--vocab_file={VOCAB}", "--max_seq_length=8",
                     f"--output_dir={tmp_path / 'cout'}", "--text_a_column=txt", "--label_column=stars",
                     "--labels=5,3,1", "--splits=train,dev"])
    assert r.returncode == 0, r.stderr
    meta = json.loads((tmp_path / "cout" / "task_meta.json").read_text())
    assert meta["labels"] == ["5", "3", "1"] and meta["processor"]["labels_source"] == "flag"
    recs = _read_records(str(tmp_path / "cout" / "train.tf_record"), 8)
    assert [int(x["label_ids"][0]) for x in recs] == [0, 2, 1]

    # a malformed row: one-line error naming file and line, exit 1, nothing written
    (d / "dev.jsonl").write_text('{"txt": "fine", "stars": 3}\n{"txt": "meh", "stars": 4}\n', encoding="utf-8")
    r = _run_script(["--task_name=custom", f"--data_dir={d}", f"--vocab_file={VOCAB}",
                     f"--output_dir={tmp_path / 'bad'}", "--text_a_column=txt", "--label_column=stars",
                     "--labels=5,3,1", "--splits=train,dev"])
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "dev.jsonl:2: unknown label '4'" in r.stderr and "Traceback" not in r.stderr
    assert os.listdir(tmp_path / "bad") == []


def test_create_finetuning_data_refuses_other_settings_and_model_dirs(tmp_path):
    """Records of other settings are never replaced by create_finetuning_data.py, nor a trained model's records."""
    out = tmp_path / "mrpc"
    common = ["--task_name=MRPC", f"--data_dir={GLUE}/MRPC", f"--vocab_file={VOCAB}", "--do_lower_case",
              f"--output_dir={out}"]
    assert _run_script(common + ["--max_seq_length=24"]).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    r = _run_script(common + ["--max_seq_length=32"])
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        f"error: --output_dir={out}: holds records written with max_seq_length=24, not 32 (its task_meta.json); "
        "give another --output_dir, or remove those records first")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert _run_script(common + ["--max_seq_length=24"]).returncode == 0  # the same settings: rewritten as before

    (out / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n')
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    r = _run_script(common + ["--max_seq_length=24"])
    assert r.returncode == 1 and "holds a trained model" in r.stderr.strip().splitlines()[-1]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
