"""A search's study folder read back as a table: one row per trial, per-period choices spelled out.

``studies/<name>/optuna.db`` is written by ``rksearch run`` (SQLite in WAL mode, Optuna study
``<name>``), or the storage it names. Everything here only reads (Optuna's tables are never
created or changed; WAL readers never block the search that is writing).
"""
from __future__ import annotations

import math
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pandas as pd

from rksearch.storage.baseline_study import BASELINE, KIND, SEARCH, baselines_name, is_baseline, is_baselines_name
from rksearch.arch.resolve import AnySpec, any_spec_from_dict
from rksearch.core.errors import RKSearchError
from rksearch.arch.rknet import RKNetSpec, parse_yaml

DB_NAME = "optuna.db"
SPACE_COPY = "space.yaml"  # the space file rksearch run copies into the study folder
STORAGE_FILE = "storage.url"  # where rksearch run records a storage other than the folder's optuna.db
DEFAULT_OBJECTIVES = ("accuracy", "flops")
PERIOD_FIELDS = ("method", "stages", "steps", "growth_rate", "m")
GLOBAL_FIELDS = ("bottleneck", "attention", "multiscale", "dropout")
TRIAL_ATTRS = (
    "name", "accuracy", "flops", "params", "trained_flops", "trained_params", "epochs",
    "images_per_s", "seconds", "ray_trial_id", "node", "fail_reason", "outcome", "reason",
)
NUMERIC_ATTRS = ("trained_flops", "trained_params", "epochs", "images_per_s", "seconds")


@dataclass(frozen=True)
class Objective:
    """What one objective means: its direction, the trial attr that measures it, display units."""

    name: str
    direction: str  # "maximize" | "minimize"
    attr: str  # the trial user attr measuring it when no attr carries its own name
    scale: float = 1.0
    unit: str = ""

    @property
    def label(self) -> str:
        return f"{self.name} ({self.unit})" if self.unit else self.name

    @property
    def sense(self) -> str:
        return "max" if self.direction == "maximize" else "min"


OBJECTIVES: dict[str, Objective] = {
    o.name: o
    for o in (
        Objective("accuracy", "maximize", "accuracy"),
        Objective("flops", "minimize", "flops", 1e-9, "GFLOPs"),
        Objective("params", "minimize", "params", 1e-6, "M params"),
        Objective("latency", "minimize", "latency", 1.0, "ms"),
        Objective("throughput", "maximize", "images_per_s", 1.0, "images/s"),
    )
}


def objective(name: str, *, field: str = "objectives", source: str | Path | None = None) -> Objective:
    """The :class:`Objective` called ``name``; a user error naming the known ones otherwise."""
    try:
        return OBJECTIVES[name]
    except (KeyError, TypeError):
        raise RKSearchError(f"unknown objective {name!r}; known: {', '.join(OBJECTIVES)}", source=source, field=field) from None


def parse_objectives(text: str | Sequence[str], *, field: str = "--objectives") -> tuple[str, ...]:
    """``"accuracy,flops"`` or a list -> validated, duplicate-free names (at least two)."""
    names = [n.strip() for n in text.split(",")] if isinstance(text, str) else list(text)
    for n in names:
        objective(n, field=field)
    if len(names) < 2 or len(set(names)) != len(names):
        raise RKSearchError(f"need at least two different objectives, got {', '.join(names) or 'none'}", field=field)
    return tuple(names)


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


def _check_db(db: Path) -> list[str]:
    """Study names in ``db``, after making sure it is an SQLite file with Optuna's tables.

    Never ``open()`` the file directly: closing a plain descriptor on it drops every POSIX lock
    this process holds on the database, under any SQLite connection a running search or a
    notebook keeps open here, and readers then see a "malformed" database.
    """
    try:
        con = sqlite3.connect(db, timeout=30)  # not mode=ro: a WAL reader needs the shared-memory index
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


def reader_url(db: Path) -> str:
    """SQLAlchemy URL for reading ``db`` beside a running search.

    Not SQLite's ``mode=ro``: a read-only connection cannot rebuild the WAL index a killed
    writer leaves behind and then reports the database as malformed. Reads in WAL mode never
    block the writer; with ``skip_table_creation`` nothing is ever written.
    """
    return sqlite_url(db.resolve())


def _load_optuna(url: str, name: str, source: str | Path):
    import optuna
    import sqlalchemy.exc

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    connect = {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {}
    try:
        storage = optuna.storages.RDBStorage(url, engine_kwargs=connect, skip_table_creation=True)
    except Exception as e:  # sqlalchemy and the drivers raise many types; all mean an unusable storage
        raise RKSearchError(f"cannot open the storage: {storage_error(e)}", source=source) from None
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


def storage_error(e: BaseException) -> str:
    """What went wrong with a storage, in one line: Optuna wraps a database's own error in a
    generic "exception during the commit", so the database's words are its cause's."""
    import optuna

    if isinstance(e, optuna.exceptions.StorageInternalError) and e.__cause__ is not None:
        e = e.__cause__
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def shown_url(url: str) -> str:
    """``url`` fit for a message: any password masked."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001  (a URL SQLAlchemy cannot parse is reported when it is opened)
        return url


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


def absolute_url(url: str) -> str:
    """``url`` with a relative SQLite path made absolute (against the working directory), so the
    study can be found from anywhere later."""
    path = sqlite_path(url)
    if path is None or path.is_absolute():
        return url
    return sqlite_url(path.resolve(), url.partition("?")[2])


def storage_of(study_dir: Path) -> str | None:
    """The storage ``rksearch run`` recorded in a study folder (``storage.url``, else the space
    copy's ``storage:``), or None: the study is the folder's own ``optuna.db``."""
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


def load_study(study_dir: str | Path, *, name: str | None = None, storage: str | None = None) -> Study:
    """Read a study: by default the study folder's ``optuna.db``, or the storage its space copy
    names; ``storage`` (an Optuna storage URL) overrides both, and then the folder need not exist.
    The Optuna study is the folder's name unless ``name`` says otherwise, or the one study the
    folder's own database holds (a folder renamed by ``run --fresh``, or copied)."""
    path = Path(study_dir)
    if path.name == DB_NAME and path.is_file():  # the database itself names its folder
        path = path.parent
    url = storage or (storage_of(path) if path.is_dir() else None)
    given, name = name, name or path.resolve().name
    if url is not None and storage is None and "***" in url:
        raise RKSearchError("records its storage without the password; give it: --storage URL", source=path,
                            field=STORAGE_FILE)
    if url is not None:
        source: str | Path = shown_url(url)
        record = path / STORAGE_FILE if (path / STORAGE_FILE).is_file() else path / SPACE_COPY
        opened = source if storage is not None else f"{record}: {source}"  # errors say where the URL came from
        _check_sqlite_url(url, opened)
    else:
        db = _folder_db(path)
        names = _check_db(db)
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


def _folder_db(path: Path) -> Path:
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


def _check_sqlite_url(url: str, source: str | Path) -> None:
    """An SQLite URL must name an existing database: opening a missing file would create it, empty."""
    db = sqlite_path(url)
    if db is not None:
        if not db.is_file():
            raise RKSearchError("no such SQLite database", source=source)
        _check_db(db)


def trials_frame(study, objectives: Sequence[str] | None = None, *, trials: list | None = None,
                 specs: dict[int, AnySpec] | None = None, source: str | Path | None = None,
                 baselines: Sequence = (), baseline_specs: dict[int, AnySpec] | None = None) -> pd.DataFrame:
    """One row per trial of an ``optuna.Study`` (what :attr:`Study.trials` holds), then one per
    trial of its baselines' study, ``baselines`` (``kind`` tells them apart; each is numbered
    in its own study).

    ``objectives`` default to the study's ``objectives`` attr; ``specs`` and ``baseline_specs``,
    when given, receive each trial's parsed spec by number.
    """
    objectives = tuple(objectives or study.user_attrs.get("objectives", DEFAULT_OBJECTIVES))
    trials = study.get_trials(deepcopy=False) if trials is None else trials
    specs = {} if specs is None else specs
    baseline_specs = {} if baseline_specs is None else baseline_specs
    where = source or study.study_name
    rows = [_row(t, objectives, baseline_specs if is_baseline(t.user_attrs) else specs, where) for t in trials]
    rows += [_row(t, objectives, baseline_specs, where, kind=BASELINE) for t in baselines]
    frame = pd.DataFrame(rows, columns=_columns(rows, objectives))
    for c in (*OBJECTIVES, *NUMERIC_ATTRS):
        frame[c] = pd.to_numeric(frame[c], errors="coerce")
    return frame


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


def _row(trial, objectives: Sequence[str], specs: dict[int, AnySpec], db: str | Path,
         kind: str | None = None) -> dict[str, Any]:
    ua = trial.user_attrs
    row: dict[str, Any] = {"number": trial.number, "state": trial.state.name,
                           KIND: kind or (BASELINE if is_baseline(ua) else SEARCH)}
    row.update({a: ua.get(a) for a in TRIAL_ATTRS})
    text = ua.get("spec")
    spec = None
    if isinstance(text, str):
        try:
            where = f"{db}: trial {trial.number} user_attrs.spec"
            spec = any_spec_from_dict(parse_yaml(text, where), source=where)
        except RKSearchError:
            if trial.state.name != "FAIL":  # a failed trial may fail precisely on its spec
                raise
    elif trial.state.name in ("COMPLETE", "PRUNED"):
        raise RKSearchError(f"trial {trial.number} ({trial.state.name}) has no spec", source=db, field="user_attrs.spec")
    if spec is not None:
        specs[trial.number] = spec
        row.update(spec_columns(spec))
        row["name"] = row["name"] or spec.name
        row["spec"] = text
    for o in OBJECTIVES.values():  # objectives not optimised still get a column when measured
        row.setdefault(o.name, ua.get(o.name, ua.get(o.attr)))
    if trial.values is not None:
        row.update(zip(objectives, trial.values))
    return row


def spec_columns(spec: AnySpec) -> dict[str, Any]:
    """The choices a search makes, flattened: ``p{i}_method``, ``p{i}_stages``, ..., globals;
    a baseline has none of them, only its ``choices`` line."""
    if not isinstance(spec, RKNetSpec):
        return {"choices": spec.choices()}
    cols: dict[str, Any] = {"periods": len(spec.periods)}
    for i, p in enumerate(spec.periods):
        cols.update({f"p{i}_{f}": getattr(p, f) for f in PERIOD_FIELDS})
    cols.update({f: getattr(spec, f) for f in GLOBAL_FIELDS})
    cols["choices"] = choices_text(spec)
    return cols


def choices_text(spec: RKNetSpec) -> str:
    """One line of what the name does not say: growth rate and m per period."""
    ks = "/".join(str(p.growth_rate) for p in spec.periods)
    text = f"k={ks}"
    if any(p.m != 1 for p in spec.periods):
        text += " m=" + "/".join(str(p.m) if p.method == "erk" else "-" for p in spec.periods)  # IRK: no m
    if spec.dropout:
        text += f" dropout={spec.dropout:g}"
    return text


def _columns(rows: list[dict[str, Any]], objectives: Sequence[str]) -> list[str]:
    head = ["number", "state", "name", *objectives, KIND]
    seen = dict.fromkeys(head)
    for r in rows:
        seen.update(dict.fromkeys(r))
    for c in (*OBJECTIVES, *TRIAL_ATTRS):
        seen.setdefault(c)
    return list(seen)


def choice_values(trials: pd.DataFrame, choice: str) -> pd.Series:
    """Column ``choice`` of ``trials`` as the choice it was: an IRK period's m (always 1, never
    chosen) missing, and whole numbers that trials without the period made floats whole again."""
    values = trials[choice]
    if choice.endswith("_m") and choice[:-1] + "method" in trials:
        values = values.where(trials[choice[:-1] + "method"] == "erk")
    return whole_numbers(values)


def whole_numbers(values: pd.Series) -> pd.Series:
    """A float column that trials lacking a value made of whole numbers, whole again (3, not 3.0)."""
    return values.astype("Int64") if values.dtype.kind == "f" and (values.dropna() % 1 == 0).all() else values


def choice_effects(study: Study, metrics: Sequence[str] | str = ("accuracy", "flops")) -> pd.DataFrame:
    """Mean of each metric over completed trials, grouped by every per-period and global choice.

    Long format, one row per (choice, value): ``choice`` (``p0_stages``, ``bottleneck``...),
    ``value``, ``trials`` and one ``mean_<metric>`` column per metric.
    """
    metrics = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    done = study.completed
    numeric = [c for c in done.columns if pd.api.types.is_numeric_dtype(done[c]) and not pd.api.types.is_bool_dtype(done[c])]
    for m in metrics:
        if m not in numeric:
            raise RKSearchError(f"no measured column {m!r}; one of {', '.join(numeric)}", source=study.source,
                                field="metrics")
    choices = [c for c in done.columns if c.split("_", 1)[-1] in PERIOD_FIELDS and c[0] == "p" and c[1].isdigit()]
    choices += [c for c in GLOBAL_FIELDS if c in done and done[c].nunique(dropna=True) > 1]
    parts = []
    for c in choices:
        g = done[list(metrics)].groupby(choice_values(done, c), dropna=True).agg(["mean", "count"])
        part = pd.DataFrame({"choice": c, "value": g.index.astype(str), "trials": g[(metrics[0], "count")].to_numpy()})
        for m in metrics:
            part[f"mean_{m}"] = g[(m, "mean")].to_numpy()
        parts.append(part)
    cols = ["choice", "value", "trials", *(f"mean_{m}" for m in metrics)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)
