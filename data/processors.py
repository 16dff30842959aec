"""Task processors: read fine-tuning data sets exactly as they are distributed, into `InputExample`s.

    from data.processors import get_processor
    proc = get_processor("mrpc")                  # case-insensitive; "sst-2", "sst2", "SST_2" are the same task
    proc.get_train_examples(data_dir); proc.get_dev_examples(data_dir); proc.get_test_examples(data_dir)
    proc.get_labels(); proc.is_regression; proc.main_metric; proc.task_name
    proc.dev_splits / proc.test_splits           # e.g. ["dev_matched", "dev_mismatched"] for MNLI
    proc.get_examples(data_dir, split)           # any name in proc.split_names()

GLUE files are read the way the official `download_glue_data.py` distributes them: tab separated, no quoting (the
files contain unbalanced quote characters; the original BERT `_read_tsv` and HF `datasets` read them without quote
processing), UTF-8, the first line a header except in CoLA train/dev. Column positions and label lists follow
google-research/bert `run_classifier.py` and HF `transformers` glue processors; the header names at those positions
are checked, so pointing a task at another task's files is an error, not silent garbage.

Malformed rows (wrong column count, unknown label, empty text) raise `UserError("<file>:<line>: ...")`;
`skip_malformed=True` logs and skips them instead (for copies of QQP with broken rows, as HF's processor does).

`custom` reads `train`, `dev`, `test` files named `<split>.tsv`, `<split>.csv` or `<split>.jsonl` in `data_dir`.
Without `labels`, the label list is collected from the training file and SORTED (numerically when every label is an
integer, otherwise as strings): the order then does not depend on how the training file happens to be shuffled, and
the same data always gives the same label ids. The order is saved in the records' metadata (`task_meta.json`).
"""
import csv
import dataclasses
import json
import logging
import os
import re

from bertkit_errors import UserError
from data import bbc as _bbc

logger = logging.getLogger(__name__)

BBC_LABELS = list(_bbc.LABELS)      # business entertainment politics sport tech
NLI_LABELS = ["contradiction", "entailment", "neutral"]

# Main metric per task, as the BERT paper (Table 1) reports GLUE: F1 for MRPC/QQP, Spearman for STS-B, Matthews
# correlation for CoLA (and GLUE's R3 for the AX diagnostics), accuracy elsewhere. training/metrics.py mirrors this.
_MAIN_METRIC = {
    "cola": "matthews_corr", "mrpc": "f1", "qqp": "f1", "sts-b": "spearman", "ax": "matthews_corr",
}


@dataclasses.dataclass
class InputExample:
    """One example. `label` is None for unlabelled (test) rows. `example_index`: 0-based data row in the source file
    (header not counted), written to the records so predictions can be matched back to the file's rows."""
    guid: str
    text_a: str
    text_b: str = None
    label: str = None
    example_index: int = 0


def canonical_task_name(task_name):
    """'SST-2', 'sst2', 'sst_2' -> 'sst-2'. UserError for an unknown task."""
    key = re.sub(r"[-_\s]", "", str(task_name or "").strip().lower())
    if key not in _ALIASES:
        raise UserError(f"--task_name={task_name}: unknown task (choose from {', '.join(TASK_NAMES)})")
    return _ALIASES[key]


# --------------------------------------------------------------------------------------------------------------
# File reading


def _decode_line(raw, path, line_no):
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path}:{line_no}: not valid UTF-8") from None
    if line_no == 1 and text.startswith("\ufeff"):
        text = text[1:]
    return text.rstrip("\n").rstrip("\r")


def _check_file(path):
    if not os.path.isfile(path):
        raise UserError(f"{path}: file not found")


def read_tsv_lines(path):
    """Yield (line_number, fields) for each non-empty line: split on tabs only, no quote processing.

    Lines are split on '\\n' only (a stray '\\r' or U+2028 inside a sentence stays in the sentence)."""
    _check_file(path)
    try:
        with open(path, "rb") as f:
            for line_no, raw in enumerate(f, start=1):
                text = _decode_line(raw, path, line_no)
                if text == "":
                    continue
                yield line_no, text.split("\t")
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None


def read_csv_lines(path):
    """Yield (line_number_where_the_row_starts, fields) for a standard (RFC 4180, double-quote) CSV file."""
    _check_file(path)
    try:
        with open(path, "r", encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            start = 1
            try:
                for row in reader:
                    if row:
                        yield start, row
                    start = reader.line_num + 1
            except csv.Error as e:
                raise UserError(f"{path}:{reader.line_num}: malformed CSV ({e})") from None
            except UnicodeDecodeError:
                raise UserError(f"{path}: not valid UTF-8 (near line {reader.line_num + 1})") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None


def read_jsonl_lines(path):
    """Yield (line_number, dict) for each non-blank line of a JSON Lines file."""
    _check_file(path)
    try:
        with open(path, "rb") as f:
            for line_no, raw in enumerate(f, start=1):
                text = _decode_line(raw, path, line_no)
                if not text.strip():
                    continue
                try:
                    obj = json.loads(text)
                except json.JSONDecodeError as e:
                    raise UserError(f"{path}:{line_no}: invalid JSON ({e.msg})") from None
                if not isinstance(obj, dict):
                    raise UserError(f"{path}:{line_no}: expected a JSON object, got {type(obj).__name__}")
                yield line_no, obj
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None


# --------------------------------------------------------------------------------------------------------------
# Base class


class DataProcessor:
    """Base class. Subclasses set task_name, labels, is_regression, the split -> file map and `_read_split`."""

    task_name = None
    is_regression = False
    train_splits = ("train",)
    dev_splits = ("dev",)
    test_splits = ("test",)

    def __init__(self, skip_malformed=False):
        self.skip_malformed = bool(skip_malformed)

    # -- public API --
    @property
    def main_metric(self):
        if self.is_regression:
            return "spearman"
        return _MAIN_METRIC.get(self.task_name, "accuracy")

    def get_labels(self, data_dir=None):
        return list(self._labels)

    @property
    def num_labels(self):
        return 1 if self.is_regression else len(self.get_labels())

    def split_names(self):
        return list(self.train_splits) + list(self.dev_splits) + list(self.test_splits)

    def split_kind(self, split):
        """'train', 'dev' or 'test' for a split name of this processor."""
        for kind, names in (("train", self.train_splits), ("dev", self.dev_splits), ("test", self.test_splits)):
            if split in names:
                return kind
        raise UserError(f"task {self.task_name} has no split {split!r} (it has: {', '.join(self.split_names())})")

    def split_path(self, data_dir, split):
        self.split_kind(split)
        return os.path.join(data_dir, self._files()[split])

    def get_examples(self, data_dir, split):
        self.split_kind(split)
        if not os.path.isdir(data_dir):
            raise UserError(f"--data_dir={data_dir}: not a directory")
        examples = list(self._read_split(data_dir, split))
        if not examples:
            raise UserError(f"{self.split_path(data_dir, split)}: no examples")
        return examples

    def get_train_examples(self, data_dir):
        if not self.train_splits:
            raise UserError(f"task {self.task_name} has no training set")
        return self.get_examples(data_dir, self.train_splits[0])

    def get_dev_examples(self, data_dir):
        if not self.dev_splits:
            raise UserError(f"task {self.task_name} has no dev set")
        return self.get_examples(data_dir, self.dev_splits[0])

    def get_test_examples(self, data_dir):
        if not self.test_splits:
            raise UserError(f"task {self.task_name} has no test set")
        return self.get_examples(data_dir, self.test_splits[0])

    def config(self):
        """JSON-able description of the processor, saved in the metadata."""
        return {"task_name": self.task_name}

    # -- helpers for subclasses --
    def _malformed(self, path, line_no, message):
        msg = f"{path}:{line_no}: {message}"
        if self.skip_malformed:
            logger.warning("skipping malformed row: %s", msg)
            return
        raise UserError(msg + " (pass --skip_malformed to skip such rows)")

    def _check_label(self, label, path, line_no):
        """Returns the normalised label, or None after reporting (when skipping) a bad one."""
        if self.is_regression:
            try:
                value = float(label)
            except (TypeError, ValueError):
                self._malformed(path, line_no, f"label {label!r} is not a number")
                return None
            if value != value or value in (float("inf"), float("-inf")):
                self._malformed(path, line_no, f"label {label!r} is not a finite number")
                return None
            return label
        labels = self.get_labels()
        if label not in labels:
            self._malformed(path, line_no, f"unknown label {label!r} (expected one of {', '.join(labels)})")
            return None
        return label


# --------------------------------------------------------------------------------------------------------------
# GLUE tasks: table driven


@dataclasses.dataclass(frozen=True)
class _Layout:
    """How one kind of file is laid out. Column indices are 0-based; negative counts from the end (MNLI's label)."""
    header: tuple = None          # expected names at the used columns, {index: name}; None = file has no header
    num_columns: int = None       # only for files without a header
    text_a: int = 0
    text_b: int = None
    label: int = None
    guid: int = None              # column holding the row id used in the guid; None = row number


class GlueProcessor(DataProcessor):
    """A GLUE-style task: a split -> (file name, layout) table."""

    files = {}       # split -> file name
    layouts = {}     # split -> _Layout
    _labels = ()

    def _files(self):
        return self.files

    def _read_split(self, data_dir, split):
        path = self.split_path(data_dir, split)
        layout = self.layouts[split]
        yield from self._read_rows(path, split, layout, read_tsv_lines(path))

    def _check_header(self, path, line_no, fields, layout):
        for index, name in layout.header:
            got = fields[index] if -len(fields) <= index < len(fields) else None
            if got != name:
                raise UserError(
                    f"{path}:{line_no}: header has {got!r} in column {index if index >= 0 else len(fields) + index}"
                    f", expected {name!r} (is this the {self.task_name.upper()} {os.path.basename(path)} file?)")

    def _read_rows(self, path, split, layout, rows):
        num_columns = layout.num_columns
        row_index = 0
        for line_no, fields in rows:
            if layout.header is not None and num_columns is None:
                self._check_header(path, line_no, fields, layout)
                num_columns = len(fields)
                continue
            this_index = row_index
            row_index += 1
            if len(fields) != num_columns:
                self._malformed(path, line_no, f"expected {num_columns} tab-separated columns, found {len(fields)}")
                continue
            if not self._keep_row(split, fields):
                continue
            example = self._make_example(path, split, layout, line_no, fields, this_index)
            if example is not None:
                yield example
        if num_columns is None:
            raise UserError(f"{path}: empty file (no header)")

    def _make_example(self, path, split, layout, line_no, fields, row_index):
        text_a = fields[layout.text_a]
        text_b = fields[layout.text_b] if layout.text_b is not None else None
        if not text_a.strip() or (text_b is not None and not text_b.strip()):
            self._malformed(path, line_no, "empty text")
            return None
        label = None
        if layout.label is not None:
            label = self._normalise_label(fields[layout.label].strip())
            label = self._check_label(label, path, line_no)
            if label is None:
                return None
        row_id = fields[layout.guid] if layout.guid is not None else str(row_index)
        return InputExample(guid=f"{split}-{row_id}", text_a=text_a, text_b=text_b, label=label,
                            example_index=row_index)

    def _normalise_label(self, label):
        return label

    def _keep_row(self, split, fields):
        return True


def _h(**cols):
    """_h(c3="#1 String") -> ((3, "#1 String"),); m1 = index -1."""
    out = []
    for key, name in cols.items():
        index = -int(key[2:]) if key.startswith("cm") else int(key[1:])
        out.append((index, name))
    return tuple(out)


class ColaProcessor(GlueProcessor):
    """CoLA: train/dev without header: source, label, original label (or '*'), sentence. Test: index, sentence."""
    task_name = "cola"
    _labels = ("0", "1")
    files = {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"}
    _labelled = _Layout(header=None, num_columns=4, text_a=3, label=1)
    layouts = {"train": _labelled, "dev": _labelled,
               "test": _Layout(header=_h(c0="index", c1="sentence"), text_a=1, guid=0)}


class Sst2Processor(GlueProcessor):
    task_name = "sst-2"
    _labels = ("0", "1")
    files = {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"}
    _labelled = _Layout(header=_h(c0="sentence", c1="label"), text_a=0, label=1)
    layouts = {"train": _labelled, "dev": _labelled,
               "test": _Layout(header=_h(c0="index", c1="sentence"), text_a=1, guid=0)}


class MrpcProcessor(GlueProcessor):
    task_name = "mrpc"
    _labels = ("0", "1")
    files = {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"}
    _labelled = _Layout(header=_h(c0="Quality", c1="#1 ID", c2="#2 ID", c3="#1 String", c4="#2 String"),
                        text_a=3, text_b=4, label=0)
    layouts = {"train": _labelled, "dev": _labelled,
               "test": _Layout(header=_h(c0="index", c1="#1 ID", c2="#2 ID", c3="#1 String", c4="#2 String"),
                               text_a=3, text_b=4, guid=0)}


class StsbProcessor(GlueProcessor):
    task_name = "sts-b"
    is_regression = True
    _labels = ()
    files = {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"}
    _labelled = _Layout(header=_h(c0="index", c7="sentence1", c8="sentence2", c9="score"),
                        text_a=7, text_b=8, label=9, guid=0)
    layouts = {"train": _labelled, "dev": _labelled,
               "test": _Layout(header=_h(c0="index", c7="sentence1", c8="sentence2"), text_a=7, text_b=8, guid=0)}


class QqpProcessor(GlueProcessor):
    task_name = "qqp"
    _labels = ("0", "1")
    files = {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"}
    _labelled = _Layout(header=_h(c0="id", c1="qid1", c2="qid2", c3="question1", c4="question2",
                                  c5="is_duplicate"), text_a=3, text_b=4, label=5, guid=0)
    layouts = {"train": _labelled, "dev": _labelled,
               "test": _Layout(header=_h(c0="id", c1="question1", c2="question2"), text_a=1, text_b=2, guid=0)}


class MnliProcessor(GlueProcessor):
    """MNLI: sentence1 col 8, sentence2 col 9, gold label the last column (train has 12 columns, dev 16)."""
    task_name = "mnli"
    _labels = tuple(NLI_LABELS)
    dev_splits = ("dev_matched", "dev_mismatched")
    test_splits = ("test_matched", "test_mismatched")
    files = {"train": "train.tsv", "dev_matched": "dev_matched.tsv", "dev_mismatched": "dev_mismatched.tsv",
             "test_matched": "test_matched.tsv", "test_mismatched": "test_mismatched.tsv"}
    _labelled = _Layout(header=_h(c0="index", c8="sentence1", c9="sentence2", cm1="gold_label"),
                        text_a=8, text_b=9, label=-1, guid=0)
    _test = _Layout(header=_h(c0="index", c8="sentence1", c9="sentence2"), text_a=8, text_b=9, guid=0)
    layouts = {"train": _labelled, "dev_matched": _labelled, "dev_mismatched": _labelled,
               "test_matched": _test, "test_mismatched": _test}


class MnliMismatchedProcessor(MnliProcessor):
    """MNLI evaluated on the mismatched dev/test sets (HF's `mnli-mm`)."""
    task_name = "mnli-mm"
    dev_splits = ("dev_mismatched",)
    test_splits = ("test_mismatched",)


class AxProcessor(GlueProcessor):
    """GLUE diagnostics (AX): prediction only, with a model fine-tuned on MNLI; labels are MNLI's.
    Reads `diagnostic.tsv` (download_glue_data.py layout) or `AX.tsv` (the current GLUE download)."""
    task_name = "ax"
    _labels = tuple(NLI_LABELS)
    train_splits = ()
    dev_splits = ()
    test_splits = ("test",)
    layouts = {"test": _Layout(header=_h(c0="index", c1="sentence1", c2="sentence2"), text_a=1, text_b=2, guid=0)}

    def split_path(self, data_dir, split):
        self.split_kind(split)
        for name in ("diagnostic.tsv", "AX.tsv"):
            if os.path.isfile(os.path.join(data_dir, name)):
                return os.path.join(data_dir, name)
        return os.path.join(data_dir, "diagnostic.tsv")


class _IndexQuestionSentence(GlueProcessor):
    files = {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"}
    _names = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        a, b = cls._names
        labelled = _Layout(header=_h(c0="index", c1=a, c2=b, c3="label"), text_a=1, text_b=2, label=3, guid=0)
        cls.layouts = {"train": labelled, "dev": labelled,
                       "test": _Layout(header=_h(c0="index", c1=a, c2=b), text_a=1, text_b=2, guid=0)}


class QnliProcessor(_IndexQuestionSentence):
    task_name = "qnli"
    _labels = ("entailment", "not_entailment")
    _names = ("question", "sentence")


class RteProcessor(_IndexQuestionSentence):
    task_name = "rte"
    _labels = ("entailment", "not_entailment")
    _names = ("sentence1", "sentence2")


class WnliProcessor(_IndexQuestionSentence):
    task_name = "wnli"
    _labels = ("0", "1")
    _names = ("sentence1", "sentence2")


class XnliProcessor(GlueProcessor):
    """XNLI as in the original BERT: train = `multinli/multinli.train.<language>.tsv` (machine-translated MNLI,
    header premise/hypo/label, 'contradictory' read as 'contradiction'); dev = `xnli.dev.tsv` rows of `language`
    (column 0), label column 1, sentence1 column 6, sentence2 column 7; test = `xnli.test.tsv`, same layout (it has
    gold labels; bertkit keeps them so the test split can be evaluated). The original BERT default language: zh."""
    task_name = "xnli"
    _labels = tuple(NLI_LABELS)
    layouts = {"train": _Layout(header=(), text_a=0, text_b=1, label=2),
               "dev": _Layout(header=_h(c0="language", c1="gold_label", c6="sentence1", c7="sentence2"),
                              text_a=6, text_b=7, label=1)}
    layouts["test"] = layouts["dev"]

    def __init__(self, language="zh", skip_malformed=False):
        super().__init__(skip_malformed=skip_malformed)
        self.language = str(language or "zh")

    def _files(self):
        return {"train": os.path.join("multinli", f"multinli.train.{self.language}.tsv"),
                "dev": "xnli.dev.tsv", "test": "xnli.test.tsv"}

    def _normalise_label(self, label):
        return "contradiction" if label == "contradictory" else label

    def _keep_row(self, split, fields):
        # dev/test files hold every language; example_index stays the row number in the whole file
        return split == "train" or fields[0] == self.language

    def get_examples(self, data_dir, split):
        self.split_kind(split)
        if not os.path.isdir(data_dir):
            raise UserError(f"--data_dir={data_dir}: not a directory")
        examples = list(self._read_split(data_dir, split))
        if not examples:
            raise UserError(f"{self.split_path(data_dir, split)}: no examples for language {self.language!r}")
        return examples

    def config(self):
        return {"task_name": self.task_name, "language": self.language}


# --------------------------------------------------------------------------------------------------------------
# Custom tasks


def _sort_labels(labels):
    labels = list(labels)
    if all(re.fullmatch(r"[-+]?\d+", x) for x in labels):
        return sorted(labels, key=lambda x: (int(x), x))
    return sorted(labels)


def parse_labels_flag(labels):
    """'a,b,c' or a list -> list of unique, non-empty labels (UserError otherwise)."""
    if labels is None:
        return None
    if isinstance(labels, str):
        labels = labels.split(",")
    labels = [str(x).strip() for x in labels]
    if not labels or any(not x for x in labels):
        raise UserError(f"--labels={','.join(labels)}: empty label name")
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise UserError(f"--labels: duplicate label(s) {', '.join(dup)}")
    return labels


def _value_to_text(value):
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


class CustomProcessor(DataProcessor):
    """Your own files: `<split>.tsv|.csv|.jsonl` in data_dir for split in train, dev, test.

    Columns: header names (JSONL keys) or 0-based indices (files without a header, `has_header=False`; with a header
    an all-digit spec that is not a header name is read as an index too). TSV is read without quote processing (like
    the GLUE files), CSV with standard double-quote quoting. The test file may lack the label column.
    """
    task_name = "custom"
    extensions = (".tsv", ".csv", ".jsonl")

    def __init__(self, text_a_column=None, text_b_column=None, label_column=None, labels=None, has_header=True,
                 is_regression=False, id_column=None, data_dir=None, skip_malformed=False):
        super().__init__(skip_malformed=skip_malformed)
        if text_a_column is None or str(text_a_column).strip() == "":
            raise UserError("--text_a_column is required for --task_name=custom")
        if label_column is None or str(label_column).strip() == "":
            raise UserError("--label_column is required for --task_name=custom")
        self.text_a_column = str(text_a_column).strip()
        self.text_b_column = None if text_b_column in (None, "") else str(text_b_column).strip()
        self.label_column = str(label_column).strip()
        self.id_column = None if id_column in (None, "") else str(id_column).strip()
        self.has_header = bool(has_header)
        self.is_regression = bool(is_regression)
        self._given_labels = parse_labels_flag(labels)
        if self.is_regression and self._given_labels:
            raise UserError("--labels cannot be used with a regression task")
        self._collected_labels = None
        self.labels_source = "flag" if self._given_labels else None
        self.data_dir = data_dir
        if not self.has_header:
            for flag, spec in (("text_a_column", self.text_a_column), ("text_b_column", self.text_b_column),
                               ("label_column", self.label_column), ("id_column", self.id_column)):
                if spec is not None and not spec.isdigit():
                    raise UserError(f"--{flag}={spec}: files without a header need a 0-based column index")

    # -- files --
    def _find_file(self, data_dir, split):
        found = [os.path.join(data_dir, split + ext) for ext in self.extensions
                 if os.path.isfile(os.path.join(data_dir, split + ext))]
        if len(found) > 1:
            raise UserError(f"--data_dir={data_dir}: several {split} files ({', '.join(map(os.path.basename, found))})"
                            "; keep one")
        if not found:
            names = " or ".join(split + e for e in self.extensions)
            raise UserError(f"--data_dir={data_dir}: no {split} file ({names})")
        return found[0]

    def split_path(self, data_dir, split):
        self.split_kind(split)
        return self._find_file(data_dir, split)

    # -- labels --
    def get_labels(self, data_dir=None):
        if self.is_regression:
            return []
        if self._given_labels is not None:
            return list(self._given_labels)
        if self._collected_labels is None:
            data_dir = data_dir or self.data_dir
            if data_dir is None:
                raise UserError("--labels not given: the label list is collected from the training file, so "
                                "get_labels needs data_dir")
            self._collected_labels = self._collect_labels(data_dir)
            self.labels_source = "train file (sorted)"
        return list(self._collected_labels)

    def _collect_labels(self, data_dir):
        try:
            path = self._find_file(data_dir, self.train_splits[0])
        except UserError as e:
            raise UserError(f"{e}; the label list comes from the training file unless --labels is given") from None
        seen = set()
        for line_no, row, cols in self._rows(path, require_label=True):
            value = self._cell(row, cols["label"])
            if value is None or not value.strip():
                continue        # reported when the examples are read
            seen.add(value.strip())
        if not seen:
            raise UserError(f"{path}: no labels found in column {self.label_column!r}")
        return _sort_labels(seen)

    # -- rows --
    def _resolve(self, path, header, spec, flag):
        if header is None:
            return int(spec)
        if spec in header:
            return header.index(spec)
        if spec.isdigit() and int(spec) < len(header):
            return int(spec)
        raise UserError(f"{path}: no column {spec!r} for --{flag} (columns: {', '.join(header)})")

    def _rows(self, path, require_label):
        """Yield (line_no, row, cols): row is a list (tsv/csv) or dict (jsonl); cols maps role -> index/key."""
        if path.endswith(".jsonl"):
            cols = {"text_a": self.text_a_column, "text_b": self.text_b_column, "label": self.label_column,
                    "id": self.id_column}
            for line_no, obj in read_jsonl_lines(path):
                yield line_no, obj, cols
            return
        reader = read_csv_lines(path) if path.endswith(".csv") else read_tsv_lines(path)
        cols = None
        num_columns = None
        for line_no, fields in reader:
            if cols is None:
                header = fields if self.has_header else None
                has_label = True
                if header is not None:
                    header = [h.strip() for h in header]
                    if not require_label and self.label_column not in header and not (
                            self.label_column.isdigit() and int(self.label_column) < len(header)):
                        has_label = False
                else:
                    has_label = int(self.label_column) < len(fields) or require_label
                cols = {"text_a": self._resolve(path, header, self.text_a_column, "text_a_column"),
                        "text_b": None if self.text_b_column is None else
                        self._resolve(path, header, self.text_b_column, "text_b_column"),
                        "label": self._resolve(path, header, self.label_column, "label_column") if has_label else None,
                        "id": None if self.id_column is None else self._resolve(path, header, self.id_column,
                                                                              "id_column")}
                num_columns = len(fields)
                if header is not None:
                    continue
            if len(fields) != num_columns:
                self._malformed(path, line_no, f"expected {num_columns} columns, found {len(fields)}")
                continue
            yield line_no, fields, cols
        if cols is None:
            raise UserError(f"{path}: empty file")

    @staticmethod
    def _cell(row, key):
        if key is None:
            return None
        if isinstance(row, dict):
            return _value_to_text(row.get(key))
        return row[key] if key < len(row) else None

    def _read_split(self, data_dir, split):
        kind = self.split_kind(split)
        path = self.split_path(data_dir, split)
        require_label = kind != "test"
        is_jsonl = path.endswith(".jsonl")
        row_index = -1
        for line_no, row, cols in self._rows(path, require_label):
            row_index += 1
            text_a = self._cell(row, cols["text_a"])
            if is_jsonl and cols["text_a"] not in row:
                self._malformed(path, line_no, f"no key {cols['text_a']!r}")
                continue
            if text_a is None or not text_a.strip():
                self._malformed(path, line_no, "empty text")
                continue
            text_b = None
            if cols["text_b"] is not None:
                text_b = self._cell(row, cols["text_b"])
                if text_b is None or not text_b.strip():
                    self._malformed(path, line_no, "empty text_b")
                    continue
            label = None
            if cols["label"] is not None:
                label = self._cell(row, cols["label"])
                if label is None or not label.strip():
                    if require_label:
                        self._malformed(path, line_no, f"no label ({self.label_column!r} missing or empty)")
                        continue
                    label = None
                else:
                    label = self._check_label(label.strip(), path, line_no)
                    if label is None:
                        continue
            row_id = self._cell(row, cols["id"]) if cols["id"] is not None else None
            yield InputExample(guid=f"{split}-{row_id if row_id is not None else row_index}", text_a=text_a,
                               text_b=text_b, label=label, example_index=row_index)

    def get_examples(self, data_dir, split):
        if not self.is_regression and self._given_labels is None and self._collected_labels is None:
            self.get_labels(data_dir)
        return super().get_examples(data_dir, split)

    def config(self):
        return {"task_name": self.task_name, "text_a_column": self.text_a_column,
                "text_b_column": self.text_b_column, "label_column": self.label_column, "id_column": self.id_column,
                "has_header": self.has_header, "is_regression": self.is_regression,
                "labels_source": self.labels_source}


class BbcProcessor(CustomProcessor):
    """BBC News (data/bbc.py `build_bbc`): train.tsv / dev.tsv with header id, label, text; fixed label order."""
    task_name = "bbc"
    test_splits = ()
    extensions = (".tsv",)

    def __init__(self, skip_malformed=False):
        super().__init__(text_a_column="text", label_column="label", labels=BBC_LABELS, has_header=True,
                         id_column="id", skip_malformed=skip_malformed)

    def config(self):
        return {"task_name": self.task_name}


PROCESSORS = {
    "cola": ColaProcessor, "sst-2": Sst2Processor, "mrpc": MrpcProcessor, "sts-b": StsbProcessor,
    "qqp": QqpProcessor, "mnli": MnliProcessor, "mnli-mm": MnliMismatchedProcessor, "qnli": QnliProcessor,
    "rte": RteProcessor, "wnli": WnliProcessor, "xnli": XnliProcessor, "ax": AxProcessor,
    "custom": CustomProcessor, "bbc": BbcProcessor,
}
TASK_NAMES = tuple(PROCESSORS)
GLUE_TASKS = ("cola", "sst-2", "mrpc", "sts-b", "qqp", "mnli", "mnli-mm", "qnli", "rte", "wnli", "ax")
_ALIASES = {re.sub(r"[-_]", "", name): name for name in PROCESSORS}
_ALIASES.update({"mnlim": "mnli", "mnlimatched": "mnli", "mnlimismatched": "mnli-mm", "sst": "sst-2",
                 "stsb": "sts-b", "diagnostic": "ax"})

CUSTOM_TASK_FLAGS = ("text_a_column", "text_b_column", "label_column", "labels", "has_header", "is_regression",
                     "id_column")
_CUSTOM_KEYS = CUSTOM_TASK_FLAGS + ("data_dir",)


def processor_from_flags(flag_values):
    """The processor named by a script's absl flags (`task_name`, `skip_malformed`, `xnli_language` and the custom-task
    column flags that create_finetuning_data.py and run_classifier.py both define); a custom-task flag given for
    another task is a UserError."""
    custom = {}
    if canonical_task_name(flag_values.task_name) == "custom":
        custom = {name: getattr(flag_values, name) for name in CUSTOM_TASK_FLAGS}
    else:
        for name in ("text_a_column", "text_b_column", "label_column", "labels", "id_column"):
            if getattr(flag_values, name) is not None:
                raise UserError(f"--{name} is only for --task_name=custom")
    return get_processor(flag_values.task_name, skip_malformed=flag_values.skip_malformed,
                         language=flag_values.xnli_language, **custom)


def get_processor(task_name, skip_malformed=False, language=None, **custom):
    """Processor for `task_name` (case-insensitive, hyphens optional). `custom` keyword arguments (text_a_column,
    text_b_column, label_column, labels, has_header, is_regression, id_column, data_dir) only for task 'custom';
    `language` only for 'xnli'. Arguments whose value is None are ignored (absl flags left at their default)."""
    name = canonical_task_name(task_name)
    custom = {k: v for k, v in custom.items() if v is not None}
    unknown = sorted(set(custom) - set(_CUSTOM_KEYS))
    if unknown:
        raise TypeError(f"get_processor: unexpected argument(s) {', '.join(unknown)}")
    if name == "custom":
        return CustomProcessor(skip_malformed=skip_malformed, **custom)
    extra = sorted(k for k in custom if k != "data_dir")
    if extra:
        raise UserError(f"--{extra[0]} is only for --task_name=custom (task is {name})")
    if name == "xnli":
        return XnliProcessor(language=language or "zh", skip_malformed=skip_malformed)
    if language is not None:
        raise UserError(f"--xnli_language is only for --task_name=xnli (task is {name})")
    return PROCESSORS[name](skip_malformed=skip_malformed)
