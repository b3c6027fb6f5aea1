"""Files written in one step: a reader (or a run interrupted mid-write) never sees half of one."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from rksearch.core.errors import RKSearchError


def write_atomic(path: Path, write: Callable[[Path], Any], *, unique: bool = False) -> None:
    """``write(tmp)`` beside ``path``, then rename it over ``path``; on any error the temporary file
    is removed and the error raised. ``unique`` names the temporary file after this process, for
    files that several processes may write at once."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp" if unique else f"{path.name}.tmp")
    try:
        write(tmp)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` in one step; an OSError is a user error naming ``path`` (a
    missing or read-only folder), with nothing left behind."""
    try:
        write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    except OSError as e:
        raise RKSearchError(f"cannot write: {e.strerror or e}", source=path) from None


def unwritable(path: Path) -> str | None:
    """Why ``path`` cannot be written, asked before any work is done so a bad output writes
    nothing and wastes nothing; None when it can."""
    if path.is_dir():
        return "is a directory; give a file name"
    if not path.parent.is_dir():
        return "its folder does not exist"
    probe = path.with_name(f"{path.name}.{os.getpid()}.probe")
    try:
        probe.touch()
        probe.unlink()
    except OSError as e:
        return f"cannot write there: {e.strerror or e}"
    return None
