"""Fine-tuning task names, without TensorFlow, numpy or file reading: scripts check --task_name with it before
they import anything heavy.

    TASK_NAMES, GLUE_TASKS, canonical_task_name("SST_2") -> "sst-2" (UserError for an unknown task)
"""
import re

from bertkit_errors import UserError

# One processor per name (data/processors.py PROCESSORS has the same keys, in this order).
TASK_NAMES = ("cola", "sst-2", "mrpc", "sts-b", "qqp", "mnli", "mnli-mm", "qnli", "rte", "wnli", "xnli", "ax",
              "custom", "bbc")
GLUE_TASKS = ("cola", "sst-2", "mrpc", "sts-b", "qqp", "mnli", "mnli-mm", "qnli", "rte", "wnli", "ax")
_ALIASES = {re.sub(r"[-_]", "", name): name for name in TASK_NAMES}
_ALIASES.update({"mnlim": "mnli", "mnlimatched": "mnli", "mnlimismatched": "mnli-mm", "sst": "sst-2",
                 "stsb": "sts-b", "diagnostic": "ax"})

# The column flags of task "custom" that create_finetuning_data.py and run_classifier.py both define.
CUSTOM_TASK_FLAGS = ("text_a_column", "text_b_column", "label_column", "labels", "has_header", "is_regression",
                     "id_column")


def canonical_task_name(task_name):
    """'SST-2', 'sst2', 'sst_2' -> 'sst-2'. UserError for an unknown task."""
    key = re.sub(r"[-_\s]", "", str(task_name or "").strip().lower())
    if key not in _ALIASES:
        raise UserError(f"--task_name={task_name}: unknown task (choose from {', '.join(TASK_NAMES)})")
    return _ALIASES[key]
