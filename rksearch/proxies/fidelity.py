"""Rank fidelity: how well a cheap measurement (a short proxy, a zero-cost score) orders specs
like the most expensive one measured, and at what cost.

Pure functions over plain lists, so ``rksearch calibrate`` and anyone holding numbers from
elsewhere compute the same statistics. Accuracies are per seed and per spec (``acc[s][j]``);
a budget's ranking is that of the mean over seeds, and the reference is the largest budget's.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from itertools import combinations
from typing import Any, Optional

import plotly.graph_objects as go

from rksearch.proxies.ranking import kendall_tau, spearman_rho, top_k_overlap

Grid = list[list[float]]  # [seed][spec]


def column_means(rows: Grid) -> list[float]:
    return [sum(col) / len(col) for col in zip(*rows)]


def _finite_pairs(a: list[float], b: list[float]) -> tuple[list[float], list[float]]:
    """Drop the specs a measurement could not score (NaN); infinities still order."""
    keep = [i for i in range(len(a)) if not (math.isnan(a[i]) or math.isnan(b[i]))]
    return [a[i] for i in keep], [b[i] for i in keep]


def _corr(fn, a: list[float], b: list[float]) -> float:
    a, b = _finite_pairs(a, b)
    return fn(a, b) if len(a) >= 2 else math.nan


def _mean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def noise_tau(acc: Grid) -> Optional[float]:
    """The noise floor: mean Kendall tau between the rankings of two seeds at one budget
    (None with one seed). A budget cannot rank better against another than against itself."""
    if len(acc) < 2:
        return None
    return _mean([_corr(kendall_tau, a, b) for a, b in combinations(acc, 2)])


@dataclass(frozen=True)
class BudgetFidelity:
    """One budget against the reference (the largest budget, mean over seeds)."""

    budget: str
    epochs: int
    fraction: float
    seconds_per_run: float
    seconds: float
    """Every run of the budget (all specs, all seeds), summed."""
    tau: float
    rho: float
    top_k: float
    tau_seeds: list[float]
    """Each seed's own ranking against the reference: the seed-to-seed band."""
    noise_tau: Optional[float]
    nested_tau: Optional[float] = None
    """Epoch ``epochs`` of the reference budget's runs against their end (same data fraction only)."""
    nested_seconds_per_run: Optional[float] = None

    @property
    def cost(self) -> float:
        return self.epochs * self.fraction


def budget_fidelity(budget: str, epochs: int, fraction: float, acc: Grid, seconds: Grid, reference: list[float],
                    k: int, nested: Optional[tuple[Grid, Grid]] = None) -> BudgetFidelity:
    mean = column_means(acc)
    runs = [s for row in seconds for s in row]
    nested_tau = nested_s = None
    if nested is not None:
        nested_tau = _corr(kendall_tau, column_means(nested[0]), reference)
        nested_s = _mean([s for row in nested[1] for s in row])
    return BudgetFidelity(
        budget=budget, epochs=epochs, fraction=fraction, seconds_per_run=sum(runs) / len(runs), seconds=sum(runs),
        tau=_corr(kendall_tau, mean, reference), rho=_corr(spearman_rho, mean, reference),
        top_k=top_k_overlap(mean, reference, k), tau_seeds=[_corr(kendall_tau, row, reference) for row in acc],
        noise_tau=noise_tau(acc), nested_tau=nested_tau, nested_seconds_per_run=nested_s,
    )


@dataclass(frozen=True)
class ScoreFidelity:
    """A zero-cost score (or a size baseline) against the reference."""

    score: str
    tau: float
    rho: float
    seconds_per_spec: float


def score_fidelity(score: str, values: list[float], seconds: list[float], reference: list[float]) -> ScoreFidelity:
    return ScoreFidelity(score, _corr(kendall_tau, values, reference), _corr(spearman_rho, values, reference),
                         sum(seconds) / len(seconds))


def recommend(budgets: list[BudgetFidelity], threshold: float) -> Optional[BudgetFidelity]:
    """The cheapest budget (epochs x data fraction, then measured seconds) whose tau reaches
    ``threshold``; the reference itself qualifies (tau 1 by definition) unless its ranking is constant."""
    for b in sorted(budgets, key=lambda b: (b.cost, b.seconds_per_run)):
        if b.tau >= threshold:  # NaN never does
            return b
    return None


def finite(value: Any) -> Any:
    """JSON has no NaN: a correlation that does not exist becomes null, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def as_dict(item: BudgetFidelity | ScoreFidelity) -> dict[str, Any]:
    return finite(asdict(item))


def fidelity_figure(budgets: list[BudgetFidelity], scores: list[ScoreFidelity], threshold: float,
                    title: str) -> go.Figure:
    """Kendall tau against seconds per spec (log): the budgets with their seed-to-seed band and
    noise floor, the intermediate epochs of the longest runs, the zero-cost scores, the threshold."""
    order = sorted(budgets, key=lambda b: b.seconds_per_run)
    x = [b.seconds_per_run for b in order]
    lo = [min(b.tau_seeds, default=b.tau) for b in order]
    hi = [max(b.tau_seeds, default=b.tau) for b in order]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=x + x[::-1], y=hi + lo[::-1], fill="toself", fillcolor="rgba(31, 119, 180, 0.15)",
                             mode="lines", line={"width": 0}, hoverinfo="skip", name="single seeds (band)"))
    fig.add_trace(go.Scatter(x=x, y=[b.tau for b in order], mode="lines+markers+text", name="separate run per budget",
                             text=[b.budget for b in order], textposition="top left", line={"color": "#1f77b4"}))
    noise = [b for b in order if b.noise_tau is not None]
    if noise:
        fig.add_trace(go.Scatter(x=[b.seconds_per_run for b in noise], y=[b.noise_tau for b in noise],
                                 mode="lines+markers", name="noise floor (seed vs seed)",
                                 line={"color": "#7f7f7f", "dash": "dot"}))
    nested = [b for b in order if b.nested_tau is not None]
    if nested:
        fig.add_trace(go.Scatter(x=[b.nested_seconds_per_run for b in nested], y=[b.nested_tau for b in nested],
                                 mode="markers+text", name="epoch of the longest run", text=[b.budget for b in nested],
                                 textposition="bottom right", marker={"symbol": "diamond", "color": "#ff7f0e"}))
    if scores:
        fig.add_trace(go.Scatter(x=[max(s.seconds_per_spec, 1e-4) for s in scores], y=[s.tau for s in scores],
                                 mode="markers+text", name="zero-cost score", text=[s.score for s in scores],
                                 textposition="middle right", marker={"symbol": "x", "color": "#2ca02c", "size": 9}))
    fig.add_hline(y=threshold, line={"color": "#d62728", "dash": "dash"}, annotation_text=f"threshold {threshold:g}")
    fig.update_layout(title=title, template="plotly_white", legend={"orientation": "h", "y": -0.2},
                      xaxis={"type": "log", "title": "seconds per spec (one run)"},
                      yaxis={"title": "Kendall tau vs the largest budget", "range": [-1.05, 1.15]})
    return fig
