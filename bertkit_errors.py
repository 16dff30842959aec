"""User-facing errors: one clear line naming the file, line or flag, and a non-zero exit."""
import logging
import sys

from absl import app, flags


class UserError(ValueError):
    """Bad input from the user (a flag, a file, a line). Printed as one line, exit status 1."""


def parse_flags(argv):
    """absl flags parser for app.run: a flag error (unknown flag, bad integer, bad enum value) becomes
    `error: <message>` on one line and exit status 1, like a UserError."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        message = " ".join(str(e).split())
        print(f"error: {message} (pass --helpfull to see the flags)", file=sys.stderr, flush=True)
        sys.exit(1)


# What tf.train.Checkpoint logs (once per variable, ~110 lines for a BERT) when a failed restore is garbage-collected.
_UNRESTORED_WARNINGS = ("Value in checkpoint could not be found in the restored object",
                        "Detecting that an object or model or tf.train.Checkpoint is being deleted with unrestored "
                        "values")


class _DropUnrestoredWarnings(logging.Filter):
    def filter(self, record):
        return not str(record.msg).startswith(_UNRESTORED_WARNINGS)


def silence_unrestored_checkpoint_warnings():
    """Drop tf.train.Checkpoint's deferred-restore warnings from here on (the `tensorflow` logger), for a run ending on
    a user error: a restore that failed (a shape mismatch) would otherwise bury the error line under them at exit."""
    logger = logging.getLogger("tensorflow")
    if not any(isinstance(f, _DropUnrestoredWarnings) for f in logger.filters):
        logger.addFilter(_DropUnrestoredWarnings())


def run_main(main):
    """Run an absl `main`, turning a UserError into `error: <message>` on stderr and exit status 1."""
    def _wrapped(argv):
        try:
            return main(argv)
        except UserError as e:
            silence_unrestored_checkpoint_warnings()
            print(f"error: {e}", file=sys.stderr, flush=True)
            sys.exit(1)

    app.run(_wrapped, flags_parser=parse_flags)
