"""The ``rksearch`` command: a thin layer over the Python API.

One module per command group registers its commands on :data:`app`. Every user error
surfaces as one line on stderr and exit status 2; see :mod:`rksearch.errors`.
"""
from __future__ import annotations

import sys
from typing import Optional

from ._app import app, err
from . import describe, run  # noqa: F401  (registers commands)
from . import zc  # noqa: F401
from . import convert  # noqa: F401  (registers rksearch convert)
from . import pareto  # noqa: F401
from . import dashboard  # noqa: F401
from . import train  # noqa: F401
from . import space  # noqa: F401
from . import bench  # noqa: F401  (registers rksearch bench)
from . import calibrate  # noqa: F401  (registers rksearch calibrate)
from ..errors import RKSearchError


def main(argv: Optional[list[str]] = None) -> None:
    """Console entry point: user errors become one line and exit status 2."""
    try:
        app(args=argv, prog_name="rksearch")
    except RKSearchError as e:
        err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


__all__ = ["app", "main"]
