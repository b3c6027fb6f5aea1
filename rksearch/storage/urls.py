"""Storage URLs as text: the SQLite file a URL names, absolute and password-masked URLs, errors in one line."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

from rksearch.core.secrets import mask_secrets


def sqlite_url(db: Path, query: str = "") -> str:
    """The ``sqlite:///`` URL of the file ``db``, ``query`` its query string. SQLAlchemy ends the
    path at a ``?`` and decodes ``%XX`` in it, so ``%``, ``?`` and ``#`` are quoted: a folder
    named ``a?b`` must not open a database named ``a``."""
    path = str(db).replace("%", "%25").replace("?", "%3F").replace("#", "%23")
    return f"sqlite:///{path}?{query}" if query else f"sqlite:///{path}"


def sqlite_path(url: str) -> Path | None:
    """The database file of an ``sqlite:///`` URL (its query string left out, ``%XX`` decoded as
    SQLAlchemy does), else None."""
    return Path(unquote(url[len("sqlite:///"):].partition("?")[0])) if url.startswith("sqlite:///") else None


def reader_url(db: Path) -> str:
    """SQLAlchemy URL for reading ``db`` beside a running search.

    Not SQLite's ``mode=ro``: a read-only connection cannot rebuild the WAL index a killed
    writer leaves behind and then reports the database as malformed. Reads in WAL mode never
    block the writer; opened ``read_only`` (:func:`rksearch.storage.open.open_storage`) nothing
    is ever written.
    """
    return sqlite_url(db.resolve())


def absolute_url(url: str) -> str:
    """``url`` with a relative SQLite path made absolute (against the working directory), so the
    study can be found from anywhere later."""
    path = sqlite_path(url)
    if path is None or path.is_absolute():
        return url
    return sqlite_url(path.resolve(), url.partition("?")[2])


def shown_url(url: str) -> str:
    """``url`` fit for a message or a record: any password masked (``user:***@``), the rest as
    given. Not parsed: a URL SQLAlchemy cannot read is masked all the same."""
    return mask_secrets(url)


def storage_error(e: BaseException) -> str:
    """What went wrong with a storage, in one line: Optuna wraps a database's own error in a
    generic "exception during the commit", so the database's words are its cause's."""
    import optuna

    if isinstance(e, optuna.exceptions.StorageInternalError) and e.__cause__ is not None:
        e = e.__cause__
    return mask_secrets(str(e).splitlines()[0]) if str(e) else type(e).__name__  # SQLAlchemy echoes a bad URL
