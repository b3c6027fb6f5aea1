"""The RKNet spec: an immutable, validated description of one network.

A spec is what a search proposes, what ``rksearch export`` writes and what ``rksearch train``
reads. Its name (``ERKNet-6x1_6x1_6x1``, :mod:`rksearch.arch.names`) carries the method, stages and
time-steps of each period plus the attention and bottleneck flags; everything else travels beside it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rksearch.core.errors import RKSearchError, from_validation_error
from rksearch.core.yamlio import parse_json, parse_yaml

FORMAT_VERSION = 1
PERIOD_FIELDS = ("method", "stages", "steps", "growth_rate", "m")  # what each period chooses
GLOBAL_FIELDS = ("bottleneck", "attention", "multiscale", "dropout")  # what the whole net chooses

StrictPosInt = Annotated[int, Field(strict=True, ge=1)]
Method = Literal["erk", "irk"]
Stem = Literal["cifar", "imagenet"]


def feature_sizes(stem: str, input_size: int, periods: int) -> list[int]:
    """Feature-map side length in each of ``periods`` periods (or baseline blocks)."""
    n = input_size
    if stem == "imagenet":  # 7x7/2 conv (pad 3), then 3x3/2 max-pool (pad 1)
        n = (n - 1) // 2 + 1
        n = (n - 1) // 2 + 1
    sizes = [n]
    for _ in range(periods - 1):
        n //= 2  # 2x2 average pooling in each transition
        sizes.append(n)
    return sizes


class FrozenModel(BaseModel):
    """A spec's base: immutable, unknown keys refused, read from a mapping with one-line errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @classmethod
    def validated(cls, data: Any, *, source: str | Path | None, expected: str) -> Any:
        """``data`` as a ``cls``; not a mapping, or an invalid field, is a user error."""
        if not isinstance(data, dict):
            raise RKSearchError(f"expected {expected}; got {type(data).__name__}", source=source)
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise from_validation_error(e, source=source) from None


class PeriodSpec(FrozenModel):
    """One period: r time-steps of an s-stage RK method with growth rate k.

    ERK periods carry ``m`` successive growths per stage (y has m*k channels); IRK periods have
    y of k channels, so ``m`` must stay 1.
    """

    method: Method
    stages: StrictPosInt
    steps: StrictPosInt = 1
    growth_rate: StrictPosInt
    m: StrictPosInt = 1

    @model_validator(mode="after")
    def _irk_rules(self) -> "PeriodSpec":
        if self.method == "irk":
            if self.stages < 2:
                raise ValueError("stages: an IRK period needs stages >= 2 (Stage-II updates each stage from the others)")
            if self.m != 1:
                raise ValueError("m: must be 1 for an IRK period (y has k channels, Rule 1 of 3.3.2)")
        return self

    @property
    def width(self) -> int:
        """Channels of y in this period (Rule 1 of 3.3.1 and 3.3.2)."""
        return self.m * self.growth_rate if self.method == "erk" else self.growth_rate

    @property
    def term(self) -> str:
        return f"{self.stages}x{self.steps}"


class RKNetSpec(FrozenModel):
    """A whole RKNet: preprocessor (stem), periods separated by transitions, postprocessor."""

    rknet: Literal[1] = FORMAT_VERSION
    stem: Stem = "cifar"
    in_channels: StrictPosInt = 3
    num_classes: StrictPosInt = 10
    input_size: StrictPosInt = 32
    bottleneck: Annotated[bool, Field(strict=True)] = False
    attention: Annotated[bool, Field(strict=True)] = False
    multiscale: Annotated[bool, Field(strict=True)] = True
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    periods: tuple[PeriodSpec, ...] = Field(min_length=1)

    @field_validator("dropout", mode="before")
    @classmethod
    def _dropout_is_number(cls, v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError("must be a number in [0, 1)")
        return v

    @model_validator(mode="after")
    def _input_survives(self) -> "RKNetSpec":
        sizes = self.resolutions()
        if min(sizes) < 1:
            raise ValueError(
                f"input_size: {self.input_size} px shrinks to nothing before period {sizes.index(min(sizes))} "
                f"(resolutions {sizes}); use a larger input_size or fewer periods"
            )
        return self

    def resolutions(self) -> list[int]:
        """Feature-map side length in each period."""
        return feature_sizes(self.stem, self.input_size, len(self.periods))

    @property
    def name(self) -> str:
        methods = {p.method for p in self.periods}
        if len(methods) == 1:
            prefix = "ERKNet" if methods == {"erk"} else "IRKNet"
            body = "_".join(p.term for p in self.periods)
        else:
            prefix = "RKNet"
            body = "_".join(("E" if p.method == "erk" else "I") + p.term for p in self.periods)
        flags = ("A" if self.attention else "") + ("B" if self.bottleneck else "")
        return f"{prefix}-{body}" + (f"-{flags}" if flags else "")

    # -- derived specs ---------------------------------------------------------------------

    def replace(self, **changes: Any) -> "RKNetSpec":
        """A validated copy with top-level fields changed (``periods`` as dicts or specs)."""
        data = self.to_dict()
        data.update(changes)
        return RKNetSpec.from_dict(data)

    def scaled(self, width: float) -> "RKNetSpec":
        """The same architecture with every growth rate multiplied by ``width`` (at least 1)."""
        if width == 1:
            return self
        periods = [p.model_copy(update={"growth_rate": max(1, round(p.growth_rate * width))}) for p in self.periods]
        return self.replace(periods=[p.model_dump() for p in periods])

    # -- serialisation ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        d = self.model_dump()
        d["periods"] = [dict(p) for p in d["periods"]]
        return d

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def to_yaml(self, header: str = "") -> str:
        """YAML in the documented layout: scalars first, one flow mapping per period."""
        d = self.to_dict()
        periods = d.pop("periods")
        lines = [f"# {line}".rstrip() for line in header.splitlines()]
        lines += yaml.safe_dump(d, sort_keys=False, default_flow_style=False).splitlines()
        lines.append("periods:")
        for p in periods:
            lines.append("  - {" + ", ".join(f"{k}: {v}" for k, v in p.items()) + "}")
        return "\n".join(lines) + "\n"

    @classmethod
    def from_dict(cls, data: Any, *, source: str | Path | None = None) -> "RKNetSpec":
        if isinstance(data, dict) and "baseline" in data:
            raise RKSearchError("a baseline spec, not an RKNet spec: read it with rksearch.arch.resolve.load_any_spec "
                                "(create_model and rksearch train take the file as it is)", source=source, field="baseline")
        if isinstance(data, dict) and "rknet" not in data and source is not None:
            raise RKSearchError("not an RKNet spec (no 'rknet: 1' key)", source=source, field="rknet")
        return cls.validated(data, source=source, expected="a mapping with keys rknet, stem, ..., periods")

    @classmethod
    def from_yaml(cls, text: str, *, source: str | Path | None = None) -> "RKNetSpec":
        return cls.from_dict(parse_yaml(text, source), source=source)

    @classmethod
    def from_json(cls, text: str, *, source: str | Path | None = None) -> "RKNetSpec":
        return cls.from_dict(parse_json(text, source), source=source)
