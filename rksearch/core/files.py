"""Files written in one step: a reader (or a run interrupted mid-write) never sees half of one."""
from __future__ import annotations

import os
from pathlib import Path

from rksearch.core.errors import RKSearchError


def write_text(path: Path, text: str) -> None:
    """Write ``text`` beside ``path``, then rename it over ``path``; an OSError is a user error
    naming ``path`` (a missing or read-only folder), with nothing left behind."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
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
