"""``rksearch space``: check a search space before spending GPU hours on it."""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Optional

import typer

from rksearch.cli._app import DATA_ROOT_HELP, DATASET_HELP, SET_HELP, app, load_space_with, out


def _per_period(values: list[Any]) -> str:
    return str(values[0]) if len(set(values)) == 1 else "/".join(str(v) for v in values)


def _summary(path: Path, n: int, seed: int, sets: Optional[list[str]] = None, data_root: Optional[Path] = None,
             dataset: Optional[str] = None) -> dict[str, Any]:
    from rksearch.models.registry import count

    space = load_space_with(path, sets, data_root, dataset)
    rng = random.Random(seed)
    fe = space.feasibility(rng)
    samples = []
    for _ in range(n):
        spec = space.sample(rng)
        c = count(spec)
        samples.append({
            "name": spec.name, "flops": c.flops, "params": c.params, "feasible": space.feasible(spec),
            "growth_rate": _per_period([p.growth_rate for p in spec.periods]),
            "m": _per_period([p.m if p.method == "erk" else "-" for p in spec.periods]),
            "spec": spec.to_dict(),
        })
    size = space.size()
    return {
        "name": space.name,
        "source": str(path),
        "size": size,
        "feasible": {
            "count": fe.feasible if fe.exact else round(fe.fraction * size),
            "fraction": fe.fraction, "margin": fe.margin, "exact": fe.exact, "checked": fe.checked,
        },
        "constraints": space.constraints.model_dump(),
        "objectives": dict(zip(space.objectives, space.directions)),
        "sampler": space.search.sampler,
        "trials": space.search.trials,
        "parameters": {name: d.to_json() for name, d in space.parameters().items()},
        "samples": samples,
        "baselines": [_baseline(b.label, b.spec) for b in space.baselines],
    }


def _baseline(label: str, spec) -> dict[str, Any]:
    from rksearch.models.registry import count

    c = count(spec)
    return {"label": label, "name": spec.name, "flops": c.flops, "params": c.params, "spec": spec.to_dict()}


def _render(info: dict[str, Any]):
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    fe = info["feasible"]
    units = {"max_flops": (1e9, "GFLOPs"), "max_params": (1e6, "M params"),
             "max_latency_ms": (1.0, "ms latency (measured in a search, not in this share)")}
    limits = [f"<= {v / units[k][0]:g} {units[k][1]}" for k, v in info["constraints"].items() if v is not None]
    if not limits:
        share = "no constraints: every spec is feasible"
    elif fe["exact"]:
        share = f"{fe['count']:,} meet the constraints ({fe['fraction']:.1%}, exact)"
    else:
        share = (f"about {fe['fraction']:.1%} (+/- {fe['margin']:.1%}) meet the constraints "
                 f"(estimated from {fe['checked']:,} uniform samples)")
    objectives = ", ".join(f"{o} ({d[:3]})" for o, d in info["objectives"].items())
    head = Text.assemble(
        (info["name"], "bold"), f"  {info['source']}\n",
        f"{info['size']:,} distinct specs; {share}\n",
        f"constraints: {'; '.join(limits) or 'none'}   objectives: {objectives}   "
        f"sampler: {info['sampler']}, {info['trials']} trials",
    )
    params = Table("parameter", "values", box=None, title="search parameters", title_justify="left")
    for name, values in info["parameters"].items():
        if isinstance(values, dict):
            shown = f"{values['min']}..{values['max']}" + (f" step {values['step']}" if values["step"] != 1 else "")
        else:
            shown = ", ".join(map(str, values))
        params.add_row(name, shown)
    samples = Table("name", "k", "m", "GFLOPs", "M params", "feasible", box=None, title="uniform samples", title_justify="left")
    for s in info["samples"]:
        samples.add_row(s["name"], s["growth_rate"], s["m"], f"{s['flops'] / 1e9:.3f}", f"{s['params'] / 1e6:.3f}",
                        "yes" if s["feasible"] else "[red]no[/]")
    baselines = Table("baseline", "name", "GFLOPs", "M params", box=None, title_justify="left",
                      title="baselines (trained once per study under the same proxy, apart from the search)")
    for b in info["baselines"]:
        baselines.add_row(b["label"], b["name"], f"{b['flops'] / 1e9:.3f}", f"{b['params'] / 1e6:.3f}")
    return Group(head, params, *([samples] if info["samples"] else []), *([baselines] if info["baselines"] else []))


@app.command()
def space(
    path: Path = typer.Argument(..., help="A search-space YAML file (see search_spaces/)."),
    sample: int = typer.Option(5, "--sample", "-n", min=0, help="How many uniformly sampled specs to show."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sampling (the shown specs and the estimate)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    with_estimate: bool = typer.Option(False, "--estimate", help="Also time a few training steps of a small, median and large spec: how long the search would take here."),
    sets: Optional[list[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help=SET_HELP),
    data_root: Optional[Path] = typer.Option(None, "--data-root", metavar="PATH", help=DATA_ROOT_HELP),
    dataset: Optional[str] = typer.Option(None, "--dataset", metavar="NAME", help=DATASET_HELP),
) -> None:
    """Size of a search space, the share that meets its constraints, and sampled specs."""
    info = _summary(path, sample, seed, sets, data_root, dataset)
    if with_estimate:
        from rksearch.search.estimate import estimate

        info["estimate"] = estimate(load_space_with(path, sets, data_root, dataset)).line()
    if as_json:
        print(json.dumps(info))
    else:
        out.print(_render(info))
        if with_estimate:
            out.print(info["estimate"], markup=False, highlight=False, soft_wrap=True)
