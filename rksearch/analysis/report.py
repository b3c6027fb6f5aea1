"""What ``rksearch pareto`` prints and what a finished search leaves in its study folder."""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from html import escape
from pathlib import Path

import pandas as pd

from rksearch.core.errors import RKSearchError
from rksearch.core.files import write_text
from rksearch.analysis.noise import CLOSE_MARK, Noise, front_noise
from rksearch.analysis.pareto import KNEE_POINTS, Front, front, hypervolume_history
from rksearch.analysis.plots import axis, hypervolume_figure, pareto_figure, unit
from rksearch.analysis.study import Study, load_study
from rksearch.analysis.choices import whole_numbers
from rksearch.core.objectives import OBJECTIVES, parse_objectives

HISTORY_SHOWN = 8


@dataclass
class ParetoReport:
    """Everything ``rksearch pareto`` shows, computed once."""

    study: Study
    front: Front
    history: pd.DataFrame

    @classmethod
    def of(cls, study: Study, objectives: Sequence[str] | str | None = None) -> "ParetoReport":
        objectives = parse_objectives(objectives) if objectives is not None else study.objectives
        f = front(study, objectives)
        return cls(study, f, hypervolume_history(study, objectives, reference=f.reference))

    @cached_property
    def noise(self) -> Noise | None:
        """The validation set's noise on the front's accuracies (None where the study does not say)."""
        return front_noise(self.front, self.study.proxy)

    def noise_lines(self) -> list[str]:
        """How many validation images the accuracies rest on, and the front members within noise."""
        return self.noise.lines() if self.noise is not None else []

    def table(self):
        """A rich table of the front: trial, name, accuracy, GFLOPs, M params (+ other objectives); the
        knee starred, accuracies within noise of a neighbour marked."""
        from rich.table import Table

        f = self.front
        close = self.noise.marked if self.noise is not None else set()
        cols = ["accuracy", "flops", "params", *(o for o in f.objectives if o not in ("accuracy", "flops", "params"))]
        t = Table(title=f"Pareto front: {len(f.members)} of {f.candidates} completed trials", title_justify="left")
        t.add_column("trial", justify="right")
        t.add_column("name", overflow="fold")
        for c in cols:
            t.add_column(_short(c), justify="right")
        t.add_column("choices", overflow="fold")
        for _, r in f.members.iterrows():
            star = " *" if r["number"] == f.knee else ""
            cells = [_cell(r[c], c) + (f" {CLOSE_MARK}" if c == "accuracy" and r["number"] in close else "")
                     for c in cols]
            t.add_row(f"{int(r['number'])}{star}", str(r["name"]), *cells, str(r.get("choices") or ""))
        captions = [f"* knee (trial {f.knee})" if f.knee is not None else
                    f"no knee: a front of {len(f.members)} is too few ({KNEE_POINTS} needed)" if len(f.members) else ""]
        captions += [f"{CLOSE_MARK} within noise of a neighbour"] if close else []
        t.caption = "; ".join(c for c in captions if c) or None
        return t

    def lines(self) -> list[str]:
        """Summary lines: trials, objectives, reference point, hypervolume and its history."""
        f, s = self.front, self.study
        objs = ", ".join(f"{o} ({OBJECTIVES[o].sense})" for o in f.objectives)
        ref = ", ".join(f"{o} {_cell(f.reference[o], o)} {unit(o)}".rstrip() for o in f.objectives)
        out = [s.summary(), f"objectives: {objs}; reference point: {ref}"]
        out += f.notes
        out.append(f"hypervolume: {f.hypervolume:.6g} ({f.hv_unit})")
        out += self.noise_lines()
        out += self.baseline_lines()
        steps = self.history[self.history["hypervolume"].diff().fillna(self.history["hypervolume"]) > 0]
        if len(steps):
            shown = steps.tail(HISTORY_SHOWN)
            more = f"{len(steps) - len(shown)} earlier, then " if len(steps) > len(shown) else ""
            out.append("hypervolume history (trial: value where it grew): " + more
                       + ", ".join(f"{int(n)}: {v:.4g}" for n, v in zip(shown["number"], shown["hypervolume"])))
        return out

    def baseline_lines(self) -> list[str]:
        """One line per completed baseline: measured under the same proxy, kept off the front."""
        b = self.study.baselines
        if b.empty:
            return []
        return ["baselines (same proxy, not on the front or in the hypervolume):"] + [
            f"  baseline {int(r['number'])} {r['name']}: accuracy {_cell(r['accuracy'], 'accuracy')} %, "
            f"{_cell(r['flops'], 'flops')} GFLOPs, {_cell(r['params'], 'params')} M params" for _, r in b.iterrows()]

    def html(self, *, paper: bool = False, include_plotlyjs: bool | str = True) -> str:
        """One page: the front and the hypervolume history. ``include_plotlyjs`` as Plotly's
        ``to_html`` takes it (True: inside the page), or ``"beside"``: the page loads
        ``plotly.min.js`` from its own folder, ``"parent"``: from the folder above (a study folder's
        page, one copy for every study of ``--out``); both fall back to the CDN, and say so where
        neither loads (:func:`write_plotlyjs` writes the file)."""
        figs = [pareto_figure(self.study, self.front.objectives, paper=paper),
                hypervolume_figure(self.study, self.front.objectives, history=self.history)]
        local = {"beside": PLOTLY_JS, "parent": f"../{PLOTLY_JS}"}.get(include_plotlyjs) if isinstance(
            include_plotlyjs, str) else None
        inline = include_plotlyjs if local is None else False
        body = "\n".join(fig.to_html(full_html=False, include_plotlyjs=inline if i == 0 else False)
                         for i, fig in enumerate(figs))
        head = ""
        if local is not None:
            from plotly.offline import get_plotlyjs_version

            cdn = f"https://cdn.plot.ly/plotly-{get_plotlyjs_version()}.min.js"
            head = (f'<script charset="utf-8" src="{local}"></script>\n'
                    f'<script>if (!window.Plotly) document.write(\'<script charset="utf-8" src="{cdn}"><\\/script>\');</script>\n')
        if local is not None or include_plotlyjs == "cdn":
            body = _OFFLINE.format(folder=escape(str(self.study.path)), name=escape(self.study.name)) + body
        return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{escape(self.study.name)}: Pareto front</title>"
                f"\n{head}</head><body>\n{body}\n</body></html>\n")


PLOTLY_JS = "plotly.min.js"


def write_plotlyjs(folder: Path) -> None:
    """plotly.js (about 4.8 MB) written once into ``folder`` for the pages that load it from there;
    rewritten only when another Plotly version is installed."""
    from plotly.offline import get_plotlyjs

    path, text = folder / PLOTLY_JS, get_plotlyjs()
    if not path.is_file() or path.stat().st_size != len(text.encode()):
        try:
            write_text(path, text)
        except (OSError, RKSearchError):  # a folder not ours to write: the page falls back to the CDN
            pass


_OFFLINE = """<p id="rksearch-offline" style="display:none">The plots need plotly.js: neither the copy beside this
study's folder nor its CDN could be loaded. <code>rksearch pareto {folder} --html {name}.html</code> writes the
page with plotly.js beside it.</p>
<script>window.addEventListener("load", function () {{
  if (!window.Plotly) document.getElementById("rksearch-offline").style.display = "block";
}});</script>
"""


def _short(col: str) -> str:
    return "accuracy %" if col == "accuracy" else unit(col) or col


def _cell(v: float, col: str) -> str:
    if pd.isna(v):
        return "-"
    return f"{v * axis(col)[0]:.4g}"


def trials_csv(study: Study) -> str:
    """The trials table as CSV, without the multi-line spec text (the database keeps it). Counts
    stay integers where some trials lack them (pandas would write 60851136.0)."""
    frame = study.trials.drop(columns=["spec"], errors="ignore")
    for c in filter(_counts, frame.columns):
        frame[c] = whole_numbers(frame[c])
    return frame.to_csv(index=False)


def _counts(column: str) -> bool:
    """Columns of whole numbers: FLOPs, params, epochs and the per-period choices."""
    return column in ("flops", "params", "trained_flops", "trained_params", "epochs", "periods") or \
        re.fullmatch(r"p\d+_(stages|steps|growth_rate|m)", column) is not None


def write_report(study_dir: str | Path, *, paper: bool = False, storage: str | None = None) -> ParetoReport:
    """Write ``trials.csv`` and ``pareto.html`` into a study folder (what ``rksearch run`` calls last),
    reading the study from ``storage`` where it lives elsewhere.

    The page loads plotly.js from the folder above the study's, written there once for every
    study of that folder (a study folder stays small enough to commit: tens of KB, not 5 MB), and
    from the CDN where that copy is missing.
    """
    study = load_study(study_dir, storage=storage)
    report = ParetoReport.of(study)
    write_text(study.path / "trials.csv", trials_csv(study))
    write_text(study.path / "pareto.html", report.html(paper=paper, include_plotlyjs="parent"))
    write_plotlyjs(study.path.resolve().parent)
    return report
