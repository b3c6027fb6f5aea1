"""``rksearch describe``."""
from __future__ import annotations

import json
from typing import Optional

import typer

from rksearch.core.errors import RKSearchError
from rksearch.cli._app import app, as_option, ints, out

OPTIONS = {"growth_rate": "--growth-rate", "m": "--m", "stem": "--stem", "input_size": "--input-size",
           "num_classes": "--num-classes", "multiscale": "--no-multiscale"}


@app.command()
def describe(
    name_or_spec: str = typer.Argument(..., help="A name such as IRKNet-3x1_3x1_3x1 or densenet-bc-100, or a spec YAML/JSON file."),
    growth_rate: Optional[str] = typer.Option(None, "--growth-rate", "-k", help="k, or one k per period (comma-separated)."),
    m: Optional[str] = typer.Option(None, "--m", help="m for ERK periods: one value or one per period (2,4,8,16); RKNets only."),
    stem: Optional[str] = typer.Option(None, "--stem", help="cifar or imagenet."),
    input_size: Optional[int] = typer.Option(None, "--input-size", help="Input image side in pixels (default 32; 224 with --stem imagenet)."),
    num_classes: Optional[int] = typer.Option(None, "--num-classes", help="Classes of the classifier (default 10)."),
    no_multiscale: bool = typer.Option(False, "--no-multiscale", help="Pool only the last period's output (RKNets only)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Name, parameters, FLOPs and per-period layout of an RKNet (or the size of a DenseNet/CliqueNet baseline)."""
    from rksearch.models.describe import describe as describe_spec
    from rksearch.models.describe import render
    from rksearch.arch.resolve import resolve_network

    fields = {
        "growth_rate": ints(growth_rate, "--growth-rate"),
        "m": ints(m, "--m"),
        "stem": stem,
        "input_size": input_size,
        "num_classes": num_classes,
        "multiscale": False if no_multiscale else None,
    }
    if stem is not None and input_size is None and stem == "imagenet" and not name_or_spec.endswith((".yaml", ".yml", ".json")):
        fields["input_size"] = 224
    try:
        spec = resolve_network(name_or_spec, **fields)
    except RKSearchError as e:
        raise as_option(e, OPTIONS) from None
    info = describe_spec(spec)
    if as_json:
        print(json.dumps(info))
    else:
        out.print(render(info))
