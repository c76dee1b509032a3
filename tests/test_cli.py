"""msunet.cli: the one command-line style of every command. Flags live on a FlagValues of the
command's own, and a mistake the user can fix ends the command with one `error: ...` line."""

import importlib
import sys

import pytest
from absl import flags

from msunet import cli
from tests.conftest import REPO

COMMANDS = ("train", "prepare", "evaluate", "predict", "plot", "convert", "crossval", "figures")
SMOKE = str(REPO / "configs" / "smoke.py")


def define_example(values, argv):
    flags.DEFINE_string("workdir", None, "A workdir.", flag_values=values)
    flags.DEFINE_integer("steps", 3, "Steps.", flag_values=values)


# --- parse -------------------------------------------------------------------------------------

def test_parse_defines_the_flags_on_their_own_flag_values():
    args = cli.parse(define_example, ["prog", "--workdir=/tmp/x", "--steps=5"])
    assert (args.workdir, args.steps) == ("/tmp/x", 5)
    assert args is not flags.FLAGS and "steps" not in flags.FLAGS
    assert cli.parse(define_example, ["prog"]).steps == 3, "a fresh FlagValues per call"


@pytest.mark.parametrize("argv, start", [
    (["prog", "--no_such_flag"], "error: Unknown command line flag 'no_such_flag'"),
    (["prog", "--steps=many"], "error: "),
    (["prog", "extra", "words"], "error: unexpected arguments ['extra', 'words']"),
])
def test_parse_turns_a_bad_command_line_into_one_error_line(argv, start):
    with pytest.raises(SystemExit) as exit_info:
        cli.parse(define_example, argv)
    assert str(exit_info.value.code).startswith(start)


def test_config_overrides_are_parsed_and_a_typo_names_the_field():
    from msunet import train

    argv = ["train", "--config", SMOKE, "--workdir", "unused", "--config.train.num_steps=5"]
    assert sys.argv != argv  # the overrides come from the argv given, not the process's
    args = cli.parse(train.define_flags, argv)
    assert args.config.train.num_steps == 5 and args.workdir == "unused"

    argv = ["train", "--config", SMOKE, "--workdir", "unused", "--config.train.num_stpes=5"]
    with pytest.raises(SystemExit) as exit_info:
        cli.parse(train.define_flags, argv)
    message = str(exit_info.value.code)
    assert message.startswith("error: bad --config override: ") and "num_steps" in message


# --- errors ------------------------------------------------------------------------------------

@pytest.mark.parametrize("error", cli.USER_ERRORS)
def test_user_errors_become_one_error_line(error):
    with pytest.raises(SystemExit) as exit_info, cli.errors():
        raise error("something is wrong")
    assert exit_info.value.code == "error: something is wrong"


def test_the_user_errors_and_nothing_else():
    assert set(cli.USER_ERRORS) == {ValueError, FileNotFoundError, FileExistsError,
                                    FloatingPointError, ImportError, OSError}
    with cli.errors():
        pass
    with pytest.raises(RuntimeError, match="a bug"), cli.errors():
        raise RuntimeError("a bug")  # a bug keeps its traceback


# --- every command -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_define_flags_and_main(name):
    module = importlib.import_module(f"msunet.{name}")
    values = flags.FlagValues()
    module.define_flags(values, [name])
    assert list(values), "define_flags defines the command's flags on the values it is given"
    assert callable(module.main)


@pytest.mark.parametrize("name", COMMANDS)
@pytest.mark.parametrize("arguments", [["--no_such_flag"], []], ids=["unknown flag", "no flags"])
def test_every_command_refuses_a_bad_command_line_in_process(name, arguments):
    module = importlib.import_module(f"msunet.{name}")
    with pytest.raises(SystemExit) as exit_info:
        module.main([name, *arguments])
    message = str(exit_info.value.code)
    assert message.startswith("error: ")
    if arguments:
        assert "no_such_flag" in message
