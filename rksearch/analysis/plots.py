"""Plotly figures of a study: the front, the hypervolume history, choices, several studies at once."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from rksearch.core.errors import RKSearchError
from rksearch.analysis.paper import PAPER_POINTS
from rksearch.analysis.pareto import Front, front, hypervolume_history
from rksearch.analysis.study import Study
from rksearch.analysis.choices import choice_effects, choice_values
from rksearch.core.objectives import OBJECTIVES, parse_objectives

FADED = "rgba(120, 120, 120, 0.35)"
FRONT = "#d62728"
BASELINE = "#1f77b4"
PALETTE = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
HOVER = "trial %{customdata[0]}: %{customdata[1]}<br>%{customdata[2]}<br>%{customdata[3]}<extra></extra>"


def unit(name: str) -> str:
    """The unit an objective is shown in (accuracy in %, FLOPs in G, params in M)."""
    return "%" if name == "accuracy" else OBJECTIVES[name].unit


def axis(name: str) -> tuple[float, str]:
    """(multiplier, title) that puts an objective in plot units."""
    if name == "accuracy":
        return 100.0, "proxy accuracy (%)"
    o = OBJECTIVES[name]
    if name in ("flops", "params"):
        return o.scale, f"{o.unit} (full spec)"
    return o.scale, o.label


def _xy(objectives: Sequence[str]) -> tuple[str, str]:
    """Accuracy goes up the y axis; otherwise the first objective goes along x."""
    if "accuracy" in objectives:
        return next(o for o in objectives if o != "accuracy"), "accuracy"
    return objectives[0], objectives[1]


def _custom(frame: pd.DataFrame, objectives: Sequence[str]) -> np.ndarray:
    """Per-point hover data: trial number, name, the choices the name omits, the measured values."""
    if frame.empty:
        return np.empty((0, 4), dtype=object)
    measured = [", ".join(f"{o} {r[o] * axis(o)[0]:.4g}" for o in objectives) for _, r in frame.iterrows()]
    choices = frame["choices"].fillna("") if "choices" in frame else [""] * len(frame)
    return np.column_stack([frame["number"].astype(int), frame["name"].fillna("?"), choices, measured])


def _scatter(frame: pd.DataFrame, objectives: Sequence[str], coords: Sequence[str], **kw) -> go.Scatter | go.Scatter3d:
    vals = [frame[c] * axis(c)[0] for c in coords]
    cls = go.Scatter3d if len(coords) == 3 else go.Scatter
    xyz = dict(zip("xyz", vals))
    return cls(**xyz, customdata=_custom(frame, objectives), hovertemplate=HOVER, **kw)


def _paper_traces(x: str, y: str) -> list[go.Scatter]:
    """The paper's CIFAR-10 points, only where both axes are quantities the paper reports."""
    cols = {"accuracy": lambda p: 100 * p.accuracy, "flops": lambda p: p.gflops, "params": lambda p: p.mparams}
    if x not in cols or y not in cols:
        return []
    traces = []
    for i, family in enumerate(("ERKNet", "IRKNet", "DenseNet", "CliqueNet")):
        pts = [p for p in PAPER_POINTS if p.family == family]
        traces.append(go.Scatter(
            x=[cols[x](p) for p in pts], y=[cols[y](p) for p in pts], mode="markers",
            name=f"{family} (paper, full training)", legendgroup="paper",
            legendgrouptitle_text="paper Tables 1-2, CIFAR-10, full training (not proxy)",
            marker=dict(symbol=("diamond-open", "square-open", "triangle-up-open", "cross-open")[i], size=9,
                        color=PALETTE[(i + 2) % len(PALETTE)]),
            text=[p.label for p in pts], hovertemplate="%{text}<extra></extra>",
        ))
    return traces


def _log_axis(values: Sequence[np.ndarray]) -> bool:
    """Log scale when the positive values span more than about a decade."""
    v = np.concatenate([np.asarray(a, dtype=float) for a in values]) if values else np.array([])
    v = v[np.isfinite(v) & (v > 0)]
    return len(v) > 1 and v.max() / v.min() > 10


def pareto_figure(study: Study, objectives: Sequence[str] | str | None = None, *, paper: bool = False,
                  title: str | None = None) -> go.Figure:
    """The trials in objective space: dominated faded, the front highlighted and joined, the knee starred."""
    objectives = parse_objectives(objectives) if objectives is not None else study.objectives
    if len(objectives) > 3:
        raise RKSearchError(f"a plot shows 2 or 3 objectives, got {len(objectives)}", field="--objectives")
    f = front(study, objectives)
    coords = _xy(objectives) if len(objectives) == 2 else tuple(objectives)
    done = study.completed.dropna(subset=list(objectives))
    others = done[~done["number"].isin(f.members["number"])]
    pruned = study.trials[study.trials["state"] == "PRUNED"].dropna(subset=list(objectives))
    mode3 = len(coords) == 3
    members = f.members.sort_values(coords[0])
    fig = go.Figure()
    fig.add_trace(_scatter(others, objectives, coords, mode="markers", name=f"dominated ({len(others)})",
                           marker=dict(color=FADED, size=5 if mode3 else 8)))
    if len(pruned):
        fig.add_trace(_scatter(pruned, objectives, coords, mode="markers", visible="legendonly",
                               name=f"pruned ({len(pruned)}, partial proxy)",
                               marker=dict(color=FADED, symbol="x", size=4 if mode3 else 7)))
    fig.add_trace(_scatter(members, objectives, coords, mode="markers" if mode3 else "lines+markers",
                           name=f"Pareto front ({len(members)})", marker=dict(color=FRONT, size=6 if mode3 else 10),
                           **({} if mode3 else {"line": dict(color=FRONT, width=2)})))
    if f.knee is not None:
        knee = f.members[f.members["number"] == f.knee]
        fig.add_trace(_scatter(knee, objectives, coords, mode="markers", name=f"knee (trial {f.knee})",
                               marker=dict(color="gold", symbol="diamond" if mode3 else "star", size=8 if mode3 else 18,
                                           line=dict(color="black", width=1))))
    baselines = study.baselines.dropna(subset=list(objectives))
    if len(baselines):
        fig.add_trace(_baseline_trace(baselines, objectives, coords))
    xs = [done[coords[0]] * axis(coords[0])[0], baselines[coords[0]] * axis(coords[0])[0]]
    if paper and not mode3:
        for t in _paper_traces(*coords):
            fig.add_trace(t)
            xs.append(np.asarray(t.x))
    _layout(fig, study, f, coords, xs, title)
    return fig


def _baseline_trace(baselines: pd.DataFrame, objectives: Sequence[str],
                    coords: Sequence[str]) -> go.Scatter | go.Scatter3d:
    """The study's baselines, labelled by name: measured under the same proxy, never on the front."""
    mode3 = len(coords) == 3
    return _scatter(baselines, objectives, coords, mode="markers+text", text=baselines["name"],
                    textposition="top center", name=f"baselines ({len(baselines)}, same proxy, not searched)",
                    marker=dict(color=BASELINE, symbol="square-open" if mode3 else "square", size=6 if mode3 else 11,
                                line=dict(color="black", width=1)))


def _layout(fig: go.Figure, study: Study, f: Front, coords: Sequence[str], xs: list, title: str | None) -> None:
    head = title or f"{study.name}: {len(f.members)} Pareto-optimal of {f.candidates} completed trials"
    sub = f"hypervolume {f.hypervolume:.4g} ({f.hv_unit})"
    fig.update_layout(title=f"{head}<br><sup>{sub}</sup>", template="plotly_white", legend=dict(groupclick="toggleitem"))
    if len(coords) == 3:
        fig.update_layout(scene=dict(xaxis_title=axis(coords[0])[1], yaxis_title=axis(coords[1])[1],
                                     zaxis_title=axis(coords[2])[1]))
        return
    fig.update_xaxes(title=axis(coords[0])[1], type="log" if _log_axis(xs) else "linear")
    fig.update_yaxes(title=axis(coords[1])[1])


def hypervolume_figure(studies: Study | Sequence[Study], objectives: Sequence[str] | str | None = None, *,
                       reference: dict[str, float] | None = None, history: pd.DataFrame | None = None) -> go.Figure:
    """Hypervolume after each trial, one line a study (it grows only when a completed trial joins the front).

    Several studies share ``reference`` (default: :func:`~rksearch.analysis.pareto.common_reference`).
    """
    from rksearch.analysis.pareto import common_reference

    many = [studies] if isinstance(studies, Study) else list(studies)
    objectives = parse_objectives(objectives) if objectives is not None else many[0].objectives
    if reference is None and len(many) > 1:
        reference = common_reference(many, objectives)
    unit = " x ".join(OBJECTIVES[o].unit or o for o in objectives)
    fig = go.Figure()
    for i, s in enumerate(many):
        h = history if history is not None and len(many) == 1 else hypervolume_history(s, objectives, reference)
        fig.add_trace(go.Scatter(x=h["number"], y=h["hypervolume"], mode="lines", line_shape="hv", name=s.name,
                                 line=dict(color=PALETTE[(i + 1) % len(PALETTE)])))
    fig.update_layout(title=f"{', '.join(s.name for s in many)}: hypervolume history", template="plotly_white",
                      xaxis_title="trial number", yaxis_title=f"hypervolume ({unit})", showlegend=len(many) > 1)
    return fig


def choice_effects_figure(study: Study, metric: str = "accuracy") -> go.Figure:
    """``metric`` of the completed trials for each value of each choice: one box (mean dashed) per value."""
    from plotly.subplots import make_subplots

    choices = list(dict.fromkeys(choice_effects(study, (metric,))["choice"]))
    if not choices:
        raise RKSearchError("no completed trial with a spec yet", source=study.source)
    done = study.completed.dropna(subset=[metric])
    cols = min(4, len(choices))
    rows = -(-len(choices) // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=choices)
    mult, label = axis(metric)
    for i, c in enumerate(choices):
        x = choice_values(done, c).map(lambda v: str(v) if isinstance(v, (bool, np.bool_)) else v)
        fig.add_trace(go.Box(x=x, y=done[metric] * mult, boxmean=True, boxpoints="all", jitter=0.3, pointpos=0,
                             marker=dict(size=4, color=PALETTE[1]), line=dict(width=1), showlegend=False,
                             customdata=_custom(done, (metric,)), hovertemplate=HOVER, name=c),
                      row=i // cols + 1, col=i % cols + 1)
    fig.update_layout(title=f"{study.name}: {label} per choice (completed trials)", template="plotly_white",
                      height=260 * rows)
    fig.update_xaxes(categoryorder="category ascending")
    return fig


def compare_figure(studies: Sequence[Study], objectives: Sequence[str] | str | None = None,
                   reference: dict[str, float] | None = None) -> go.Figure:
    """Several studies' fronts on one plot, each with its hypervolume against one shared reference."""
    from rksearch.analysis.pareto import common_reference

    objectives = parse_objectives(objectives) if objectives is not None else studies[0].objectives
    if len(objectives) != 2:
        raise RKSearchError("comparing studies plots exactly 2 objectives", field="objectives")
    ref = reference or common_reference(studies, objectives)
    x, y = _xy(objectives)
    fig = go.Figure()
    xs = []
    for i, s in enumerate(studies):
        color = PALETTE[i % len(PALETTE)]
        f = front(s, objectives, reference=ref)
        done = s.completed.dropna(subset=list(objectives))
        fig.add_trace(_scatter(done, objectives, (x, y), mode="markers", name=f"{s.name}: all completed",
                               legendgroup=s.name, marker=dict(color=color, opacity=0.25, size=6)))
        fig.add_trace(_scatter(f.members.sort_values(x), objectives, (x, y), mode="lines+markers", legendgroup=s.name,
                               name=f"{s.name}: front, HV {f.hypervolume:.4g}", marker=dict(color=color, size=9),
                               line=dict(color=color)))
        xs.append(done[x] * axis(x)[0])
    ref_text = ", ".join(f"{o} {ref[o] * axis(o)[0]:.4g} {unit(o)}" for o in objectives)
    fig.update_layout(title=f"{' vs '.join(s.name for s in studies)}<br><sup>hypervolume against the shared reference "
                            f"point {ref_text}</sup>", template="plotly_white")
    fig.update_xaxes(title=axis(x)[1], type="log" if _log_axis(xs) else "linear")
    fig.update_yaxes(title=axis(y)[1])
    return fig


def latency_figure(rows: Sequence[dict], title: str) -> go.Figure:
    """Measured latency against FLOPs, one colour per family (``IRK, 3 stages``); rows as
    :func:`rksearch.search.latency_space.latency_report` gives them (name, flops, params, latency_ms, family)."""
    from plotly.colors import qualitative

    frame = pd.DataFrame(list(rows))
    fig = go.Figure()
    colours = qualitative.Dark24
    for i, (fam, part) in enumerate(frame.groupby("family", sort=True)):
        fig.add_trace(go.Scatter(
            x=part["flops"] * axis("flops")[0], y=part["latency_ms"], mode="markers", name=str(fam),
            marker=dict(color=colours[i % len(colours)], size=9),
            customdata=np.column_stack([part["name"], part["params"] * axis("params")[0], part["p90_ms"]]),
            hovertemplate="%{customdata[0]}<br>%{x:.4g} GFLOPs, %{customdata[1]:.4g} M params<br>"
                          "median %{y:.4g} ms, p90 %{customdata[2]:.4g} ms<extra></extra>"))
    fig.update_layout(title=title, template="plotly_white", legend_title_text="method, stages per period")
    fig.update_xaxes(title=axis("flops")[1])
    fig.update_yaxes(title="latency (ms, median)")
    return fig
