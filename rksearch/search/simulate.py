"""Replayed searches in process: the same searcher and stopping rule as ``run --replay``, no Ray.

A search-quality benchmark replays thousands of searches; starting a Ray Tune trial for each
replayed epoch costs more than the search itself. :func:`simulate` drives the real
:class:`~rksearch.search.searcher.RKSearcher` (the space's sampler, its rejection and duplicate rules)
and the real ASHA scheduler of :func:`~rksearch.search.asha.make_scheduler` with one trial at a time,
the table's learning curves as results, into an in-memory Optuna study. With concurrency 1 and
the same seed it proposes the same specs and prunes the same trials as the Ray path
(tests/search/test_replay.py shows it); its clock is the table's cost, summed over the trials.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import optuna
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import Searcher

from rksearch.search.replay import Table, replay_results
from rksearch.core.errors import RKSearchError
from rksearch.search.asha import make_scheduler
from rksearch.search.latency import search_latency
from rksearch.search.liveness import driver_id
from rksearch.search.records import SearchAborted
from rksearch.proxies.prescreen import SpecScorer
from rksearch.search.samplers import seed_queue
from rksearch.search.searcher import RKSearcher
from rksearch.space.search_space import SearchSpace


@dataclass
class Simulated:
    """A replayed search: its study and each searched trial's cost, in the order they ran."""

    study: optuna.Study
    costs: list[tuple[int, float]]  # (trial number, the table's seconds it was charged)

    @property
    def cost(self) -> float:
        return sum(c for _, c in self.costs)


def simulate(space: SearchSpace, table: Table, *, seed: int | None = None, budget: float = math.inf,
             trials: int | None = None, latency_table: str | None = None,
             scorer: SpecScorer | None = None) -> Simulated:
    """Replay a search of ``space`` against ``table`` until its cost reaches ``budget`` seconds
    (the trial that crosses it is charged in full), ``trials`` searched trials are done (default:
    the space's ``search.trials`` when no budget is given) or every feasible spec is trained (a
    search with ASHA on a small table can get there). ``seed`` replaces the space's seed;
    ``latency_table`` is ``run_search``'s (:mod:`rksearch.search.latency`). ``scorer`` scores a
    pre-screened space's candidates (e.g. from a cache of the table's specs) instead of the proxy's
    :class:`~rksearch.proxies.prescreen.Scorer`."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if seed is not None:
        space = dataclasses.replace(space, search=space.search.model_copy(update={"seed": seed}))
    if trials is None and budget == math.inf:
        trials = space.search.trials
    if space.baselines:
        raise RKSearchError("a replayed search has no table for baselines; remove them from the space",
                            source=space.source, field="baselines")
    searcher = RKSearcher(space, optuna.storages.InMemoryStorage(), driver_id(), target=trials,
                          latency=search_latency(space, latency_table))
    searcher.replay = str(table.path)
    seed_queue(searcher.study, space, trials if trials is not None else space.search.trials, scorer=scorer)
    scheduler = make_scheduler(space)
    costs: list[tuple[int, float]] = []
    spent, n = 0.0, 0
    while spent < budget:
        trial_id = f"sim{n}"
        n += 1
        try:
            config = searcher.suggest(trial_id)
        except SearchAborted:  # every feasible spec trained: a finished search, not a failed one
            break
        if config is None or config == Searcher.FINISHED:
            break
        spent += _run(searcher, scheduler, trial_id, config, costs)
    return Simulated(searcher.study, costs)


def _run(searcher: RKSearcher, scheduler: Any, trial_id: str, config: dict, costs: list) -> float:
    """One trial, epoch by epoch, with the calls Tune's controller makes at concurrency 1: every
    result to the scheduler; on its STOP (or the last epoch) the last result to the scheduler's and
    the searcher's ``on_trial_complete``. Returns the trial's cost."""
    trial = SimpleNamespace(trial_id=trial_id, config=config)  # what the scheduler reads of a Tune trial
    if scheduler is not None:
        scheduler.on_trial_add(None, trial)
    result: dict[str, Any] = {}
    for result in replay_results(config):
        if result.get("failed"):
            break
        if scheduler is not None and scheduler.on_trial_result(None, trial, result) == TrialScheduler.STOP:
            break
        if result.get("final"):
            break
    if scheduler is not None and not result.get("failed"):
        scheduler.on_trial_complete(None, trial, result)
    searcher.on_trial_complete(trial_id, result)
    cost = float(result.get("seconds") or 0.0)
    costs.append((config["trial_number"], cost))
    return cost
