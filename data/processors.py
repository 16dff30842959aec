"""Task processors: read fine-tuning data sets exactly as they are distributed, into `InputExample`s.

Usage: `from data.processors import get_processor`, then
  proc = get_processor("mrpc")                  # case-insensitive; "sst-2", "sst2", "SST_2" are the same task
  proc.get_train_examples(data_dir); proc.get_dev_examples(data_dir); proc.get_test_examples(data_dir)
  proc.get_labels(); proc.is_regression; proc.main_metric; proc.task_name
  proc.dev_splits / proc.test_splits           # e.g. ["dev_matched", "dev_mismatched"] for MNLI
  proc.get_examples(data_dir, split)           # any name in proc.split_names()

This module holds the task table and the constructors; the readers are split by what they read: data/glue.py (the
GLUE and XNLI files as distributed), data/custom_tasks.py (your own TSV / CSV / JSONL files, and BBC News),
data/processor_base.py (InputExample, the line readers, the base class), data/tasks.py (the task names, importable
without TensorFlow or numpy for scripts' flag checks).

Malformed rows (wrong column count, unknown label, empty text) raise `UserError("<file>:<line>: ...")`;
`skip_malformed=True` logs and skips them instead (for copies of QQP with broken rows, as HF's processor does).
"""
from bertkit_errors import UserError
from data import glue
from data.custom_tasks import BBC_LABELS, BbcProcessor, CustomProcessor
from data.processor_base import InputExample
from data.tasks import CUSTOM_TASK_FLAGS, GLUE_TASKS, TASK_NAMES, canonical_task_name

# The names above are this module's public API (DESIGN.md); they are defined beside the readers that use them.
__all__ = ["BBC_LABELS", "CUSTOM_TASK_FLAGS", "GLUE_TASKS", "InputExample", "PROCESSORS", "TASK_NAMES",
           "canonical_task_name", "get_processor", "processor_from_flags"]

PROCESSORS = {
    "cola": glue.ColaProcessor, "sst-2": glue.Sst2Processor, "mrpc": glue.MrpcProcessor,
    "sts-b": glue.StsbProcessor, "qqp": glue.QqpProcessor, "mnli": glue.MnliProcessor,
    "mnli-mm": glue.MnliMismatchedProcessor, "qnli": glue.QnliProcessor, "rte": glue.RteProcessor,
    "wnli": glue.WnliProcessor, "xnli": glue.XnliProcessor, "ax": glue.AxProcessor,
    "custom": CustomProcessor, "bbc": BbcProcessor,
}
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
        return glue.XnliProcessor(language=language or "zh", skip_malformed=skip_malformed)
    if language is not None:
        raise UserError(f"--xnli_language is only for --task_name=xnli (task is {name})")
    return PROCESSORS[name](skip_malformed=skip_malformed)
