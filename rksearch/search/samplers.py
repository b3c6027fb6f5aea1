"""Where a search's proposals come from: the space's Optuna sampler, and the queue seeded before it."""
from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import optuna

from rksearch.space.search_space import SearchSpace

if TYPE_CHECKING:  # pre-screening scores networks with torch, which a search without it never imports
    from rksearch.proxies.prescreen import SpecScorer


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


def seed_queue(study: optuna.Study, space: SearchSpace, wanted: int, *, scorer: SpecScorer | None = None) -> None:
    """Queue what the sampler does not propose: a grid's every point (once, in a new study) and the
    zero-cost pre-screened candidates (:mod:`rksearch.proxies.prescreen`, scored by ``scorer``)."""
    if space.search.sampler == "grid" and not study.get_trials(deepcopy=False):
        for params in space.enumerate_params():
            study.enqueue_trial(params, skip_if_exists=True)
    if space.search.prescreen is not None:
        from rksearch.proxies.prescreen import enqueue_prescreened

        enqueue_prescreened(study, space, wanted, scorer=scorer)
