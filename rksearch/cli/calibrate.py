"""``rksearch calibrate``: rank fidelity of proxy budgets and zero-cost scores on a space."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from rksearch.cli._app import DATA_ROOT_HELP, DATASET_HELP, SET_HELP, app, load_space_with, out


def _num(v: Optional[float], fmt: str = ".2f") -> str:
    return "-" if v is None or math.isnan(v) else format(v, fmt)


def _tables(result) -> tuple[Table, Table]:
    budgets = Table(title=f"{result.space}: {len(result.specs)} specs x {len(result.seeds)} seeds, "
                          f"against {result.reference} epochs")
    for col in ("budget", "s / run", "total s", "tau", "rho", f"top-{result.top_k}", "noise tau", "nested tau",
                "nested s / run"):
        budgets.add_column(col, justify="left" if col == "budget" else "right")
    for b in result.budgets:
        mark = " [bold green]<-[/]" if b.budget == result.recommended else ""
        budgets.add_row(b.budget + mark, _num(b.seconds_per_run, ".1f"), _num(b.seconds, ".0f"), _num(b.tau),
                        _num(b.rho), _num(b.top_k), _num(b.noise_tau), _num(b.nested_tau),
                        _num(b.nested_seconds_per_run, ".1f"))
    scores = Table(title=f"zero-cost scores against {result.reference} epochs (flops, params: baselines)")
    for col in ("score", "tau", "rho", "s / spec"):
        scores.add_column(col, justify="left" if col == "score" else "right")
    for s in result.scores:
        scores.add_row(s.score, _num(s.tau), _num(s.rho), _num(s.seconds_per_spec, ".3f"))
    return budgets, scores


@app.command()
def calibrate(
    space_file: Path = typer.Argument(..., help="A search-space YAML file."),
    sample: int = typer.Option(20, "--sample", help="Distinct feasible specs to train (at least 4)."),
    budgets: str = typer.Option("1,2,4,8,16", "--budgets", help="Epochs, or epochs x data fraction (4x0.5), comma-separated."),
    seeds: int = typer.Option(2, "--seeds", help="Runs per spec and budget (proxy.seed, +1, ...): the noise floor."),
    threshold: float = typer.Option(0.6, "--threshold", help="The Kendall tau a budget must reach to be recommended."),
    top_k: Optional[int] = typer.Option(None, "--top-k", help="k of the top-k overlap (default: a quarter of --sample, at least 2)."),
    scores: str = typer.Option("synflow,naswot,grad_norm,snip,flops,params", "--scores", help="Zero-cost scores to compare."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seeds the sample of specs (default: search.seed)."),
    write_space: Optional[Path] = typer.Option(None, "--write-space", help="Write a copy of the space with the recommended budget."),
    out_dir: Path = typer.Option(Path("studies"), "--out", help="Folder that holds <name>-calibrate/."),
    fresh: bool = typer.Option(False, "--fresh", help="Move an existing calibration aside and start over."),
    address: Optional[str] = typer.Option(None, "--address", help="Join an existing Ray cluster."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object."),
    sets: Optional[list[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help=SET_HELP),
    data_root: Optional[Path] = typer.Option(None, "--data-root", metavar="PATH", help=DATA_ROOT_HELP),
    dataset: Optional[str] = typer.Option(None, "--dataset", metavar="NAME", help=DATASET_HELP),
) -> None:
    """Train sampled specs at several proxy budgets and measure how well each ranks them."""
    from rksearch.search.calibrate import calibrate as run_calibration
    from rksearch.search.calibrate_plan import CalibrationFailed

    space = load_space_with(space_file, sets, data_root, dataset)
    started = time.perf_counter()
    with out.status(f"[bold]{space.name}[/]: calibrating ...") as status:

        def update(p) -> None:
            status.update(f"[bold]{space.name}[/] {time.perf_counter() - started:5.0f}s  runs done {p.done}/{p.total}"
                          f"  failed {p.failed}")

        result = run_calibration(
            space, sample=sample, budgets=budgets, seeds=seeds, threshold=threshold, top_k=top_k,
            scores=[s.strip() for s in scores.split(",") if s.strip()], seed=seed, out=out_dir, fresh=fresh,
            address=address, write_space=write_space, on_update=None if as_json else update,
        )
    if as_json:
        print(json.dumps(result.to_dict(), allow_nan=False))
    else:
        for table in _tables(result):
            out.print(table)
        for w in result.warnings:
            out.print(f"[yellow]warning:[/] {escape(w)}")
        if result.dropped:
            out.print(f"left out (a run failed): {', '.join(result.dropped)}")
        if result.reused:
            out.print(f"reused {result.reused} of {result.runs} runs finished by an earlier calibration in "
                      f"{result.study_dir}/ (--fresh trains them all again)", markup=False, highlight=False)
        if result.recommended:
            out.print(f"recommended proxy budget: [bold]{result.recommended}[/] epochs (the cheapest with tau >= "
                      f"{result.threshold:g})")
        out.print(f"outputs in {result.study_dir}/: optuna.db, calibration.html, calibration.json"
                  + (f"; calibrated space: {result.wrote}" if result.wrote else ""), markup=False, highlight=False)
    if write_space is not None and result.wrote is None:
        raise CalibrationFailed(f"no budget reaches tau {threshold:g}, so no space was written", source=space_file,
                                field="--write-space")
