"""The search-space DSL: parsing, every validation error, the conditional structure, sizes,
uniform sampling, and the round trip through real Optuna trials."""
from __future__ import annotations

import collections
import copy
import itertools
import json
import pickle
import random
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from rksearch import count, parse_name
from rksearch.cli import main
from rksearch.core.errors import RKSearchError
from rksearch.space.search_space import SearchSpace, load_space, parse_space

SPACES = Path(__file__).resolve().parents[2] / "search_spaces"
optuna.logging.set_verbosity(optuna.logging.WARNING)

BASE: dict[str, Any] = {
    "network": {"bottleneck": [False, True]},
    "periods": {
        "count": [2, 3],
        "method": ["erk", "irk"],
        "stages": {"min": 2, "max": 3},
        "growth_rate": {"values": [4, 8], "tie": True},
        "m": [1, 2],
        "overrides": {0: {"method": "erk"}},
    },
    "constraints": {"max_flops": "6M"},
    "proxy": {"epochs": 2},
}
DELETE = object()


def write(tmp_path: Path, data: Any, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def changed(**changes: Any) -> dict[str, Any]:
    """BASE with ``a__b__c=value`` set (or removed with DELETE)."""
    data = copy.deepcopy(BASE)
    for key, value in changes.items():
        *head, last = key.split("__")
        node = data
        for k in head:
            node = node.setdefault(int(k) if k.isdigit() else k, {})
        last = int(last) if last.isdigit() else last
        if value is DELETE:
            del node[last]
        else:
            node[last] = value
    return data


def cli(*args: str) -> int:
    """Exit status of ``rksearch ARGS`` run in this process."""
    with pytest.raises(SystemExit) as e:
        main(list(args))
    return e.value.code


def space_of(**changes: Any) -> SearchSpace:
    return parse_space(changed(**changes))


# -- parsing --------------------------------------------------------------------------------


def test_defaults_and_shorthands(tmp_path):
    space = load_space(write(tmp_path, changed(search={"scheduler": "none"}), "my-study.yaml"))
    assert space.name == "my-study" and space.source == tmp_path / "my-study.yaml"
    assert space.objectives == ["accuracy", "flops"] and space.directions == ["maximize", "minimize"]
    assert space.constraints.max_flops == 6e6 and space.constraints.max_params is None
    assert space.search.scheduler.kind == "none" and space.search.sampler == "tpe"
    assert space.storage is None and space.reference_point is None
    assert space.network.fixed == {"stem": "cifar", "in_channels": 3, "num_classes": 10, "input_size": 32}
    assert space.proxy.epochs == 2
    again = pickle.loads(pickle.dumps(space))  # Ray pickles the searcher that holds the space
    assert again.size() == space.size() and again.objectives == space.objectives


def test_numbers_and_objectives(tmp_path):
    text = yaml.safe_dump(changed(objectives=["accuracy", "params", "throughput"], storage="sqlite:///x.db"))
    text += "reference_point: {accuracy: 0.1, params: 2.5e6, throughput: 1.5k}\n"  # 2.5e6 is a string in YAML 1.1
    space = load_space(write(tmp_path, text))
    assert space.directions == ["maximize", "minimize", "maximize"]
    assert space.reference_point == {"accuracy": 0.1, "params": 2.5e6, "throughput": 1500.0}
    assert space.storage == "sqlite:///x.db"
    assert space_of(constraints={"max_flops": 1.0e9, "max_params": "800k"}).constraints.max_params == 8e5


def test_parameter_names_are_the_documented_ones():
    assert list(space_of().parameters()) == [
        "periods", "growth_rate", "p0.stages", "p0.m", "p1.method", "p1.stages", "p1.m",
        "p2.method", "p2.stages", "p2.m", "bottleneck",
    ]
    tied = space_of(periods__method={"values": ["erk", "irk"], "tie": True}, periods__overrides=DELETE,
                    periods__m={"values": [1, 2], "tie": True}, periods__count=3)
    assert list(tied.parameters()) == ["method", "growth_rate", "m", "p0.stages", "p1.stages", "p2.stages", "bottleneck"]
    assert "p0.method" not in space_of().parameters()  # fixed by the override: never suggested


# -- every validation error: file, key path, what is allowed ----------------------------------

ERRORS = [
    (changed(period=1), "period", "unknown key (did you mean periods?)"),
    (changed(periods=DELETE), "periods", "required"),
    (changed(periods=3), "periods", "expected a mapping"),
    (changed(periods__count=DELETE), "periods.count", "required"),
    (changed(periods__count=0), "periods.count", "integer >= 1"),
    (changed(periods__count=7), "periods.count", "7 periods shrink a 32 px input to nothing (cifar stem); at most 6 fit"),
    (changed(periods__stages=DELETE), "periods.stages", "required"),
    (changed(periods__layers=3), "periods.layers", "unknown key; allowed: count, method, stages"),
    (changed(periods__method="rk"), "periods.method", "'erk' or 'irk'"),
    (changed(periods__method=["erk", "ode"]), "periods.method.1", "'erk' or 'irk'"),
    (changed(periods__method={"min": 1, "max": 2}), "periods.method", "takes no range: give a value or a list"),
    (changed(periods__stages=0), "periods.stages", "greater than or equal to 1"),
    (changed(periods__stages=2.5), "periods.stages", "valid integer"),
    (changed(periods__stages={"min": 4, "max": 2}), "periods.stages.max", "2 is below min (4)"),
    (changed(periods__stages={"min": 2, "max": 7, "step": 2}), "periods.stages.max", "use 6 or 8"),
    (changed(periods__stages={"min": 2, "max": 6, "step": 0}), "periods.stages.step", "integer >= 1"),
    (changed(periods__stages={"min": 2, "max": 6, "stpe": 2}), "periods.stages.stpe", "unknown key; allowed: min, max, step"),
    (changed(periods__stages={"max": 6}), "periods.stages.min", "required"),
    (changed(periods__stages={"min": 2, "values": [2]}), "periods.stages", "either values or min/max/step"),
    (changed(periods__stages=[3, 3]), "periods.stages.1", "3 repeats item 0"),
    (changed(periods__stages=[]), "periods.stages", "empty list"),
    (changed(periods__growth_rate={"values": [4], "tie": "yes"}), "periods.growth_rate.tie", "true or false"),
    (changed(periods__growth_rate={"values": 4}), "periods.growth_rate.values", "a list"),
    (changed(periods__stages={"min": 1, "max": 3}), "periods.stages", "stages 1 is not allowed: period 1 may be irk"),
    (changed(periods__method="irk", periods__overrides=DELETE), "periods.m", "m applies to ERK periods only"),
    (changed(periods__overrides={1: {"method": "irk", "m": 2}}), "periods.overrides.1.m", "period 1 is never erk"),
    (changed(periods__overrides={3: {"stages": 2}}), "periods.overrides.3", "at most 3 periods (indices 0..2)"),
    (changed(periods__overrides={"first": {"stages": 2}}), "periods.overrides.first", "a period index"),
    (changed(periods__overrides={0: {"stages": {"values": [2], "tie": True}}}), "periods.overrides.0.stages.tie", "unknown key"),
    (changed(periods__overrides={0: {"k": 4}}), "periods.overrides.0.k", "unknown key"),
    (changed(periods__overrides=[1]), "periods.overrides", "a mapping from period index"),
    (changed(network__stem=["cifar", "imagenet"]), "network.stem", "must be a single value"),
    (changed(network__stem="mnist"), "network.stem", "'cifar' or 'imagenet'"),
    (changed(network__num_classes=0), "network.num_classes", "greater than or equal to 1"),
    (changed(network__dropout=[0.0, 1.5]), "network.dropout.1", "less than 1"),
    (changed(network__bottleneck="maybe"), "network.bottleneck", "valid boolean"),
    (changed(network__width=2), "network.width", "unknown key"),
    (changed(constraints__max_flops="lots"), "constraints.max_flops", "a number such as 2.5e9 or 2.5G"),
    (changed(constraints__max_flops=-1), "constraints.max_flops", "greater than 0"),
    (changed(constraints__min_flops=1), "constraints.min_flops", "unknown key"),
    (changed(objectives=["accuracy", "speed"]), "objectives.1", "unknown objective 'speed'; allowed: accuracy (max)"),
    (changed(objectives=["flops"]), "objectives", "must include accuracy"),
    (changed(objectives=["accuracy", "accuracy"]), "objectives.1", "listed twice"),
    (changed(objectives="accuracy"), "objectives", "a list such as [accuracy, flops]"),
    (changed(proxy__epochs=0), "proxy.epochs", "greater than or equal to 1"),
    (changed(proxy__widht=0.5), "proxy.widht", "unknown key"),
    (changed(search__sampler="bayes"), "search.sampler", "'tpe', 'nsga2', 'nsga3', 'gp', 'qmc', 'random' or 'grid'"),
    (changed(search__trials=0), "search.trials", "greater than or equal to 1"),
    (changed(search__concurrency="two"), "search.concurrency", "valid integer"),
    (changed(search__resources={"gpu": 1.5}), "search.resources.gpu", "a fraction below 1"),
    (changed(search__scheduler="hyperband"), "search.scheduler.kind", "'asha' or 'none'"),
    (changed(search__scheduler={"grace_epochs": 3}), "search.scheduler.grace_epochs", "more than proxy.epochs (2)"),
    (changed(search__sampler="grid", periods__stages={"min": 2, "max": 200}), "search.sampler", "grid enumerates at most"),
    (changed(storage="optuna.db"), "storage", "an Optuna storage URL"),
    (changed(reference_point={"accuracy": 0}), "reference_point", "missing flops"),
    (changed(reference_point={"accuracy": 0, "flops": 1, "latency": 1}), "reference_point.latency", "not an objective"),
    (changed(reference_point={"accuracy": 0, "flops": "big"}), "reference_point.flops", "a number such as"),
    (changed(reference_point={"accuracy": float("nan"), "flops": 1}), "reference_point.accuracy", "a finite number, got nan"),
    (changed(reference_point={"accuracy": 0, "flops": float("inf")}), "reference_point.flops", "a finite number, got inf"),
    (changed(reference_point={"accuracy": 0, "flops": "9e999"}), "reference_point.flops", "a finite number, got inf"),
    (changed(name="my study"), "name", "not a study name"),
    (changed(constraints=[1]), "constraints", "expected a mapping, got list"),
]


@pytest.mark.parametrize("data, field, allowed", ERRORS, ids=[e[1] for e in ERRORS])
def test_validation_errors_name_file_and_key_path(tmp_path, data, field, allowed):
    path = write(tmp_path, data)
    with pytest.raises(RKSearchError) as e:
        load_space(path)
    assert str(e.value).startswith(f"{path}: {field}: "), str(e.value)
    assert allowed in str(e.value)


@pytest.mark.parametrize("text, message", [
    ("periods: [1, 2\n", "malformed YAML at line 2"),
    ("- periods\n", "expected a mapping with keys name, network, periods"),
    ("", "expected a mapping"),
])
def test_file_level_errors(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(RKSearchError, match=message) as e:
        load_space(path)
    assert str(e.value).startswith(f"{path}: ")


def test_cli_error_is_one_line_exit_2(tmp_path, capsys):
    path = write(tmp_path, changed(periods__stages={"min": 2, "max": 7, "step": 2}))
    assert cli("space", str(path)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert f"{path}: periods.stages.max:" in " ".join(err.split())


# -- the conditional structure ---------------------------------------------------------------


def check_conditionals(space: SearchSpace, params: dict[str, Any]) -> None:
    """m only for ERK periods, no per-period parameter beyond the period count."""
    spec = space.spec_from_params(params)
    n = params.get("periods", len(spec.periods))
    assert len(spec.periods) == n
    for name in params:
        if "." in name:
            i = int(name[1:].split(".")[0])
            assert i < n, (name, params)
            if name.endswith(".m"):
                assert spec.periods[i].method == "erk", (name, params)
    for i, p in enumerate(spec.periods):
        domain, name = space.periods.domain(i, "m")
        assert p.method == "erk" or (p.m == 1 and f"p{i}.m" not in params)
        assert p.method != "erk" or domain.fixed or name in params
    if "m" in params:
        assert any(p.method == "erk" for p in spec.periods)


def test_enumeration_respects_conditionals_and_matches_size():
    space = space_of()
    points = list(space.enumerate_params())
    for params in points:
        check_conditionals(space, params)
    specs = {space.spec_from_params(p) for p in points}
    assert len(points) == len(specs) == space.size()
    assert points == list(space.enumerate_params())  # a fixed order


@pytest.mark.parametrize("changes", [
    {},
    {"periods__method": {"values": ["erk", "irk"], "tie": True}, "periods__overrides": DELETE},
    {"periods__m": {"values": [1, 2, 4], "tie": True}, "periods__steps": [1, 2]},
    {"periods__count": {"min": 1, "max": 3}, "periods__overrides": {2: {"stages": 4, "m": 3}}},
    {"periods__method": "erk", "periods__overrides": {1: {"growth_rate": [6, 7]}}, "network__dropout": [0.0, 0.1]},
    {"periods__count": 2, "periods__method": "irk", "periods__m": DELETE, "periods__overrides": DELETE,
     "periods__growth_rate": 4, "network__bottleneck": False},
])
def test_size_equals_distinct_enumerated_specs(changes):
    space = space_of(**changes)
    specs = [space.spec_from_params(p) for p in space.enumerate_params()]
    assert len(set(specs)) == len(specs) == space.size()


def test_size_is_exact_without_enumerating():
    # per period: ERK 5 stages x 2 steps x 2 m + IRK 5 x 2 = 30; k: 3; bottleneck x attention: 4
    space = load_space(SPACES / "cifar_mixed.yaml")
    assert space.size() == 4 * 3 * sum(30**c for c in (2, 3, 4)) == 10_054_800


def test_huge_ranges_stay_lazy():
    s = 10**9 - 1  # stages 2..10^9: 2 periods give p0 (ERK: s x 2 m) x p1 (ERK 2s or IRK s) x k x bottleneck
    space = space_of(periods__stages={"min": 2, "max": 10**9})
    assert space.size() == 2 * s * 3 * s * 4 + 2 * s * 3 * s * 3 * s * 4
    assert space.spec_from_params(next(space.enumerate_params())).periods[0].stages == 2
    with pytest.raises(RKSearchError, match="at most 6 fit"):
        space_of(periods__count={"min": 1, "max": 10**12})


def test_sampling_is_uniform_over_distinct_specs():
    # 2 periods: p1.method x k = 4 specs; 3 periods: p1.method x p2.method x k = 8. A fair coin per
    # choice would draw each 2-period spec with 1/8 instead of 1/12
    space = space_of(periods__stages=2, network__bottleneck=False, periods__m=1)
    n, rng = 6000, random.Random(1)
    counts = collections.Counter(space.sample(rng) for _ in range(n))
    assert len(counts) == space.size() == 12
    expected = n / space.size()
    assert all(abs(c - expected) < 0.2 * expected for c in counts.values()), counts


def test_constraints_and_feasible_sampling():
    space = space_of(constraints={"max_flops": "6M", "max_params": "40k"})
    rng = random.Random(0)
    seen = set()
    for _ in range(300):
        spec = space.sample(rng)
        c = count(spec)
        v = space.violations(spec)
        assert v == pytest.approx([c.flops / 6e6 - 1, c.params / 4e4 - 1])
        assert space.feasible(spec) == (c.flops <= 6e6 and c.params <= 4e4)
        seen.add(space.feasible(spec))
    assert seen == {True, False}
    for _ in range(20):
        spec = space.sample_feasible(rng)
        assert spec is not None and space.feasible(spec)
    assert space_of(constraints={"max_flops": 1}).sample_feasible(rng, tries=50) is None
    assert space_of(constraints=DELETE).violations(spec) == []


def test_feasibility_exact_and_estimated():
    space = space_of()
    exact = space.feasibility()
    assert exact.exact and exact.checked == space.size()
    assert exact.feasible == sum(space.feasible(space.spec_from_params(p)) for p in space.enumerate_params())
    estimate = space.feasibility(random.Random(0), samples=3000, exact_limit=10)
    assert not estimate.exact and estimate.checked == 3000
    assert abs(estimate.fraction - exact.fraction) < 3 * estimate.margin


# -- Optuna ------------------------------------------------------------------------------------


def test_fixed_trial_reproduces_every_point():
    space = space_of()
    for params in space.enumerate_params():
        assert space.suggest(optuna.trial.FixedTrial(params)) == space.spec_from_params(params)


@pytest.mark.parametrize("sampler", [
    optuna.samplers.TPESampler(seed=0), optuna.samplers.NSGAIISampler(seed=0), optuna.samplers.RandomSampler(seed=0),
])
def test_real_study_trials_map_back_to_their_specs(sampler):
    space = space_of(periods__count={"min": 1, "max": 3}, periods__overrides=DELETE)
    specs = {}

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        spec = space.suggest(trial)
        specs[trial.number] = spec
        return float(len(spec.periods)), float(count(spec).flops)

    study = optuna.create_study(directions=space.directions, sampler=sampler)
    study.optimize(objective, n_trials=25)
    for t in study.trials:
        assert space.spec_from_params(t.params) == specs[t.number]
        check_conditionals(space, t.params)


def test_enqueued_grid_points_reproduce_their_specs():
    space = space_of()
    points = list(itertools.islice(space.enumerate_params(), 0, None, 37))
    study = optuna.create_study(directions=space.directions)
    for params in points:
        study.enqueue_trial(params)
    study.optimize(lambda t: (0.0, float(count(space.suggest(t)).flops)), n_trials=len(points))
    assert [t.params for t in study.trials] == points


def test_spec_from_params_rejects_foreign_params():
    space = space_of()
    params = next(space.enumerate_params())
    with pytest.raises(RKSearchError, match=r"params\.p0\.stages: missing"):
        space.spec_from_params({k: v for k, v in params.items() if k != "p0.stages"})
    with pytest.raises(RKSearchError, match=r"params\.p0\.stages: 9 is not one of 2\.\.3"):
        space.spec_from_params({**params, "p0.stages": 9})
    with pytest.raises(RKSearchError, match=r"params: not parameters .*: p2\.stages"):
        space.spec_from_params({**params, "p2.stages": 2})
    assert space.spec_from_params({**params, "p0.stages": 2.0}) == space.spec_from_params(params)


# -- the shipped spaces --------------------------------------------------------------------------

SHIPPED = sorted(SPACES.glob("*.yaml"))


def test_all_documented_spaces_are_shipped():
    assert {p.stem for p in SHIPPED} >= {"cifar_irk", "cifar_erk", "cifar_mixed", "svhn_irk", "imagenet_erk", "demo"}


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_space_loads_and_rksearch_space_reports_it(path, capsys):
    space = load_space(path)
    assert space.name == path.stem
    assert cli("space", str(path), "--sample", "3", "--seed", "1", "--json") == 0
    info = json.loads(capsys.readouterr().out)
    assert info["size"] == space.size() and 0 < info["feasible"]["fraction"] <= 1
    assert info["feasible"]["exact"] == (space.size() <= 20000)
    assert len(info["samples"]) == 3
    limits = space.constraints
    for s in info["samples"]:
        assert s["feasible"] == ((limits.max_flops is None or s["flops"] <= limits.max_flops)
                                 and (limits.max_params is None or s["params"] <= limits.max_params))
    assert cli("space", str(path), "--sample", "2") == 0
    text = capsys.readouterr().out
    assert space.name in text and f"{space.size():,} distinct specs" in text


CIFAR = {"growth_rate": 80, "multiscale": True}
IMAGENET = {"growth_rate": 32, "m": [2, 4, 8, 28], "stem": "imagenet", "input_size": 224, "num_classes": 1000,
            "multiscale": False}


@pytest.mark.parametrize("space_name, params, name, kwargs", [
    ("cifar_irk", {"p0.stages": 5, "p1.stages": 5, "p2.stages": 5, "growth_rate": 80, "bottleneck": True,
                   "attention": True}, "IRKNet-5x1_5x1_5x1-AB", CIFAR),
    ("svhn_irk", {"stages": 6, "growth_rate": 80, "bottleneck": False, "dropout": 0.2},
     "IRKNet-6x1_6x1_6x1-A", {**CIFAR, "dropout": 0.2}),
    ("cifar_erk", {**{f"p{i}.{f}": v for i in range(3) for f, v in (("stages", 6), ("steps", 1))},
                   "growth_rate": 36, "m": 1}, "ERKNet-6x1_6x1_6x1", {"growth_rate": 36}),
    ("imagenet_erk", {"p0.stages": 3, "p1.stages": 3, "p2.stages": 6, "p3.stages": 2, "p0.steps": 1,
                      "p1.steps": 1, "p2.steps": 1, "p3.steps": 1, "p3.m": 28}, "ERKNet-3x1_3x1_6x1_2x1-B", IMAGENET),
])
def test_paper_models_lie_in_the_shipped_spaces(space_name, params, name, kwargs):
    space = load_space(SPACES / f"{space_name}.yaml")
    spec = space.spec_from_params(params)
    assert spec == parse_name(name, **kwargs)
    assert space.feasible(spec)
