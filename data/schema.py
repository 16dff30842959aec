"""TFRecord schemas shared by the data writers and the input pipelines (see DESIGN.md): the record keys and the
record-file helpers (comma-separated globs, gzip detection). No TensorFlow here, so scripts check their file flags
and processes fork before it is imported; the tf.io feature specs and the dataset opener are in data/tfrecords.py.

Pretraining records: input_ids, input_mask, segment_ids int64[T]; masked_lm_positions, masked_lm_ids int64[P];
masked_lm_weights float[P]; next_sentence_labels int64[1] (SOP data: same key, 1 = segments swapped).
Fine-tuning records: input_ids, input_mask, segment_ids int64[T]; label_ids int64[1] (float[1] for regression);
is_real_example int64[1]; example_index int64[1].
"""
import glob
import os
import re

import bertkit_errors

PRETRAINING_KEYS = ("input_ids", "input_mask", "segment_ids", "masked_lm_positions", "masked_lm_ids",
                    "masked_lm_weights", "next_sentence_labels")
FINETUNING_KEYS = ("input_ids", "input_mask", "segment_ids", "label_ids", "is_real_example", "example_index")

# Files a glob may match beside the records that are never records: summaries/metadata and unfinished temp files.
_NOT_RECORDS = re.compile(r"(\.json|\.tmp-\d+)$")
_GZIP_MAGIC = b"\x1f\x8b\x08"


def split_patterns(file_patterns):
    """'a*,b' or ['a*', 'b,c'] -> ['a*', 'b', 'c'] (empty items dropped)."""
    if isinstance(file_patterns, (str, os.PathLike)):
        file_patterns = [file_patterns]
    out = []
    for item in file_patterns:
        out.extend(p.strip() for p in os.fspath(item).split(",") if p.strip())
    return out


def expand_file_patterns(file_patterns, flag="input_file", skip_non_records=True):
    """Comma-separated globs -> sorted files per pattern, in pattern order, without duplicates.

    Raises UserError naming the flag when there is no pattern, or when a pattern matches no file.
    `skip_non_records` drops `*.json` and unfinished `*.tmp-<pid>` files a broad glob would also match.
    """
    patterns = split_patterns(file_patterns)
    if not patterns:
        raise bertkit_errors.UserError(f"--{flag}: no file given")
    files, seen = [], set()
    for pattern in patterns:
        matches = sorted(m for m in glob.glob(pattern) if os.path.isfile(m))
        if skip_non_records:
            matches = [m for m in matches if not _NOT_RECORDS.search(m)]
        if not matches:
            raise bertkit_errors.UserError(f"--{flag}={pattern}: no file matches")
        for m in matches:
            if m not in seen:
                seen.add(m)
                files.append(m)
    return files


def is_gzip_file(path):
    """True when the file starts with the gzip magic bytes (1f 8b 08)."""
    with open(path, "rb") as f:
        return f.read(3) == _GZIP_MAGIC


def compression_type(path):
    return "GZIP" if is_gzip_file(path) else ""
