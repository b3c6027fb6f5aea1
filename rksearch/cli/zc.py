"""``rksearch zc``: zero-cost scores of specs sampled from a space, next to their size."""
from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from rksearch.cli._app import DATA_ROOT_HELP, DATASET_HELP, SET_HELP, app, load_space_with, out

_DEFAULT_SCORES = "synflow,naswot,grad_norm,snip,flops,params"


def _finite_or_none(values: dict[str, float]) -> dict[str, float | None]:
    """JSON has no infinities: a singular NASWOT kernel (-inf) becomes null."""
    return {k: v if math.isfinite(v) else None for k, v in values.items()}


def _table(rows: list[dict[str, Any]], names: list[str]) -> Table:
    table = Table(title="zero-cost scores (size columns: full spec; scores: proxy width)")
    cells = [[f"{row['scores'][n]:.4g}" for n in names] for row in rows]
    table.add_column("#", justify="right")
    table.add_column("name", overflow="fold")  # a narrow terminal folds names, never cuts numbers
    for j, name in enumerate(names):
        table.add_column(name, justify="right", no_wrap=True, min_width=max(len(c[j]) for c in cells))
    for i, row in enumerate(rows):
        table.add_row(str(i), row["name"], *cells[i])
    mean = {n: sum(r["seconds"][n] for r in rows) / len(rows) for n in names}
    table.add_row("", "[dim]seconds per spec[/]", *(f"[dim]{mean[n]:.2f}[/]" for n in names))
    return table


@app.command()
def zc(
    space_file: str = typer.Argument(..., help="A search-space YAML file."),
    sample: int = typer.Option(..., "--sample", min=1, help="How many specs to sample from the space."),
    scores: str = typer.Option(_DEFAULT_SCORES, "--scores", help="Comma-separated scores to compute."),
    seed: int = typer.Option(0, "--seed", help="Seeds the sample, the batch and every network's initialisation."),
    batch_size: int = typer.Option(64, "--batch-size", min=2, help="Images in the one batch of proxy data."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    sets: Optional[list[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help=SET_HELP),
    data_root: Optional[Path] = typer.Option(None, "--data-root", metavar="PATH", help=DATA_ROOT_HELP),
    dataset: Optional[str] = typer.Option(None, "--dataset", metavar="NAME", help=DATASET_HELP),
) -> None:
    """Score sampled specs without training: synflow, NASWOT, grad_norm, snip, FLOPs, params."""
    from rksearch.training.trainer import resolve_device
    from rksearch.proxies.zerocost import DATA_FREE, check_names, proxy_batch, score_spec

    names = check_names(n.strip() for n in scores.split(",") if n.strip())
    space = load_space_with(space_file, sets, data_root, dataset)
    rng = random.Random(seed)
    specs = [space.sample(rng) for _ in range(sample)]
    needs_data = any(n not in DATA_FREE for n in names)
    device = resolve_device(space.proxy.device) if needs_data else None
    batches = {}  # one batch per input size: the same images for every spec
    rows = []
    for spec in specs:
        if needs_data and spec.input_size not in batches:
            batches[spec.input_size] = proxy_batch(space.proxy, batch_size, seed, spec.input_size, device)
        result = score_spec(spec, names, batches.get(spec.input_size), seed, width=space.proxy.width)
        rows.append({"name": spec.name, "spec": spec.to_dict(), "scores": result.values, "seconds": result.seconds})
    if as_json:
        for row in rows:
            row["scores"] = _finite_or_none(row["scores"])
        print(json.dumps({"space": space_file, "seed": seed, "batch_size": batch_size,
                          "width": space.proxy.width, "specs": rows}, allow_nan=False))
    else:
        out.print(_table(rows, names))
