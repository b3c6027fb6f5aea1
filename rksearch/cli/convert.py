"""``rksearch convert``: a DenseNet or CliqueNet as the RKNet the paper's rules make of it."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from rksearch.arch.baseline_names import NAMES_HELP
from rksearch.core.errors import RKSearchError
from rksearch.cli._app import app, as_option, ints, out

if TYPE_CHECKING:
    from rich.console import Group


@app.command()
def convert(
    network: str = typer.Argument(..., help=f"A baseline name ({NAMES_HELP}) or a baseline spec YAML/JSON file."),
    k: Optional[int] = typer.Option(None, "--k", "-k", "--growth-rate", help="Growth rate k (filters per layer)."),
    layers: Optional[int] = typer.Option(None, "--T", "-T", help="CliqueNet: T, the layers of all blocks together."),
    blocks: Optional[int] = typer.Option(None, "--blocks", help="CliqueNet: the number of blocks (3)."),
    block_config: Optional[str] = typer.Option(None, "--block-config", help="DenseNet: growths per block (6,12,24,16)."),
    init_channels: Optional[int] = typer.Option(None, "--init-channels", help="Width of the stem's output."),
    compression: Optional[float] = typer.Option(None, "--compression", help="DenseNet transitions / CliqueNet C."),
    bottleneck: Optional[bool] = typer.Option(None, "--bottleneck/--no-bottleneck", help="A 1x1 bottleneck conv before each 3x3 conv (the B of DenseNet-BC, CliqueNet-B)."),
    attention: Optional[bool] = typer.Option(None, "--attention/--no-attention", help="CliqueNet: attentional transition."),
    stem: Optional[str] = typer.Option(None, "--stem", help="cifar or imagenet."),
    input_size: Optional[int] = typer.Option(None, "--input-size", help="Input image side in pixels (default 32; 224 with --stem imagenet)."),
    num_classes: Optional[int] = typer.Option(None, "--num-classes", help="Classes of the classifier (default 10)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the RKNet spec here (YAML, or JSON by suffix)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Convert a DenseNet to an ERKNet or a CliqueNet to an IRKNet (Section 3.3) and show what changed."""
    from rksearch.arch.convert import convert as convert_spec
    from rksearch.arch.resolve import BASELINE, resolve, save_spec
    from rksearch.models.registry import count

    configs = ints(block_config, "--block-config")
    fields: dict[str, Any] = {
        "growth_rate": k, "T": layers, "blocks": blocks, "init_channels": init_channels, "compression": compression,
        "block_config": [configs] if isinstance(configs, int) else configs, "bottleneck": bottleneck,
        "attention": attention, "stem": stem, "input_size": input_size, "num_classes": num_classes,
    }
    given = {f: v for f, v in fields.items() if v is not None}
    try:
        conversion = convert_spec(resolve(network, kinds=(BASELINE,), **given))  # a baseline name or file
    except RKSearchError as e:  # a field the user gave is named as its option; one the name implies is not
        raise as_option(e, {f: o for f, o in OPTIONS.items() if f in given}) from None
    info = conversion.to_dict(count)
    if output is not None:
        header = f"{conversion.target.name}: converted from {conversion.source.name} by rksearch convert"
        try:
            save_spec(conversion.target, output, header=header)
        except OSError as e:
            raise RKSearchError(e.strerror or str(e), source=output) from None
        info["output"] = str(output)
    if as_json:
        print(json.dumps(info))
    else:
        out.print(_render(info))


OPTIONS = {"growth_rate": "-k", "T": "--T", "blocks": "--blocks", "init_channels": "--init-channels",
           "compression": "--compression", "block_config": "--block-config", "bottleneck": "--bottleneck",
           "attention": "--attention", "stem": "--stem", "input_size": "--input-size", "num_classes": "--num-classes"}


def _size(d: dict[str, Any]) -> str:
    return f"{d['params'] / 1e6:.3f} M params, {d['flops'] / 1e9:.3f} GFLOPs"


def _render(info: dict[str, Any]) -> "Group":
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    src, dst = info["source"], info["target"]
    spec = dst["spec"]
    ms = ",".join(str(p["m"]) for p in spec["periods"])
    ratio = f"params x{dst['params'] / src['params']:.2f}, FLOPs x{dst['flops'] / src['flops']:.2f}"
    head = Text.assemble(
        (src["name"], "bold"), f"  {_size(src)}\n-> ", (dst["name"], "bold"), f"  {_size(dst)}  ({ratio})\n   ",
        f"k = {spec['periods'][0]['growth_rate']}, m = {ms}, {spec['stem']} stem, {spec['input_size']} px, "
        f"{'multiscale' if spec['multiscale'] else 'single-scale'}",
    )
    t = Table(box=None)
    for col in ("block", "in", "layers", "out (concat)", "->", "period", "s", "r", "m", "width (sum)"):
        t.add_column(col, justify="center" if col == "->" else "right")
    for b in info["blocks"]:
        p = b["period"]
        t.add_row(str(b["block"]), str(b["in_width"]), str(b["layers"]), str(b["out_width"]), "->",
                  p["method"].upper(), str(p["stages"]), str(p["steps"]), str(p["m"]), str(b["period_width"]))
    changes = Text("What the rules changed:\n" + "\n".join(f"  - {c}" for c in info["changes"]))
    parts = [head, t, changes]
    if "output" in info:
        parts.append(Text(f"wrote {info['output']}"))
    return Group(*parts)
