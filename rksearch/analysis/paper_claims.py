"""The claim of the paper's Table 1 - more stages, lower error - against what a study measured.

Table 1 reports CIFAR-10 *test* errors of eight ERKNet/IRKNet variants (k = 36, m = 1) after full
training; a study of ``search_spaces/paper_table1.yaml`` measures *validation* errors of the same
specs after a short proxy. The numbers are not comparable, so they are shown side by side, each
labelled, and compared by their trend within a method: does error fall as stages are added?
"""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from rksearch.analysis.paper import PAPER_POINTS, PaperPoint
from rksearch.analysis.plots import PALETTE
from rksearch.arch.rknet import RKNetSpec
from rksearch.arch.names import parse_name
from rksearch.analysis.study import Study

PAPER_EPOCHS = 300  # Appendix A: CIFAR runs train 300 epochs
TABLE1 = tuple(p for p in PAPER_POINTS if p.table == 1)
METHODS = {"ERKNet": "ERK", "IRKNet": "IRK"}


def paper_spec(point: PaperPoint) -> RKNetSpec:
    """The spec a Table 1 row stands for: its model reads ``<name> k=<growth rate>``, m = 1, multiscale."""
    name, _, k = point.model.partition(" k=")
    return parse_name(name, growth_rate=int(k), m=1, multiscale=True)


def _arch(spec: RKNetSpec) -> tuple:
    """What makes a trial one of Table 1's networks; dropout and training are the proxy's business."""
    return spec.name, tuple((p.growth_rate, p.m) for p in spec.periods), spec.multiscale


def table1_frame(study: Study) -> pd.DataFrame:
    """One row per Table 1 network: total stages, the study's mean proxy error, the paper's test error.

    ``trials`` counts the completed trials of that exact spec (0: not measured, ``proxy_error`` NaN).
    """
    done = study.completed.dropna(subset=["accuracy"])
    by_arch: dict[tuple, list[float]] = {}
    for number, accuracy in zip(done["number"], done["accuracy"]):
        by_arch.setdefault(_arch(study.spec(int(number))), []).append(float(accuracy))
    rows = []
    for p in TABLE1:
        spec = paper_spec(p)
        measured = by_arch.get(_arch(spec), [])
        rows.append({
            "model": spec.name, "method": METHODS[p.family], "stages": sum(q.stages for q in spec.periods),
            "trials": len(measured),
            "proxy_error": 100 * (1 - sum(measured) / len(measured)) if measured else float("nan"),
            "paper_error": p.error, "gflops": p.gflops, "mparams": p.mparams,
        })
    return pd.DataFrame(rows)


def _trend(frame: pd.DataFrame, column: str) -> tuple[float, bool | None]:
    """Spearman's rho of stages vs ``column`` and whether it falls at every added stage (None: < 2 points)."""
    f = frame.dropna(subset=[column]).sort_values("stages")
    if len(f) < 2:
        return float("nan"), None
    rho = f["stages"].rank().corr(f[column].rank())
    return float(rho), bool((f[column].diff().dropna() < 0).all())


def claim_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per method: the trend of error over total stages in the paper and in the study.

    rho = -1 and ``falls`` True: every added stage lowered the error, as the paper claims.
    """
    rows = []
    for method, f in frame.groupby("method", sort=False):
        paper_rho, paper_falls = _trend(f, "paper_error")
        study_rho, study_falls = _trend(f, "proxy_error")
        rows.append({"method": method, "networks": len(f), "measured": int((f["trials"] > 0).sum()),
                     "paper_rho": paper_rho, "paper_falls": paper_falls,
                     "study_rho": study_rho, "study_falls": study_falls})
    return pd.DataFrame(rows)


def verdicts(summary: pd.DataFrame) -> list[str]:
    """The summary in words, one line per method and source."""
    lines = []
    for r in summary.itertuples():
        for source, rho, falls in (("paper", r.paper_rho, r.paper_falls), ("study", r.study_rho, r.study_falls)):
            if falls is None:
                lines.append(f"{r.method}, {source}: fewer than two networks measured")
            else:
                trend = "falls with every added stage" if falls else "does not fall with every added stage"
                lines.append(f"{r.method}, {source}: error {trend} (Spearman rho {rho:+.2f})")
    return lines


def stages_figure(study: Study, frame: pd.DataFrame | None = None) -> go.Figure:
    """Error against total stages, a line per method: the study's proxy (left) beside the paper's (right)."""
    from plotly.subplots import make_subplots

    frame = table1_frame(study) if frame is None else frame
    epochs = study.proxy.get("epochs", "?")
    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        f"{study.name}: proxy validation error, {epochs} epochs",
        f"paper, Table 1: CIFAR-10 test error, {PAPER_EPOCHS} epochs (full training)",
    ))
    for i, (method, f) in enumerate(frame.groupby("method", sort=False)):
        f = f.sort_values("stages")
        for col, (column, source, symbol, dash) in enumerate(
            (("proxy_error", "study", "circle", "solid"), ("paper_error", "paper", "diamond-open", "dot")), start=1
        ):
            fig.add_trace(go.Scatter(
                x=f["stages"].tolist(), y=f[column].tolist(), mode="lines+markers", name=f"{method} ({source})",
                legendgroup=method, marker=dict(color=PALETTE[i], size=9, symbol=symbol),
                line=dict(color=PALETTE[i], dash=dash), text=f["model"].tolist(),
                hovertemplate="%{text}: %{y:.2f} % error at %{x} stages<extra></extra>",
            ), row=1, col=col)
    fig.update_xaxes(title="total stages (sum of s over the periods)", dtick=1)
    fig.update_yaxes(title="proxy validation error (%)", row=1, col=1)
    fig.update_yaxes(title="test error (%), paper", row=1, col=2)
    fig.update_layout(title="More stages, lower error? Table 1 (k = 36, m = 1) measured vs reported",
                      template="plotly_white")
    return fig
