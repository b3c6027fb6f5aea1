"""The ``rksearch`` command: a thin layer over the Python API.

One module per command group registers its commands on :data:`app`. Every user error
surfaces as one line on stderr and exit status 2; see :mod:`rksearch.core.errors`.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Optional

import typer
from rich.markup import escape

from rksearch.cli._app import app, err, out
from rksearch.cli import describe; from rksearch.cli import run  # noqa: F401  (registers commands)
from rksearch.cli import zc  # noqa: F401
from rksearch.cli import convert  # noqa: F401  (registers rksearch convert)
from rksearch.cli import pareto  # noqa: F401
from rksearch.cli import dashboard  # noqa: F401
from rksearch.cli import train  # noqa: F401
from rksearch.cli import space  # noqa: F401
from rksearch.cli import bench  # noqa: F401  (registers rksearch bench)
from rksearch.cli import calibrate  # noqa: F401  (registers rksearch calibrate)
from rksearch.cli import latency  # noqa: F401  (registers rksearch latency)
from rksearch.core.errors import RKSearchError
from rksearch.core.secrets import mask_secrets
from rksearch.core.stopping import OnSigint, OnSigterm, ray_lost


# Typer vendors click in recent releases: reach its exception classes through a public one.
_CLICK = {c.__name__: c for c in typer.BadParameter.__mro__}
UsageError, ClickException = _CLICK["UsageError"], _CLICK["ClickException"]


def main(argv: Optional[list[str]] = None) -> None:
    """Console entry point: user errors, the command line's included, become one line and exit status 2.
    SIGTERM stops a command as Ctrl-C does (a search writes its outputs), with exit status 143."""
    main_thread = threading.current_thread() is threading.main_thread()
    sigterm = OnSigterm()
    handlers = {signal.SIGTERM: sigterm, signal.SIGINT: OnSigint()}  # both remember they fired: raise_if_swallowed
    before = {sig: signal.signal(sig, h) for sig, h in handlers.items()} if main_thread else {}
    try:
        _main(argv, sigterm)
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _stopped(terminated: bool) -> None:
    if terminated:
        err.print("terminated")
        if ray_lost():  # the stop reached Ray's processes too: shutting Ray down would hang, then exit 1
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(143)
        sys.exit(143)
    err.print("interrupted")
    sys.exit(130)


def _main(argv: Optional[list[str]], sigterm: OnSigterm) -> None:
    try:
        code = app(args=argv, prog_name="rksearch", standalone_mode=False)
        if code == 130:  # Typer turns Ctrl-C into this exit status, silently
            _stopped(sigterm.received)
        sys.exit(code if isinstance(code, int) else 0)  # as click's standalone mode: --help returns its status
    except UsageError as e:
        if type(e).__name__ == "NoArgsIsHelpError" and e.ctx is not None:
            out.print(e.ctx.get_help(), highlight=False)
            sys.exit(e.exit_code)
        hint = f" (see {e.ctx.command_path} --help)" if e.ctx is not None else ""
        err.print(f"[bold red]error:[/] {escape(mask_secrets(e.format_message() + hint))}", highlight=False,
                  soft_wrap=True)
        sys.exit(e.exit_code)
    except ClickException as e:
        err.print(f"[bold red]error:[/] {escape(mask_secrets(e.format_message()))}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except typer.Abort:
        _stopped(sigterm.received)
    except RKSearchError as e:
        err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        _stopped(sigterm.received)


__all__ = ["app", "main"]
