"""The RKNet spec: an immutable, validated description of one network.

A spec is what a search proposes, what ``rksearch export`` writes and what ``rksearch train``
reads. Its name (``ERKNet-6x1_6x1_6x1``, ``IRKNet-5x1_5x1_5x1-AB``, ``RKNet-E3x2_I4x1``) carries
the method, stages s and time-steps r of each period plus the attention (A) and bottleneck (B)
flags; everything else travels beside the name.
"""
from __future__ import annotations

import json
import numbers
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rksearch.core.errors import RKSearchError, from_validation_error

FORMAT_VERSION = 1

StrictPosInt = Annotated[int, Field(strict=True, ge=1)]
Method = Literal["erk", "irk"]
Stem = Literal["cifar", "imagenet"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PeriodSpec(_Frozen):
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


class RKNetSpec(_Frozen):
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
        n = self.input_size
        if self.stem == "imagenet":  # 7x7/2 conv (pad 3), then 3x3/2 max-pool (pad 1)
            n = (n - 1) // 2 + 1
            n = (n - 1) // 2 + 1
        sizes = [n]
        for _ in self.periods[1:]:
            n //= 2  # 2x2 average pooling in each transition
            sizes.append(n)
        return sizes

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
        if not isinstance(data, dict):
            raise RKSearchError(
                f"expected a mapping with keys rknet, stem, ..., periods; got {type(data).__name__}", source=source
            )
        if "baseline" in data:
            raise RKSearchError("a baseline spec, not an RKNet spec: read it with rksearch.arch.resolve.load_any_spec "
                                "(create_model and rksearch train take the file as it is)", source=source, field="baseline")
        if "rknet" not in data and source is not None:
            raise RKSearchError("not an RKNet spec (no 'rknet: 1' key)", source=source, field="rknet")
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise from_validation_error(e, source=source) from None

    @classmethod
    def from_yaml(cls, text: str, *, source: str | Path | None = None) -> "RKNetSpec":
        return cls.from_dict(parse_yaml(text, source), source=source)

    @classmethod
    def from_json(cls, text: str, *, source: str | Path | None = None) -> "RKNetSpec":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise RKSearchError(f"malformed JSON: {e}", source=source) from None
        return cls.from_dict(data, source=source)


MAX_ALIASES = 100  # aliases (``*name``, ``<<: *name``) in one YAML document
MAX_NODES = 100_000  # values in one YAML document, every alias counted as what it repeats


class _Refused(yaml.composer.ComposerError):
    """Well-formed YAML that rksearch will not read (too many aliases, a recursive structure)."""


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_: set[int]) -> int:
    """How many values ``node`` holds once its aliases are expanded; refuses more than
    MAX_NODES (an alias bomb: a few hundred bytes that expand to billions) and an alias inside
    the very node it names (a structure that contains itself)."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_:
        raise _Refused(None, None, "an alias inside the node it refers to (a recursive structure)", node.start_mark)
    open_.add(key)
    children = node.value if isinstance(node, yaml.SequenceNode) else (
        [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else [])
    total = 1
    for child in children:
        total += _expanded_size(child, sizes, open_)
        if total > MAX_NODES:
            raise _Refused(None, None, f"aliases expand this document beyond {MAX_NODES:,} values", node.start_mark)
    open_.discard(key)
    sizes[key] = total
    return total


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe YAML that refuses a key given twice in one mapping, where plain YAML keeps the last
    silently (a second ``proxy:`` section would replace the first), more than MAX_ALIASES aliases,
    and aliases that expand a document beyond MAX_NODES values."""

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            self.aliases = getattr(self, "aliases", 0) + 1
            if self.aliases > MAX_ALIASES:
                raise _Refused(None, None, f"more than {MAX_ALIASES} aliases (*name)", self.peek_event().start_mark)
        return super().compose_node(parent, index)

    def compose_document(self) -> yaml.Node:
        node = super().compose_document()
        _expanded_size(node, {}, set())
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # <<: *anchor, resolved by the base class
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                again = key in seen
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if again:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def parse_yaml(text: str, source: str | Path | None) -> Any:
    """YAML text to Python data; a syntax error, a repeated key or an alias bomb becomes one line
    with its position and the file."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        what = "refused YAML" if isinstance(e, _Refused) else "malformed YAML"
        raise RKSearchError(f"{what}{where}: {problem}", source=source) from None


def read_text(path: str | Path) -> str:
    """Read a user file, turning the usual OS errors into one-line user errors."""
    p = Path(path)
    try:
        return p.read_text()
    except FileNotFoundError:
        raise RKSearchError("no such file", source=p) from None
    except IsADirectoryError:
        raise RKSearchError("is a directory, expected a file", source=p) from None
    except UnicodeDecodeError:
        raise RKSearchError("not a text file", source=p) from None
    except OSError as e:
        raise RKSearchError(e.strerror or str(e), source=p) from None


def load_spec(path: str | Path) -> RKNetSpec:
    """Read a spec file (YAML, or JSON by its suffix)."""
    text = read_text(path)
    if str(path).endswith(".json"):
        return RKNetSpec.from_json(text, source=path)
    return RKNetSpec.from_yaml(text, source=path)


# -- the name grammar ------------------------------------------------------------------------

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


def resolve_spec(name_or_path: str | Path, **kwargs: Any) -> RKNetSpec:
    """A spec from a file path (``.yaml``/``.yml``/``.json``) or from a name plus keyword fields."""
    s = str(name_or_path)
    if s.endswith((".yaml", ".yml", ".json")) or Path(s).is_file():
        return with_fields(load_spec(s), **kwargs)
    spec = parse_name(s, **{k: v for k, v in kwargs.items() if v is not None})
    if kwargs.get("m") is not None:  # asked for by name, not shared among candidates: say what is dropped
        _check_m(kwargs["m"], _per_period(kwargs["m"], len(spec.periods), "m"), [p.method for p in spec.periods],
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
