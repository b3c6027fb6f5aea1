"""What a spec is: its name, size and per-period layout, as a dict for JSON or a rich table."""
from __future__ import annotations

from typing import Any

from rksearch.arch.baselines import BaselineSpec
from rksearch.arch.resolve import AnySpec
from rksearch.models.registry import count


def describe(spec: AnySpec) -> dict[str, Any]:
    if isinstance(spec, BaselineSpec):
        return _describe_baseline(spec)
    c = count(spec)
    return {
        "name": spec.name,
        "params": c.params,
        "flops": c.flops,
        "stem": spec.stem,
        "input_size": spec.input_size,
        "num_classes": spec.num_classes,
        "bottleneck": spec.bottleneck,
        "attention": spec.attention,
        "multiscale": spec.multiscale,
        "periods": [vars(p) for p in c.periods],
        "spec": spec.to_dict(),
    }


def _describe_baseline(spec: BaselineSpec) -> dict[str, Any]:
    """A DenseNet or CliqueNet counted by the same counter; its blocks instead of periods."""
    c = count(spec)
    return {
        "name": spec.name, "params": c.params, "flops": c.flops, "baseline": spec.baseline, "stem": spec.stem,
        "input_size": spec.input_size, "num_classes": spec.num_classes, "choices": spec.choices(),
        "blocks": [{"block": i, "resolution": r} for i, r in enumerate(spec.resolutions())], "spec": spec.to_dict(),
    }


def render(info: dict[str, Any]):
    """A rich renderable of :func:`describe`'s output."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    if "baseline" in info:
        sides = ", ".join(f"{b['resolution']}x{b['resolution']}" for b in info["blocks"])
        return Text.assemble(
            (info["name"], "bold"),
            f"  {info['params'] / 1e6:.3f} M params, {info['flops'] / 1e9:.3f} GFLOPs ({info['stem']} stem, "
            f"{info['input_size']} px, {info['num_classes']} classes; {info['choices']}; blocks at {sides})",
        )
    head = Text.assemble(
        (info["name"], "bold"),
        f"  {info['params'] / 1e6:.3f} M params, {info['flops'] / 1e9:.3f} GFLOPs "
        f"({info['stem']} stem, {info['input_size']} px, {info['num_classes']} classes"
        f"{', multiscale' if info['multiscale'] else ''})",
    )
    t = Table(box=None)
    for col in ("period", "method", "s", "r", "k", "m", "width", "resolution", "GFLOPs", "M params"):
        t.add_column(col, justify="left" if col == "method" else "right")
    for i, p in enumerate(info["periods"]):
        t.add_row(
            str(i), p["method"].upper(), str(p["stages"]), str(p["steps"]), str(p["growth_rate"]), str(p["m"]),
            str(p["width"]), f"{p['resolution']}x{p['resolution']}", f"{p['flops'] / 1e9:.3f}", f"{p['params'] / 1e6:.3f}",
        )
    return Group(head, t)
