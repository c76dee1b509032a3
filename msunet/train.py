"""Train a model: `python -m msunet.train --config configs/default.py --workdir DIR`.

Any config field can be overridden, e.g. `--config.train.num_steps=1000`. The training itself
is the importable library `msunet.training`; this module only reads the command line.
"""

from __future__ import annotations

import sys

from absl import flags
from ml_collections import config_flags

from msunet import cli, hostmem, parallel
from msunet.training import train_and_evaluate


def define_flags(values: flags.FlagValues, argv: list[str]) -> None:
    """The command line of `python -m msunet.train`."""
    flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and the saved config.",
                        flag_values=values)
    config_flags.DEFINE_config_file("config", None, "A config file from configs/.",
                                    flag_values=values, sys_argv=argv, lock_config=True)
    flags.mark_flags_as_required(["config", "workdir"], flag_values=values)


def main(argv: list[str]) -> None:
    """Train, resuming where the workdir's latest checkpoint stopped; a run stopped by a signal
    exits with 128 + its number after saving."""
    args = cli.parse(define_flags, argv)
    with cli.errors():
        hostmem.keep_freed_memory_unless_disabled()
        parallel.initialize(args.config.train.distributed)
        summary = train_and_evaluate(args.config, args.workdir)
    if summary["signal"]:
        sys.exit(128 + summary["signal"])


if __name__ == "__main__":
    main(sys.argv)
