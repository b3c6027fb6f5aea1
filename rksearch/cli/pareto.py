"""``rksearch pareto`` and ``rksearch export``: look at a study's front, take one spec out of it."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from rksearch.cli._app import STORAGE_HELP, STUDY_DIR_HELP, app, out
from rksearch.core.errors import RKSearchError
from rksearch.core.files import unwritable


def _writable(path: Path, flag: str) -> None:
    """Fail before any work when ``path`` cannot be written, so a bad flag writes nothing."""
    why = unwritable(path)
    if why:
        raise RKSearchError(why, source=path, field=flag)


@app.command()
def pareto(
    study_dir: Path = typer.Argument(..., help=STUDY_DIR_HELP),
    objectives: Optional[str] = typer.Option(None, "--objectives", help="Comma-separated, e.g. accuracy,flops (default: the study's)."),
    html: Optional[Path] = typer.Option(None, "--html", help="Also write the Plotly figure and the hypervolume history to this HTML file."),
    paper: bool = typer.Option(False, "--paper", help="Overlay the paper's CIFAR-10 results (Tables 1-2, full training)."),
    storage: Optional[str] = typer.Option(None, "--storage", help=STORAGE_HELP),
) -> None:
    """The Pareto front of a study: table, hypervolume and its history, optionally a Plotly page."""
    from rksearch.core.files import write_text
    from rksearch.analysis.report import ParetoReport, write_plotlyjs
    from rksearch.analysis.study import load_study

    if html is not None:
        _writable(html, "--html")
    report = ParetoReport.of(load_study(study_dir, storage=storage), objectives)
    page = report.html(paper=paper, include_plotlyjs="beside") if html is not None else None  # fails before the table
    for line in report.lines():
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    out.print(report.table())
    if html is not None:
        write_text(html, page)
        write_plotlyjs(html.resolve().parent)  # once beside the page: it opens offline
        out.print(f"wrote {html} (and plotly.min.js beside it)", markup=False, highlight=False, soft_wrap=True)


@app.command()
def export(
    study_dir: Path = typer.Argument(..., help=STUDY_DIR_HELP),
    pick: str = typer.Option("knee", "--pick", help="knee, best-accuracy, min-flops, trial:N or baseline:N."),
    max_flops: Optional[str] = typer.Option(None, "--max-flops", help="Only trials whose full spec has at most this many FLOPs (2e8, 200M, 0.2G)."),
    max_params: Optional[str] = typer.Option(None, "--max-params", help="Only trials whose full spec has at most this many parameters (1.5M)."),
    output: Path = typer.Option(..., "-o", "--output", help="The spec file to write (.yaml or .json)."),
    storage: Optional[str] = typer.Option(None, "--storage", help=STORAGE_HELP),
) -> None:
    """Write the full spec of one trial (not the shrunken proxy) for ``rksearch train``."""
    from rksearch.analysis.export import export as export_spec
    from rksearch.analysis.export import parse_amount

    chosen = export_spec(study_dir, output, pick, max_flops=parse_amount(max_flops, "--max-flops"),
                         max_params=parse_amount(max_params, "--max-params"), storage=storage)
    r = chosen.row
    out.print(f"{chosen.what} ({chosen.spec.name}): {chosen.reason}", markup=False, highlight=False, soft_wrap=True)
    out.print(f"proxy accuracy {r['accuracy']:.4f}, {r['flops'] / 1e9:.4f} GFLOPs, {r['params'] / 1e6:.4f} M params "
              f"-> wrote {output}", markup=False, highlight=False, soft_wrap=True)
