"""No option of any zspace command is dropped silently: a single-valued option given twice is a usage error."""

import pytest
import typer
from typer.core import TyperGroup
from typer.testing import CliRunner

from zspace.cli import app, main, repeated_options


def leaf_commands(command, path=()):
    """(argv prefix, click command) of every runnable command under ``command``."""
    if isinstance(command, TyperGroup):
        for name, sub in command.commands.items():
            yield from leaf_commands(sub, (*path, name))
    else:
        yield path, command


ROOT = typer.main.get_command(app)
COMMANDS = list(leaf_commands(ROOT))
SINGLE = [(path, option) for path, command in COMMANDS for option in command.params
          if option.param_type_name == "option" and not option.multiple]


def test_the_audit_sees_every_command():
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"train", "encode", "analyze", "evaluate", "generate", "compare", "report", "demo", "prepare celeba",
            "prepare images"} <= names
    assert len(SINGLE) > 30  # every command has some


@pytest.mark.parametrize("path, option", SINGLE, ids=[f"{' '.join(p)} {o.opts[0]}" for p, o in SINGLE])
def test_a_single_valued_option_given_twice_is_one_error_line(capsys, path, option):
    values = [] if option.is_flag else ["1"] * option.nargs
    spelled = [option.opts[0], *values, option.opts[-1], *values]  # long and short spellings count as one
    code = main([*path, *spelled])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"zspace: error: {option.opts[0]}") and "given 2 times" in err[0]
    assert f"(zspace {' '.join(path)})" in err[0]


def test_flag_and_its_negation_conflict(capsys):
    assert main(["generate", "r", "--reconstruct", "--no-reconstruct"]) == 2
    assert "--reconstruct/--no-reconstruct given 2 times" in capsys.readouterr().err


def test_the_group_option_and_through_the_app_object():
    assert repeated_options(ROOT, ["--debug", "--debug", "demo"]) == ["--debug given 2 times (zspace)"]
    result = CliRunner().invoke(app, ["generate", "r", "--n", "2", "--n", "3"])
    assert result.exit_code == 2 and "--n given 2 times (zspace generate)" in result.output


def test_list_options_and_values_that_look_like_options_may_repeat():
    assert repeated_options(ROOT, ["train", "-c", "x", "--set", "a=1", "--set", "b=2"]) == []
    assert repeated_options(ROOT, ["generate", "r", "--limit", "1", "--limit", "2", "--sharpen", "0",
                                   "--sharpen", "3", "--strength", "1", "--strength", "2"]) == []
    assert repeated_options(ROOT, ["analyze", "r", "--data", "--data"]) == []  # one option whose value is "--data"
    assert repeated_options(ROOT, ["generate", "r", "--", "--n", "--n"]) == []  # after --: arguments
