"""The values one choice of a search space may take: a fixed value, a list, or an integer range.

Every value is checked by the same pydantic models that validate a spec (:class:`PeriodSpec`,
:class:`RKNetSpec`), so a space can only hold values a spec accepts and the messages match.
Ranges stay ``range`` objects: a space's size is computed, never materialised.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rksearch.core.errors import RKSearchError
from rksearch.arch.rknet import PeriodSpec, RKNetSpec

Check = Callable[[Any, str], Any]

_PERIOD_PROBE = {"method": "erk", "stages": 2, "steps": 1, "growth_rate": 1, "m": 1}
_SPEC_PROBE = {"periods": [_PERIOD_PROBE]}


@dataclass(frozen=True)
class Domain:
    """The values of one choice, in a fixed order; ``step`` is set for integer ranges."""

    values: Sequence[Any]
    tie: bool = False
    step: int | None = None
    where: str = field(default="", compare=False)

    @property
    def fixed(self) -> bool:
        return len(self.values) == 1

    @property
    def value(self) -> Any:
        return self.values[0]

    @property
    def low(self) -> Any:
        return self.values[0] if self.step is not None else min(self.values)

    @property
    def high(self) -> Any:
        return self.values[-1] if self.step is not None else max(self.values)

    def index(self, value: Any) -> int | None:
        """Position of ``value`` (``3.0`` matches ``3``), None when it is not a member."""
        if self.step is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
                return None
            value = int(value)
        try:
            return self.values.index(value)
        except ValueError:
            return None

    def to_json(self) -> Any:
        """A list of the values, or ``{min, max, step}`` for a range (which may be long)."""
        if self.step is not None and not self.fixed:
            return {"min": self.values[0], "max": self.values[-1], "step": self.step}
        return list(self.values)

    def describe(self) -> str:
        if self.step is not None and not self.fixed:
            r = self.values
            return f"{r[0]}..{r[-1]}" + (f" step {self.step}" if self.step != 1 else "")
        if self.fixed:
            return str(self.value)
        return "[" + ", ".join(str(v) for v in self.values) + "]"


class Checker:
    """Turns a raw YAML value into a validated one, or an error naming file and key path."""

    def __init__(self, source: str | Path | None):
        self.source = source

    def fail(self, where: str, message: str) -> RKSearchError:
        return RKSearchError(message, source=self.source, field=where)

    def _probe(self, model: type, data: dict[str, Any], name: str, where: str) -> Any:
        try:
            return getattr(model.model_validate(data), name)
        except ValidationError as e:
            raise self.fail(where, e.errors()[0]["msg"].removeprefix("Value error, ")) from None

    def positive_int(self, value: Any, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self.fail(where, f"must be an integer >= 1, got {value!r}")
        return value

    def period_value(self, name: str) -> Check:
        """A check of one value of period field ``name`` (method, stages, steps, growth_rate, m)."""
        return lambda value, where: self._probe(PeriodSpec, {**_PERIOD_PROBE, name: value}, name, where)

    def spec_value(self, name: str) -> Check:
        """A check of one value of top-level spec field ``name`` (stem, dropout, ...)."""
        return lambda value, where: self._probe(RKNetSpec, {**_SPEC_PROBE, name: value}, name, where)

    def domain(self, raw: Any, where: str, check: Check, *, ranges: bool, tie: bool) -> Domain:
        """Parse ``3``, ``[3, 5]``, ``{values: [3, 5], tie: true}`` or ``{min: 2, max: 6, step: 2}``."""
        if isinstance(raw, dict):
            return self._mapping(raw, where, check, ranges=ranges, tie=tie)
        if isinstance(raw, list):
            return Domain(self._choices(raw, where, check), where=where)
        return Domain((check(raw, where),), where=where)

    def _choices(self, raw: list, where: str, check: Check) -> tuple[Any, ...]:
        if not raw:
            raise self.fail(where, "an empty list of choices; give at least one value")
        values = tuple(check(v, f"{where}.{i}") for i, v in enumerate(raw))
        for i, v in enumerate(values):
            first = next(j for j, w in enumerate(values) if w == v and type(w) is type(v))
            if first != i:
                raise self.fail(f"{where}.{i}", f"{v!r} repeats item {first}; each choice must be distinct")
        return values

    def _mapping(self, raw: dict, where: str, check: Check, *, ranges: bool, tie: bool) -> Domain:
        if not ranges and {"min", "max", "step"} & raw.keys():
            raise self.fail(where, "takes no range: give a value or a list of choices")
        allowed = (["min", "max", "step"] if ranges else []) + ["values"] + (["tie"] if tie else [])
        for key in raw:
            if key not in allowed:
                raise self.fail(f"{where}.{key}", f"unknown key; allowed: {', '.join(allowed)}")
        tied = raw.get("tie", False)
        if not isinstance(tied, bool):
            raise self.fail(f"{where}.tie", "must be true or false")
        if "values" in raw:
            if {"min", "max", "step"} & raw.keys():
                raise self.fail(where, "give either values or min/max/step, not both")
            if not isinstance(raw["values"], list):
                raise self.fail(f"{where}.values", "must be a list of choices")
            return Domain(self._choices(raw["values"], f"{where}.values", check), tie=tied, where=where)
        for key in ("min", "max"):
            if key not in raw:
                what = "min and max (and optionally step)" if ranges else "values"
                raise self.fail(f"{where}.{key}" if ranges else where, f"required; a mapping needs {what}")
        lo, hi = check(raw["min"], f"{where}.min"), check(raw["max"], f"{where}.max")
        step = self.positive_int(raw.get("step", 1), f"{where}.step")
        if hi < lo:
            raise self.fail(f"{where}.max", f"{hi} is below min ({lo})")
        if (hi - lo) % step:
            below = lo + (hi - lo) // step * step
            raise self.fail(f"{where}.max", f"{hi} is not min + a multiple of step ({lo} + {step}n); use {below} or {below + step}")
        return Domain(range(lo, hi + 1, step), tie=tied, step=step, where=where)
