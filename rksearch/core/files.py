"""Files written in one step: a reader, a run interrupted mid-write or a power cut never sees half of one."""
from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Any, Callable

from rksearch.core.errors import RKSearchError


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)  # no space left; over the user's quota


class _Out:
    """The temporary file, written straight to its descriptor: counts what was written, and keeps
    the first OSError (torch.save turns its writer's errors into a RuntimeError without the errno)."""

    def __init__(self, fd: int):
        self.fd, self.written, self.needed, self.failed = fd, 0, 0, None

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        size = len(view)
        try:
            while view:
                n = os.write(self.fd, view)
                view, self.written = view[n:], self.written + n
        except OSError as e:
            self.failed, self.needed = self.failed or e, self.written + len(view)
            raise
        return size

    def flush(self) -> None:  # nothing is buffered
        pass


def write_atomic(path: Path, write: Callable[[Any], Any], *, unique: bool = False) -> None:
    """``write(f)`` into a temporary file beside ``path`` (``f`` has ``write(bytes)``: pass it to
    ``torch.save`` or write encoded text), fsync it, rename it over ``path`` and fsync the folder
    (where the system can), so ``path`` is the old file or the whole new one, after a crash too.
    On any error the temporary file is removed and the old file kept; a full disk is a user error
    naming ``path`` and the space it needed. ``unique`` names the temporary file after this
    process, for files that several processes may write at once."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp" if unique else f"{path.name}.tmp")
    out = None
    try:
        out = _Out(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o666))
        try:
            write(out)
            os.fsync(out.fd)
        finally:
            os.close(out.fd)
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        error = out.failed if out is not None and out.failed is not None and not isinstance(e, OSError) else e
        if isinstance(error, OSError) and error.errno in DISK_FULL:
            raise disk_full(path, out.needed if out is not None else 0) from None
        if error is not e:
            raise error from e
        raise
    sync_folder(path.parent)


def disk_full(path: Path, needed: int) -> RKSearchError:
    """The one-line error of a disk that filled while writing ``path``."""
    try:
        free = f", {_size(shutil.disk_usage(path.parent).free)} free"
    except OSError:
        free = ""
    need = f" (needs more than {_size(needed)}{free})" if needed else ""
    kept = "the last complete one is kept" if path.exists() else "nothing was written"
    return RKSearchError(f"no space left on the device to write it{need}; {kept}", source=path)


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return ""  # unreachable


def sync_folder(folder: Path) -> None:
    """fsync a folder, so a rename in it survives a power cut; a system that cannot open or sync a
    folder (Windows, some network file systems) is left to its own guarantees."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` in one step; an OSError is a user error naming ``path`` (a
    missing or read-only folder), with nothing left behind."""
    try:
        write_atomic(path, lambda f: f.write(text.encode("utf-8")))
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
