"""One writer per study folder: a lock beside it, and a file naming the run that holds it (host, pid, since)."""
from __future__ import annotations

import json
import os
import socket
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from filelock import FileLock, Timeout

from rksearch.core.errors import RKSearchError
from rksearch.core.files import write_text
from rksearch.search.liveness import alive


def lock_file(study_dir: Path) -> Path:
    """The lock of ``study_dir``: beside it, so ``--fresh`` (which renames the folder) keeps it."""
    return study_dir.with_name(f".{study_dir.name}.lock")


def owner_file(study_dir: Path) -> Path:
    """Who holds the lock of ``study_dir``: host, pid and since when, as JSON."""
    return study_dir.with_name(f".{study_dir.name}.lock.json")


@contextmanager
def study_lock(study_dir: Path, notify: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold ``study_dir`` for one ``rksearch run``: another run on it is a user error naming the
    holder. The kernel releases the lock of a process that dies (SIGKILL, a crash); the owner file
    it leaves is taken over with a notice. Both files go when the run ends (the lock file removed
    while still held: filelock 4 does not count a lock on a removed file as taken), and ``--out``
    too where the run made it and wrote nothing. Drivers sharing a study in a database server each
    have a folder of their own, so they never meet here."""
    parent = study_dir.parent
    created = not parent.exists()
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RKSearchError(f"cannot create the folder: {e.strerror}", source=parent, field="--out") from None
    lock = FileLock(lock_file(study_dir), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise RKSearchError(f"in use by another rksearch run ({describe(read_owner(study_dir))}); wait for it to "
                            "end or stop it", source=study_dir) from None
    except OSError as e:
        _tidy(study_dir, created)
        raise RKSearchError(f"cannot lock the study folder: {e.strerror or e}", source=study_dir) from None
    try:
        left = read_owner(study_dir)
        if left is not None and notify is not None:
            notify(f"{study_dir}: a run that ended without releasing it held this study ({describe(left)}); "
                   "taking it over")
        write_text(owner_file(study_dir), json.dumps(me()) + "\n")
        yield
    finally:
        owner_file(study_dir).unlink(missing_ok=True)
        lock_file(study_dir).unlink(missing_ok=True)
        lock.release()
        _tidy(study_dir, created)


def me() -> dict:
    """This process, as the owner file records it."""
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "since": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")}


def read_owner(study_dir: Path) -> dict | None:
    """The owner file's record; None where there is none or it cannot be read."""
    try:
        owner = json.loads(owner_file(study_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def describe(owner: dict | None) -> str:
    """``host H, pid P, since T``; and whether it still runs, where that can be known (this host)."""
    if owner is None:
        return "it has not said which yet"
    text = f"host {owner.get('host')}, pid {owner.get('pid')}, since {owner.get('since')}"
    if not alive(f"{owner.get('host')}:{owner.get('pid')}"):  # known only on this host
        text += ", no longer running"
    return text


def _tidy(study_dir: Path, created: bool) -> None:
    """Remove ``--out`` where it was made only to hold the lock and nothing else came into it."""
    if created:
        try:
            study_dir.parent.rmdir()
        except OSError:
            pass
