"""Baseline specs: DenseNet and CliqueNet, the networks the paper reads as RK methods.

A baseline spec is a YAML/JSON mapping with a ``baseline`` key (``densenet`` or ``cliquenet``)
beside the RKNet spec's ``rknet: 1``; :func:`rksearch.arch.resolve.load_any_spec` reads either.
Baselines are counted by measuring the built model with PyTorch's FLOP counter (the convention of
``count``), since no search calls it thousands of times.

Names (case-insensitive): torchvision's ``densenet121/161/169/201`` (ImageNet), the CIFAR
grammar ``densenet[-b|-c|-bc]-L[-kK]`` of Huang et al. (three blocks; DenseNet-BC-100 has
k = 12 and 16 bottleneck layers per block) and ``cliquenet-tT-kK[-abc]`` of Yang et al. (T layers
over three blocks; A/B/C = attentional transition, bottleneck, compression); ``cliquenet`` alone
is CliqueNet-T12-k36.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import Field, model_validator

from rksearch.arch.baseline_names import NAMES_HELP
from rksearch.arch.rknet import FrozenModel, Stem, StrictPosInt, feature_sizes
from rksearch.core.errors import RKSearchError
from rksearch.core.yamlio import parse_yaml

StrictBool = Annotated[bool, Field(strict=True)]
Fraction = Annotated[float, Field(strict=True, gt=0.0, le=1.0)]


class BaselineSpec(FrozenModel):
    """Fields every baseline shares; ``from_dict`` picks the subclass by the ``baseline`` key."""

    kinds: ClassVar[dict[str, type["BaselineSpec"]]] = {}

    baseline: str
    stem: Stem = "cifar"
    in_channels: StrictPosInt = 3
    num_classes: StrictPosInt = 10
    input_size: StrictPosInt = 32
    dropout: Annotated[float, Field(strict=True, ge=0.0, lt=1.0)] = 0.0
    growth_rate: StrictPosInt
    bottleneck: StrictBool = False
    init_channels: StrictPosInt = 64

    @property
    def num_blocks(self) -> int:
        raise NotImplementedError

    @property
    def name(self) -> str:
        raise NotImplementedError

    def choices(self) -> str:
        """One line of what the name does not say (the trials table's ``choices`` column)."""
        raise NotImplementedError

    def scaled(self, width: float) -> "BaselineSpec":
        """The proxy's narrower copy, as :meth:`RKNetSpec.scaled`: the growth rate and the stem's
        width (every RKNet width derives from its growth rates) times ``width``, at least 1."""
        if width == 1:
            return self
        return self.replace(growth_rate=max(1, round(self.growth_rate * width)),
                            init_channels=max(1, round(self.init_channels * width)))

    def resolutions(self) -> list[int]:
        """Feature-map side length in each block (the RKNet's stem and 2x2 pooling transitions)."""
        return feature_sizes(self.stem, self.input_size, self.num_blocks)

    @model_validator(mode="after")
    def _input_survives(self) -> "BaselineSpec":
        if min(self.resolutions()) < 1:
            raise ValueError(
                f"input_size: {self.input_size} px shrinks to nothing before the last block "
                f"(resolutions {self.resolutions()}); use a larger input_size or fewer blocks"
            )
        return self

    # -- serialisation ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def to_yaml(self, header: str = "") -> str:
        """YAML with one line per field, lists in flow style (``block_config: [6, 12, 24, 16]``)."""
        lines = [f"# {line}".rstrip() for line in header.splitlines()]
        lines += [
            yaml.safe_dump({k: v}, default_flow_style=None if isinstance(v, list) else False).rstrip()
            for k, v in self.to_dict().items()
        ]
        return "\n".join(lines) + "\n"

    def replace(self, **changes: Any) -> "BaselineSpec":
        """A validated copy with fields changed."""
        return type(self).from_dict({**self.to_dict(), **changes})

    @classmethod
    def from_dict(cls, data: Any, *, source: str | Path | None = None) -> "BaselineSpec":
        target = cls
        if cls is BaselineSpec and isinstance(data, dict):
            kind = data.get("baseline")
            if kind not in cls.kinds:
                raise RKSearchError(
                    f"unknown baseline {kind!r}: expected one of {', '.join(cls.kinds)}", source=source, field="baseline"
                )
            target = cls.kinds[kind]
        return target.validated(data, source=source, expected="a mapping with a 'baseline' key")

    @classmethod
    def from_yaml(cls, text: str, *, source: str | Path | None = None) -> "BaselineSpec":
        return cls.from_dict(parse_yaml(text, source), source=source)


class DenseNetSpec(BaselineSpec):
    """DenseNet (Huang et al., 2017): dense blocks of ``block_config`` layers, growth rate k.

    ``bottleneck`` (B) puts a 1x1 conv to ``bn_size``*k before each 3x3 conv; transitions
    compress to floor(``compression`` x width) channels (C when < 1). ``init_channels``, the
    stem's width, defaults to 2k with the bottleneck and 16 without, as in the paper.
    """

    baseline: Literal["densenet"] = "densenet"
    block_config: tuple[StrictPosInt, ...] = Field(min_length=1)
    bottleneck: StrictBool = True
    bn_size: StrictPosInt = 4
    compression: Fraction = 0.5
    init_channels: StrictPosInt = 16

    @model_validator(mode="before")
    @classmethod
    def _default_init_channels(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("init_channels") is None:
            k, bottleneck = data.get("growth_rate"), data.get("bottleneck", True)
            if type(k) is int and k >= 1 and bottleneck is True:  # a bad k is reported once, as growth_rate
                data = {**data, "init_channels": 2 * k}
            else:
                data = {k_: v for k_, v in data.items() if k_ != "init_channels"}
        return data

    @model_validator(mode="after")
    def _widths_survive(self) -> "DenseNetSpec":
        widths = self.block_widths()
        if any(cin < 1 for cin, _ in widths):
            raise ValueError(f"compression: {self.compression} leaves a block without input channels ({widths})")
        return self

    @property
    def num_blocks(self) -> int:
        return len(self.block_config)

    @property
    def depth(self) -> int:
        """L of the literature: stem, every conv in the blocks and transitions, classifier."""
        return sum(self.block_config) * (2 if self.bottleneck else 1) + self.num_blocks + 1

    @property
    def name(self) -> str:
        variant = ("B" if self.bottleneck else "") + ("C" if self.compression < 1 else "")
        return "DenseNet" + (f"-{variant}" if variant else "") + f"-{self.depth}-k{self.growth_rate}"

    def choices(self) -> str:
        return f"k={self.growth_rate} blocks=" + "/".join(map(str, self.block_config))

    def block_widths(self) -> list[tuple[int, int]]:
        """(input, output) channels of each dense block: the output concatenates n growths of k."""
        widths, c = [], self.init_channels
        for n in self.block_config:
            out = c + n * self.growth_rate
            widths.append((c, out))
            c = math.floor(out * self.compression + 1e-9)
        return widths


class CliqueNetSpec(BaselineSpec):
    """CliqueNet (Yang et al., 2018): T layers of k filters over ``blocks`` clique blocks.

    The published CIFAR networks use none of the extra techniques: ``attention`` (A, attentional
    transition), ``bottleneck`` (B, 1x1 connections plus one 3x3 per layer), ``compression`` (C,
    the block features shrink to 0.5x before pooling). ``multiscale`` pools every block feature
    {x0, Stage-II}, not only the last. With the defaults (3x3 stem to 64 channels, transitions
    keeping T/3*k channels) the authors' CIFAR counts come out to their printed digits:
    T=12, k=36: 0.94 M / 0.91 GFLOPs; T=18, k=80: 10.14 M / 9.45 GFLOPs.
    """

    baseline: Literal["cliquenet"] = "cliquenet"
    T: StrictPosInt
    blocks: StrictPosInt = 3
    attention: StrictBool = False
    compression: Fraction = 1.0
    multiscale: StrictBool = True

    @model_validator(mode="after")
    def _layers_split(self) -> "CliqueNetSpec":
        if self.T % self.blocks:
            raise ValueError(f"T: {self.T} layers do not split evenly over {self.blocks} blocks")
        if self.T // self.blocks < 2:
            raise ValueError(
                f"T: {self.T} layers over {self.blocks} blocks leave {self.T // self.blocks} per block; "
                "Stage-II needs at least 2 (each layer is updated from the others)"
            )
        return self

    @property
    def num_blocks(self) -> int:
        return self.blocks

    @property
    def layers_per_block(self) -> int:
        return self.T // self.blocks

    @property
    def name(self) -> str:
        flags = ("A" if self.attention else "") + ("B" if self.bottleneck else "") + ("C" if self.compression < 1 else "")
        extra = f"-{self.blocks}blocks" if self.blocks != 3 else ""
        return f"CliqueNet-T{self.T}-k{self.growth_rate}{extra}" + (f"-{flags}" if flags else "")

    def choices(self) -> str:
        return f"k={self.growth_rate} T={self.T} blocks={self.blocks}"

    def block_inputs(self) -> list[int]:
        """Channels of x0 in each block: the stem's, then the transitions' (T/blocks * k)."""
        return [self.init_channels] + [self.layers_per_block * self.growth_rate] * (self.blocks - 1)

    def pooled(self) -> list[tuple[int, int]]:
        """(block feature, pooled) channels of each block feature the postprocessor pools."""
        feats = [c + self.layers_per_block * self.growth_rate for c in self.block_inputs()]
        feats = feats if self.multiscale else feats[-1:]
        return [(c, math.floor(c * self.compression + 1e-9)) for c in feats]


BaselineSpec.kinds.update(densenet=DenseNetSpec, cliquenet=CliqueNetSpec)



# -- names -------------------------------------------------------------------------------------

_IMAGENET = {"stem": "imagenet", "input_size": 224, "num_classes": 1000}
TORCHVISION = {
    "densenet121": {"growth_rate": 32, "block_config": [6, 12, 24, 16]},
    "densenet161": {"growth_rate": 48, "block_config": [6, 12, 36, 24]},
    "densenet169": {"growth_rate": 32, "block_config": [6, 12, 32, 32]},
    "densenet201": {"growth_rate": 32, "block_config": [6, 12, 48, 32]},
}
_DENSENET = re.compile(r"^densenet(?:-(?P<variant>b|c|bc))?-(?P<depth>\d+)(?:-k(?P<k>\d+))?$")
_CLIQUENET = re.compile(r"^cliquenet(?:-t(?P<T>\d+)-k(?P<k>\d+))?(?:-(?P<flags>[abc]+))?$")


def _densenet_fields(m: re.Match) -> dict[str, Any]:
    variant, depth = m["variant"] or "", int(m["depth"])
    per_layer = 2 if "b" in variant else 1
    n, rest = divmod(depth - 4, 3 * per_layer)
    if rest or n < 1:
        raise RKSearchError(
            f"depth {depth}: a three-block DenseNet{'-' + variant.upper() if variant else ''} has "
            f"L = {3 * per_layer}n + 4 (e.g. {3 * per_layer * 16 + 4})", field="name"
        )
    return {"baseline": "densenet", "growth_rate": int(m["k"] or 12), "block_config": [n] * 3,
            "bottleneck": "b" in variant, "compression": 0.5 if "c" in variant else 1.0}


def _cliquenet_fields(m: re.Match) -> dict[str, Any]:
    flags = m["flags"] or ""
    return {"baseline": "cliquenet", "T": int(m["T"] or 12), "growth_rate": int(m["k"] or 36),
            "attention": "a" in flags, "bottleneck": "b" in flags, "compression": 0.5 if "c" in flags else 1.0}


def baseline_spec(name: str, **fields: Any) -> BaselineSpec:
    """The spec a baseline name stands for, with ``fields`` (``None`` ignored) changed.

    Fields are applied before defaults are derived: ``densenet121`` with ``growth_rate=48`` gets
    a 96-channel stem.
    """
    key = name.strip().lower()
    if key in TORCHVISION:
        data = {"baseline": "densenet", **TORCHVISION[key], **_IMAGENET}
    elif m := _DENSENET.match(key):
        data = _densenet_fields(m)
    elif m := _CLIQUENET.match(key):
        data = _cliquenet_fields(m)
    else:
        raise RKSearchError(f"unknown baseline {name!r}: expected {NAMES_HELP}", field="name")
    return BaselineSpec.from_dict({**data, **{k: v for k, v in fields.items() if v is not None}})
