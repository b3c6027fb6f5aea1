"""Zero-cost pre-screening: spend a few seconds of scoring to choose what a search trains.

Each pre-screened trial slot draws ``candidates`` distinct feasible specs uniformly from the
space, scores them with one zero-cost score (:mod:`rksearch.proxies.zerocost`) and enqueues the best as
an Optuna trial with fixed params, so Ray Tune trains it like any other trial. Every candidate's
score and name is recorded on the trial (user attributes ``prescreen_*``), so the choice can be
checked against the accuracy it led to.

Why enqueued uniform candidates rather than filtering the sampler's proposals: Optuna asks for
one trial at a time and a model-based sampler (TPE, NSGA-II) learns from what it proposed, so
discarding its proposals would bias it; enqueued trials are told to the sampler like its own.
``prescreen.trials`` smaller than ``search.trials`` makes the pre-screened trials a warm start
after which the sampler takes over.
"""
from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Optional

import optuna

from rksearch.core.errors import RKSearchError
from rksearch.space.search_space import SearchSpace
from rksearch.arch.rknet import RKNetSpec
from rksearch.training.trainer import resolve_device
from rksearch.proxies.zerocost import DATA_FREE, Batch, SpecScores, check_names, proxy_batch, score_spec

MAX_MISSES = 1000  # consecutive draws that are infeasible or already taken before a space counts as exhausted

ParamKey = tuple[tuple[str, Any], ...]
SpecScorer = Callable[[RKNetSpec], SpecScores]
"""What scores a candidate: :class:`Scorer` by default; a replayed search may read a cache instead."""


def param_key(params: dict[str, Any]) -> ParamKey:
    """A hashable identity of a point: distinct params are distinct specs in a space."""
    return tuple(sorted(params.items()))


def draw_feasible(space: SearchSpace, rng: random.Random, n: int, *, exclude: Iterable[ParamKey] = (),
                  field: str = "--sample") -> list[dict[str, Any]]:
    """``n`` distinct uniformly drawn params of specs that meet the constraints, none in ``exclude``."""
    seen = set(exclude)
    drawn: list[dict[str, Any]] = []
    misses = 0
    while len(drawn) < n:
        params = space.sample_params(rng)
        key = param_key(params)
        if key in seen or not space.feasible(space.spec_from_params(params)):
            misses += 1
            if misses >= MAX_MISSES:
                raise RKSearchError(
                    f"found only {len(drawn)} of {n} distinct feasible specs in {MAX_MISSES} draws: the space or its "
                    "constraints leave too few; ask for fewer or loosen the constraints", source=space.source, field=field)
            continue
        misses = 0
        seen.add(key)
        drawn.append(params)
    return drawn


@contextmanager
def proxy_errors(space: SearchSpace) -> Iterator[None]:
    """Data and device errors name ProxyConfig fields (dataset, val_size, device): locate them
    in the space file."""
    try:
        yield
    except RKSearchError as e:
        message = f"{e.source}: {e.message}" if e.source else e.message
        raise RKSearchError(message, source=space.source, field=f"proxy.{e.field or 'dataset'}") from None


class Scorer:
    """Zero-cost scores of specs of one space, on one batch of its proxy data per input size
    (loaded only when a score needs data), with the proxy's width as a search would train."""

    def __init__(self, space: SearchSpace, names: Iterable[str], *, seed: int = 0, batch_size: int = 64):
        self.space, self.names, self.seed, self.batch_size = space, check_names(names), seed, batch_size
        self._batches: dict[int, Batch] = {}

    def _batch(self, spec: RKNetSpec) -> Optional[Batch]:
        if all(n in DATA_FREE for n in self.names):
            return None
        if spec.input_size not in self._batches:
            proxy = self.space.proxy
            with proxy_errors(self.space):
                self._batches[spec.input_size] = proxy_batch(proxy, self.batch_size, self.seed, spec.input_size,
                                                             resolve_device(proxy.device))
        return self._batches[spec.input_size]

    def __call__(self, spec: RKNetSpec) -> SpecScores:
        return score_spec(spec, self.names, self._batch(spec), self.seed, width=self.space.proxy.width)


@dataclass(frozen=True)
class Point:
    """One pre-screened trial: the params to enqueue and what the choice was made from."""

    params: dict[str, Any]
    score: str
    scores: list[float]
    """Every candidate's score, in draw order; the chosen one is the largest (the first on ties)."""
    names: list[str]
    chosen: int
    seconds: float
    candidates: list[dict[str, Any]]
    """Every candidate's params, in draw order (not recorded on the trial: the names are)."""

    @property
    def value(self) -> float:
        return self.scores[self.chosen]

    @property
    def user_attrs(self) -> dict[str, Any]:
        return {"prescreen_score": self.value, "prescreen_scores": self.scores, "prescreen_names": self.names,
                "prescreen_method": self.score, "prescreen_seconds": self.seconds}


def _best(values: list[float]) -> int:
    """Index of the largest score, the first on ties; NaN counts as the worst."""
    return max(range(len(values)), key=lambda i: (-math.inf if math.isnan(values[i]) else values[i], -i))


def prescreen_points(space: SearchSpace, n: int, m: int, score: str = "synflow", seed: int = 0, *,
                     batch_size: int = 64, exclude: Iterable[ParamKey] = (),
                     scorer: Optional[SpecScorer] = None) -> list[Point]:
    """``n`` trial slots, each the best by ``score`` of ``m`` distinct feasible candidates.

    Chosen points are distinct from each other and from ``exclude``; a candidate passed over in
    one slot may be drawn again in a later one (its score is cached). ``scorer`` (default: a
    :class:`Scorer` of ``score`` with ``seed`` and ``batch_size``) gives each candidate's scores.
    """
    field = "search.prescreen.candidates"
    scorer = scorer or Scorer(space, [score], seed=seed, batch_size=batch_size)
    rng = random.Random(seed)
    taken = set(exclude)
    cache: dict[ParamKey, tuple[float, str]] = {}
    points = []
    for _ in range(n):
        start = time.perf_counter()
        candidates = draw_feasible(space, rng, m, exclude=taken, field=field)
        for params in candidates:
            key = param_key(params)
            if key not in cache:
                spec = space.spec_from_params(params)
                cache[key] = (scorer(spec).values[score], spec.name)
        values = [cache[param_key(p)][0] for p in candidates]
        chosen = _best(values)
        taken.add(param_key(candidates[chosen]))
        points.append(Point(candidates[chosen], score, values, [cache[param_key(p)][1] for p in candidates], chosen,
                            time.perf_counter() - start, candidates))
    return points


def enqueue_prescreened(study: optuna.Study, space: SearchSpace, trials: int, *,
                        scorer: Optional[SpecScorer] = None) -> list[Point]:
    """Enqueue the pre-screened trials of ``space.search.prescreen`` into a new study.

    ``prescreen.trials`` of them, or ``trials`` (the trials the run is asked for) when it is
    unset; nothing when the section is absent or the study already has trials (a continued
    search keeps the points it started with). ``scorer``: see :func:`prescreen_points`.
    """
    cfg = space.search.prescreen
    if cfg is None or study.get_trials(deepcopy=False):
        return []
    points = prescreen_points(space, cfg.trials or trials, cfg.candidates, cfg.score, space.search.seed or 0,
                              batch_size=cfg.batch_size, scorer=scorer)
    for point in points:
        study.enqueue_trial(point.params, user_attrs=point.user_attrs, skip_if_exists=True)
    return points
