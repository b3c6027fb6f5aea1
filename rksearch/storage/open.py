"""Opening an Optuna storage, once, for the search that writes it and for every reader beside it.

SQLite studies are kept in WAL mode: one writer and any number of readers work at once, a reader
never blocks the search's commits nor sees half of one. Every connection gets one generous busy
timeout, so a brief lock (a checkpoint) makes a request wait instead of fail.
"""
from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import optuna

from rksearch.core.errors import RKSearchError
from rksearch.storage.urls import shown_url, sqlite_path, storage_error

BUSY_TIMEOUT_S = 60

# what to pip install for the DB-API module SQLAlchemy could not import (postgresql:// means psycopg 3)
DRIVERS = {"psycopg": "'psycopg[binary]'", "psycopg2": "psycopg2-binary", "MySQLdb": "mysqlclient",
           "pymysql": "pymysql", "mysql": "mysql-connector-python"}

# what opening a new database says when another driver or reader created its tables at the same moment
CREATION_RACES = ("alembic_version", "duplicate key value", "already exists")


def open_storage(url: str, *, read_only: bool = False, source: str | Path | None = None,
                 field: str | None = None) -> optuna.storages.RDBStorage:
    """An Optuna RDB storage on ``url``. The writer creates a missing SQLite file and Optuna's
    tables and puts SQLite in WAL mode; ``read_only`` creates and changes nothing. Errors name
    ``source`` and ``field`` (where the URL was given) and never show a password."""
    db = sqlite_path(url)
    if db is not None and not read_only:
        db.parent.mkdir(parents=True, exist_ok=True)
        ensure_wal(db)
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(url, read_only),
                                              skip_table_creation=read_only)
        except Exception as e:  # sqlalchemy raises many types; all mean an unusable storage
            if any(r in str(e) for r in CREATION_RACES) and attempt < 4:
                time.sleep(0.1 * (attempt + 1))  # another process created the schema at the same moment: it is there now
                continue
            text, missing = storage_error(e), getattr(e.__cause__, "name", None)
            break
    if "DB access module" in text:
        scheme = url.split("://", 1)[0]
        text = f"no database driver for {scheme}:// here (pip install {DRIVERS.get(missing, missing or 'its driver')})"
    shown = shown_url(url)
    where = f"{shown}: " if source is not None and field is not None else ""  # a file's field: name its value too
    raise RKSearchError(f"{where}cannot open the storage: {text}", source=source or shown, field=field) from None


def _engine_kwargs(url: str, read_only: bool = False) -> dict[str, Any]:
    if not url.startswith("sqlite"):
        return {"pool_pre_ping": True}
    kwargs: dict[str, Any] = {"connect_args": {"timeout": BUSY_TIMEOUT_S}}
    if read_only:  # a reader keeps no connection open between reads: once read, a study at rest has no
        import sqlalchemy.pool  # -wal/-shm files a reader left behind (a pooled one stays until GC)

        kwargs["poolclass"] = sqlalchemy.pool.NullPool
    return kwargs


def ensure_wal(db: Path, *, timeout: float = BUSY_TIMEOUT_S) -> bool:
    """Put the SQLite file ``db`` in WAL journal mode (stored in the file, so every later
    connection has it); True when it is in WAL mode now. A file SQLite cannot use (not a
    database, locked past ``timeout``, read-only) is an RKSearchError."""
    try:
        with closing(sqlite3.connect(db, timeout=timeout)) as con:
            mode = con.execute("PRAGMA journal_mode").fetchone()[0]
            if mode.lower() != "wal":
                mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            return mode.lower() == "wal"
    except sqlite3.DatabaseError as e:
        raise RKSearchError(f"not a usable SQLite database ({e})", source=db) from None


def check_db(db: Path) -> list[str]:
    """Study names in ``db``, after making sure it is an SQLite file with Optuna's tables.

    Never ``open()`` the file directly: closing a plain descriptor on it drops every POSIX lock
    this process holds on the database, under any SQLite connection a running search or a
    notebook keeps open here, and readers then see a "malformed" database.
    """
    try:
        con = sqlite3.connect(db, timeout=BUSY_TIMEOUT_S)  # not mode=ro: a WAL reader needs the shared-memory index
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "studies" not in tables or "trials" not in tables:
                raise RKSearchError("holds no Optuna study (no 'studies' table)", source=db)
            return [r[0] for r in con.execute("SELECT study_name FROM studies ORDER BY study_id")]
        finally:
            con.close()
    except sqlite3.OperationalError as e:
        raise RKSearchError(f"cannot read the database: {e}", source=db) from None
    except sqlite3.DatabaseError as e:
        if "not a database" in str(e):
            raise RKSearchError("not an SQLite database (corrupt, or not written by rksearch run)", source=db) from None
        raise RKSearchError(f"corrupt SQLite database: {e}", source=db) from None


def check_sqlite_url(url: str, source: str | Path) -> None:
    """An SQLite URL must name an existing database: opening a missing file would create it, empty."""
    db = sqlite_path(url)
    if db is not None:
        if not db.is_file():
            raise RKSearchError("no such SQLite database", source=source)
        check_db(db)
