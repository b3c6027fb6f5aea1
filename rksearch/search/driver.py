"""The search engine: Ray Tune runs proxy trainings, Optuna proposes the architectures.

Optuna's study is the single source of truth. Ray's ``OptunaSearch`` asks it for trials
through the space's define-by-run function; :class:`RKSearcher` adds what a NAS needs on top:
candidates that break a constraint or repeat a trained spec are settled at sampling time,
before any training, and every trial lands with its outcome, spec and measurements as user
attributes (trials stopped early by ASHA become PRUNED, never COMPLETE).
"""
from __future__ import annotations

import contextlib
import datetime
import math
import os
import random
import signal
import socket
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

import optuna
from optuna.trial import TrialState
from ray.tune import Callback
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import Searcher
from ray.tune.stopper import Stopper

from rksearch.models.registry import build_model, count
from rksearch.storage.baseline_study import BASELINE, SEARCH, baselines_name, baselines_study, is_baseline, start_baseline_trial, trained_baselines
from rksearch.arch.resolve import AnySpec, any_spec_from_dict
from rksearch.core.errors import RKSearchError
from rksearch.core.files import write_text
from rksearch.proxies.prescreen import enqueue_prescreened
from rksearch.search.replay import check_replayable, load_table, replay_trial
from rksearch.training.proxy import ProxyConfig, threads_warning
from rksearch.space.search_space import SearchSpace
from rksearch.space.parse import Baseline
from rksearch.core.stopping import raise_if_swallowed, shielded, terminated
from rksearch.analysis.study import STORAGE_FILE, absolute_url, shown_url, sqlite_path, storage_error, storage_of

MAXIMIZE = {"accuracy", "throughput"}
MAX_PROPOSALS = 200  # consecutive rejected proposals before a space counts as exhausted
REPEATS_BEFORE_RANDOM = 2  # the sampler's repeats of trained specs in a row before a random untrained spec is asked
RANDOM_DRAWS = 1000  # draws for an untrained feasible spec before the space counts as exhausted

# trial outcomes, recorded as the user attr "outcome"
TRAINED, PRUNED, FAILED, REJECTED, DUPLICATE = "trained", "pruned", "failed", "rejected", "duplicate"
DONE = (TRAINED, PRUNED)


class SearchAborted(RKSearchError):
    """The search stopped itself (too many failures, an exhausted space)."""

    exit_code = 1


# -- storage ---------------------------------------------------------------------------------

def default_storage(study_dir: Path) -> str:
    from rksearch.analysis.study import sqlite_url  # quotes ?, # and % in the path

    return sqlite_url(study_dir / "optuna.db")


# what to pip install for the DB-API module SQLAlchemy could not import (postgresql:// means psycopg 3)
DRIVERS = {"psycopg": "'psycopg[binary]'", "psycopg2": "psycopg2-binary", "MySQLdb": "mysqlclient",
           "pymysql": "pymysql", "mysql": "mysql-connector-python"}


# what opening a new database says when another driver or reader created its tables at the same moment
CREATION_RACES = ("alembic_version", "duplicate key value", "already exists")


def open_storage(url: str, *, source: str | Path | None = None, field: str | None = None) -> optuna.storages.RDBStorage:
    """An Optuna RDB storage; SQLite files get WAL so readers never block the search. Errors name
    ``source`` and ``field`` (where the URL was given) and never show a password."""
    db = sqlite_path(url)
    if db is not None:
        _enable_wal(db)
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(url), skip_compatibility_check=False)
        except Exception as e:  # sqlalchemy raises many types; all mean an unusable storage
            if any(r in str(e) for r in CREATION_RACES) and attempt < 4:
                time.sleep(0.1 * (attempt + 1))  # another process created the schema at the same moment: it is there now
                continue
            text, missing = storage_error(e), getattr(e.__cause__, "name", None)
            break
    if "DB access module" in text:
        scheme = url.split("://", 1)[0]
        text = f"no database driver for {scheme}:// here (pip install {DRIVERS.get(missing, missing or 'its driver')})"
    where = f"{shown_url(url)}: " if source is not None else ""
    raise RKSearchError(f"{where}cannot open the Optuna storage: {text}", source=source or shown_url(url),
                        field=field) from None


def _engine_kwargs(url: str) -> dict[str, Any]:
    return {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}


def _enable_wal(path: Path) -> None:
    import sqlite3

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with sqlite3.connect(path, timeout=60) as con:
            con.execute("PRAGMA journal_mode=WAL")
    except sqlite3.DatabaseError as e:
        raise RKSearchError(f"not a usable SQLite database ({e})", source=path) from None


def make_sampler(space: SearchSpace, trials_before: int = 0) -> optuna.samplers.BaseSampler:
    """The space's sampler. A continued study seeds it with the seed plus the trials it already holds: reproducible, and
    not the fresh run's random draws again (they would all be settled as duplicates)."""
    seed = None if space.search.seed is None else space.search.seed + trials_before
    return _sampler(space, seed)


def _sampler(space: SearchSpace, seed: int | None) -> optuna.samplers.BaseSampler:
    s = space.search.sampler
    if s == "tpe":
        with warnings.catch_warnings():  # group=True is "experimental" and the right thing for conditional spaces
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True)
    population = max(4, min(50, space.search.trials // 4))
    if s == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=population)
    if s == "gp":  # the per-period choices come and go with the period count: sampled independently, by design
        return optuna.samplers.GPSampler(seed=seed, warn_independent_sampling=False)
    with warnings.catch_warnings():  # NSGA-III and QMC are "experimental" in Optuna 5
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if s == "nsga3":
            return optuna.samplers.NSGAIIISampler(seed=seed, population_size=population)
        if s == "qmc":  # categorical choices (most of a space) are sampled independently, at random
            return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
    return optuna.samplers.RandomSampler(seed=seed)  # random, and grid (points are enqueued)


# -- the searcher ----------------------------------------------------------------------------

def spec_key(spec: AnySpec) -> str:
    return spec.to_json()


@dataclass
class Tally:
    """What happened in this run, for the live display and the failure bound."""

    trained: int = 0
    pruned: int = 0
    baselines: int = 0
    failed: int = 0
    skipped: int = 0
    running: int = 0
    train_seconds: float = 0.0
    reasons: list[str] = field(default_factory=list)


def _trials_in(storage: optuna.storages.BaseStorage, name: str) -> int:
    try:
        return len(storage.get_all_trials(storage.get_study_id_from_name(name), deepcopy=False))
    except KeyError:  # a new study
        return 0


class RKSearcher(Searcher):
    """Ray Tune's searcher over an Optuna study, through Optuna's ask-and-tell API.

    Each Tune trial is an Optuna trial asked from the study and filled by the space's
    define-by-run program. Candidates that break a constraint or repeat a trained spec are settled
    at sampling time (FAIL, outcome rejected/duplicate), never trained, and every trial lands with
    its outcome, spec and measurements as user attributes. The space's baselines not yet trained
    come first, each a trial of the baselines' own study (:mod:`rksearch.storage.baseline_study`), which
    no sampler sees.
    """

    def __init__(self, space: SearchSpace, storage: optuna.storages.BaseStorage, driver: str,
                 target: int | None = None):
        super().__init__(metric=list(space.objectives),
                         mode=["max" if o in MAXIMIZE else "min" for o in space.objectives])
        self.space = space
        self.driver = driver
        self.target = target  # searched trials the study should have done: other drivers' count too
        self.tally = Tally()
        self._trained: dict[str, int] = {}  # spec key -> trial number, of trials trained or training
        self._baselines_taken: dict[str, int] = {}  # spec key -> -1 if a baseline is trained, else the lowest
        # number of its trials in training by a live driver (of two drivers claiming it at once, the lower trains)
        self._live: dict[str, optuna.Trial] = {}  # Tune trial id -> the Optuna trial it runs
        self.replay: str | None = None  # a table's path: trials replay it instead of training (rksearch.search.replay)
        root = space.proxy.root  # trials run in their own folders: hand them an absolute path
        self.proxy = space.proxy.model_copy(update={"root": str(Path(root).resolve()) if root else None}).model_dump()
        directions = ["maximize" if o in MAXIMIZE else "minimize" for o in space.objectives]
        self.study = optuna.create_study(study_name=space.name, storage=storage, directions=directions,
                                         sampler=make_sampler(space, _trials_in(storage, space.name)),
                                         load_if_exists=True)
        self.baselines_study: optuna.Study | None = None
        if space.baselines or _trials_in(storage, baselines_name(space.name)):
            self.baselines_study = baselines_study(storage, space.name, directions)
        done = trained_baselines(self._baseline_trials(), DONE)
        # the baselines this run trains, in the space's order, each tried once per run
        self.pending_baselines = [b for b in space.baselines if spec_key(b.spec) not in done]

    def set_search_properties(self, metric: Any, mode: Any, config: dict, **spec: Any) -> bool:
        """The space is the define-by-run program given at construction; Tune's config stays empty."""
        return True

    def __getstate__(self) -> dict:
        """What Tune pickles of the searcher (its ``tuner.pkl``, never read back here): not the
        studies, whose storage may hold a password and whose sampler may not pickle (Optuna 5.1's
        NSGA-II holds a lock); the study in the storage is the searcher's state."""
        import dataclasses

        return {**self.__dict__, "study": None, "baselines_study": None, "_live": {},
                "space": dataclasses.replace(self.space, storage=None)}  # the file's storage URL may hold a password

    def save(self, checkpoint_path: str) -> None:
        """Nothing to save: the study in the storage is the searcher's whole state (and no storage
        URL, which may hold a password, is written into Tune's checkpoint folder)."""

    def restore(self, checkpoint_path: str) -> None:
        """See :meth:`save`."""

    @property
    def studies(self) -> list[optuna.Study]:
        """The search's study, and the baselines' study where there is one."""
        return [self.study] + ([self.baselines_study] if self.baselines_study is not None else [])

    def _baseline_trials(self) -> list[optuna.trial.FrozenTrial]:
        return self.baselines_study.get_trials(deepcopy=False) if self.baselines_study is not None else []

    def _sync(self, besides: tuple[str, int] | None = None) -> int:
        """Re-read the studies, which other drivers may share, so that no driver trains a spec twice:
        the specs done or in training by a live driver (searched ones in ``_trained``, baselines in
        ``_baselines_taken``; ``besides``, a (kind, trial number), left out). Returns the searched
        trials done or in training here, which the target counts."""
        self._trained, self._baselines_taken, counted = {}, {}, 0
        for kind, trials in ((SEARCH, self.study.get_trials(deepcopy=False)), (BASELINE, self._baseline_trials())):
            for t in trials:
                a = t.user_attrs
                if not a.get("spec_key") or (kind, t.number) == besides:
                    continue
                done = a.get("outcome") in DONE
                training = t.state == TrialState.RUNNING and "outcome" not in a and _alive(a.get("driver", ""))
                if kind == BASELINE:
                    if done or training:
                        was = self._baselines_taken.get(a["spec_key"], t.number)
                        self._baselines_taken[a["spec_key"]] = -1 if done else min(was, t.number)
                    continue
                if done or training:
                    self._trained.setdefault(a["spec_key"], t.number)
                counted += done or (training and a.get("driver") == self.driver)
        return counted

    def suggest(self, trial_id: str) -> Optional[dict]:
        counted = self._sync()
        while self.pending_baselines:
            config = self._suggest_baseline(trial_id, self.pending_baselines.pop(0))
            if config is not None:
                return config
        if counted >= (self.target if self.target is not None else math.inf):
            return Searcher.FINISHED
        repeats = 0
        for _ in range(MAX_PROPOSALS):
            if repeats >= REPEATS_BEFORE_RANDOM:
                self._enqueue_untrained(repeats)
            ot_trial = self.study.ask()
            ot_trial.set_user_attr("driver", self.driver)  # at once: another driver starting fails unclaimed trials
            spec = self.space.suggest(ot_trial)
            c = count(spec)
            key = spec_key(spec)
            for k, v in {"spec": spec.to_yaml(), "spec_key": key, "name": spec.name, "flops": c.flops,
                         "params": c.params}.items():
                ot_trial.set_user_attr(k, v)
            violations = self.space.violations(spec)
            for name, v in zip(("flops", "params"), violations):
                ot_trial.set_constraint(name, v)
            reason = None
            if any(v > 0 for v in violations):
                reason, outcome = f"breaks a constraint ({_describe_violation(self.space, c)})", REJECTED
            else:
                if key not in self._trained:  # look again, now that this trial claims the spec: of two
                    self._sync(besides=(SEARCH, ot_trial.number))  # drivers proposing it at once, one sees the other
                if key in self._trained:
                    reason, outcome = f"same spec as trial {self._trained[key]}", DUPLICATE
                    ot_trial.set_user_attr("duplicate_of", self._trained[key])
                    repeats += 1
            if reason is None:
                self._live[trial_id] = ot_trial
                self.tally.running += 1
                config = {"spec": spec.to_dict(), "trial_number": ot_trial.number, "proxy": self.proxy,
                          "objectives": list(self.space.objectives)}
                if self.replay is not None:  # the spec's table seed is drawn from the search's seed and the trial
                    config.update(replay=self.replay, spec_name=spec.name, counts=(c.flops, c.params),
                                  replay_draw=f"{self.space.search.seed}:{ot_trial.number}")
                return config
            ot_trial.set_user_attr("outcome", outcome)
            ot_trial.set_user_attr("reason", reason)
            self.study.tell(ot_trial, state=TrialState.FAIL)
            self.tally.skipped += 1
        raise SearchAborted(
            f"{MAX_PROPOSALS} proposals in a row broke a constraint or repeated a trained spec: the space is "
            "exhausted or its constraints leave (almost) nothing; loosen constraints or enlarge the space",
            source=self.space.source, field="constraints",
        )

    def _enqueue_untrained(self, repeats: int) -> None:
        """Queue a uniformly drawn feasible spec no trial has trained: a model-based sampler on a small
        space, told nothing by the duplicates it proposes (they end FAIL), would propose the same
        trained spec again and again until the search gave up. The sampler learns from the result
        like from its own proposals (Optuna's enqueued trials)."""
        if self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            return  # a queue (grid, pre-screened, another driver's) comes first; ask() pops the oldest
        seed = self.space.search.seed
        rng = random.Random(f"{seed}:{len(self._trained)}:{repeats}" if seed is not None else None)
        for _ in range(RANDOM_DRAWS):
            params = self.space.sample_params(rng)
            spec = self.space.spec_from_params(params)
            if self.space.feasible(spec) and spec_key(spec) not in self._trained:
                self.study.enqueue_trial(params, skip_if_exists=True, user_attrs={
                    "proposed_by": f"random: the sampler repeated trained specs {repeats} times"})
                return

    def _suggest_baseline(self, trial_id: str, baseline: Baseline) -> dict | None:
        """The baseline's trial; None where another driver sharing the study trains it or has."""
        spec, key = baseline.spec, spec_key(baseline.spec)
        if key in self._baselines_taken:
            return None
        c = count(spec)
        ot_trial = start_baseline_trial(self.baselines_study, {
            "driver": self.driver, BASELINE: baseline.label, "spec": spec.to_yaml(), "spec_key": key,
            "name": baseline.label, "flops": c.flops, "params": c.params})
        self._sync(besides=(BASELINE, ot_trial.number))  # claimed, then looked: as for a searched spec, but
        if self._baselines_taken.get(key, ot_trial.number) < ot_trial.number:  # of two claims the lower one trains
            for k, v in {"outcome": DUPLICATE, "reason": "another driver trains this baseline"}.items():
                ot_trial.set_user_attr(k, v)
            self.baselines_study.tell(ot_trial, state=TrialState.FAIL)
            return None
        self._live[trial_id] = ot_trial
        self.tally.running += 1
        return {"spec": spec.to_dict(), "trial_number": f"b{ot_trial.number}", BASELINE: baseline.label,
                "proxy": self.proxy, "objectives": list(self.space.objectives)}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Multi-objective Optuna takes no intermediate values; nothing to do here."""

    def on_trial_complete(self, trial_id: str, result: Optional[dict] = None, error: bool = False) -> None:
        ot_trial = self._live.pop(trial_id, None)
        if ot_trial is None:
            return
        self.tally.running = max(0, self.tally.running - 1)
        result = result or {}
        attrs = {k: result[k] for k in _RESULT_ATTRS if k in result and result[k] is not None}
        attrs["ray_trial_id"] = trial_id
        values = [result.get(o) for o in self.space.objectives]
        if error or result.get("failed") or not result:
            reason = result.get("fail_reason") or "the trial's worker crashed (see the Ray logs)"
            state, outcome = TrialState.FAIL, FAILED
            attrs["fail_reason"] = reason
            self.tally.failed += 1
            self.tally.reasons.append(f"trial {ot_trial.number}: {reason}")
        elif not result.get("final"):
            state, outcome = TrialState.PRUNED, PRUNED
            self.tally.pruned += 1
        elif any(v is None or not math.isfinite(v) for v in values):
            state, outcome = TrialState.FAIL, FAILED
            attrs["fail_reason"] = f"non-finite objective values {values}"
            self.tally.failed += 1
        else:
            state, outcome = TrialState.COMPLETE, TRAINED
            if is_baseline(ot_trial.user_attrs):
                self.tally.baselines += 1
            else:
                self.tally.trained += 1
        self.tally.train_seconds += float(result.get("seconds") or result.get("time_total_s") or 0.0)
        for k, v in {**attrs, "outcome": outcome}.items():
            ot_trial.set_user_attr(k, v)
        ot_trial.study.tell(ot_trial, values if state == TrialState.COMPLETE else None, state=state)


_RESULT_ATTRS = ("accuracy", "epochs", "epoch", "seconds", "train_seconds", "images_per_s", "trained_flops",
                 "trained_params", "node", "hostname", "latency", "throughput", "loss", "table_seed")


def _describe_violation(space: SearchSpace, c) -> str:
    parts = []
    if space.constraints.max_flops is not None and c.flops > space.constraints.max_flops:
        parts.append(f"{c.flops / 1e9:.3g} GFLOPs > max_flops {space.constraints.max_flops / 1e9:.3g} G")
    if space.constraints.max_params is not None and c.params > space.constraints.max_params:
        parts.append(f"{c.params / 1e6:.3g} M params > max_params {space.constraints.max_params / 1e6:.3g} M")
    return ", ".join(parts)


# -- the trial -------------------------------------------------------------------------------

def _fault(trial_number: int) -> str | None:
    """Fault injection for tests and drills: RKSEARCH_INJECT_FAULTS="raise@1,nan@2,oom@3,crash@4".

    Keys are Optuna trial numbers. raise: an exception; nan: a learning rate that makes the
    loss non-finite for real; oom: an address-space cap that makes allocations fail for real;
    crash: the worker process dies.
    """
    for item in filter(None, os.environ.get("RKSEARCH_INJECT_FAULTS", "").split(",")):
        kind, _, number = item.partition("@")
        if number.strip() == str(trial_number):
            return kind.strip()
    return None


def run_trial(config: dict[str, Any]) -> None:
    """One Tune trial: the proxy training of a candidate, reported every epoch."""
    import ray
    from ray import tune

    from rksearch.training.proxy import proxy_evaluate

    spec = any_spec_from_dict(config["spec"])
    proxy = ProxyConfig.model_validate(config["proxy"])
    c = count(spec)
    static = {"flops": c.flops, "params": c.params, "hostname": socket.gethostname(),
              "node": ray.get_runtime_context().get_node_id()}
    fault = _fault(config["trial_number"])
    if fault == "nan":  # a learning rate no network survives: a real non-finite loss
        proxy = proxy.model_copy(update={"lr": 1e12})
    in_report = False

    def report(m: dict[str, Any]) -> None:
        nonlocal in_report
        if m["epoch"] >= proxy.epochs:
            return  # the last epoch is reported once, complete, after the evaluation
        in_report = True
        tune.report({**static, **{k: m.get(k) for k in ("loss", "seconds", "images_per_s")},
                     "accuracy": m["accuracy"], "epoch": m["epoch"], "epochs": m["epoch"]})
        in_report = False

    try:
        if fault == "raise":
            raise RuntimeError("injected failure")
        if fault == "crash":
            os._exit(1)
        with _memory_guard(0 if fault == "oom" else None):
            r = proxy_evaluate(spec, proxy, report=report)
    except Exception as e:
        if in_report:
            raise
        tune.report({**static, "accuracy": 0.0, "epoch": 0, "failed": True, "fail_reason": _reason(e)})
        return
    final = {**static, **r, "final": True, "epoch": r["epochs"]}
    if "throughput" in config["objectives"]:
        final["throughput"] = r["images_per_s"]
    if "latency" in config["objectives"]:
        final["latency"] = measure_latency_ms(spec, proxy.device)
    tune.report(final)


@contextlib.contextmanager
def _memory_guard(extra_bytes: int | None):
    """Cap the address space at the current size plus ``extra_bytes`` (CPU out-of-memory guard)."""
    if extra_bytes is None:
        yield
        return
    import resource

    def address_space() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * resource.getpagesize()

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = address_space() + extra_bytes
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    except Exception as e:
        # whatever failed first (an allocator, a thread, a oneDNN primitive) failed for want of memory
        if address_space() + 64 * 2**20 >= cap:
            raise MemoryError(f"out of memory under the {cap / 2**30:.2f} GiB address-space cap: {e}") from e
        raise
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


_OOM_MARKERS = ("out of memory", "can't allocate memory", "cannot allocate memory", "can't start new thread")


def _reason(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else ""
    lowered = text.lower()
    if isinstance(e, MemoryError) or any(m in lowered for m in _OOM_MARKERS):
        return f"out of memory: {text}" if text else "out of memory"
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def measure_latency_ms(spec: AnySpec, device: str = "auto", repeats: int = 10) -> float:
    """Median inference time of one image through the full model on the trial's device."""
    import torch

    dev = torch.device("cuda" if device in ("auto", "cuda") and torch.cuda.is_available() else "cpu")
    model = build_model(spec).to(dev).eval()
    x = torch.randn(1, spec.in_channels, spec.input_size, spec.input_size, device=dev)
    times = []
    with torch.inference_mode():
        for i in range(repeats + 2):
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            model(x)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            if i >= 2:
                times.append(time.perf_counter() - t0)
    return 1000 * sorted(times)[len(times) // 2]


# -- the driver ------------------------------------------------------------------------------

@dataclass
class SearchResult:
    study_dir: Path
    storage: str
    study_name: str
    tally: Tally
    wall_seconds: float
    ray_start_seconds: float
    done: int
    report: Any = None  # the ParetoReport of trials.csv and pareto.html
    set_aside: Optional[Path] = None  # where --fresh moved the old study folder
    concurrency: int = 1  # trials the search ran at once

    @property
    def framework_share(self) -> float:
        """The share of the machine's trial slots not spent in trials: see :func:`overhead_share`."""
        return overhead_share(self.tally.train_seconds, self.wall_seconds, self.concurrency)


def overhead_share(trial_seconds: float, wall_seconds: float, concurrency: int) -> float:
    """1 - (sum of trial seconds) / (wall seconds x concurrency): of the time the search held its
    ``concurrency`` trial slots, the share no trial used (start-up, idle slots, bookkeeping). The
    old formula left concurrency out and read 0 % for a search that wasted a quarter of the machine."""
    capacity = wall_seconds * max(1, concurrency)
    return min(1.0, max(0.0, 1 - trial_seconds / capacity)) if capacity > 0 else 0.0


def driver_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(driver: str) -> bool:
    host, _, pid = driver.rpartition(":")
    if host != socket.gethostname():
        return True  # another machine's driver: not ours to judge
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True


def fail_stale_trials(study: optuna.Study, storage: optuna.storages.BaseStorage, *, shared: bool = False) -> int:
    """Mark FAIL the trials a dead driver left RUNNING in ``study`` (held in ``storage``); returns
    how many. In a ``shared`` storage a trial no driver has claimed yet is left alone while it is
    young: another driver may be proposing it right now (in a folder's own database it is a killed
    driver's)."""
    n = 0
    cutoff = datetime.datetime.now() - datetime.timedelta(minutes=10 if shared else 0)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        driver = t.user_attrs.get("driver")
        if driver is not None and _alive(driver):
            continue
        if driver is None and t.datetime_start > cutoff:
            continue
        fail_trial(study, storage, t.number, "its driver died before the trial finished")
        n += 1
    return n


def fail_trial(study: optuna.Study, storage: optuna.storages.BaseStorage, number: int, reason: str) -> None:
    """End trial ``number`` of ``study``, RUNNING and not this process's to tell, as FAIL with
    ``reason``. Its handle comes from the storage's public API (the id of a frozen trial is not
    public in Optuna)."""
    trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study.study_name),
                                                                number)
    trial = optuna.Trial(study, trial_id)
    trial.set_user_attr("outcome", FAILED)
    trial.set_user_attr("fail_reason", reason)
    study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)


def count_done(study: optuna.Study) -> int:
    """Searched trials done: what ``search.trials`` counts (baselines come on top)."""
    return sum(t.user_attrs.get("outcome") in DONE and not is_baseline(t.user_attrs)
               for t in study.get_trials(deepcopy=False))


def check_has_candidates(space: SearchSpace) -> None:
    """Refuse, before anything is written, a space whose constraints leave no candidate."""
    if space.constraints.max_flops is None and space.constraints.max_params is None:
        return
    f = space.feasibility(random.Random(0), samples=500, exact_limit=2000)
    if f.feasible == 0:
        how = "any" if f.exact else f"any of {f.checked} sampled"
        raise RKSearchError(
            f"no candidate meets the constraints ({how} of {space.size():,} specs); loosen max_flops/max_params "
            "or shrink the space (rksearch space shows what it holds)", source=space.source, field="constraints",
        )


def check_grid(space: SearchSpace, wanted: int, *, field: str) -> None:
    """A grid search trains each feasible spec once: refuse a trial count it can never reach
    (it would propose duplicates until it gave up)."""
    if space.search.sampler != "grid":
        return
    specs = (space.spec_from_params(p) for p in space.enumerate_params())
    feasible = sum(all(v <= 0 for v in space.violations(s)) for s in specs)
    if wanted > feasible:
        raise RKSearchError(f"{wanted} trials, but the grid holds {feasible} feasible specs and trains each once; "
                            f"ask for at most {feasible}", source=space.source, field=field)


def check_dataset(space: SearchSpace) -> None:
    """Load (and so cache, decoded) the proxy's dataset once, before any trial needs it; and
    check what every trial would fail on alike: the proxy's split sizes and the network's fixed
    fields (classes, channels, input size) against the data."""
    from types import SimpleNamespace

    from rksearch.data import load_dataset, split_dataset
    from rksearch.training.train import check_fits

    p = space.proxy
    try:
        ds = load_dataset(p.dataset, p.root)
        split_dataset(ds, val_size=p.val_size, train_subset=p.train_subset, val_subset=p.val_subset,
                      test_subset=None, seed=p.seed)
    except RKSearchError as e:
        raise RKSearchError(e.message, source=space.source, field=f"proxy.{e.field or 'dataset'}") from None
    try:
        check_fits(SimpleNamespace(**space.network.fixed), ds)  # every candidate has these fields
    except RKSearchError as e:
        raise RKSearchError(e.message, source=space.source, field=f"network.{e.field}") from None


def fit_to_machine(space: SearchSpace) -> tuple[SearchSpace, str | None]:
    """A space that asks for GPUs, on a local Ray without any: trials on the CPU instead, one CPU each,
    as many at once as there are CPUs (at most the space's concurrency), and a one-line notice of
    what changed. Unchanged where a GPU exists, or where ``--set`` pinned ``search.resources.gpu``."""
    import dataclasses

    import ray

    need = space.search.resources
    pinned = any(k in ("search.resources", "search.resources.gpu") for k, _ in space.overrides)
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    if need.gpu == 0 or pinned or any(r.get("GPU", 0) > 0 for r in nodes):
        return space, None
    cpus = int(max((r.get("CPU", 0) for r in nodes), default=1)) or 1
    concurrency = max(1, min(space.search.concurrency, cpus))
    search = space.search.model_copy(update={"concurrency": concurrency,
                                             "resources": need.model_copy(update={"cpu": 1.0, "gpu": 0.0})})
    proxy = space.proxy.model_copy(update={"device": "cpu"}) if space.proxy.device == "cuda" else space.proxy
    notice = (f"no GPU here: trials run on the CPU (search.resources {need.cpu:g} CPU + {need.gpu:g} GPU -> 1 CPU, "
              f"concurrency {space.search.concurrency} -> {concurrency} on {cpus} CPUs"
              + (", proxy.device cuda -> cpu" if proxy is not space.proxy else "")
              + "); --set search.resources.gpu=... pins the space's request")
    return dataclasses.replace(space, search=search, proxy=proxy), notice


def check_resources(space: SearchSpace) -> None:
    """Each trial must fit on one live node of the local Ray cluster: Tune would wait for it forever."""
    import ray

    need = space.search.resources
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    if any(r.get("CPU", 0) >= need.cpu and r.get("GPU", 0) >= need.gpu for r in nodes):
        return
    most = max(nodes, key=lambda r: (r.get("GPU", 0), r.get("CPU", 0)), default={})
    cpus, gpus = most.get("CPU", 0), most.get("GPU", 0)
    gpu_short = need.gpu > gpus
    hint = f"ask for at most {cpus:g} CPU and {gpus:g} GPU" + (" (gpu: 0 trains on CPUs)" if gpu_short and not gpus else "")
    raise RKSearchError(
        f"each trial asks for {need.cpu:g} CPU and {need.gpu:g} GPU, and no node of the Ray cluster has that much "
        f"(the largest: {cpus:g} CPU, {gpus:g} GPU); {hint}",
        source=space.source, field="search.resources.gpu" if gpu_short else "search.resources.cpu",
    )


DEFAULT_MAX_FAILURES = 10
"""Failed trials a search without ``max_failures`` bears before it stops (or as many as it asks for)."""


def failure_bound(max_failures: int | None, wanted: int) -> tuple[int, str]:
    """The failed trials a search bears, and how its stop message names that bound. Unset, a
    search whose every trial fails alike still ends."""
    if max_failures is not None:
        return max_failures, f"max_failures {max_failures}"
    bound = max(DEFAULT_MAX_FAILURES, wanted)
    return bound, f"max_failures unset: at most {bound}, the trials asked for or {DEFAULT_MAX_FAILURES}"

PROXY_HOW = {"device", "compile", "cudnn_benchmark", "static_shapes", "cuda_graph", "root"}
"""Proxy fields a continued study may change: how a candidate trains, and where its data lies
(relative to where rksearch runs), not what its accuracy means."""


def check_continuable(rdb: optuna.storages.RDBStorage, space: SearchSpace, replay: Any = None) -> None:
    """A continued study must go on measuring what it measured: its objectives (the slots its
    trials' values fill), the proxy, whose accuracies share one front, and where they come from
    (training, or the table ``replay`` of :mod:`rksearch.search.replay`)."""
    if space.name not in {s.study_name for s in rdb.get_all_studies()}:
        return
    old = optuna.load_study(study_name=space.name, storage=rdb)
    attrs = old.user_attrs
    then, now = attrs.get("objectives"), list(space.objectives)
    hint = "start over with --fresh, or give the space another name"
    if any(is_baseline(t.user_attrs) for t in old.get_trials(deepcopy=False)):
        raise RKSearchError(f"study {space.name} holds its baselines among the searched trials (written before they "
                            f"moved to {baselines_name(space.name)}): continued, its sampler would learn from them "
                            f"and they would train again; {hint} (pareto and export still read it)",
                            source=space.source, field="baselines")
    table = replay.path.name if replay is not None else None
    if attrs.get("replay") != table:
        was = f"replayed the table {attrs['replay']}" if attrs.get("replay") else "trained its candidates"
        raise RKSearchError(f"study {space.name} {was}; this run {'replays ' + table if table else 'trains'}; {hint}",
                            source=None if replay is not None else space.source,
                            field="--replay" if replay is not None else "proxy")
    if then is not None and list(then) != now:
        raise RKSearchError(f"study {space.name} was run with objectives {list(then)}, not {now}; {hint}",
                            source=space.source, field="objectives")
    then, now = attrs.get("proxy") or {}, space.proxy.model_dump()
    for k in sorted(set(then) | set(now)):
        was = then.get(k, getattr(type(space.proxy).model_fields.get(k), "default", None))  # a newer field: its default
        if k not in PROXY_HOW and was != now.get(k):
            raise RKSearchError(f"study {space.name} trained its candidates with {k}: {was!r}, not "
                                f"{now.get(k)!r}; their accuracies would share a front; {hint}",
                                source=space.source, field=f"proxy.{k}")


def check_same_storage(study_dir: Path, url: str, field: str) -> None:
    """A study folder holds one study: continuing it in another storage would start a second study
    whose outputs overwrite the first one's."""
    if not study_dir.is_dir():
        return
    recorded = storage_of(study_dir)
    if recorded is None:
        recorded = default_storage(study_dir) if (study_dir / "optuna.db").exists() else None
    elif "***" not in recorded:
        recorded = absolute_url(recorded)
    if recorded is not None and recorded != url and recorded != shown_url(url):
        raise RKSearchError(f"holds a study in {shown_url(recorded)}, not in {shown_url(url)}; continue it there, "
                            "or start over with --fresh or another --out", source=study_dir, field=field)


def record_storage(study_dir: Path, url: str) -> None:
    """Write ``storage.url`` where the study is not the folder's ``optuna.db``, so pareto, export,
    dashboard and notebooks find it from anywhere (a password is not written: they then need --storage)."""
    path = study_dir / STORAGE_FILE
    if url == default_storage(study_dir):
        path.unlink(missing_ok=True)
        return
    write_text(path, shown_url(url) + "\n")


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
        if (study_dir / "optuna.db").exists():
            try:
                rdb = open_storage(default_storage(study_dir))
                live = [n for m in (study_dir.name, baselines_name(study_dir.name)) for n in _live_trials(rdb, m)]
            except Exception:  # a broken database is what --fresh moves aside
                live = []
            _refuse_running(live, study_dir)
        _rename(study_dir, aside)
        return aside
    rdb = open_storage(external, **given)
    names = {s.study_name for s in rdb.get_all_studies()}
    moving = [n for n in (study_dir.name, baselines_name(study_dir.name)) if n in names]  # the baselines' study too
    if moving:
        _refuse_running([n for m in moving for n in _live_trials(rdb, m)], study_dir)
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
    if "***" in recorded:
        if shown_url(url) != recorded:
            raise RKSearchError(f"holds a study in {recorded}; give its password: --storage URL", source=study_dir,
                                field="--fresh")
        recorded = url
    recorded = absolute_url(recorded)
    return None if recorded == default_storage(study_dir) else recorded


def _live_trials(rdb: optuna.storages.RDBStorage, name: str) -> list[int]:
    """Trials of study ``name`` that a live driver is training (none where there is no such study)."""
    if name not in {s.study_name for s in rdb.get_all_studies()}:
        return []
    study = optuna.load_study(study_name=name, storage=rdb)
    return [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if t.user_attrs.get("driver") and _alive(t.user_attrs["driver"])]


def _refuse_running(live: list[int], study_dir: Path) -> None:
    if live:
        raise RKSearchError(f"another rksearch run is training trials {live[:5]} of this study; let it finish or "
                            "stop it before starting over", source=study_dir, field="--fresh")


def prepare_study_dir(space: SearchSpace, out: Path, fresh: bool, url: str | None,
                      **given: Any) -> tuple[Path, Path | None]:
    """The study folder, made and holding the space's copy; and where ``fresh`` moved the old one."""
    study_dir = out / space.name
    aside = set_aside(study_dir, url, **given) if fresh else None
    try:
        study_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RKSearchError(f"cannot create the study folder: {e.strerror}", source=study_dir, field="--out") from None
    if space.source is not None:
        head = "".join(f"# run with --set {k}={v!r}\n" for k, v in space.overrides)  # what the file does not say
        write_text(study_dir / "space.yaml", head + space.source.read_text(encoding="utf-8"))
    return study_dir, aside


def init_ray(address: str | None, space: SearchSpace) -> float:
    """Start or join Ray; returns the seconds it took."""
    import ray

    t0 = time.perf_counter()
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")  # Ctrl-C interrupts the search, not just Tune's run
    kwargs: dict[str, Any] = {"log_to_driver": False, "configure_logging": True, "logging_level": "ERROR"}
    if address:
        kwargs["address"] = address
        check_reachable(address, space)
    else:
        kwargs["include_dashboard"] = False
    if not ray.is_initialized():
        sigterm = signal.getsignal(signal.SIGTERM)
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise RKSearchError(f"cannot join the Ray cluster: {str(e).splitlines()[0]}", field="--address") from None
        if callable(sigterm):  # the caller's own SIGTERM handling, which ray.init replaced with a bare exit
            signal.signal(signal.SIGTERM, sigterm)
    return time.perf_counter() - t0


def check_reachable(address: str, space: SearchSpace, timeout: float = 10.0) -> None:
    """A ``host:port`` (or ``ray://host:port``) nobody answers at: Ray would retry for minutes."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    host = host.strip("[]")  # [::1]:6379
    if not host or not port.isdigit():
        return  # auto, or a form Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        where = {"source": space.source, "field": "search.address"} if address == space.search.address \
            else {"field": "--address"}
        raise RKSearchError(f"cannot reach a Ray cluster at {address}: {e.strerror or e}", **where) from None


def run_search(
    space: SearchSpace,
    *,
    trials: int | None = None,
    fresh: bool = False,
    address: str | None = None,
    storage: str | None = None,
    out: str | Path = "studies",
    max_failures: int | None = None,
    on_update: Callable[["RKSearcher"], None] | None = None,
    replay: str | Path | None = None,
    notify: Callable[[str], None] | None = None,
) -> SearchResult:
    """Run (or continue) the search of ``space`` until ``trials`` trials are done.

    Done means trained to the full proxy budget or stopped early by ASHA; rejected and
    duplicate proposals and failures do not count. Running it again continues the study.
    ``replay``: a tabulated benchmark (:mod:`rksearch.search.replay`) whose learning curves the trials
    read instead of training; each trial's ``seconds`` is then the table's cost. ``notify`` gets
    one-line notices before the search starts (a GPU space moved to the CPU).
    """
    from ray import tune

    t_start = time.perf_counter()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    wanted = trials if trials is not None else space.search.trials
    bounded_by = {"source": None, "field": "--max-failures"} if max_failures is not None else \
        {"source": space.source, "field": "search.max_failures"}
    max_failures, bound = failure_bound(max_failures if max_failures is not None else space.search.max_failures,
                                        wanted)
    given = {"source": None, "field": "--storage"} if storage else {"source": space.source, "field": "storage"}
    storage = storage or space.storage
    check_has_candidates(space)
    check_grid(space, wanted, field="--trials" if trials is not None else "search.trials")
    table = None
    if replay is not None:
        table = load_table(replay)
        check_replayable(space, table)
        if space.baselines:
            raise RKSearchError("a replayed search has no table for baselines; remove them from the space",
                                source=space.source, field="baselines")
    else:
        check_dataset(space)
    study_dir = Path(out) / space.name
    url = absolute_url(storage) if storage else default_storage(study_dir)
    if not fresh:
        check_same_storage(study_dir, url, given["field"])
    if not fresh and (url != default_storage(study_dir) or (study_dir / "optuna.db").exists()):
        # a corrupt or unreachable storage, or a study of other objectives or proxy, fails before anything is written
        check_continuable(open_storage(url, **given), space, replay=table)
    address = address or space.search.address
    ray_seconds = init_ray(address, space)
    if not address:  # an existing cluster may autoscale: nodes that fit can still come
        space, notice = fit_to_machine(space)
        if notice is not None and notify is not None:
            notify(notice)
        check_resources(space)
    threads = threads_warning(space.search.resources.cpu)  # each trial runs on its CPUs, whatever the environment asks
    if threads is not None and notify is not None:
        notify(threads)
    study_dir, aside = prepare_study_dir(space, Path(out), fresh, url, **given)
    rdb = open_storage(url, **given)
    record_storage(study_dir, url)
    searcher = RKSearcher(space, rdb, driver_id(), target=wanted)
    searcher.replay = str(table.path) if table is not None else None
    study = searcher.study
    for k, v in {"objectives": list(space.objectives), "reference_point": space.reference_point,
                 "space": space.source.read_text() if space.source else None,
                 "proxy": space.proxy.model_dump(), "study_dir": study_dir.name,
                 "replay": table.path.name if table is not None else None,
                 "overrides": dict(space.overrides) or None}.items():
        study.set_user_attr(k, v)
    with warnings.catch_warnings():  # "experimental" since Optuna 3.2; the dashboard shows names, not "Objective 0"
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(space.objectives))
    shared = url != default_storage(study_dir)  # other drivers may use it: their unclaimed trials are not ours
    for each in searcher.studies:
        fail_stale_trials(each, rdb, shared=shared)
    seed_queue(study, space, wanted)
    done = count_done(study)
    if done < wanted or searcher.pending_baselines:
        resources = {"cpu": space.search.resources.cpu, "gpu": space.search.resources.gpu}
        scheduler = make_scheduler(space)
        with tempfile.TemporaryDirectory(prefix="rksearch-tune-") as tune_dir, _settled(searcher.studies, rdb, study_dir, url, shared=shared):
            while done < wanted or searcher.pending_baselines:
                if searcher.tally.failed > max_failures:
                    break
                tuner = tune.Tuner(
                    tune.with_resources(run_trial if table is None else replay_trial, resources),
                    tune_config=tune.TuneConfig(
                        search_alg=searcher, scheduler=scheduler,
                        num_samples=max(0, wanted - done) + len(searcher.pending_baselines),
                        max_concurrent_trials=space.search.concurrency, reuse_actors=True,
                    ),
                    run_config=tune.RunConfig(
                        storage_path=tune_dir, name=space.name, verbose=0,
                        callbacks=[_Progress(searcher, on_update)],
                        stop=_FailureStop(searcher, max_failures),
                    ),
                )
                tuner.fit()
                new_done = count_done(study)
                if new_done == done and searcher.tally.failed == 0 and not searcher.pending_baselines:
                    break
                done = new_done
    report = write_outputs(study_dir, url)
    result = SearchResult(study_dir, url, space.name, searcher.tally, time.perf_counter() - t_start, ray_seconds,
                          count_done(study), report, aside, space.search.concurrency)
    if searcher.tally.failed > max_failures:
        n = searcher.tally.failed
        raise SearchAborted(f"stopped after {n} failed trial{'s' * (n != 1)} ({bound}); last: "
                            f"{searcher.tally.reasons[-1]}", **bounded_by)
    return result


@contextmanager
def _settled(studies: list[optuna.Study], storage: optuna.storages.BaseStorage, study_dir: Path, url: str, *,
             shared: bool) -> Iterator[None]:
    """No trial of this driver stays RUNNING when the search ends, is interrupted or stops itself.
    On Ctrl-C or SIGTERM its running trials end FAIL, the outputs are written, and the interrupt
    goes on to the caller (exit status 130 or 143), so ``run && export`` stops; on a stop (too
    many failures, an exhausted space) the trials Tune left unfinished end FAIL too. (A crash
    leaves them to the next start's :func:`fail_stale_trials`.)"""
    started = datetime.datetime.now()  # Optuna's clock for datetime_start
    me = driver_id()

    def fail_running(why: str, *, unclaimed: bool) -> None:
        for study in studies:
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                # unclaimed: a trial without a driver was created and interrupted before it had any attrs
                if t.user_attrs.get("driver", me if unclaimed else None) == me and t.datetime_start >= started:
                    fail_trial(study, storage, t.number, why)

    try:
        yield
    except KeyboardInterrupt as e:
        why = "the search was terminated (SIGTERM)" if terminated(e) else "the search was interrupted"
        with shielded():  # (which hides the SIGTERM handler that terminated() asks: ask first)
            fail_running(why, unclaimed=not shared)
            try:
                write_outputs(study_dir, url)
            finally:
                raise
    except SearchAborted as e:
        fail_running(f"the search stopped: {e.message}", unclaimed=False)
        write_outputs(study_dir, url)
        raise
    fail_running("the search stopped before the trial finished", unclaimed=False)


def seed_queue(study: optuna.Study, space: SearchSpace, wanted: int) -> None:
    """Queue what the sampler does not propose: a grid's every point (once, in a new study) and the
    zero-cost pre-screened candidates (:mod:`rksearch.proxies.prescreen`)."""
    if space.search.sampler == "grid" and not study.get_trials(deepcopy=False):
        for params in space.enumerate_params():
            study.enqueue_trial(params, skip_if_exists=True)
    enqueue_prescreened(study, space, wanted)


def make_scheduler(space: SearchSpace) -> ASHAScheduler | None:
    """The space's early stopping over epochs: ASHA on the proxy accuracy, or None."""
    if space.search.scheduler.kind != "asha" or space.proxy.epochs <= 1:
        return None
    return _SearchedASHA(time_attr="epoch", metric="accuracy", mode="max", max_t=space.proxy.epochs,
                         grace_period=min(space.search.scheduler.grace_epochs, space.proxy.epochs),
                         reduction_factor=space.search.scheduler.reduction_factor)


class _SearchedASHA(ASHAScheduler):
    """ASHA over the searched trials only: a baseline never enters a bracket, gets the whole
    proxy, and its accuracy never moves a rung's cut-off for the candidates."""

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        if not trial.config.get(BASELINE):
            super().on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if trial.config.get(BASELINE):
            return self.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        if not trial.config.get(BASELINE):
            super().on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        if not trial.config.get(BASELINE):
            super().on_trial_remove(tune_controller, trial)


class _FailureStop(Stopper):
    """Ends the whole experiment once failures exceed the bound."""

    def __init__(self, searcher: RKSearcher, max_failures: int):
        self.searcher, self.max_failures = searcher, max_failures

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:  # Tune asks at every step of its loop
        raise_if_swallowed()
        return self.searcher.tally.failed > self.max_failures


class _Progress(Callback):
    """Calls ``on_update(searcher)`` whenever a trial starts or ends, and every ``TICK`` seconds
    between (elapsed time moves; a log file gets its periodic status line)."""

    TICK = 5.0

    def __init__(self, searcher: RKSearcher, on_update: Callable[[RKSearcher], None] | None):
        self.searcher, self.on_update = searcher, on_update
        self._last = time.monotonic()

    def __getstate__(self) -> dict:  # Tune pickles its state; the live display stays here
        return {"searcher": None, "on_update": None, "_last": 0.0}

    def _update(self, *args: Any, **info: Any) -> None:
        self._last = time.monotonic()
        if self.on_update:
            try:
                self.on_update(self.searcher)
            except Exception:  # noqa: BLE001  (a display that fails, a closed pipe: never the search's end)
                self.on_update = None

    def on_step_end(self, *args: Any, **info: Any) -> None:
        if time.monotonic() - self._last >= self.TICK:
            self._update()

    on_trial_start = on_trial_complete = on_trial_error = _update


def write_outputs(study_dir: Path, url: str):
    """trials.csv and pareto.html in the study folder, wherever the storage is."""
    from rksearch.analysis.report import write_report

    return write_report(study_dir, storage=None if url == default_storage(study_dir) else url)


def summarise(searcher: RKSearcher, elapsed: float) -> str:
    """One line of live progress: counts, front size, best accuracy, hypervolume."""
    import numpy as np

    from rksearch.analysis.pareto import hypervolume, pareto_mask
    from rksearch.analysis.study import OBJECTIVES

    t, space = searcher.tally, searcher.space
    complete = [tr for tr in searcher.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if not is_baseline(tr.user_attrs)]
    line = (f"[bold]{space.name}[/] {elapsed:5.0f}s  done {t.trained + t.pruned} (trained {t.trained}, "
            f"pruned {t.pruned})  running {t.running}  failed {t.failed}  skipped {t.skipped}")
    if t.baselines:
        line += f"  baselines {t.baselines}"
    if not complete:
        return line
    values = np.array([tr.values for tr in complete], dtype=float)
    directions = space.directions
    mask = pareto_mask(values, directions)
    line += f"  front {int(mask.sum())}"
    if "accuracy" in space.objectives:
        line += f"  best accuracy {values[:, space.objectives.index('accuracy')].max():.3f}"
    ref = space.reference_point
    if ref:
        scale = np.array([OBJECTIVES[o].scale for o in space.objectives])
        hv = hypervolume(values[mask] * scale, np.array([ref[o] for o in space.objectives]) * scale, directions)
        line += f"  hypervolume {hv:.4g}"
    return line
