"""DenseNet -> ERKNet and CliqueNet -> IRKNet by the rules of Section 3.3.

A dense block (r = 1) becomes an ERK period when its input has m*k channels (Rule 1) and its
growths run in s groups of m (Rules 2, 3): s = growths / m. A clique block becomes an IRK period
with s = its number of layers (Rules 1-3 of 3.3.2), y narrowing to k channels. Either way the
block's closing concatenation becomes the summation y + sum_i h b_i z_i, so every period outputs
its input width and the transitions and postprocessor shrink accordingly.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rksearch.arch.baselines import BaselineSpec, CliqueNetSpec, DenseNetSpec
from rksearch.arch.count import Counts
from rksearch.arch.resolve import AnySpec
from rksearch.core.errors import RKSearchError
from rksearch.arch.rknet import PeriodSpec, RKNetSpec

# RKNets' ERK bottleneck is 4k wide (Table 3): the only DenseNet bn_size that converts as is
RK_BN_SIZE = 4


@dataclass(frozen=True)
class BlockMap:
    """One baseline block and the period it becomes."""

    block: int
    in_width: int  # channels entering the block
    layers: int  # growths (DenseNet) or clique layers (CliqueNet)
    out_width: int  # channels the block hands on: its closing concatenation
    period: PeriodSpec

    def to_dict(self) -> dict[str, Any]:
        return {"block": self.block, "in_width": self.in_width, "layers": self.layers, "out_width": self.out_width,
                "period": self.period.model_dump(), "period_width": self.period.width}


@dataclass(frozen=True)
class Conversion:
    source: BaselineSpec
    target: RKNetSpec
    blocks: tuple[BlockMap, ...]
    changes: tuple[str, ...]  # what the rules changed, one sentence each

    def to_dict(self, counts: Callable[[AnySpec], Counts]) -> dict[str, Any]:
        """The conversion as JSON-ready data; ``counts`` is :func:`rksearch.models.count`."""
        before, after = counts(self.source), counts(self.target)
        return {
            "source": {"name": self.source.name, "params": before.params, "flops": before.flops,
                       "spec": self.source.to_dict()},
            "target": {"name": self.target.name, "params": after.params, "flops": after.flops,
                       "spec": self.target.to_dict()},
            "blocks": [b.to_dict() for b in self.blocks],
            "changes": list(self.changes),
        }


def convert(spec: BaselineSpec) -> Conversion:
    """The RKNet the paper's rules make of ``spec``; RKSearchError where they cannot."""
    if isinstance(spec, DenseNetSpec):
        return _from_densenet(spec)
    if isinstance(spec, CliqueNetSpec):
        return _from_cliquenet(spec)
    raise RKSearchError(f"no conversion rules for {type(spec).__name__}", field="baseline")


def _target(spec: BaselineSpec, periods: list[PeriodSpec], **flags: bool) -> RKNetSpec:
    return RKNetSpec.from_dict({
        "stem": spec.stem, "in_channels": spec.in_channels, "num_classes": spec.num_classes,
        "input_size": spec.input_size, "bottleneck": spec.bottleneck, "dropout": spec.dropout,
        "periods": [p.model_dump() for p in periods], **flags,
    })


def _terms(term: str, n: int) -> str:
    """``h b_1 z_1 + ... + h b_n z_n``, written out when short."""
    if n <= 3:
        return " + ".join(term.format(i=i) for i in range(1, n + 1))
    return f"{term.format(i=1)} + ... + {term.format(i=n)}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _transition_changes(blocks: list[BlockMap]) -> list[str]:
    return [
        f"transition {a.block}: {a.out_width} -> {b.in_width} channels becomes {a.period.width} -> {b.period.width}"
        for a, b in zip(blocks, blocks[1:])
    ]


def _from_densenet(spec: DenseNetSpec) -> Conversion:
    k = spec.growth_rate
    if spec.bottleneck and spec.bn_size != RK_BN_SIZE:
        raise RKSearchError(
            f"the RKNet bottleneck is {RK_BN_SIZE}k wide; this DenseNet's is {spec.bn_size}k", field="bn_size"
        )
    blocks = []
    for i, ((cin, cout), n) in enumerate(zip(spec.block_widths(), spec.block_config)):
        if cin % k:
            raise RKSearchError(
                f"block {i}: input width {cin} is not a multiple of k = {k} (Rule 1: y has m*k channels)",
                field="init_channels" if i == 0 else "compression",
            )
        m = cin // k
        if n % m:
            lo, hi = n // m * m, (n // m + 1) * m
            nearest = f"{lo} or {hi}" if lo else f"{hi}"
            raise RKSearchError(
                f"block {i}: {n} growths are not a multiple of m = {m} (input width {cin} = {m} x k; Rules 2-3: "
                f"s stages of m growths each); {nearest} growths would convert",
                field="block_config",
            )
        blocks.append(BlockMap(i, cin, n, cout, PeriodSpec(method="erk", stages=n // m, growth_rate=k, m=m)))
    target = _target(spec, [b.period for b in blocks], attention=False, multiscale=False)
    changes = [
        f"block {b.block}: the concatenation of the input and {b.layers} growths ({b.out_width} channels) becomes "
        f"y + {_terms('h b_{i} z_{i}', b.period.stages)} ({b.period.width} channels), "
        f"{_plural(b.period.stages, 'group')} of m = {b.period.m} growths"
        for b in blocks
    ]
    changes += _transition_changes(blocks)
    changes.append(
        f"postprocessor and classifier: {blocks[-1].out_width} -> {blocks[-1].period.width} input channels"
    )
    return Conversion(spec, target, tuple(blocks), tuple(changes))


def _from_cliquenet(spec: CliqueNetSpec) -> Conversion:
    k, s = spec.growth_rate, spec.layers_per_block
    period = PeriodSpec(method="irk", stages=s, growth_rate=k)
    blocks = [BlockMap(i, cin, s, s * k, period) for i, cin in enumerate(spec.block_inputs())]
    target = _target(spec, [period] * spec.blocks, attention=spec.attention, multiscale=spec.multiscale)
    changes = [] if spec.init_channels == k else [f"stem: {spec.init_channels} -> k = {k} output channels (Rule 1)"]
    changes += [
        f"block {b.block}: the concatenation of the Stage-II features ({b.out_width} channels) becomes "
        f"y + {_terms('v_{i}', s)} ({k} channels)" + (f"; its input narrows from {b.in_width}" if b.in_width != k else "")
        for b in blocks
    ]
    changes += _transition_changes(blocks)
    pooled = spec.pooled()
    compressed = " after compression" if spec.compression < 1 else ""
    changes.append(
        f"postprocessor: it pools each period's output ({k} channels) instead of the block feature "
        f"{{x0, Stage-II}}{compressed} ({', '.join(str(p) for _, p in pooled)} channels)"
    )
    if spec.compression < 1:
        changes.append("compression of the block features (C) is dropped: an RKNet has no block feature to compress")
    return Conversion(spec, target, tuple(blocks), tuple(changes))
