"""The RKNet name grammar: ``ERKNet-6x1_6x1_6x1``, ``IRKNet-5x1_5x1_5x1-AB``, ``RKNet-E3x2_I4x1``.

A name carries the method, stages s and time-steps r of each period plus the attention (A) and
bottleneck (B) flags; growth rates and ``m`` travel beside it, one value or one per period.
"""
from __future__ import annotations

import numbers
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from rksearch.arch.rknet import RKNetSpec
from rksearch.core.errors import RKSearchError

_NAME = re.compile(r"^(?P<prefix>ERKNet|IRKNet|RKNet)-(?P<body>[^-]+)(?:-(?P<flags>[A-Za-z]+))?$")
_TERM = re.compile(r"^(?P<method>[EI]?)(?P<s>\d+)[xX×](?P<r>\d+)$")


def _whole(value: Any, what: str) -> int:
    """An integer, also from numpy or an integral float (what a study's DataFrame hands back)."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_) and float(value).is_integer():
        if value < 1:
            raise RKSearchError(f"must be at least 1, got {value}", field=what)
        return int(value)
    raise RKSearchError(f"expected a whole number, or one per period; got {value!r}", field=what)


def _check_m(m: Any, ms: list[int], methods: list[str], name: str) -> None:
    """An IRK period has no m (its stages are not grouped): one m for all applies to the ERK
    periods, so a net without any refuses one; one per period must say 1 for an IRK period."""
    per_period = isinstance(m, Sequence | np.ndarray) and not isinstance(m, str)
    for i, (value, method) in enumerate(zip(ms, methods)):
        if method == "irk" and value != 1 and (per_period or "erk" not in methods):
            where = f"period {i} of {name} is IRK" if per_period else f"{name} has no ERK period"
            raise RKSearchError(f"m={value}, but {where}, and m applies to ERK periods only", field="m")


def _per_period(value: int | Sequence[int], n: int, what: str) -> list[int]:
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence | np.ndarray):
        return [_whole(value, what)] * n
    values = [_whole(v, what) for v in value]
    if len(values) != n:
        raise RKSearchError(f"got {len(values)} value{'s' * (len(values) != 1)} for {n} periods", field=what)
    return values


def parse_name(
    name: str,
    *,
    growth_rate: int | Sequence[int] = 12,
    m: int | Sequence[int] = 1,
    **fields: Any,
) -> RKNetSpec:
    """Build a spec from its name plus what the name does not carry.

    ``growth_rate`` and ``m`` take one value for every period or one per period (m applies to
    ERK periods only); other keyword arguments set top-level spec fields (stem, input_size, ...).
    """
    match = _NAME.match(name.strip())
    if not match:
        raise RKSearchError(
            f"cannot parse {name!r}: expected e.g. ERKNet-6x1_6x1_6x1, IRKNet-5x1_5x1_5x1-AB or RKNet-E3x2_I4x1",
            field="name",
        )
    prefix, body, flags = match["prefix"], match["body"], match["flags"] or ""
    terms = body.split("_")
    ks = _per_period(growth_rate, len(terms), "growth_rate")
    ms = _per_period(m, len(terms), "m")
    periods = []
    for i, term in enumerate(terms):
        t = _TERM.match(term)
        if not t:
            raise RKSearchError(f"period {i} {term!r} in {name!r} is not of the form SxR", field="name")
        letter = t["method"]
        if prefix == "RKNet" and not letter:
            raise RKSearchError(
                f"period {i} {term!r} in {name!r}: an RKNet- name needs E or I before each term (E3x2, I4x1)",
                field="name",
            )
        if prefix != "RKNet" and letter:
            raise RKSearchError(f"period {i} {term!r}: {prefix} terms carry no E/I letter", field="name")
        method = {"E": "erk", "I": "irk"}.get(letter) or ("erk" if prefix == "ERKNet" else "irk")
        periods.append(
            {"method": method, "stages": int(t["s"]), "steps": int(t["r"]), "growth_rate": ks[i],
             "m": ms[i] if method == "erk" else 1}
        )
    unknown = set(flags) - {"A", "B"}
    if unknown or len(set(flags)) != len(flags):
        raise RKSearchError(f"suffix -{flags} in {name!r}: allowed letters are A (attention) and B (bottleneck)", field="name")
    if "periods" in fields:
        raise RKSearchError(f"the name {name!r} gives the periods; build a spec of other periods with "
                            "RKNetSpec.from_dict", field="periods")
    for flag, key in (("A", "attention"), ("B", "bottleneck")):
        if key in fields and bool(fields[key]) != (flag in flags):
            raise RKSearchError(f"{key}={fields[key]!r} contradicts the name {name!r}, which says it "
                                "(suffix -A: attention, -B: bottleneck)", field=key)
    data = {"attention": "A" in flags, "bottleneck": "B" in flags, **fields, "periods": periods}
    return RKNetSpec.from_dict(data)


def named(name: str, **fields: Any) -> RKNetSpec:
    """:func:`parse_name` for a network asked for by name (``None`` fields ignored): an ``m`` its
    IRK periods would drop is refused, where candidates sharing one ``m`` drop it silently."""
    spec = parse_name(name, **{k: v for k, v in fields.items() if v is not None})
    if fields.get("m") is not None:
        _check_m(fields["m"], _per_period(fields["m"], len(spec.periods), "m"), [p.method for p in spec.periods],
                 spec.name)
    return spec


def with_fields(spec: RKNetSpec, **kwargs: Any) -> RKNetSpec:
    """``spec`` with fields changed (``None``: unchanged): top-level ones, and ``growth_rate`` /
    ``m`` as one value for every period or one per period (m applies to ERK periods only)."""
    overrides = {k: v for k, v in kwargs.items() if k not in ("growth_rate", "m") and v is not None}
    if kwargs.get("growth_rate") is not None or kwargs.get("m") is not None:
        periods = [p.model_dump() for p in spec.periods]
        ks = _per_period(kwargs["growth_rate"], len(periods), "growth_rate") if kwargs.get("growth_rate") is not None else None
        ms = _per_period(kwargs["m"], len(periods), "m") if kwargs.get("m") is not None else None
        if ms:
            _check_m(kwargs["m"], ms, [p["method"] for p in periods], spec.name)
        for i, p in enumerate(periods):
            if ks:
                p["growth_rate"] = ks[i]
            if ms and p["method"] == "erk":
                p["m"] = ms[i]
        overrides["periods"] = periods
    return spec.replace(**overrides) if overrides else spec
