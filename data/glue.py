"""The GLUE and XNLI task processors, table driven: per split a file name and a column layout (`_Layout`).

GLUE files are read the way the official `download_glue_data.py` distributes them: tab separated, no quoting (the
files contain unbalanced quote characters; the original BERT `_read_tsv` and HF `datasets` read them without quote
processing), UTF-8, the first line a header except in CoLA train/dev. Column positions and label lists follow
google-research/bert `run_classifier.py` and HF `transformers` glue processors; the header names at those positions
are checked, so pointing a task at another task's files is an error, not silent garbage.
"""
import dataclasses
import os

from bertkit_errors import UserError
from data.processor_base import DataProcessor, InputExample, read_tsv_lines

NLI_LABELS = ["contradiction", "entailment", "neutral"]


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

