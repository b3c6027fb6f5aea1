"""Every command's --help reads clean: no reST markup, no <bool> type beside a flag, every option explained."""
from __future__ import annotations

import pytest
import typer

from helpers import cli
from rksearch.cli import app

GROUP = typer.main.get_command(app)
COMMANDS = sorted(GROUP.commands)


def test_the_commands_are_enumerated_from_the_app():
    assert {"run", "train", "pareto", "export", "describe", "space"} <= set(COMMANDS)


@pytest.mark.parametrize("argv", [["--help"], *[[name, "--help"] for name in COMMANDS]], ids=" ".join)
def test_help_has_no_rest_markup_and_no_bool_type(argv, capsys):
    code, out, err = cli(argv, capsys)
    assert code == 0, err
    assert "Usage: rksearch" in out
    assert "``" not in out, out
    assert "<bool>" not in out, out


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_and_argument_has_help(name):
    command = GROUP.commands[name]
    missing = [p.name for p in command.params if not (getattr(p, "help", None) or "").strip()]
    assert missing == [], f"rksearch {name}: no help text for {missing}"


def test_an_error_still_names_the_flag(capsys):
    code, _, err = cli(["run", "--fresh=yes", "space.yaml"], capsys)
    assert code == 2 and "--fresh" in err


def test_export_help_keeps_its_words_as_plain_quotes(capsys):
    _, out, _ = cli(["export", "--help"], capsys)
    assert "'rksearch" in out


def test_train_help_documents_train_subset(capsys):
    _, out, _ = cli(["train", "--help"], capsys)
    section = out[out.index("--train-subset"):]
    assert "training images" in section[:300]
