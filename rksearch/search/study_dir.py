"""A search's study folder: made, holding the space's copy; ``--fresh`` sets the old study aside first."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import optuna

from rksearch.core.errors import RKSearchError
from rksearch.core.files import write_text
from rksearch.core.secrets import has_masked_password, mask_secrets
from rksearch.search.liveness import live_trials
from rksearch.space.search_space import SearchSpace
from rksearch.storage.baseline_study import baselines_name
from rksearch.storage.folder import DB_NAME, SPACE_COPY, default_storage, storage_of, unmasked
from rksearch.storage.open import open_storage
from rksearch.storage.urls import absolute_url, shown_url, storage_error


def prepare_study_dir(space: SearchSpace, out: Path, fresh: bool, url: str | None,
                      **given: Any) -> tuple[Path, Path | None]:
    """The study folder, made and holding the space's copy (a storage URL's password masked); and
    where ``fresh`` moved the old one."""
    study_dir = out / space.name
    aside = set_aside(study_dir, url, **given) if fresh else None
    try:
        study_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RKSearchError(f"cannot create the study folder: {e.strerror}", source=study_dir, field="--out") from None
    if space.source is not None:
        head = "".join(f"# run with --set {k}={v!r}\n" for k, v in space.overrides)  # what the file does not say
        write_text(study_dir / SPACE_COPY, mask_secrets(head + space.source.read_text(encoding="utf-8")))
    return study_dir, aside


def set_aside(study_dir: Path, url: str | None, **given: Any) -> Path | None:
    """``--fresh``: the old study keeps its trials under ``<name>.<time>``. The folder is renamed;
    where it records a study kept outside it (another SQLite file, a database server), that study
    is first copied to the new name there and deleted under the old one last, so the renamed
    folder reads it (a folder names its study) and no failure strands its trials. ``url`` is this
    run's storage (it supplies a recorded URL's password); None: the folder's own database only.
    Without a folder, a study of its name in this run's storage is set aside all the same.
    Returns the renamed folder, if there was one."""
    folder = study_dir.is_dir()
    aside = study_dir.with_name(f"{study_dir.name}.{time.strftime('%Y%m%d-%H%M%S')}")
    if aside.exists():
        raise RKSearchError(f"{aside.name} exists already; try again in a second", source=study_dir, field="--fresh")
    if url is None or folder:
        external = _recorded_storage(study_dir, url) if url is not None else None
    else:
        external = url if url != default_storage(study_dir) else None
    if external is None:
        if not folder:
            return None
        if (study_dir / DB_NAME).exists():
            try:
                rdb = open_storage(default_storage(study_dir))
                live = [n for m in (study_dir.name, baselines_name(study_dir.name)) for n in live_trials(rdb, m)]
            except Exception:  # a broken database is what --fresh moves aside
                live = []
            _refuse_running(live, study_dir)
        _rename(study_dir, aside)
        return aside
    rdb = open_storage(external, **given)
    names = {s.study_name for s in rdb.get_all_studies()}
    moving = [n for n in (study_dir.name, baselines_name(study_dir.name)) if n in names]  # the baselines' study too
    if moving:
        _refuse_running([n for m in moving for n in live_trials(rdb, m)], study_dir)
        if any(_aside_name(m, study_dir, aside) in names for m in moving):
            raise RKSearchError(f"{shown_url(external)} holds a study {aside.name} already; try again in a second",
                                source=study_dir, field="--fresh")
        copied = []
        try:
            for m in moving:
                optuna.copy_study(from_study_name=m, from_storage=rdb, to_storage=rdb,
                                  to_study_name=_aside_name(m, study_dir, aside))
                copied.append(m)
        except Exception as e:  # sqlalchemy and optuna raise many types
            for m in copied:
                optuna.delete_study(study_name=_aside_name(m, study_dir, aside), storage=rdb)
            raise RKSearchError(f"cannot copy the study aside in {shown_url(external)}: {storage_error(e)}; "
                                "nothing was moved", source=study_dir, field="--fresh") from None
    if folder:
        try:
            _rename(study_dir, aside)
        except RKSearchError:
            for m in moving:  # leave the storage as it was, too
                optuna.delete_study(study_name=_aside_name(m, study_dir, aside), storage=rdb)
            raise
    for m in moving:
        try:
            optuna.delete_study(study_name=m, storage=rdb)
        except Exception as e:
            raise RKSearchError(f"the study was copied to {_aside_name(m, study_dir, aside)} but not deleted under its old name "
                                f"({storage_error(e)}); delete it (optuna delete-study) and run again",
                                source=study_dir, field="--fresh") from None
    return aside if folder else None


def _aside_name(study_name: str, study_dir: Path, aside: Path) -> str:
    """Where ``--fresh`` copies study ``study_name``, the search's or its baselines' (``<name>/baselines``)."""
    return aside.name + study_name[len(study_dir.name):]


def _rename(study_dir: Path, aside: Path) -> None:
    try:
        study_dir.rename(aside)
    except OSError as e:
        raise RKSearchError(f"cannot move the study aside to {aside.name}: {e.strerror}; nothing was moved",
                            source=study_dir, field="--fresh") from None


def _recorded_storage(study_dir: Path, url: str) -> str | None:
    """The storage the folder records, with ``url``'s password where the record hides it; None
    where the study is the folder's own database."""
    recorded = storage_of(study_dir)
    if recorded is None:
        return None
    if has_masked_password(recorded):  # this run's URL, or $RKSEARCH_STORAGE, has the password
        recorded = url if shown_url(url) == recorded else unmasked(recorded, study_dir, "--fresh")
    recorded = absolute_url(recorded)
    return None if recorded == default_storage(study_dir) else recorded


def _refuse_running(live: list[int], study_dir: Path) -> None:
    if live:
        raise RKSearchError(f"another rksearch run is training trials {live[:5]} of this study; let it finish or "
                            "stop it before starting over", source=study_dir, field="--fresh")
