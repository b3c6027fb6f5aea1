"""A study folder's layout: its own ``optuna.db``, the space copy, and ``storage.url`` naming a storage elsewhere."""
from __future__ import annotations

import os
from pathlib import Path

from rksearch.core.errors import RKSearchError
from rksearch.core.files import write_text
from rksearch.core.secrets import has_masked_password
from rksearch.core.yamlio import parse_yaml
from rksearch.storage.urls import shown_url, sqlite_url

DB_NAME = "optuna.db"
SPACE_COPY = "space.yaml"  # the space file rksearch run copies into the study folder
STORAGE_FILE = "storage.url"  # where rksearch run records a storage other than the folder's optuna.db
STORAGE_ENV = "RKSEARCH_STORAGE"  # the full storage URL, password included: never on a command line


def env_storage() -> str | None:
    """The storage URL in ``$RKSEARCH_STORAGE``, or None where it is unset or blank."""
    return os.environ.get(STORAGE_ENV, "").strip() or None


def unmasked(url: str, source: str | Path | None, field: str | None) -> str:
    """``url``, recorded with its password masked, as ``$RKSEARCH_STORAGE`` gives it in full; a
    URL with no masked password as it is. One line naming ``source`` and ``field`` where the
    variable is unset or names another storage."""
    if not has_masked_password(url):
        return url
    full = env_storage()
    if full is None:
        raise RKSearchError(f"the storage {url} has its password masked (rksearch records no password); set "
                            f"{STORAGE_ENV} to its full URL", source=source, field=field)
    if has_masked_password(full) or shown_url(full) != url:
        raise RKSearchError(f"the storage {url} has its password masked, and {STORAGE_ENV} names "
                            f"{shown_url(full)}, not it; set {STORAGE_ENV} to its full URL", source=source, field=field)
    return full


def default_storage(study_dir: Path) -> str:
    """The URL of the folder's own database (``sqlite_url`` quotes ?, # and % in the path)."""
    return sqlite_url(study_dir / DB_NAME)


def storage_of(study_dir: Path) -> str | None:
    """The storage ``rksearch run`` recorded in a study folder (``storage.url``, else the space
    copy's ``storage:``), or None: the study is the folder's own ``optuna.db``. A password is
    masked there (:func:`unmasked` takes it from ``$RKSEARCH_STORAGE``)."""
    recorded = study_dir / STORAGE_FILE
    if recorded.is_file():
        return recorded.read_text().strip() or None
    space = study_dir / SPACE_COPY
    if not space.is_file():
        return None
    try:
        data = parse_yaml(space.read_text(), space)
    except (RKSearchError, OSError):
        return None
    url = data.get("storage") if isinstance(data, dict) else None
    return url if isinstance(url, str) and url.strip() else None


def record_storage(study_dir: Path, url: str) -> None:
    """Write ``storage.url`` where the study is not the folder's ``optuna.db``, so pareto, export,
    dashboard and notebooks find it from anywhere (a password is masked: they then take the full URL
    from ``$RKSEARCH_STORAGE``)."""
    path = study_dir / STORAGE_FILE
    if url == default_storage(study_dir):
        path.unlink(missing_ok=True)
        return
    write_text(path, shown_url(url) + "\n")


def folder_db(path: Path) -> Path:
    """The database of the study folder ``path``; a user error saying what is missing otherwise."""
    if not path.exists():
        space = path.parent.parent / "search_spaces" / f"{path.name}.yaml"  # studies/x beside search_spaces/x.yaml
        how = f"rksearch run {space} --out {path.parent} writes it" if space.is_file() else \
            "rksearch run writes <out>/<space name>/"
        raise RKSearchError(f"no such study folder ({how})", source=path)
    if not path.is_dir():
        raise RKSearchError("is a file; expected a study folder (studies/<name>/ holding optuna.db)", source=path)
    db = path / DB_NAME
    if not db.is_file():
        raise RKSearchError(f"not a study folder: no {DB_NAME} (rksearch run writes one)", source=path)
    return db
