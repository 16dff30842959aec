"""Task processors for your own files (`custom`: TSV / CSV / JSON Lines with named or numbered columns) and for the
BBC News split that data/bbc.py writes (`bbc`).

`custom` reads `train`, `dev`, `test` files named `<split>.tsv`, `<split>.csv` or `<split>.jsonl` in `data_dir`.
Without `labels`, the label list is collected from the training file and SORTED (numerically when every label is an
integer, otherwise as strings): the order then does not depend on how the training file happens to be shuffled, and
the same data always gives the same label ids. The order is saved in the records' metadata (`task_meta.json`).
"""
import json
import os
import re

from bertkit_errors import UserError
from data import bbc as _bbc
from data.processor_base import DataProcessor, InputExample, read_csv_lines, read_jsonl_lines, read_tsv_lines

BBC_LABELS = list(_bbc.LABELS)      # business entertainment politics sport tech


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

