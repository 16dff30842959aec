"""Task processors on files laid out as the official GLUE/XNLI distributions, and the custom/BBC processors."""
import json
import os
import subprocess
import sys

import pytest

from bertkit_errors import UserError
from data import processors, tasks
from data.processors import get_processor

GLUE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "glue")

# Label lists of google-research/bert run_classifier.py and HF transformers glue processors (order matters: ids).
OFFICIAL_LABELS = {
    "cola": ["0", "1"], "sst-2": ["0", "1"], "mrpc": ["0", "1"], "qqp": ["0", "1"], "wnli": ["0", "1"],
    "mnli": ["contradiction", "entailment", "neutral"], "mnli-mm": ["contradiction", "entailment", "neutral"],
    "ax": ["contradiction", "entailment", "neutral"], "xnli": ["contradiction", "entailment", "neutral"],
    "qnli": ["entailment", "not_entailment"], "rte": ["entailment", "not_entailment"], "sts-b": [],
}

# (task, fixture dir, split) -> (number of examples, first example's guid, text_a start, text_b start, label)
# Written by hand from the fixture files, so the column positions are checked against the files, not the code.
EXPECTED = {
    ("cola", "CoLA", "train"): (4, "train-0", "Our friends won't", None, "1"),
    ("cola", "CoLA", "dev"): (3, "dev-0", "The sailors rode", None, "1"),
    ("cola", "CoLA", "test"): (3, "test-0", "Bill whistled", None, None),
    ("sst-2", "SST-2", "train"): (4, "train-0", "hide new secretions", None, "0"),
    ("sst-2", "SST-2", "dev"): (3, "dev-0", "it 's a charming", None, "1"),
    ("sst-2", "SST-2", "test"): (3, "test-0", "uneasy mishmash", None, None),
    ("mrpc", "MRPC", "train"): (3, "train-0", "Amrozi accused", "Referring to him", "1"),
    ("mrpc", "MRPC", "dev"): (3, "dev-0", "He said the foodservice", '" The foodservice', "1"),
    ("mrpc", "MRPC", "test"): (2, "test-0", "PCCW 's chief", "Current Chief", None),
    ("sts-b", "STS-B", "train"): (4, "train-0", "A plane is taking off.", "An air plane", "5.000"),
    ("sts-b", "STS-B", "dev"): (3, "dev-0", "A man with a hard hat", "A man wearing", "5.000"),
    ("sts-b", "STS-B", "test"): (2, "test-0", "A girl is styling", "A girl is brushing", None),
    ("qqp", "QQP", "train"): (3, "train-133273", "How is the life", "Which level", "0"),
    ("qqp", "QQP", "dev"): (3, "dev-201359", "Why are African", "Why are hispanics", "0"),
    ("qqp", "QQP", "test"): (2, "test-0", "Would the idea", "Do you think", None),
    ("mnli", "MNLI", "train"): (4, "train-0", "Conceptually cream", "Product and geography", "neutral"),
    ("mnli", "MNLI", "dev_matched"): (3, "dev_matched-0", "The new rights", "Everyone really", "neutral"),
    ("mnli", "MNLI", "dev_mismatched"): (2, "dev_mismatched-0", "Your contribution", "Your contributions",
                                         "contradiction"),
    ("mnli", "MNLI", "test_matched"): (2, "test_matched-0", "Hierbas, ans seco", "Hierbas is a name", None),
    ("mnli", "MNLI", "test_mismatched"): (1, "test_mismatched-0", "What have you", "So what's", None),
    ("qnli", "QNLI", "train"): (3, "train-0", "When did the third", "Unlike the two", "not_entailment"),
    ("qnli", "QNLI", "dev"): (2, "dev-0", "What came into force", "As of that day", "entailment"),
    ("qnli", "QNLI", "test"): (1, "test-0", "What organization", "For some decades", None),
    ("rte", "RTE", "train"): (3, "train-0", "No Weapons", "Weapons of Mass", "not_entailment"),
    ("rte", "RTE", "dev"): (2, "dev-0", "Dana Reeve", "Christopher Reeve had", "not_entailment"),
    ("rte", "RTE", "test"): (1, "test-0", "Mangla was", "Shukla is", None),
    ("wnli", "WNLI", "train"): (4, "train-0", "I stuck a pin", "The carrot", "1"),
    ("wnli", "WNLI", "dev"): (2, "dev-0", "The drain is", "The hair", "0"),
    ("wnli", "WNLI", "test"): (1, "test-0", "Maude and Dora", "Horses ran", None),
    ("ax", "diagnostic", "test"): (3, "test-0", "The cat sat", "The cat did not", None),
    ("xnli", "XNLI", "train"): (4, "train-0", "从 概念", "产品 和", "neutral"),
    ("xnli", "XNLI", "dev"): (2, "dev-1", "他说，妈妈", "他一句话", "contradiction"),
    ("xnli", "XNLI", "test"): (1, "test-0", "嗯，我根本", "我还没有", "neutral"),
}


@pytest.mark.parametrize("key", sorted(EXPECTED), ids=lambda k: f"{k[0]}-{k[2]}")
def test_glue_processor_reads_official_layout(key):
    task, folder, split = key
    count, guid, text_a, text_b, label = EXPECTED[key]
    proc = get_processor(task)
    examples = proc.get_examples(os.path.join(GLUE, folder), split)
    assert len(examples) == count
    first = examples[0]
    assert first.guid == guid
    assert first.text_a.startswith(text_a)
    assert (first.text_b is None) if text_b is None else first.text_b.startswith(text_b)
    assert first.label == label
    labels = proc.get_labels()
    for ex in examples:
        assert ex.text_a.strip()
        if ex.label is not None and not proc.is_regression:
            assert ex.label in labels
        if proc.is_regression and ex.label is not None:
            float(ex.label)


@pytest.mark.parametrize("task", sorted(OFFICIAL_LABELS))
def test_label_lists_match_original_bert(task):
    proc = get_processor(task)
    assert proc.get_labels() == OFFICIAL_LABELS[task]
    assert proc.is_regression == (task == "sts-b")
    assert proc.num_labels == (1 if task == "sts-b" else len(OFFICIAL_LABELS[task]))


def test_every_glue_split_of_every_task_reads():
    dirs = {"cola": "CoLA", "sst-2": "SST-2", "mrpc": "MRPC", "sts-b": "STS-B", "qqp": "QQP", "mnli": "MNLI",
            "mnli-mm": "MNLI", "qnli": "QNLI", "rte": "RTE", "wnli": "WNLI", "ax": "diagnostic", "xnli": "XNLI"}
    for task, folder in dirs.items():
        proc = get_processor(task)
        assert proc.split_names(), task
        for split in proc.split_names():
            assert proc.get_examples(os.path.join(GLUE, folder), split), (task, split)
        # the three classic entry points
        if proc.train_splits:
            assert proc.get_train_examples(os.path.join(GLUE, folder))
        if proc.dev_splits:
            assert proc.get_dev_examples(os.path.join(GLUE, folder))
        assert proc.get_test_examples(os.path.join(GLUE, folder))


def test_mnli_matched_and_mismatched_dev_sets():
    mnli, mm = get_processor("MNLI"), get_processor("mnli-mm")
    d = os.path.join(GLUE, "MNLI")
    assert mnli.dev_splits == ("dev_matched", "dev_mismatched")
    assert mm.dev_splits == ("dev_mismatched",)
    assert mnli.get_dev_examples(d)[0].text_a.startswith("The new rights")
    assert mm.get_dev_examples(d)[0].text_a.startswith("Your contribution")
    assert mm.get_test_examples(d)[0].text_a.startswith("What have you decided")
    # the gold label is the LAST column: dev has 16 columns, train 12
    assert [e.label for e in mnli.get_examples(d, "dev_matched")] == ["neutral", "contradiction", "entailment"]


def test_task_names_module_lists_every_processor_and_imports_nothing_heavy():
    """data/tasks.py (the scripts' --task_name check) names the processors in order, without numpy/TensorFlow."""
    assert tasks.TASK_NAMES == tuple(processors.PROCESSORS)
    code = "import sys, data.tasks; print(sorted({'numpy', 'tensorflow'} & set(sys.modules)))"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_task_names_case_insensitive_and_aliases():
    for name, canon in [("SST-2", "sst-2"), ("sst2", "sst-2"), ("Sst_2", "sst-2"), ("STS-B", "sts-b"),
                        ("stsb", "sts-b"), ("MNLI-MM", "mnli-mm"), ("mnlimm", "mnli-mm"), ("CoLA", "cola"),
                        ("AX", "ax"), ("Custom", "custom"), ("BBC", "bbc"), ("XNLI", "xnli")]:
        assert processors.canonical_task_name(name) == canon
    with pytest.raises(UserError, match="unknown task"):
        get_processor("glue-9")


def test_xnli_language_filter_and_contradictory():
    d = os.path.join(GLUE, "XNLI")
    proc = get_processor("xnli")       # original BERT default: zh
    train = proc.get_train_examples(d)
    assert train[-1].label == "contradiction"      # 'contradictory' in multinli.train.*.tsv
    dev = proc.get_dev_examples(d)
    assert [e.label for e in dev] == ["contradiction", "entailment"]
    assert [e.example_index for e in dev] == [1, 2]    # rows in the whole file (en row 0 skipped)
    de = get_processor("xnli", language="de").get_dev_examples(d)
    assert len(de) == 1 and de[0].text_a.startswith("Und er sagte")
    with pytest.raises(UserError, match="language 'fr'"):
        get_processor("xnli", language="fr").get_dev_examples(d)
    with pytest.raises(UserError, match="multinli.train.de.tsv"):
        get_processor("xnli", language="de").get_train_examples(d)


def test_quotes_are_not_field_delimiters():
    ex = get_processor("sst-2").get_test_examples(os.path.join(GLUE, "SST-2"))
    assert ex[2].text_a == 'it \'s " a bit of a downer'
    ex = get_processor("mrpc").get_train_examples(os.path.join(GLUE, "MRPC"))
    assert len(ex) == 3 and ex[0].text_a.count('"') == 2


def test_wrong_task_files_are_refused_by_header(tmp_path):
    with pytest.raises(UserError, match=r"QNLI/train.tsv:1: header has 'index' in column 0, "
                                        r"expected 'Quality' \(is this the MRPC"):
        get_processor("mrpc").get_train_examples(os.path.join(GLUE, "QNLI"))


def _write(path, lines, newline="\n"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(newline.join(lines).encode("utf-8") + newline.encode())
    return str(path)


def test_malformed_glue_rows_report_file_and_line(tmp_path):
    d = tmp_path / "RTE"
    header = "index\tsentence1\tsentence2\tlabel"
    path = _write(d / "train.tsv", [header, "0\ta\tb\tentailment", "1\ta\tb", "2\ta\tb\tentailment"])
    with pytest.raises(UserError, match=r"train.tsv:3: expected 4 tab-separated columns, found 3"):
        get_processor("rte").get_train_examples(str(d))
    _write(d / "train.tsv", [header, "0\ta\tb\tentailment", "1\ta\tb\tyes"])
    with pytest.raises(UserError, match=r"train.tsv:3: unknown label 'yes'"):
        get_processor("rte").get_train_examples(str(d))
    _write(d / "train.tsv", [header, "0\t \tb\tentailment"])
    with pytest.raises(UserError, match=r"train.tsv:2: empty text"):
        get_processor("rte").get_train_examples(str(d))
    d2 = tmp_path / "STSB"
    _write(d2 / "dev.tsv", ["\t".join(["index", "genre", "filename", "year", "old_index", "source1", "source2",
                                       "sentence1", "sentence2", "score"]),
                            "\t".join(["0", "g", "f", "y", "o", "s", "s", "a", "b", "high"])])
    with pytest.raises(UserError, match=r"dev.tsv:2: label 'high' is not a number"):
        get_processor("sts-b").get_dev_examples(str(d2))
    assert path.endswith("train.tsv")


def test_skip_malformed_keeps_row_numbers(tmp_path):
    d = tmp_path / "QQP"
    _write(d / "train.tsv", ["id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate", "7\t1\t2\tq a\tq b\t1",
                             "8\t3\t4\tbroken row", "9\t5\t6\tq c\tq d\t0"])
    ex = get_processor("qqp", skip_malformed=True).get_train_examples(str(d))
    assert [(e.guid, e.example_index, e.label) for e in ex] == [("train-7", 0, "1"), ("train-9", 2, "0")]


def test_crlf_bom_and_missing_files(tmp_path):
    d = tmp_path / "SST"
    _write(d / "dev.tsv", ["\ufeffsentence\tlabel", "good film\t1", "bad film\t0"], newline="\r\n")
    ex = get_processor("sst-2").get_dev_examples(str(d))
    assert [(e.text_a, e.label) for e in ex] == [("good film", "1"), ("bad film", "0")]
    with pytest.raises(UserError, match="train.tsv: file not found"):
        get_processor("sst-2").get_train_examples(str(d))
    with pytest.raises(UserError, match="not a directory"):
        get_processor("sst-2").get_train_examples(str(tmp_path / "nowhere"))


def test_ax_reads_diagnostic_or_ax_tsv(tmp_path):
    proc = get_processor("ax")
    assert proc.train_splits == () and proc.dev_splits == ()
    with pytest.raises(UserError, match="no training set"):
        proc.get_train_examples(os.path.join(GLUE, "diagnostic"))
    _write(tmp_path / "AX.tsv", ["index\tsentence1\tsentence2", "0\tx y\tz"])
    assert proc.get_test_examples(str(tmp_path))[0].text_b == "z"


# ---------------------------------------------------------------------------------------------------------------
# custom


ROWS = [("great movie", "a", "pos"), ("awful, boring", "b", "neg"), ("fine \"ok\" film", "c", "neu"),
        ("loved it", "d", "pos")]


def _custom_files(d, fmt, header=True, label=True, split="train", rows=ROWS):
    d.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        with open(d / f"{split}.jsonl", "w", encoding="utf-8") as f:
            for t, b, y in rows:
                obj = {"review": t, "other": b}
                if label:
                    obj["sentiment"] = y
                f.write(json.dumps(obj) + "\n")
        return
    sep = "\t" if fmt == "tsv" else ","
    lines = []
    if header:
        lines.append(sep.join(["review", "other"] + (["sentiment"] if label else [])))
    for t, b, y in rows:
        if fmt == "csv":
            t = '"' + t.replace('"', '""') + '"'
        lines.append(sep.join([t, b] + ([y] if label else [])))
    (d / f"{split}.{fmt}").write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize("fmt,header", [("tsv", True), ("tsv", False), ("csv", True), ("csv", False),
                                        ("jsonl", True)])     # JSONL: keys, never a header
def test_custom_processor_formats(tmp_path, fmt, header):
    d = tmp_path / "data"
    _custom_files(d, fmt, header=header)
    _custom_files(d, fmt, header=header, split="dev", rows=ROWS[:2])
    _custom_files(d, fmt, header=header, label=False, split="test", rows=ROWS[:3])
    cols = dict(text_a_column="review", text_b_column="other", label_column="sentiment") if header else \
        dict(text_a_column="0", text_b_column="1", label_column="2", has_header=False)
    proc = get_processor("custom", **cols)
    train = proc.get_train_examples(str(d))
    assert [(e.text_a, e.text_b, e.label) for e in train] == [tuple(r) for r in ROWS]
    assert proc.get_labels() == ["neg", "neu", "pos"]          # sorted, not first-seen (pos, neg, neu)
    dev = proc.get_dev_examples(str(d))
    assert [e.label for e in dev] == ["pos", "neg"]
    test = proc.get_test_examples(str(d))
    assert [e.label for e in test] == [None, None, None] and test[2].text_a == ROWS[2][0]
    assert proc.config()["labels_source"] == "train file (sorted)"


def test_custom_labels_flag_order_and_numeric_sort(tmp_path):
    d = tmp_path / "d"
    rows = [("x", "b", "10"), ("y", "b", "2"), ("z", "b", "1")]
    _custom_files(d, "tsv", rows=rows)
    proc = get_processor("custom", text_a_column="review", label_column="sentiment")
    proc.get_train_examples(str(d))
    assert proc.get_labels() == ["1", "2", "10"]
    proc = get_processor("custom", text_a_column="review", label_column="sentiment", labels="10,2,1")
    assert proc.get_labels() == ["10", "2", "1"]
    proc = get_processor("custom", text_a_column="review", label_column="sentiment", labels="1,2")
    with pytest.raises(UserError, match=r"train.tsv:2: unknown label '10'"):
        proc.get_train_examples(str(d))
    with pytest.raises(UserError, match="duplicate"):
        get_processor("custom", text_a_column="review", label_column="sentiment", labels="a,b,a")


def test_custom_regression(tmp_path):
    d = tmp_path / "d"
    _custom_files(d, "csv", rows=[("x", "b", "0.5"), ("y", "b", "3")])
    proc = get_processor("custom", text_a_column="review", label_column="sentiment", is_regression=True)
    assert [e.label for e in proc.get_train_examples(str(d))] == ["0.5", "3"]
    assert proc.get_labels() == [] and proc.num_labels == 1 and proc.main_metric == "spearman"
    _custom_files(d, "csv", rows=[("x", "b", "0.5"), ("y", "b", "lots")])
    with pytest.raises(UserError, match=r"train.csv:3: label 'lots' is not a number"):
        proc.get_train_examples(str(d))


def test_custom_errors_name_file_and_line(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    # a quoted field spanning two lines: the bad row after it is on physical line 4
    (d / "train.csv").write_text('text,label\n"multi\nline",a\nshort\n', encoding="utf-8")
    proc = get_processor("custom", text_a_column="text", label_column="label")
    with pytest.raises(UserError, match=r"train.csv:4: expected 2 columns, found 1"):
        proc.get_train_examples(str(d))
    (d / "train.csv").write_text('text,label\n"multi\nline",a\n,b\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"train.csv:4: empty text"):
        get_processor("custom", text_a_column="text", label_column="label").get_train_examples(str(d))
    (d / "train.csv").unlink()
    (d / "train.jsonl").write_text('{"text": "a", "label": "x"}\n{"text": "b"}\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"train.jsonl:2: no label"):
        get_processor("custom", text_a_column="text", label_column="label").get_train_examples(str(d))
    (d / "train.jsonl").write_text('{"text": "a", "label": "x"}\n{"text": \n', encoding="utf-8")
    with pytest.raises(UserError, match=r"train.jsonl:2: invalid JSON"):
        get_processor("custom", text_a_column="text", label_column="label").get_train_examples(str(d))
    (d / "train.tsv").write_text("text\tlabel\na\tx\n", encoding="utf-8")
    with pytest.raises(UserError, match="several train files"):
        get_processor("custom", text_a_column="text", label_column="label").get_train_examples(str(d))
    (d / "train.jsonl").unlink()
    with pytest.raises(UserError, match=r"no column 'body' for --text_a_column \(columns: text, label\)"):
        get_processor("custom", text_a_column="body", label_column="label").get_train_examples(str(d))
    with pytest.raises(UserError, match="--text_a_column is required"):
        get_processor("custom", label_column="label")
    with pytest.raises(UserError, match="need a 0-based column index"):
        get_processor("custom", text_a_column="text", label_column="label", has_header=False)
    with pytest.raises(UserError, match="only for --task_name=custom"):
        get_processor("mrpc", text_a_column="text")


def test_jsonl_non_string_labels(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "train.jsonl").write_text('{"t": "a", "y": 1}\n{"t": "b", "y": 0}\n\n{"t": "c", "y": true}\n',
                                   encoding="utf-8")
    proc = get_processor("custom", text_a_column="t", label_column="y")
    ex = proc.get_train_examples(str(d))
    assert [e.label for e in ex] == ["1", "0", "true"]
    assert proc.get_labels() == ["0", "1", "true"]


def test_bbc_processor(tmp_path):
    from data import bbc
    assert processors.BBC_LABELS == list(bbc.LABELS)
    d = tmp_path / "bbc"
    _write(d / "train.tsv", ["id\tlabel\ttext", "sport_001\tsport\tA late goal won it.",
                             "tech_002\ttech\tA new phone.", "business_003\tbusiness\tShares fell."])
    _write(d / "dev.tsv", ["id\tlabel\ttext", "politics_004\tpolitics\tThe vote.", "x_5\tweather\tRain."])
    proc = get_processor("bbc")
    assert proc.get_labels() == ["business", "entertainment", "politics", "sport", "tech"]
    train = proc.get_train_examples(str(d))
    assert [(e.guid, e.label) for e in train] == [("train-sport_001", "sport"), ("train-tech_002", "tech"),
                                                  ("train-business_003", "business")]
    with pytest.raises(UserError, match=r"dev.tsv:3: unknown label 'weather'"):
        proc.get_dev_examples(str(d))
    assert proc.test_splits == ()
