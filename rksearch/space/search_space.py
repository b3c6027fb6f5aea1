"""A search space: which RKNet specs a search may propose, and how a search runs over them.

The space is one define-by-run program (:meth:`SearchSpace._walk`): the period count, then per
period method, stages, steps, growth rate and - for ERK periods only - m, then the global
choices. Optuna's suggestions, the inverse map from a trial's params, uniform sampling, the exact
size and the grid enumeration all run that same program with a different ``choose``, so they
cannot disagree about the conditional structure. Parameter names are part of the API (studies
store them): ``periods``, ``p{i}.<field>`` per period, ``<field>`` when tied, and ``bottleneck``,
``attention``, ``multiscale``, ``dropout``. Fixed values are never suggested. A ``candidates:``
space replaces the period choices by one categorical ``candidate`` over an explicit list.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import random
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from rksearch.models.registry import count
from rksearch.space.domain import Checker, Domain
from rksearch.core.errors import RKSearchError, from_validation_error
from rksearch.space.overrides import apply_overrides, blame
from rksearch.training.proxy import ProxyConfig
from rksearch.core.objectives import OBJECTIVES
from rksearch.space.config import Constraints, LatencyConfig, SearchConfig, parse_objectives, parse_reference_point
from rksearch.space.parse import Baseline, CandidatesSpace, NetworkSpace, PeriodsSpace, check_structure, parse_baselines, parse_candidates, parse_network, parse_periods
from rksearch.arch.rknet import GLOBAL_FIELDS, PERIOD_FIELDS, RKNetSpec
from rksearch.core.yamlio import parse_yaml, read_text

if TYPE_CHECKING:
    import optuna

Choose = Callable[[str, Domain], Any]
Take = Callable[[Domain, str], Any]
CANDIDATE = "candidate"  # the parameter of a candidates space


def _structural(name: str) -> bool:
    """Choices that change which other choices exist: the period count and the methods."""
    return name == "periods" or name.rpartition(".")[2] == "method"


def _param_order(name: str) -> tuple[int, ...]:
    if name in ("periods", CANDIDATE):
        return (0,)
    head, _, field = name.rpartition(".")
    if head:
        return (2, int(head[1:]), PERIOD_FIELDS.index(field))
    if name in PERIOD_FIELDS:
        return (1, PERIOD_FIELDS.index(name))
    return (3, GLOBAL_FIELDS.index(name))


def _weighted(rng: random.Random, weights: list[int]) -> int:
    """An index drawn with probability proportional to its (possibly huge, integer) weight."""
    x = rng.randrange(sum(weights))
    for i, w in enumerate(weights):
        if x < w:
            return i
        x -= w
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Feasibility:
    """How much of a space meets its constraints: counted exactly, or estimated from samples."""

    feasible: int
    checked: int
    exact: bool

    @property
    def fraction(self) -> float:
        return self.feasible / self.checked

    @property
    def margin(self) -> float:
        """Half-width of a 95% interval of the estimate (0 when exact)."""
        return 0.0 if self.exact else 1.96 * math.sqrt(self.fraction * (1 - self.fraction) / self.checked)


@dataclass(frozen=True, eq=False)
class SearchSpace:
    """A validated search space; build one with :func:`load_space` (or :func:`parse_space`)."""

    name: str
    source: Path | None
    network: NetworkSpace
    periods: PeriodsSpace | None  # None in a candidates space
    constraints: Constraints
    proxy: ProxyConfig
    search: SearchConfig
    storage: str | None
    _objectives: tuple[str, ...] = ("accuracy", "flops")
    _reference_point: tuple[tuple[str, float], ...] | None = None
    candidates: CandidatesSpace | None = None
    baselines: tuple[Baseline, ...] = ()
    """Known networks each trained once per study under the same proxy, apart from the search."""
    overrides: tuple[tuple[str, Any], ...] = ()
    """Fields the command line set over the file's (``--set``, ``--data-root``, ``--dataset``)."""
    latency: LatencyConfig = LatencyConfig()
    """How latency is measured, where an objective or a constraint asks for it."""

    @property
    def needs_latency(self) -> bool:
        return "latency" in self._objectives or self.constraints.max_latency_ms is not None

    @property
    def objectives(self) -> list[str]:
        return list(self._objectives)

    @property
    def directions(self) -> list[str]:
        return [OBJECTIVES[o].direction for o in self._objectives]

    @property
    def reference_point(self) -> dict[str, float] | None:
        return None if self._reference_point is None else dict(self._reference_point)

    # -- the define-by-run program -------------------------------------------------------------

    def _walk(self, choose: Choose) -> dict[str, Any]:
        """Spec data for the choices ``choose`` makes; each parameter is chosen at most once."""
        picked: dict[str, Any] = {}

        def take(domain: Domain, name: str) -> Any:
            if domain.fixed:
                return domain.value
            if name not in picked:
                picked[name] = choose(name, domain)
            return picked[name]

        if self.candidates is not None:
            arch = self.candidates.arch(take(self.candidates.names, CANDIDATE))
        else:
            arch = {"periods": self._periods(take)}
        chosen = {f: take(d, f) for f, d in self.network.choices.items()}
        return {**self.network.fixed, **chosen, **arch}

    def _periods(self, take: Take) -> list[dict[str, Any]]:
        """The period count, then per period method, stages, steps, growth rate and (ERK only) m."""
        assert self.periods is not None, "a candidates space has no period choices"
        periods = []
        for i in range(take(self.periods.count, "periods")):
            p = {f: take(*self.periods.domain(i, f)) for f in PERIOD_FIELDS if f != "m"}
            p["m"] = take(*self.periods.domain(i, "m")) if p["method"] == "erk" else 1
            periods.append(p)
        return periods

    def _odometer(self, branch: Callable[[str], bool]) -> Iterator[tuple[dict[str, Any], int]]:
        """Every assignment of the ``branch`` parameters, in order, with the number of specs under it.

        Runs the program once per assignment, taking the next value of the last branch point
        that has one left; the other parameters are multiplied out instead of enumerated.
        """
        path: list[int] = []
        while True:
            params: dict[str, Any] = {}
            sizes: list[int] = []
            weight = 1

            def choose(name: str, d: Domain) -> Any:
                nonlocal weight
                if not branch(name):
                    weight *= len(d.values)
                    return d.value
                if len(sizes) == len(path):
                    path.append(0)
                params[name] = d.values[path[len(sizes)]]
                sizes.append(len(d.values))
                return params[name]

            self._walk(choose)
            yield params, weight
            while path and path[-1] + 1 == sizes[len(path) - 1]:
                path.pop()
            if not path:
                return
            path[-1] += 1

    @cached_property
    def _branches(self) -> list[tuple[dict[str, Any], int]]:
        """Each period count and method assignment with the number of specs it holds."""
        return list(self._odometer(_structural))

    # -- the API the search engine uses ------------------------------------------------------

    def suggest(self, trial: "optuna.trial.BaseTrial") -> RKNetSpec:
        """Ask an Optuna trial (or FixedTrial, or an enqueued trial) for one spec."""

        def choose(name: str, d: Domain) -> Any:
            if d.step is not None:
                return trial.suggest_int(name, d.values[0], d.values[-1], step=d.step)
            return trial.suggest_categorical(name, list(d.values))

        return RKNetSpec.model_validate(self._walk(choose))

    def spec_from_params(self, params: Mapping[str, Any]) -> RKNetSpec:
        """The spec an Optuna trial with these params stands for; strict about missing and extra ones."""
        used: set[str] = set()

        def choose(name: str, d: Domain) -> Any:
            if name not in params:
                raise RKSearchError("missing from the trial's params", source=self.source, field=f"params.{name}")
            i = d.index(params[name])
            if i is None:
                raise RKSearchError(f"{params[name]!r} is not one of {d.describe()}", source=self.source, field=f"params.{name}")
            used.add(name)
            return d.values[i]

        data = self._walk(choose)
        extra = sorted(set(params) - used)
        if extra:
            raise RKSearchError(f"not parameters of this spec in this space: {', '.join(extra)}", source=self.source, field="params")
        return RKNetSpec.model_validate(data)

    def enumerate_params(self) -> Iterator[dict[str, Any]]:
        """Every point as Optuna params, in a fixed order (for the grid sampler via enqueue_trial)."""
        for params, _ in self._odometer(lambda name: True):
            yield params

    def size(self) -> int:
        """The number of distinct specs, computed from the branches without enumerating the rest."""
        return sum(w for _, w in self._branches)

    def parameters(self) -> dict[str, Domain]:
        """Every parameter some spec of the space uses, with its domain, in a stable order."""
        seen: dict[str, Domain] = {}
        for forced, _ in self._branches:

            def choose(name: str, d: Domain, forced: dict[str, Any] = forced) -> Any:
                seen.setdefault(name, d)
                return forced.get(name, d.value)

            self._walk(choose)
        return dict(sorted(seen.items(), key=lambda kv: _param_order(kv[0])))

    def sample_params(self, rng: random.Random) -> dict[str, Any]:
        """The Optuna params of a spec drawn uniformly from the distinct specs of the space
        (feasible or not); :meth:`spec_from_params` maps them back to the spec."""
        forced, _ = self._branches[_weighted(rng, [w for _, w in self._branches])]
        params: dict[str, Any] = {}

        def choose(name: str, d: Domain) -> Any:
            params[name] = forced[name] if name in forced else d.values[rng.randrange(len(d.values))]
            return params[name]

        self._walk(choose)
        return params

    def sample(self, rng: random.Random) -> RKNetSpec:
        """A spec drawn uniformly from the distinct specs of the space (feasible or not)."""
        return self.spec_from_params(self.sample_params(rng))

    def sample_feasible(self, rng: random.Random, tries: int = 1000) -> RKNetSpec | None:
        """A uniformly drawn spec that meets the constraints, or None after ``tries`` misses."""
        for _ in range(tries):
            spec = self.sample(rng)
            if self.feasible(spec):
                return spec
        return None

    def violations(self, spec: RKNetSpec) -> list[float]:
        """Optuna constraint values of the full spec, one per constraint; <= 0 means satisfied."""
        c = count(spec)
        limits = ((c.flops, self.constraints.max_flops), (c.params, self.constraints.max_params))
        return [value / limit - 1 for value, limit in limits if limit is not None]

    def feasible(self, spec: RKNetSpec) -> bool:
        return all(v <= 0 for v in self.violations(spec))

    def feasibility(self, rng: random.Random | None = None, *, samples: int = 2000, exact_limit: int = 20000) -> Feasibility:
        """The share of specs meeting the constraints: exact up to ``exact_limit`` specs, else sampled."""
        total = self.size()
        if self.constraints.max_flops is None and self.constraints.max_params is None:
            return Feasibility(total, total, exact=True)
        if total <= exact_limit:
            specs = (self.spec_from_params(p) for p in self.enumerate_params())
            return Feasibility(sum(self.feasible(s) for s in specs), total, exact=True)
        rng = rng or random.Random(0)
        return Feasibility(sum(self.feasible(self.sample(rng)) for _ in range(samples)), samples, exact=False)



TOP_KEYS = ("name", "network", "periods", "candidates", "baselines", "constraints", "objectives", "latency", "proxy",
            "search", "storage", "reference_point")
GRID_LIMIT = 100_000
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def load_space(path: str | Path, overrides: Mapping[str, Any] | None = None) -> SearchSpace:
    """Read and validate a search-space YAML file; ``overrides`` ({dotted key: value}, see
    :mod:`rksearch.space.overrides`) set fields over the file's before it is validated."""
    data = parse_yaml(read_text(path), path)
    if not overrides:
        return parse_space(data, source=Path(path))
    try:
        space = parse_space(apply_overrides(data, dict(overrides), path), source=Path(path))
    except RKSearchError as e:
        raise blame(e, dict(overrides)) from None
    return dataclasses.replace(space, overrides=tuple(overrides.items()))


def parse_space(data: Any, *, source: str | Path | None = None) -> SearchSpace:
    """Validate a space already read from YAML; every error names ``source`` and the key path."""
    chk = Checker(source)
    if not isinstance(data, dict):
        raise chk.fail("", f"expected a mapping with keys {', '.join(TOP_KEYS)}; got {type(data).__name__}")
    for key in data:
        if key not in TOP_KEYS:
            hint = difflib.get_close_matches(str(key), TOP_KEYS, n=1)
            raise chk.fail(str(key), "unknown key" + (f" (did you mean {hint[0]}?)" if hint else "") + f"; allowed: {', '.join(TOP_KEYS)}")
    name = data.get("name", Path(source).stem if source is not None else "space")
    if not isinstance(name, str) or not _NAME.match(name):
        told = "" if "name" in data else " (taken from the file name; give name: ...)"
        raise chk.fail("name", f"{name!r} is not a study name: letters, digits, '_', '-' and '.' only{told}")
    storage = data.get("storage")
    if storage is not None and (not isinstance(storage, str) or "://" not in storage):
        raise chk.fail("storage", "expected an Optuna storage URL such as sqlite:///studies/x.db or postgresql://user@host/db")
    network = parse_network(data.get("network"), chk)
    periods, candidates = _architecture(data, network, chk)
    objectives = parse_objectives(data.get("objectives"), chk)
    space = SearchSpace(
        name=name,
        source=Path(source) if source is not None else None,
        network=network,
        periods=periods,
        constraints=_section(Constraints, data, "constraints", source),
        proxy=_section(ProxyConfig, data, "proxy", source),
        search=_section(SearchConfig, data, "search", source),
        storage=storage,
        _objectives=objectives,
        _reference_point=parse_reference_point(data.get("reference_point"), objectives, chk),
        candidates=candidates,
        baselines=parse_baselines(data.get("baselines"), network, chk),
        latency=_section(LatencyConfig, data, "latency", source),
    )
    _check_search(space, chk)
    return space


def _architecture(data: dict, network: NetworkSpace, chk: Checker) -> tuple[PeriodsSpace | None, CandidatesSpace | None]:
    """Either ``periods:`` (choices per period) or ``candidates:`` (an explicit list), never both."""
    if "candidates" not in data:
        periods = parse_periods(data.get("periods"), chk)
        check_structure(periods, network, chk)
        return periods, None
    if "periods" in data:
        raise chk.fail("candidates", "give either periods (choices per period) or candidates (a list of specs), not both")
    return None, parse_candidates(data["candidates"], network, data.get("network") or {}, chk)


def _section(model: type[BaseModel], data: dict, key: str, source: str | Path | None) -> Any:
    try:
        return model.model_validate({} if data.get(key) is None else data[key])
    except ValidationError as e:
        raise from_validation_error(e, source=source, prefix=key) from None


def _check_search(space: SearchSpace, chk: Checker) -> None:
    scheduler = space.search.scheduler
    if scheduler.kind == "asha" and scheduler.grace_epochs > space.proxy.epochs:
        raise chk.fail(
            "search.scheduler.grace_epochs",
            f"{scheduler.grace_epochs} is more than proxy.epochs ({space.proxy.epochs}); ASHA could never stop a trial",
        )
    if space.search.sampler == "grid" and space.size() > GRID_LIMIT:
        raise chk.fail("search.sampler", f"grid over {space.size():,} specs; grid enumerates at most {GRID_LIMIT:,}: use tpe, nsga2, nsga3, gp, qmc or random")
