"""A search's study folder loaded: its settings, and its trials as a table (:mod:`rksearch.analysis.trials`).

``studies/<name>/optuna.db`` is written by ``rksearch run`` (SQLite in WAL mode, Optuna study
``<name>``), or the storage it names. Everything here only reads (Optuna's tables are never
created or changed; WAL readers never block the search that is writing).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from rksearch.analysis.trials import trials_frame
from rksearch.arch.resolve import AnySpec
from rksearch.core.errors import RKSearchError
from rksearch.core.objectives import DEFAULT_OBJECTIVES, OBJECTIVES, objective
from rksearch.storage.baseline_study import BASELINE, KIND, SEARCH, baselines_name, is_baselines_name
from rksearch.storage.folder import DB_NAME, SPACE_COPY, STORAGE_FILE, env_storage, folder_db, storage_of, unmasked
from rksearch.storage.open import check_db, check_sqlite_url, open_storage
from rksearch.storage.urls import reader_url, shown_url, sqlite_path, storage_error


@dataclass
class Study:
    """One study folder, loaded: its settings and :attr:`trials` (a DataFrame, one row a trial)."""

    path: Path
    name: str
    objectives: tuple[str, ...]
    reference_point: dict[str, float]
    space: str | None
    proxy: dict[str, Any]
    trials: pd.DataFrame
    specs: dict[int, AnySpec] = field(repr=False, default_factory=dict)
    baseline_specs: dict[int, AnySpec] = field(repr=False, default_factory=dict)  # by number in <name>/baselines
    url: str = ""  # the Optuna storage URL it was read from
    source: str = ""  # what messages name: the database file, or the URL with any password masked

    def __post_init__(self) -> None:
        if not self.url:
            self.url = reader_url(self.path / DB_NAME)
        self.source = self.source or str(self.db)

    @property
    def db(self) -> Path:
        """The SQLite file, for a study in its folder's ``optuna.db`` or in an ``sqlite:///`` URL."""
        return sqlite_path(self.url) or self.path / DB_NAME

    @property
    def directions(self) -> tuple[str, ...]:
        return tuple(OBJECTIVES[o].direction for o in self.objectives)

    @cached_property
    def completed(self) -> pd.DataFrame:
        """COMPLETE searched trials: the only ones with full-proxy results that the search found, so
        the only front candidates (baselines are :attr:`baselines`)."""
        return self.trials[(self.trials["state"] == "COMPLETE") & (self.trials[KIND] == SEARCH)]

    @cached_property
    def baselines(self) -> pd.DataFrame:
        """COMPLETE baseline trials: known networks trained under the same proxy, shown beside the front."""
        return self.trials[(self.trials["state"] == "COMPLETE") & (self.trials[KIND] == BASELINE)]

    def state_counts(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.trials["state"].value_counts().items()}

    def spec(self, number: int, kind: str = SEARCH) -> AnySpec:
        """The full spec trial ``number`` evaluated: a searched trial, or with ``kind="baseline"``
        baseline ``number`` (its number in the baselines' study)."""
        try:
            return (self.baseline_specs if kind == BASELINE else self.specs)[number]
        except KeyError:
            what = "baseline" if kind == BASELINE else "trial"
            raise RKSearchError(f"{what} {number} has no spec", source=self.source, field="user_attrs.spec") from None

    def summary(self) -> str:
        counts = self.state_counts()
        parts = ", ".join(f"{counts[s]} {s.lower()}" for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING") if counts.get(s))
        baselines = int((self.trials[KIND] == BASELINE).sum())
        where = self.path if self.path.is_dir() else self.source
        head = f"study {self.name} ({where}): {len(self.trials)} trials"
        head += f", {baselines} of them baselines" if baselines else ""
        return head + (f": {parts}" if parts else "")


# -- reading the database --------------------------------------------------------------------


def _load_optuna(url: str, name: str, source: str | Path):
    import optuna
    import sqlalchemy.exc

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(url, read_only=True, source=source)
    try:
        study = optuna.load_study(study_name=name, storage=storage)
        trials = study.get_trials(deepcopy=False)
        held = {s.study_name for s in storage.get_all_studies()}
        baselines = optuna.load_study(study_name=baselines_name(name), storage=storage) \
            if baselines_name(name) in held else None
        return study, trials, baselines.get_trials(deepcopy=False) if baselines is not None else []
    except KeyError:
        held = ", ".join(repr(s.study_name) for s in storage.get_all_studies()) or "no study"
        raise RKSearchError(f"holds {held}, not study {name!r} (a study folder is named after its study)",
                            source=source) from None
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.OptunaError, RuntimeError) as e:
        raise RKSearchError(f"cannot read the Optuna study {name!r}: {storage_error(e)}", source=source) from None


def load_study(study_dir: str | Path, *, name: str | None = None, storage: str | None = None) -> Study:
    """Read a study: by default the study folder's ``optuna.db``, or the storage it records (a
    masked password taken from ``$RKSEARCH_STORAGE``, which also names the storage of a folder that
    is not here); ``storage`` (an Optuna storage URL) overrides both, and then the folder need not exist.
    The Optuna study is the folder's name unless ``name`` says otherwise, or the one study the
    folder's own database holds (a folder renamed by ``run --fresh``, or copied)."""
    path = Path(study_dir)
    if path.name == DB_NAME and path.is_file():  # the database itself names its folder
        path = path.parent
    recorded = storage_of(path) if storage is None and path.is_dir() else None
    record = path / STORAGE_FILE if (path / STORAGE_FILE).is_file() else path / SPACE_COPY
    if recorded is not None:  # a password masked there comes from $RKSEARCH_STORAGE
        url = unmasked(recorded, record, "storage" if record.name == SPACE_COPY else None)
    elif storage is None and not (path / DB_NAME).is_file():
        storage = env_storage()  # no study here: the variable names where it is, as --storage does
        url = storage
    else:
        url = storage
    given, name = name, name or path.resolve().name
    if url is not None:
        source: str | Path = shown_url(url)
        opened = source if storage is not None else f"{record}: {source}"  # errors say where the URL came from
        check_sqlite_url(url, opened)
    else:
        db = folder_db(path)
        names = check_db(db)
        searches = [n for n in names if not is_baselines_name(n)]  # a study's baselines live beside it
        if given is None and len(searches) == 1:
            name = searches[0]
        if name not in names:
            held = ", ".join(repr(n) for n in searches) or "no study"
            raise RKSearchError(f"holds {held}, not study {name!r} (a study folder is named after its study)", source=db)
        url, source = reader_url(db), db
        opened = source
    ostudy, trials, baselines = _load_optuna(url, name, opened)
    attrs = ostudy.user_attrs
    objectives = _objectives(attrs.get("objectives", list(DEFAULT_OBJECTIVES)), source)
    stored = tuple(d.name.lower() for d in ostudy.directions)
    wanted = tuple(OBJECTIVES[o].direction for o in objectives)
    if stored != wanted:
        raise RKSearchError(
            f"objectives {list(objectives)} need directions {list(wanted)}, the study has {list(stored)}",
            source=source, field="user_attrs.objectives",
        )
    specs: dict[int, AnySpec] = {}
    baseline_specs: dict[int, AnySpec] = {}
    frame = trials_frame(ostudy, objectives, trials=trials, specs=specs, source=source, baselines=baselines,
                         baseline_specs=baseline_specs)
    return Study(
        path=path, name=name, objectives=objectives,
        reference_point=_reference(attrs.get("reference_point"), objectives, source),
        space=attrs.get("space"), proxy=attrs.get("proxy") or {}, trials=frame, specs=specs,
        baseline_specs=baseline_specs, url=url,
        source=str(source),
    )


def _objectives(value: Any, db: str | Path) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise RKSearchError(f"expected a list of objective names, got {value!r}", source=db, field="user_attrs.objectives")
    for v in value:
        objective(v, field="user_attrs.objectives", source=db)
    return tuple(value)


def _reference(value: Any, objectives: Sequence[str], db: str | Path) -> dict[str, float]:
    """The stored reference point, checked; objectives it lacks are derived later (see pareto)."""
    if value is None:
        return {}
    where = "user_attrs.reference_point"
    if not isinstance(value, dict):
        raise RKSearchError(f"expected a mapping objective -> number, got {value!r}", source=db, field=where)
    ref = {}
    for k, v in value.items():
        if k not in OBJECTIVES:
            raise RKSearchError(f"unknown objective {k!r}; known: {', '.join(OBJECTIVES)}", source=db, field=where)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise RKSearchError(f"expected a finite number, got {v!r}", source=db, field=f"{where}.{k}")
        ref[k] = float(v)
    return ref
