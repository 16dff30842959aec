"""What every task processor shares: `InputExample`, the TSV / CSV / JSON Lines readers (line numbers for errors,
no quote processing in TSV) and the `DataProcessor` base class (splits, labels, malformed-row handling).

The GLUE readers are in data/glue.py, the custom-file and BBC readers in data/custom_tasks.py, the task table and
`get_processor` in data/processors.py.
"""
import csv
import dataclasses
import json
import logging
import os

from bertkit_errors import UserError

logger = logging.getLogger(__name__)

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

