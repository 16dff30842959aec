"""Shared by the run_classifier.py tests: call the script in-process, as its command line would."""
import contextlib
import io

import run_classifier  # noqa: F401  (defines the absl flags)
from absl import flags

FLAGS = flags.FLAGS


def run(**kw):
    """Parse flags like the command line (`True` -> --flag, `False` -> --noflag) and call main; returns what it
    printed."""
    argv = ["run_classifier.py"]
    for k, v in kw.items():
        if v is True:
            argv.append(f"--{k}")
        elif v is False:
            argv.append(f"--no{k}")
        else:
            argv.append(f"--{k}={v}")
    FLAGS.unparse_flags()
    FLAGS(argv)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            run_classifier.main([])
    finally:
        FLAGS.unparse_flags()
    return out.getvalue()
