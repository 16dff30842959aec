"""User-facing errors: one clear line naming the file, line or flag, and a non-zero exit."""
import sys

from absl import flags


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


def run_main(main):
    """Run an absl `main`, turning a UserError into `error: <message>` on stderr and exit status 1."""
    from absl import app

    def _wrapped(argv):
        try:
            return main(argv)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            sys.exit(1)

    app.run(_wrapped, flags_parser=parse_flags)
