"""The Typer application and the helpers every command module shares."""
from __future__ import annotations

import re
from typing import Any, Optional

import typer
from typer.core import TyperCommand, TyperGroup

from rich.console import Console

from rksearch.core.errors import RKSearchError

_LITERAL = re.compile(r"``(.+?)``")


def plain_help(text: Optional[str]) -> Optional[str]:
    """Help text as a terminal shows it: reST ``literals`` (docstrings are help) become 'literals'."""
    return _LITERAL.sub(r"'\1'", text) if text else text


class _CleanHelp:
    """A command whose --help shows no reST markup and no <bool> type beside a flag (Typer's rich help does)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        for key in ("help", "short_help", "epilog"):
            kwargs[key] = plain_help(kwargs.get(key))
        for param in kwargs.get("params") or ():
            param.help = plain_help(getattr(param, "help", None))
        super().__init__(*args, **kwargs)

    def format_help(self, ctx, formatter) -> None:
        flags = [p for p in self.get_params(ctx) if getattr(p, "is_flag", False) and p.metavar is None]
        for p in flags:
            p.metavar = ""  # only while the help is drawn: an error message names the flag as before
        try:
            super().format_help(ctx, formatter)
        finally:
            for p in flags:
                p.metavar = None


class HelpCommand(_CleanHelp, TyperCommand):
    """A subcommand with clean help."""


class HelpGroup(_CleanHelp, TyperGroup):
    """The root command with clean help."""


class _Typer(typer.Typer):
    """Every command registered on it gets clean help."""

    def command(self, *args: Any, cls: Optional[type] = None, **kwargs: Any):
        return super().command(*args, cls=cls or HelpCommand, **kwargs)


app = _Typer(
    cls=HelpGroup,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Neural architecture search over Runge-Kutta CNNs.",
)


@app.callback()
def _root() -> None:
    """Neural architecture search over Runge-Kutta CNNs (ERKNets and IRKNets)."""
STUDY_DIR_HELP = "A study folder (studies/<name>/); with --storage it need not exist, its last part names the study."
STORAGE_HELP = ("The Optuna storage URL holding the study (default: what rksearch run recorded in the folder, "
                "its password from $RKSEARCH_STORAGE, else its optuna.db, else $RKSEARCH_STORAGE).")

out = Console()
err = Console(stderr=True)


def ints(text: Optional[str], what: str) -> Optional[list[int] | int]:
    """``"36"`` -> 36, ``"2,4,8,16"`` -> [2, 4, 8, 16]."""
    if text is None:
        return None
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise RKSearchError(f"expected an integer or a comma-separated list of integers, got {text!r}", field=what) from None
    return values[0] if len(values) == 1 else values


def as_option(e: RKSearchError, options: dict[str, str]) -> RKSearchError:
    """The error names the option the user typed, not the field of the config behind it."""
    field, message = e.field, e.message
    head, sep, rest = message.partition(": ")
    if field is None and sep and head in options:
        field, message = head, rest
    if field in options and message == "unknown key":  # an option the chosen network or dataset lacks
        message = "does not apply here"
    return RKSearchError(message, source=e.source, field=options.get(field, field))


# The space overrides every command that reads a space takes (rksearch.space.overrides).
SET_HELP = "Set a space field over the file's: KEY=VALUE, dotted keys, YAML values (proxy.epochs=2, search.resources.gpu=0); repeatable."
DATA_ROOT_HELP = "Where the proxy's data lies (sets proxy.root): a folder or an image-folder zip."
DATASET_HELP = "The proxy's dataset (sets proxy.dataset): demo, imagefolder, cifar10, cifar100, svhn."


def load_space_with(path, sets: Optional[list[str]], data_root, dataset):
    """The space at ``path`` with the command line's ``--set``/``--data-root``/``--dataset`` applied."""
    from rksearch.space.overrides import parse_overrides
    from rksearch.space.search_space import load_space

    return load_space(path, parse_overrides(sets or [], data_root=data_root, dataset=dataset))
