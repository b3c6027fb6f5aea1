"""The search's driver: preflight checks, Ray, then Ray Tune over the searcher until the study has its trials."""
from __future__ import annotations

import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import optuna
from ray.tune.stopper import Stopper

from rksearch.core.errors import RKSearchError
from rksearch.core.secrets import mask_secrets, masked
from rksearch.core.stopping import raise_if_swallowed
from rksearch.search.asha import make_scheduler
from rksearch.search.cluster import (check_resources, choose_concurrency, cluster_address, fit_to_machine, init_ray,
                                     refuse_ray_client)
from rksearch.search.latency import search_latency
from rksearch.search.liveness import beating, driver_id, fail_stale_trials, settled
from rksearch.search.nodes import check_nodes
from rksearch.search.overhead import Breakdown, overhead_share
from rksearch.search.preflight import (check_continuable, check_dataset, check_grid, check_has_candidates,
                                       check_same_storage, chosen_storage, failure_bound)
from rksearch.search.progress import ProgressCallback
from rksearch.search.records import SearchAborted, Tally, count_done
from rksearch.search.replay import check_replayable, load_table, replay_trial
from rksearch.search.samplers import seed_queue
from rksearch.search.searcher import RKSearcher
from rksearch.search.study_dir import prepare_study_dir
from rksearch.search.study_lock import study_lock
from rksearch.search.trial import run_trial
from rksearch.space.search_space import SearchSpace
from rksearch.storage.folder import DB_NAME, default_storage, record_storage
from rksearch.storage.open import open_storage
from rksearch.storage.urls import absolute_url
from rksearch.training.proxy import threads_warning


@dataclass
class SearchResult:
    """What a search did: where its study is, what this run tallied, and its outputs."""

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
    breakdown: Optional[Breakdown] = None  # where the time went

    @property
    def framework_share(self) -> float:
        """The share of the machine's trial slots not spent in trials: see :func:`overhead_share`."""
        return overhead_share(self.tally.train_seconds, self.wall_seconds, self.concurrency)


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
    latency_table: str | Path | None = None,
) -> SearchResult:
    """Run (or continue) the search of ``space`` until ``trials`` trials are done.

    Done means trained to the full proxy budget or stopped early by ASHA; rejected and
    duplicate proposals and failures do not count. Running it again continues the study.
    ``replay``: a tabulated benchmark (:mod:`rksearch.search.replay`) whose learning curves the trials
    read instead of training; each trial's ``seconds`` is then the table's cost. ``notify`` gets
    one-line notices before the search starts (a GPU space moved to the CPU, the concurrency chosen).
    ``latency_table``: a per-device table (:mod:`rksearch.search.latency`) whose key is the target of
    a latency objective or constraint, instead of this machine's table in the cache folder.
    """
    from ray import tune

    t_start, started_at = time.perf_counter(), time.time()
    address = address or space.search.address
    refuse_ray_client(address, space)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    wanted = trials if trials is not None else space.search.trials
    bounded_by = {"source": None, "field": "--max-failures"} if max_failures is not None else \
        {"source": space.source, "field": "search.max_failures"}
    max_failures, bound = failure_bound(max_failures if max_failures is not None else space.search.max_failures,
                                        wanted)
    storage, given = chosen_storage(space, storage)
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
    latency = search_latency(space, latency_table)
    study_dir = Path(out) / space.name
    url = absolute_url(storage) if storage else default_storage(study_dir)

    def say(line: str | None) -> None:
        if line is not None and notify is not None:
            notify(line)

    with study_lock(study_dir, say):  # one writer per folder, before anything reads or writes it
        if not fresh:
            check_same_storage(study_dir, url, given["field"])
        if not fresh and (url != default_storage(study_dir) or (study_dir / DB_NAME).exists()):
            # a corrupt or unreachable storage, or a study of other objectives or proxy: fails before any write
            check_continuable(open_storage(url, **given), space, replay=table, latency=latency)
        checks = time.perf_counter() - t_start  # the checks above, before any trial slot exists
        ray_seconds = init_ray(address, space)
        if not address:  # an existing cluster may autoscale: nodes that fit can still come
            space, notice = fit_to_machine(space)
            say(notice)
            check_resources(space)
        space, notice = choose_concurrency(space)  # auto: what the cluster's GPUs (or CPUs) hold
        say(notice)
        if cluster_address(address):  # a cluster's nodes, before anything is written; a Ray of
            say(check_nodes(space, table.path if table is not None else None))  # our own is this machine (1.7 s less)
        say(latency.notice() if latency is not None else None)
        say(threads_warning(space.search.resources.cpu))  # each trial runs on its CPUs, whatever the environment asks
        study_dir, aside = prepare_study_dir(space, Path(out), fresh, url, **given)
        rdb = open_storage(url, **given)
        record_storage(study_dir, url)
        searcher = RKSearcher(space, rdb, driver_id(), target=wanted, latency=latency)
        searcher.replay = str(table.path) if table is not None else None
        study = searcher.study
        for k, v in {"objectives": list(space.objectives), "reference_point": space.reference_point,
                     "space": mask_secrets(space.source.read_text()) if space.source else None,
                     "proxy": space.proxy.model_dump(), "study_dir": study_dir.name,
                     "replay": table.path.name if table is not None else None,
                     "overrides": masked(dict(space.overrides)) or None,
                     "latency_device": latency.key.text() if latency is not None else None}.items():
            study.set_user_attr(k, v)  # no password in an attribute
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
            with tempfile.TemporaryDirectory(prefix="rksearch-tune-") as tune_dir, \
                    settled(searcher.studies, rdb, shared=shared, write_outputs=lambda: write_outputs(study_dir, url)), \
                    beating(searcher.studies, rdb, shared=shared):  # other hosts' drivers see this one live
                while done < wanted or searcher.pending_baselines:
                    if searcher.tally.failed > max_failures:
                        break
                    # room for the failures the bound allows: the searcher ends the run at its target, and a
                    # failed trial needs no new Tune run (each starts its workers cold: ~4 s of CPU, more on a GPU)
                    samples = max(0, wanted - done) + len(searcher.pending_baselines) + \
                        max(0, max_failures - searcher.tally.failed) + 1
                    tuner = tune.Tuner(
                        tune.with_resources(run_trial if table is None else replay_trial, resources),
                        tune_config=tune.TuneConfig(
                            search_alg=searcher, scheduler=scheduler,
                            num_samples=samples,
                            max_concurrent_trials=space.search.concurrency, reuse_actors=True,
                        ),
                        run_config=tune.RunConfig(
                            storage_path=tune_dir, name=space.name, verbose=0,
                            callbacks=[ProgressCallback(searcher, on_update)],
                            stop=_FailureStop(searcher, max_failures),
                        ),
                    )
                    tuner.fit()
                    new_done = count_done(study)
                    if new_done == done and searcher.tally.failed == 0 and not searcher.pending_baselines:
                        break
                    done = new_done
        t_outputs = time.perf_counter()
        report = write_outputs(study_dir, url)
        wall = time.perf_counter() - t_start
        first = searcher.tally.account.first_step_at
        breakdown = Breakdown(wall, space.search.concurrency, searcher.tally.account, ray_start=ray_seconds,
                              checks=checks, outputs=time.perf_counter() - t_outputs,
                              first_step=first - started_at if first is not None else None)
        result = SearchResult(study_dir, url, space.name, searcher.tally, wall, ray_seconds,
                              count_done(study), report, aside, space.search.concurrency, breakdown)
        if searcher.tally.failed > max_failures:
            n = searcher.tally.failed
            raise SearchAborted(f"stopped after {n} failed trial{'s' * (n != 1)} ({bound}); last: "
                                f"{searcher.tally.reasons[-1]}", **bounded_by)
        return result


class _FailureStop(Stopper):
    """Ends the whole experiment once failures exceed the bound."""

    def __init__(self, searcher: RKSearcher, max_failures: int):
        self.searcher, self.max_failures = searcher, max_failures

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:  # Tune asks at every step of its loop
        raise_if_swallowed()
        return self.searcher.tally.failed > self.max_failures


def write_outputs(study_dir: Path, url: str):
    """trials.csv and pareto.html in the study folder, wherever the storage is."""
    from rksearch.analysis.report import write_report

    return write_report(study_dir, storage=None if url == default_storage(study_dir) else url)
