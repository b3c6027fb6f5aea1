"""``rksearch run``: the main job."""
from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional

import typer

from rksearch.cli._app import DATA_ROOT_HELP, DATASET_HELP, SET_HELP, app, load_space_with, out

PLAIN_EVERY = 60.0  # seconds between status lines when stdout is not a terminal (a log file)


@app.command()
def run(
    space_file: Path = typer.Argument(..., help="A search-space YAML file (see search_spaces/)."),
    trials: Optional[int] = typer.Option(None, "--trials", "-n", min=1, help="Searched trials to have done (trained or pruned; baselines come on top); default: the space's search.trials."),
    fresh: bool = typer.Option(False, "--fresh", help="Move the existing study aside and start over."),
    address: Optional[str] = typer.Option(None, "--address", help="Join an existing Ray cluster (e.g. 127.0.0.1:6379 or auto)."),
    storage: Optional[str] = typer.Option(None, "--storage", help="Optuna storage URL (default: $RKSEARCH_STORAGE, else the space's storage:, else sqlite in <out>/<name>/optuna.db); recorded in the study folder, a password masked: put one in RKSEARCH_STORAGE, not here."),
    out_dir: Path = typer.Option(Path("studies"), "--out", help="Folder that holds the study folders."),
    max_failures: Optional[int] = typer.Option(None, "--max-failures", min=0, help="End the search once more trials than this have failed."),
    sets: Optional[list[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help=SET_HELP),
    data_root: Optional[Path] = typer.Option(None, "--data-root", metavar="PATH", help=DATA_ROOT_HELP),
    dataset: Optional[str] = typer.Option(None, "--dataset", metavar="NAME", help=DATASET_HELP),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print how long the search would take on this machine (a few real training steps of a small, median and large spec) and stop; writes nothing."),
    latency_table: Optional[Path] = typer.Option(None, "--latency-table", help="A per-device latency table (rksearch latency SPACE.yaml --all writes one): its device key is the target of the space's latency objective and max_latency_ms (default: this machine's table, in ~/.cache/rksearch/latency)."),
    replay: Optional[Path] = typer.Option(None, "--replay", help="Replay a tabulated benchmark (a CSV such as benchmarks/rkbench/table.csv) instead of training: each trial reads its learning curve and cost from the table."),
) -> None:
    """Search the space: Ray Tune trains proxies of the candidates Optuna proposes."""
    from rksearch.search.driver import run_search
    from rksearch.core.secrets import has_masked_password
    from rksearch.storage.folder import STORAGE_ENV, default_storage
    from rksearch.storage.urls import shown_url

    space = load_space_with(space_file, sets, data_root, dataset)
    if dry_run:
        from rksearch.search.estimate import estimate

        with out.status(f"[bold]{space.name}[/]: timing a few training steps ..."):
            line = estimate(space, trials=trials).line()
        out.print(f"{space.name}: {line}", markup=False, highlight=False, soft_wrap=True)
        return
    started = time.perf_counter()
    with _display(space.name, started) as (update, notify):
        if replay is None:
            from rksearch.data import describe_data

            notify(describe_data(space.proxy.dataset, space.proxy.root))  # which copy, or where it will download
        result = run_search(space, trials=trials, fresh=fresh, address=address, storage=storage, out=out_dir,
                            max_failures=max_failures, on_update=update, replay=replay, notify=notify,
                            latency_table=latency_table)
    t = result.tally
    if result.set_aside is not None:
        out.print(f"the old study is now {result.set_aside} (rksearch pareto {result.set_aside})", markup=False,
                  highlight=False, soft_wrap=True)
    baselines = f" and {t.baselines} baselines" if t.baselines else ""
    out.print(
        f"[bold]{result.study_name}[/]: {result.done} trials done; this run trained {t.trained}{baselines}, "
        f"pruned {t.pruned}, failed {t.failed}, skipped {t.skipped} (rejected or duplicate) in {result.wall_seconds:.0f} s"
        + (f", replayed from {replay.name}: {t.train_seconds:.0f} s of the table's training cost" if replay else "")
    )
    if replay is None and result.breakdown is not None:  # where the time went (rksearch.search.overhead)
        out.print(result.breakdown.line(), markup=False, highlight=False, soft_wrap=True)
    for reason in t.reasons[-5:]:
        out.print(f"  failed: {reason}", markup=False, highlight=False, soft_wrap=True)
    out.print(result.report.table())
    for line in result.report.noise_lines() + result.report.baseline_lines():
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    if result.storage == default_storage(result.study_dir):
        out.print(f"outputs in {result.study_dir}/: optuna.db, trials.csv, pareto.html", markup=False, highlight=False)
    else:
        out.print(f"outputs in {result.study_dir}/: trials.csv, pareto.html; the study is in {shown_url(result.storage)}",
                  markup=False, highlight=False, soft_wrap=True)
    d = result.study_dir
    env = f" (with {STORAGE_ENV} set: the password is not recorded)" if has_masked_password(shown_url(result.storage)) else ""
    out.print(f"next: rksearch pareto {d}  |  rksearch export {d} --pick knee -o best.yaml"
              f"  |  rksearch dashboard {d}{env}", markup=False, highlight=False, soft_wrap=True)


@contextmanager
def _display(name: str, started: float) -> Iterator[tuple[Callable, Callable]]:
    """(on_update, notify) for a search: a live status line in a terminal; plain lines otherwise
    (a log file, a pipe): one per finished trial and a status line at least every minute."""
    from rksearch.search.progress import summarise

    def plain(line: str, markup: bool = False) -> None:
        out.print(line, markup=markup, highlight=False, soft_wrap=True)
        sys.stdout.flush()

    if not out.is_terminal:
        seen = {"finished": 0, "at": time.perf_counter()}

        def lines(searcher) -> None:
            t, now = searcher.tally, time.perf_counter()
            finished = t.trained + t.pruned + t.failed + t.baselines
            if finished != seen["finished"] or now - seen["at"] >= PLAIN_EVERY:
                seen.update(finished=finished, at=now)
                plain(summarise(searcher, now - started), markup=True)

        plain(f"{name}: starting Ray ...")
        yield lines, plain
        return
    from rich.live import Live

    with Live(console=out, refresh_per_second=2, transient=True) as live:
        live.update(f"[bold]{name}[/]: starting Ray ...")
        yield (lambda searcher: live.update(summarise(searcher, time.perf_counter() - started))), \
            (lambda line: live.console.print(line, markup=False, highlight=False, soft_wrap=True))
