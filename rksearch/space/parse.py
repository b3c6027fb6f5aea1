"""The architecture sections of a search space: ``network:``, and ``periods:`` or ``candidates:``.

Besides the values themselves this checks what only the combination can get wrong, so that a
search never proposes a spec the model library refuses: stages < 2 where a period may be IRK,
``m`` where no period is ERK, more periods than the input resolution allows.
"""
from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from rksearch.arch.baselines import BaselineSpec, baseline_spec
from rksearch.arch.names import parse_name
from rksearch.arch.rknet import GLOBAL_FIELDS, PERIOD_FIELDS, PeriodSpec, RKNetSpec
from rksearch.core.errors import RKSearchError
from rksearch.space.domain import Checker, Domain

FIXED_FIELDS = ("stem", "in_channels", "num_classes", "input_size")
CANDIDATE_FIELDS = ("growth_rate", "m")  # what a spec name does not carry
NAME_FLAGS = {"attention": "A", "bottleneck": "B"}  # what it does


@dataclass(frozen=True)
class PeriodsSpace:
    count: Domain
    fields: Mapping[str, Domain]
    overrides: Mapping[int, Mapping[str, Domain]]

    def domain(self, i: int, name: str) -> tuple[Domain, str]:
        """The domain of field ``name`` in period ``i`` and the Optuna parameter that picks it."""
        own = self.overrides.get(i, {})
        if name in own:
            return own[name], f"p{i}.{name}"
        d = self.fields[name]
        return d, (name if d.tie else f"p{i}.{name}")

    def may_be(self, i: int, method: str) -> bool:
        return method in self.domain(i, "method")[0].values

    @property
    def max_count(self) -> int:
        return self.count.high


@dataclass(frozen=True)
class NetworkSpace:
    fixed: Mapping[str, Any]
    choices: Mapping[str, Domain]


def _mapping(raw: Any, where: str, allowed: tuple[str, ...], chk: Checker) -> dict:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise chk.fail(where, f"expected a mapping with keys {', '.join(allowed)}; got {type(raw).__name__}")
    for key in raw:
        if key not in allowed:
            raise chk.fail(f"{where}.{key}", f"unknown key; allowed: {', '.join(allowed)}")
    return raw


def _default(model: type, name: str, where: str) -> Domain:
    return Domain((model.model_fields[name].default,), where=where)


def parse_network(raw: Any, chk: Checker) -> NetworkSpace:
    raw = _mapping(raw, "network", FIXED_FIELDS + GLOBAL_FIELDS, chk)
    fixed = {}
    for name in FIXED_FIELDS:
        where = f"network.{name}"
        if isinstance(raw.get(name), (list, dict)):
            raise chk.fail(where, "must be a single value: a search does not vary it")
        fixed[name] = chk.spec_value(name)(raw[name], where) if name in raw else RKNetSpec.model_fields[name].default
    choices = {
        name: chk.domain(raw[name], f"network.{name}", chk.spec_value(name), ranges=False, tie=False)
        if name in raw else _default(RKNetSpec, name, f"network.{name}")
        for name in GLOBAL_FIELDS
    }
    return NetworkSpace(fixed, choices)


def parse_periods(raw: Any, chk: Checker) -> PeriodsSpace:
    if raw is None:
        raise chk.fail("periods", "required: the per-period choices (count, method, stages, steps, growth_rate, m), "
                                  "or instead a candidates: list of spec names")
    raw = _mapping(raw, "periods", ("count",) + PERIOD_FIELDS + ("overrides",), chk)
    if "count" not in raw:
        raise chk.fail("periods.count", "required: the number of periods (a value, a list or {min, max})")
    count = chk.domain(raw["count"], "periods.count", chk.positive_int, ranges=True, tie=False)
    fields = {}
    for name in PERIOD_FIELDS:
        where = f"periods.{name}"
        if name in raw:
            fields[name] = chk.domain(raw[name], where, chk.period_value(name), ranges=name != "method", tie=True)
        elif PeriodSpec.model_fields[name].is_required():
            raise chk.fail(where, "required: a value, a list of choices" + ("" if name == "method" else " or {min, max, step}"))
        else:
            fields[name] = _default(PeriodSpec, name, where)
    return PeriodsSpace(count, fields, _overrides(raw.get("overrides"), count.high, chk))


def _overrides(raw: Any, max_count: int, chk: Checker) -> dict[int, dict[str, Domain]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise chk.fail("periods.overrides", "expected a mapping from period index (0, 1, ...) to fields")
    out = {}
    for key, fields in raw.items():
        where = f"periods.overrides.{key}"
        i = int(key) if isinstance(key, str) and key.isdigit() else key
        if isinstance(i, bool) or not isinstance(i, int) or i < 0:
            raise chk.fail(where, "expected a period index 0, 1, ...")
        if i >= max_count:
            raise chk.fail(where, f"the space has at most {max_count} periods (indices 0..{max_count - 1})")
        fields = _mapping(fields, where, PERIOD_FIELDS, chk)
        out[i] = {
            name: chk.domain(v, f"{where}.{name}", chk.period_value(name), ranges=name != "method", tie=False)
            for name, v in fields.items()
        }
    return out


def check_structure(periods: PeriodsSpace, network: NetworkSpace, chk: Checker) -> None:
    """Reject what only the combination of values gets wrong."""
    fit = _periods_that_fit(network, periods.max_count)
    if periods.max_count > fit:
        raise chk.fail(
            "periods.count",
            f"{periods.max_count} periods shrink a {network.fixed['input_size']} px input to nothing "
            f"({network.fixed['stem']} stem); at most {fit} fit",
        )
    for i in range(periods.max_count):
        stages, _ = periods.domain(i, "stages")
        if periods.may_be(i, "irk") and stages.low < 2:
            raise chk.fail(
                stages.where,
                f"stages {stages.low} is not allowed: period {i} may be irk, and an IRK period needs stages >= 2",
            )
        m = periods.overrides.get(i, {}).get("m")
        if m is not None and not periods.may_be(i, "erk"):
            raise chk.fail(m.where, f"period {i} is never erk, and m applies to ERK periods only")
    m = periods.fields["m"]
    users = [i for i in range(periods.max_count) if "m" not in periods.overrides.get(i, {}) and periods.may_be(i, "erk")]
    if not users and not (m.fixed and m.value == 1):
        raise chk.fail(m.where, "no period that uses it may be erk, and m applies to ERK periods only; remove it")


def _periods_that_fit(network: NetworkSpace, limit: int) -> int:
    """How many periods (at most ``limit``) the fixed stem and input size allow, by the spec's own rule."""
    period = {"method": "erk", "stages": 1, "growth_rate": 1}
    for n in range(1, limit + 1):
        try:
            RKNetSpec.model_validate({**network.fixed, "periods": [period] * n})
        except ValidationError:
            return n - 1
    return limit


# -- candidates: an explicit list of specs ---------------------------------------------------


@dataclass(frozen=True)
class CandidatesSpace:
    """Named specs, chosen by one categorical parameter: a grid over them trains exactly the list."""

    names: Domain
    specs: Mapping[str, RKNetSpec]

    def arch(self, name: str) -> dict[str, Any]:
        """The spec fields candidate ``name`` sets; the network section sets the rest."""
        spec = self.specs[name]
        return {"periods": spec.periods, **{f: getattr(spec, f) for f in NAME_FLAGS}}


def parse_candidates(raw: Any, network: NetworkSpace, network_keys: Collection[str], chk: Checker) -> CandidatesSpace:
    """``candidates:`` as a list of entries, or ``{growth_rate, m, names: [entries]}`` sharing defaults.

    An entry is a spec name or ``{name, growth_rate, m, label}``; the parameter value is its
    label, by default the spec's canonical name, so two entries may share a name only by label.
    """
    for f, letter in NAME_FLAGS.items():
        if f in network_keys:
            raise chk.fail(f"network.{f}", f"each candidate's name sets it (suffix -{letter}); remove it here")
    where, shared = "candidates", {}
    if isinstance(raw, dict):
        raw = _mapping(raw, where, ("names",) + CANDIDATE_FIELDS, chk)
        shared = {f: _per_period_value(raw[f], f"{where}.{f}", f, chk) for f in CANDIDATE_FIELDS if f in raw}
        where, raw = f"{where}.names", raw.get("names")
    if not isinstance(raw, list) or not raw:
        raise chk.fail(where, "expected a non-empty list of spec names such as ERKNet-6x1_6x1_6x1 "
                              "(each a name or {name: ..., growth_rate: 36})")
    specs: dict[str, RKNetSpec] = {}
    for i, entry in enumerate(raw):
        label, spec = _candidate(entry, f"{where}.{i}", shared, network, chk)
        for j, (other, known) in enumerate(specs.items()):
            if known == spec:
                raise chk.fail(f"{where}.{i}", f"{spec.name} repeats item {j}: the same spec")
            if other == label:
                raise chk.fail(f"{where}.{i}", f"{label} is item {j}'s label too; give one of them its own "
                                               f"(e.g. label: {label} k={spec.periods[0].growth_rate})")
        specs[label] = spec
    if "m" in shared and not any(p.method == "erk" for s in specs.values() for p in s.periods):
        raise chk.fail("candidates.m", "no candidate has an ERK period, and m applies to ERK periods only; remove it")
    return CandidatesSpace(Domain(tuple(specs), where=where), specs)


def _candidate(entry: Any, where: str, shared: Mapping[str, tuple[Any, str]], network: NetworkSpace,
               chk: Checker) -> tuple[str, RKNetSpec]:
    """One entry's label and spec; errors name the entry's own key or the shared one it inherited."""
    if isinstance(entry, str):
        entry, name_at = {"name": entry}, where
    elif isinstance(entry, dict):
        _mapping(entry, where, ("name", "label") + CANDIDATE_FIELDS, chk)
        name_at = f"{where}.name"
        if not isinstance(entry.get("name"), str):
            raise chk.fail(name_at, "required: a spec name such as ERKNet-6x1_6x1_6x1")
    else:
        raise chk.fail(where, f"expected a spec name or a mapping with keys name, label, growth_rate, m; got {entry!r}")
    fields = {**shared, **{f: _per_period_value(entry[f], f"{where}.{f}", f, chk) for f in CANDIDATE_FIELDS if f in entry}}
    if "growth_rate" not in fields:
        raise chk.fail(where, "no growth_rate: give it here ({name: ..., growth_rate: 36}) or once for all "
                              "candidates ({growth_rate: 36, names: [...]})")
    try:
        spec = parse_name(entry["name"], **{f: v for f, (v, _) in fields.items()}, **network.fixed)
    except RKSearchError as e:
        if e.field is None:  # the spec's own validation: say which spec
            raise chk.fail(name_at, f"{entry['name']}: {e.message}") from None
        raise chk.fail(fields[e.field][1] if e.field in fields else name_at, e.message) from None
    if "m" in entry and not any(p.method == "erk" for p in spec.periods):
        raise chk.fail(f"{where}.m", f"{spec.name} has no ERK period, and m applies to ERK periods only; remove it")
    label = entry.get("label", spec.name)
    if not isinstance(label, str) or not label.strip():
        raise chk.fail(f"{where}.label", f"expected a non-empty text, got {label!r}")
    return label, spec


def _per_period_value(raw: Any, where: str, name: str, chk: Checker) -> tuple[Any, str]:
    """A value of period field ``name`` for every period, or a list of one per period; and where it was."""
    check = chk.period_value(name)
    if isinstance(raw, list):
        if not raw:
            raise chk.fail(where, "an empty list; give one value for every period or one per period")
        return [check(v, f"{where}.{j}") for j, v in enumerate(raw)], where
    return check(raw, where), where


# -- baselines: known networks trained beside the search ---------------------------------------

BASELINE_HELP = ("a baseline name (densenet-bc-100, cliquenet, ...), {name: densenet-bc-100, growth_rate: 24, ...} "
                 "or {baseline: densenet|cliquenet, ...} with the baseline spec's fields")


@dataclass(frozen=True)
class Baseline:
    """One ``baselines:`` entry: a network trained once per study under the space's proxy."""

    label: str
    spec: BaselineSpec


def parse_baselines(raw: Any, network: NetworkSpace, chk: Checker) -> tuple[Baseline, ...]:
    """``baselines:`` as a list of names or mappings; each gets the network's fixed fields (stem,
    channels, classes, input size), since it trains on the same proxy data as the searched specs."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw:
        raise chk.fail("baselines", f"expected a non-empty list; each item {BASELINE_HELP}")
    out: list[Baseline] = []
    for i, entry in enumerate(raw):
        where = f"baselines.{i}"
        item = _baseline(entry, where, network, chk)
        for j, known in enumerate(out):
            if known.spec == item.spec:
                raise chk.fail(where, f"{item.spec.name} repeats item {j}: the same spec")
            if known.label == item.label:
                raise chk.fail(where, f"{item.label} is item {j}'s label too; give one of them its own (label: ...)")
        out.append(item)
    return tuple(out)


def _baseline(entry: Any, where: str, network: NetworkSpace, chk: Checker) -> Baseline:
    """One entry's label and spec; errors name the entry, or its key when it is a mapping."""
    if isinstance(entry, str):
        return _baseline_spec({"name": entry}, where, network, chk, keyed=False)
    if not isinstance(entry, dict):
        raise chk.fail(where, f"expected {BASELINE_HELP}; got {entry!r}")
    if ("name" in entry) == ("baseline" in entry):
        raise chk.fail(where, "give either name (a baseline name) or baseline (densenet or cliquenet), "
                              "not both or neither")
    for key in FIXED_FIELDS:
        if key in entry:
            raise chk.fail(f"{where}.{key}",
                           f"set by network.{key} for every baseline (they train on the proxy's data)")
    label = entry.get("label")
    if label is not None and (not isinstance(label, str) or not label.strip()):
        raise chk.fail(f"{where}.label", f"expected a non-empty text, got {label!r}")
    return _baseline_spec(entry, where, network, chk, keyed=True)


def _baseline_spec(entry: dict, where: str, network: NetworkSpace, chk: Checker, *, keyed: bool) -> Baseline:
    fields = {k: v for k, v in entry.items() if k not in ("name", "label")}
    try:
        if "name" not in entry:
            spec = BaselineSpec.from_dict({**fields, **network.fixed})
        elif isinstance(entry["name"], str):
            spec = baseline_spec(entry["name"], **fields, **network.fixed)
        else:
            raise RKSearchError(f"expected a baseline name, got {entry['name']!r}", field="name")
    except RKSearchError as e:
        raise chk.fail(f"{where}.{e.field}" if e.field and keyed else where, e.message) from None
    return Baseline(entry.get("label") or spec.name, spec)
