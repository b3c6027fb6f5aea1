"""A space's latency table built (every feasible spec, or a sample), and how well FLOPs and params rank latency on it."""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Callable

from rksearch.arch.resolve import AnySpec
from rksearch.arch.rknet import RKNetSpec
from rksearch.core.errors import RKSearchError
from rksearch.models.registry import count
from rksearch.space.search_space import GRID_LIMIT, SearchSpace
from rksearch.training.latency import DeviceKey, Latency, Protocol
from rksearch.training.latency_table import LatencyTable, latency_of

SAMPLE_TRIES = 50  # draws per wanted spec before a sample settles for fewer distinct ones


@dataclass(frozen=True)
class Measured:
    """One spec's latency, and whether this run measured it (or found it in the table)."""

    spec: AnySpec
    latency: Latency
    now: bool


def space_specs(space: SearchSpace, *, every: bool = False, sample: int | None = None, seed: int = 0) -> list[RKNetSpec]:
    """The feasible specs of ``space`` (FLOPs and params constraints; latency is what is measured):
    every one (``every``), or ``sample`` distinct ones drawn uniformly with ``seed``."""
    if every:
        if space.size() > GRID_LIMIT:
            raise RKSearchError(f"{space.size():,} specs; --all measures at most {GRID_LIMIT:,}: use --sample N",
                                source=space.source, field="--all")
        specs = (space.spec_from_params(p) for p in space.enumerate_params())
        return [s for s in specs if space.feasible(s)]
    rng, found = random.Random(seed), {}
    for _ in range(SAMPLE_TRIES * (sample or 0)):
        if len(found) >= (sample or 0):
            break
        spec = space.sample_feasible(rng)
        if spec is None:
            break
        found.setdefault(spec.to_json(), spec)
    if not found:
        raise RKSearchError("no spec meets the constraints; loosen max_flops/max_params", source=space.source,
                            field="constraints")
    return list(found.values())


def measure_specs(specs: list[AnySpec], table: LatencyTable, protocol: Protocol = Protocol(), *,
                  on_each: Callable[[int, Measured], None] | None = None) -> list[Measured]:
    """Each spec's latency from ``table``, measured where it lacks one (resumable: an interrupted
    run keeps what it measured, and the next one skips it)."""
    done = []
    for i, spec in enumerate(specs):
        latency, now = latency_of(table, spec, protocol)
        done.append(Measured(spec, latency, now))
        if on_each is not None:
            on_each(i, done[-1])
    return done


def family(spec: AnySpec) -> str:
    """``IRK, 3 stages``, ``ERK, 3-6 stages``, ``mixed, ...``: what the report colours by."""
    if not isinstance(spec, RKNetSpec):
        return spec.name
    methods = {p.method for p in spec.periods}
    stages = sorted({p.stages for p in spec.periods})
    kind = methods.pop().upper() if len(methods) == 1 else "mixed"
    span = str(stages[0]) if len(stages) == 1 else f"{stages[0]}-{stages[-1]}"
    return f"{kind}, {span} stages"


@dataclass(frozen=True)
class LatencyReport:
    """Spearman's rho of FLOPs and of params against measured latency, over specs of one key."""

    key: DeviceKey
    rows: list[dict]
    rho_flops: float
    rho_params: float

    def lines(self, name: str) -> list[str]:
        def rho(v: float) -> str:
            return "n/a" if math.isnan(v) else f"{v:.3f}"

        ms = sorted(r["latency_ms"] for r in self.rows)
        return [f"{name}: {len(self.rows)} specs on {self.key.text()}",
                f"latency {ms[0]:.3g} to {ms[-1]:.3g} ms; Spearman rho against it: FLOPs {rho(self.rho_flops)}, "
                f"params {rho(self.rho_params)}"]


def latency_report(measured: list[Measured], key: DeviceKey) -> LatencyReport:
    from scipy.stats import spearmanr

    rows = []
    for m in measured:
        c = count(m.spec)
        rows.append({"name": m.spec.name, "flops": c.flops, "params": c.params, "latency_ms": m.latency.median_ms,
                     "p90_ms": m.latency.p90_ms, "family": family(m.spec)})

    def rho(column: str) -> float:
        if len(rows) < 3:
            return math.nan
        return float(spearmanr([r[column] for r in rows], [r["latency_ms"] for r in rows]).statistic)

    return LatencyReport(key, rows, rho("flops"), rho("params"))
