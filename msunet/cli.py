"""What the command-line tools share: parsing their own absl FlagValues with clear errors.

evaluate/predict/plot/convert each keep a private FlagValues, because `msunet.train` defines
`--config` and `--workdir` on the global absl flags when imported.
"""

from __future__ import annotations

import sys

from absl import flags


def parse_flags(values: flags.FlagValues, argv: list[str]) -> flags.FlagValues:
    """Parse `argv` into `values`; a bad flag or stray argument exits with `error: ...`."""
    try:
        extra = values(argv)
    except flags.Error as error:
        sys.exit(f"error: {error}\n\n{values.main_module_help()}")
    if len(extra) > 1:
        sys.exit(f"error: unexpected arguments {extra[1:]}")
    return values
