"""The spec: validation rules, the name grammar, YAML/JSON round trips."""
from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rksearch import RKNetSpec, RKSearchError, load_spec, parse_name, resolve_spec, save_spec

BASE = {"rknet": 1, "periods": [{"method": "erk", "stages": 6, "steps": 1, "growth_rate": 36, "m": 1}] * 3}


@st.composite
def specs(draw) -> RKNetSpec:
    n = draw(st.integers(1, 4))
    periods = []
    for _ in range(n):
        method = draw(st.sampled_from(["erk", "irk"]))
        periods.append({
            "method": method,
            "stages": draw(st.integers(2 if method == "irk" else 1, 7)),
            "steps": draw(st.integers(1, 4)),
            "growth_rate": draw(st.integers(1, 64)),
            "m": draw(st.integers(1, 4)) if method == "erk" else 1,
        })
    return RKNetSpec.from_dict({
        "stem": draw(st.sampled_from(["cifar", "imagenet"])),
        "input_size": 224 if n > 3 else draw(st.sampled_from([32, 64, 224])),
        "num_classes": draw(st.integers(1, 1000)),
        "bottleneck": draw(st.booleans()),
        "attention": draw(st.booleans()),
        "multiscale": draw(st.booleans()),
        "dropout": draw(st.sampled_from([0.0, 0.2])),
        "periods": periods,
    })


@settings(max_examples=200, deadline=None)
@given(specs())
def test_round_trips(spec: RKNetSpec) -> None:
    assert RKNetSpec.from_yaml(spec.to_yaml()) == spec
    assert RKNetSpec.from_json(spec.to_json()) == spec
    rebuilt = parse_name(
        spec.name,
        growth_rate=[p.growth_rate for p in spec.periods],
        m=[p.m for p in spec.periods],
        stem=spec.stem, input_size=spec.input_size, num_classes=spec.num_classes,
        multiscale=spec.multiscale, dropout=spec.dropout,
    )
    assert rebuilt == spec
    assert hash(rebuilt) == hash(spec)


@pytest.mark.parametrize("name", ["ERKNet-6x1_6x1_6x1", "IRKNet-5x1_5x1_5x1-AB", "RKNet-E3x2_I4x1_E2x5", "IRKNet-3x2-A", "ERKNet-2x1-B"])
def test_names_round_trip(name: str) -> None:
    assert parse_name(name).name == name


def test_name_fields() -> None:
    spec = parse_name("RKNet-E3x2_I4x1_E2x5-AB", growth_rate=[12, 24, 36], m=2)
    assert [(p.method, p.stages, p.steps, p.growth_rate, p.m) for p in spec.periods] == [
        ("erk", 3, 2, 12, 2), ("irk", 4, 1, 24, 1), ("erk", 2, 5, 36, 2)]
    assert spec.attention and spec.bottleneck
    assert [p.width for p in spec.periods] == [24, 24, 72]


def test_name_fields_from_a_study_table() -> None:
    """A study's DataFrame hands back numpy integers and, where some trials lack a column, floats."""
    spec = parse_name("ERKNet-2x1_2x1", growth_rate=[np.int64(4), 6.0], m=np.array(2))
    assert [(p.growth_rate, p.m) for p in spec.periods] == [(4, 2), (6, 2)]
    assert type(spec.periods[0].growth_rate) is int


@pytest.mark.parametrize("fields, field, needle", [
    ({"growth_rate": "36"}, "growth_rate", "expected a whole number, or one per period; got '36'"),
    ({"growth_rate": 36.5}, "growth_rate", "got 36.5"),
    ({"growth_rate": True}, "growth_rate", "got True"),
    ({"m": [1]}, "m", "got 1 value for 2 periods"),
    ({"attention": True}, "attention", "contradicts the name 'ERKNet-2x1_2x1-B'"),
    ({"bottleneck": False}, "bottleneck", "contradicts the name"),
    ({"periods": []}, "periods", "the name 'ERKNet-2x1_2x1-B' gives the periods"),
])
def test_name_fields_that_do_not_fit(fields: dict, field: str, needle: str) -> None:
    with pytest.raises(RKSearchError, match=re.escape(needle)) as e:
        parse_name("ERKNet-2x1_2x1-B", **fields)
    assert e.value.field == field


def test_m_is_for_erk_periods(tmp_path) -> None:
    """One m for all applies to the ERK periods; an m that a spec file's periods cannot take is
    refused, not dropped."""
    assert [p.m for p in parse_name("RKNet-E3x1_I3x1", m=2).periods] == [2, 1]
    save_spec(parse_name("IRKNet-3x1_3x1"), tmp_path / "irk.yaml")
    with pytest.raises(RKSearchError, match="m=2, but IRKNet-3x1_3x1 has no ERK period, and m applies to ERK periods only"):
        resolve_spec(tmp_path / "irk.yaml", m=2)
    save_spec(parse_name("RKNet-E3x1_I3x1"), tmp_path / "mixed.yaml")
    assert [p.m for p in resolve_spec(tmp_path / "mixed.yaml", m=2).periods] == [2, 1]
    with pytest.raises(RKSearchError, match="m=4, but period 1 of RKNet-E3x1_I3x1 is IRK"):
        resolve_spec(tmp_path / "mixed.yaml", m=[2, 4])


@pytest.mark.parametrize("name, needle", [
    ("IRKNet-1x1", "periods.0.stages"),
    ("DenseNet-6x1", "cannot parse"),
    ("RKNet-3x1", "E or I"),
    ("ERKNet-E3x1", "no E/I letter"),
    ("ERKNet-3x1-C", "allowed letters"),
    ("ERKNet-3x1-AA", "allowed letters"),
    ("ERKNet-3y1", "not of the form"),
    ("ERKNet-0x1", "greater than or equal to 1"),
])
def test_bad_names(name: str, needle: str) -> None:
    with pytest.raises(RKSearchError, match=needle):
        parse_name(name)


def _bad(**changes) -> dict:
    d = {**BASE, **changes}
    return d


def _bad_period(**changes) -> dict:
    return {**BASE, "periods": [{**BASE["periods"][0], **changes}]}


@pytest.mark.parametrize("data, field", [
    (_bad_period(stages=0), "periods.0.stages"),
    (_bad_period(method="irk", stages=1), "periods.0.stages"),
    (_bad_period(steps=0), "periods.0.steps"),
    (_bad_period(growth_rate=0), "periods.0.growth_rate"),
    (_bad_period(m=0), "periods.0.m"),
    (_bad_period(method="irk", stages=3, m=2), "periods.0.m"),
    (_bad_period(method="rk4"), "periods.0.method"),
    (_bad_period(stages="six"), "periods.0.stages"),
    (_bad_period(stages=2.5), "periods.0.stages"),
    (_bad_period(stages=True), "periods.0.stages"),
    (_bad_period(colour=1), "periods.0.colour: unknown key"),
    (_bad(periods=[]), "periods"),
    (_bad(input_size=2), "input_size"),
    (_bad(dropout=1.0), "dropout"),
    (_bad(dropout="0.2"), "dropout"),
    (_bad(bottleneck="yes"), "bottleneck"),
    (_bad(stem="vit"), "stem"),
    (_bad(rknet=2), "rknet"),
    (_bad(growth=3), "growth: unknown key"),
])
def test_validation_names_field(data: dict, field: str) -> None:
    with pytest.raises(RKSearchError, match=field):
        RKNetSpec.from_dict(data, source="x.yaml")


def test_input_size_that_survives(tmp_path) -> None:
    spec = RKNetSpec.from_dict({**BASE, "input_size": 4})
    assert spec.resolutions() == [4, 2, 1]
    assert RKNetSpec.from_dict({**BASE, "stem": "imagenet", "input_size": 224}).resolutions() == [56, 28, 14]


def test_immutable() -> None:
    spec = RKNetSpec.from_dict(BASE)
    with pytest.raises(Exception):
        spec.dropout = 0.5  # type: ignore[misc]


def test_files(tmp_path) -> None:
    spec = parse_name("IRKNet-3x1_3x1_3x1", growth_rate=36)
    for suffix in (".yaml", ".json"):
        p = tmp_path / f"s{suffix}"
        save_spec(spec, p, header="from a test")
        assert load_spec(p) == spec
    text = (tmp_path / "s.yaml").read_text()
    assert text.startswith("# from a test\nrknet: 1\n")
    assert "  - {method: irk, stages: 3, steps: 1, growth_rate: 36, m: 1}" in text
    with pytest.raises(RKSearchError, match="missing/s.yaml: cannot write: No such file or directory"):
        save_spec(spec, tmp_path / "missing" / "s.yaml")
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("text, needle", [
    ("rknet: 1\nperiods: [", "malformed YAML at line"),
    ("- 1\n- 2\n", "expected a mapping"),
    ("stem: cifar\n", "not an RKNet spec"),
])
def test_bad_files(tmp_path, text: str, needle: str) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(RKSearchError, match=needle) as e:
        load_spec(p)
    assert str(p) in str(e.value)


def test_missing_file(tmp_path) -> None:
    with pytest.raises(RKSearchError, match="no such file"):
        load_spec(tmp_path / "nope.yaml")


def test_scaled() -> None:
    spec = parse_name("RKNet-E2x1_I3x1", growth_rate=[12, 5])
    half = spec.scaled(0.5)
    assert [p.growth_rate for p in half.periods] == [6, 2]
    assert spec.scaled(0.01).periods[1].growth_rate == 1
