"""The shipped Table 1 grid study, the ``candidates:`` DSL it is written in, and its claim helpers."""
from __future__ import annotations

import copy
import pickle
import random
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from paper_study import TABLE1_SPACE, make_table1_study

from rksearch import count, parse_name
from rksearch.cli import main
from rksearch.core.errors import RKSearchError
from rksearch.analysis.paper import PAPER_POINTS
from rksearch.analysis.paper_claims import claim_summary, table1_frame, verdicts
from rksearch.space.search_space import load_space, parse_space
from rksearch.analysis.study import load_study

optuna.logging.set_verbosity(optuna.logging.WARNING)

TABLE1 = [p for p in PAPER_POINTS if p.table == 1]
NAMES = [p.model.removesuffix(" k=36") for p in TABLE1]
# an ERK-IRK list with shared defaults: the smallest space that exercises every key
BASE: dict[str, Any] = {
    "network": {"dropout": [0.0, 0.2]},
    "candidates": {"growth_rate": 12, "m": 1, "names": ["ERKNet-3x1_3x1", "IRKNet-2x1_2x1"]},
}


def write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def with_candidates(candidates: Any, **top: Any) -> dict[str, Any]:
    return {**copy.deepcopy(BASE), "candidates": candidates, **top}


def close(ours: float, paper: float) -> bool:
    """Within 2 % of the paper, its two-decimal rounding aside (as tests/arch/test_count.py)."""
    return abs(ours - paper) <= 0.02 * paper + 0.005


# -- the shipped space -------------------------------------------------------------------------


def test_the_space_is_table1s_setting():
    space = load_space(TABLE1_SPACE)
    assert space.name == "paper_table1" and space.periods is None
    assert space.size() == 8 and list(space.parameters()) == ["candidate"]
    assert space.search.sampler == "grid" and space.search.trials == 8 and space.search.scheduler.kind == "none"
    assert space.constraints.max_flops is None and space.constraints.max_params is None
    assert space.feasibility().fraction == 1.0
    assert pickle.loads(pickle.dumps(space)).size() == 8  # Ray pickles the searcher that holds the space
    p = space.proxy
    assert (p.dataset, p.root, p.batch_size, p.augment, p.width) == (
        "cifar10", None, 64, False, 1.0)  # torchvision's CIFAR-10, downloaded on first use
    assert 1 <= p.epochs < 300


def test_the_grid_is_exactly_table1_with_its_counts():
    space = load_space(TABLE1_SPACE)
    points = list(space.enumerate_params())
    assert points == [{"candidate": n} for n in NAMES]
    for point, paper in zip(points, TABLE1):
        spec = space.spec_from_params(point)
        assert spec == parse_name(point["candidate"], growth_rate=36, m=1, multiscale=True, dropout=0.2)
        assert {(q.growth_rate, q.m) for q in spec.periods} == {(36, 1)}
        c = count(spec)
        assert close(c.gflops, paper.gflops) and close(c.mparams, paper.mparams), (spec.name, c.gflops, c.mparams)


def test_suggest_and_params_round_trip_through_optuna():
    space = load_space(TABLE1_SPACE)
    for name in NAMES:
        spec = space.suggest(optuna.trial.FixedTrial({"candidate": name}))
        assert spec.name == name and space.spec_from_params({"candidate": name}) == spec
    study = optuna.create_study(directions=space.directions, sampler=optuna.samplers.RandomSampler(seed=0))
    for params in space.enumerate_params():  # as rksearch run does for sampler: grid
        study.enqueue_trial(params, skip_if_exists=True)
    seen = []
    for _ in range(8):
        trial = study.ask()
        spec = space.suggest(trial)
        assert space.spec_from_params(trial.params) == spec
        seen.append(spec.name)
        study.tell(trial, [0.5, count(spec).flops])
    assert seen == NAMES
    grid = optuna.create_study(sampler=optuna.samplers.GridSampler({"candidate": NAMES}, seed=0))
    grid.optimize(lambda t: count(space.suggest(t)).gflops, n_trials=8)
    assert sorted(t.params["candidate"] for t in grid.trials) == sorted(NAMES)
    with pytest.raises(RKSearchError, match="'ERKNet-5x1_5x1_5x1' is not one of"):
        space.spec_from_params({"candidate": "ERKNet-5x1_5x1_5x1"})


# -- the candidates DSL ------------------------------------------------------------------------


def test_network_choices_multiply_the_list_and_sampling_is_uniform():
    space = parse_space(BASE)
    assert space.size() == 4 and list(space.parameters()) == ["candidate", "dropout"]
    specs = [space.spec_from_params(p) for p in space.enumerate_params()]
    assert [(s.name, s.dropout) for s in specs] == [
        ("ERKNet-3x1_3x1", 0.0), ("ERKNet-3x1_3x1", 0.2), ("IRKNet-2x1_2x1", 0.0), ("IRKNet-2x1_2x1", 0.2)]
    rng = random.Random(0)
    drawn = [space.sample(rng) for _ in range(400)]
    assert all(80 <= sum(d == s for d in drawn) <= 120 for s in specs)


def test_entries_fields_labels_and_name_flags():
    data = with_candidates([
        {"name": "IRKNet-5x1_5x1_5x1-AB", "growth_rate": 80, "label": "IRKNet-5x1_5x1_5x1-AB k=80"},
        {"name": "IRKNet-5x1_5x1_5x1-BA", "growth_rate": 150, "label": "IRKNet-5x1_5x1_5x1-AB k=150"},
        {"name": "ERKNet-3x1_3x1", "growth_rate": [8, 16], "m": [2, 4]},
    ], network={"multiscale": True})
    space = parse_space(data)
    assert space.size() == 3
    big = space.spec_from_params({"candidate": "IRKNet-5x1_5x1_5x1-AB k=150"})
    assert big.attention and big.bottleneck and big == parse_name("IRKNet-5x1_5x1_5x1-AB", growth_rate=150)
    assert close(count(big).gflops, 7.62) and close(count(big).mparams, 4.87)  # Table 2
    erk = space.spec_from_params({"candidate": "ERKNet-3x1_3x1"})
    assert [(q.growth_rate, q.m) for q in erk.periods] == [(8, 2), (16, 4)] and not erk.attention
    one = parse_space(with_candidates({"growth_rate": 12, "names": ["IRKNet-2x1_2x1"]}, network={}))
    assert one.size() == 1 and list(one.enumerate_params()) == [{}] and one.parameters() == {}


CANDIDATE_ERRORS = [
    (["ERKNet-3x1", {"name": "ERKNet-4x1", "growth_rate": 12}, "IRKNet-2x1"], "candidates.0", "no growth_rate"),
    ([{"name": f"ERKNet-{s}x1", "growth_rate": 12} for s in (2, 3, 4, "6x1-6")], "candidates.3.name",
     "cannot parse 'ERKNet-6x1-6x1': expected e.g. ERKNet-6x1_6x1_6x1"),
    ({"growth_rate": 12, "names": ["ERKNet-3x1", "ERKNet-3x1_"]}, "candidates.names.1",
     "period 1 '' in 'ERKNet-3x1_' is not of the form SxR"),
    ({"growth_rate": 12, "names": ["ERKNet-3x1", "IRKNet-1x1_2x1"]}, "candidates.names.1",
     "IRKNet-1x1_2x1: periods.0.stages: an IRK period needs stages >= 2"),
    ({"growth_rate": 12, "names": ["ERKNet-3x1", "ERKNet-3X1"]}, "candidates.names.1", "ERKNet-3x1 repeats item 0"),
    ({"growth_rate": 12, "names": ["IRKNet-3x1-A", {"name": "IRKNet-3x1-A", "growth_rate": 24}]},
     "candidates.names.1", "IRKNet-3x1-A is item 0's label too; give one of them its own"),
    ({"growth_rate": 12, "names": ["ERKNet-3x1", {"name": "ERKNet-3x1", "label": "again"}]},
     "candidates.names.1", "ERKNet-3x1 repeats item 0: the same spec"),
    ({"growth_rate": [12, 24], "names": ["ERKNet-3x1_3x1_3x1"]}, "candidates.growth_rate", "got 2 values for 3 periods"),
    ({"growth_rate": 12, "names": [{"name": "ERKNet-3x1", "growth_rate": 0}]}, "candidates.names.0.growth_rate",
     "greater than or equal to 1"),
    ({"growth_rate": 12, "names": [{"name": "ERKNet-3x1", "m": [1, "x"]}]}, "candidates.names.0.m.1", "valid integer"),
    ({"growth_rate": 12, "names": [{"name": "IRKNet-3x1", "m": 2}]}, "candidates.names.0.m",
     "IRKNet-3x1 has no ERK period, and m applies to ERK periods only"),
    ({"growth_rate": 12, "m": 2, "names": ["IRKNet-3x1"]}, "candidates.m", "no candidate has an ERK period"),
    ({"growth_rate": 12, "names": [{"nam": "ERKNet-3x1"}]}, "candidates.names.0.nam", "unknown key; allowed: name, label"),
    ({"growth_rate": 12, "names": [{"growth_rate": 12}]}, "candidates.names.0.name", "required: a spec name"),
    ({"growth_rate": 12, "names": ["ERKNet-3x1", 7]}, "candidates.names.1", "expected a spec name or a mapping"),
    ({"growth_rate": 12, "names": [{"name": "ERKNet-3x1", "label": ""}]}, "candidates.names.0.label", "non-empty"),
    ({"growth_rate": 12, "steps": 2, "names": ["ERKNet-3x1"]}, "candidates.steps", "unknown key; allowed: names"),
    ({"growth_rate": 12}, "candidates.names", "expected a non-empty list of spec names"),
    ([], "candidates", "expected a non-empty list of spec names"),
    ("ERKNet-3x1", "candidates", "expected a non-empty list of spec names"),
    ({"growth_rate": 12, "names": ["ERKNet-3x1_3x1_3x1_3x1_3x1_3x1_3x1"]}, "candidates.names.0",
     "input_size: 32 px shrinks to nothing before period 6"),
]


@pytest.mark.parametrize("candidates, field, message", CANDIDATE_ERRORS, ids=[f"{e[1]}-{i}" for i, e in enumerate(CANDIDATE_ERRORS)])
def test_candidate_errors_name_file_and_key_path(tmp_path, candidates, field, message):
    path = write(tmp_path, with_candidates(candidates))
    with pytest.raises(RKSearchError) as e:
        load_space(path)
    assert str(e.value).startswith(f"{path}: {field}: "), str(e.value)
    assert message in str(e.value), str(e.value)


@pytest.mark.parametrize("data, field, message", [
    ({**BASE, "periods": {"count": 3, "method": "erk", "stages": 3, "growth_rate": 12}}, "candidates",
     "give either periods (choices per period) or candidates (a list of specs), not both"),
    ({**BASE, "network": {"bottleneck": [False, True]}}, "network.bottleneck", "each candidate's name sets it (suffix -B)"),
    ({"network": {}}, "periods", "required: the per-period choices (count, method, stages, steps, growth_rate, m), "
                                 "or instead a candidates: list of spec names"),
])
def test_candidates_against_the_other_sections(tmp_path, data, field, message):
    path = write(tmp_path, data)
    with pytest.raises(RKSearchError) as e:
        load_space(path)
    assert str(e.value).startswith(f"{path}: {field}: {message}"), str(e.value)


def test_cli_reports_a_bad_candidate_in_one_line_exit_2(tmp_path, capsys):
    path = write(tmp_path, with_candidates({"growth_rate": 12, "names": ["ERKNet-3x1", "ERKNet-3x1_"]}))
    with pytest.raises(SystemExit) as e:
        main(["space", str(path)])
    assert e.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "Traceback" not in err and f"{path}: candidates.names.1: " in err


# -- the claim, from a study the engine's searcher recorded -------------------------------------


def test_table1_frame_and_claim_from_a_recorded_study(tmp_path):
    errors = {n: 30.0 - i for i, n in enumerate(NAMES[:4])}  # ERK: falls with every stage
    errors |= {"IRKNet-3x1_3x1_3x1": 25.0, "IRKNet-4x1_3x1_3x1": 26.0, "IRKNet-4x1_4x1_3x1": 24.0}  # IRK: not
    study = load_study(make_table1_study(tmp_path, errors, epochs=5))
    assert study.state_counts() == {"COMPLETE": 7, "FAIL": 1}
    assert study.proxy["epochs"] == 5
    frame = table1_frame(study)
    assert frame["model"].tolist() == NAMES and frame["stages"].tolist() == [18, 19, 20, 21, 9, 10, 11, 12]
    assert frame["trials"].tolist() == [1] * 7 + [0]
    assert frame["proxy_error"].round(6).tolist()[:7] == [30.0, 29.0, 28.0, 27.0, 25.0, 26.0, 24.0]
    assert frame["proxy_error"].isna().tolist() == [False] * 7 + [True]
    assert frame["paper_error"].tolist() == [p.error for p in TABLE1]
    summary = claim_summary(frame).set_index("method")
    assert summary.loc["ERK", "study_falls"] and summary.loc["ERK", "study_rho"] == pytest.approx(-1)
    assert not summary.loc["IRK", "study_falls"] and summary.loc["IRK", "study_rho"] == pytest.approx(-0.5)
    assert summary["paper_falls"].all() and (summary["paper_rho"] == -1).all()
    assert summary["measured"].tolist() == [4, 3]
    lines = verdicts(claim_summary(frame))
    assert "IRK, study: error does not fall with every added stage (Spearman rho -0.50)" in lines
