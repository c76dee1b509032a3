"""How every msunet command reads its command line and reports failure: one style.

Each command module (`train`, `prepare`, `evaluate`, `predict`, `plot`, `convert`) has a
`define_flags(values, argv)` that defines its flags on a FlagValues of its own, so importing a
command defines no global flag (`argv` tells ml_collections which `--config.*` overrides to
define, so `main(argv)` works in-process too), and a `main(argv)` that calls `parse` and runs
its work inside `errors()`: a bad flag, config override, input file or workdir ends the process
with one `error: ...` line and exit status 1, never a traceback.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

from absl import flags, logging

# The failures a user can cause and fix: reported as one line. Anything else is a bug and keeps
# its traceback.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, FloatingPointError, ImportError,
               OSError)


def parse(define_flags: Callable[[flags.FlagValues, list[str]], None], argv: list[str]
          ) -> flags.FlagValues:
    """Define a command's flags on a fresh FlagValues and parse `argv` (argv[0] = program)."""
    values = flags.FlagValues()
    define_flags(values, argv)
    try:
        extra = values(argv)
    except flags.Error as error:
        sys.exit(f"error: {error}\n\n{values.get_help()}")
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        # ml_collections raises these for an unknown field (with a suggestion) or a bad value.
        sys.exit(f"error: bad --config override: {error}")
    if len(extra) > 1:
        sys.exit(f"error: unexpected arguments {extra[1:]}")
    # grain reads absl's global flags, which are marked parsed only by absl.app.run.
    flags.FLAGS.mark_as_parsed()
    logging.set_verbosity(logging.WARNING)  # orbax logs every file it writes at INFO
    return values


@contextlib.contextmanager
def errors() -> Iterator[None]:
    """Turn a user-caused failure (USER_ERRORS) into `error: <message>` and exit status 1."""
    try:
        yield
    except USER_ERRORS as error:
        sys.exit(f"error: {error}")
