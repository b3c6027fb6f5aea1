"""Pre-screening with zero-cost scores: the best candidate is chosen, every score is recorded."""
from __future__ import annotations

import math
import random
from pathlib import Path

import optuna
import pytest
import yaml

from rksearch.core.errors import RKSearchError
from rksearch.proxies.prescreen import _best, draw_feasible, enqueue_prescreened, param_key, prescreen_points
from rksearch.space.search_space import load_space, parse_space
from rksearch.proxies.zerocost import score_spec

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "search_spaces" / "demo.yaml"


@pytest.fixture
def pre_space(demo_space):
    """``pre_space(name="pre", prescreen=None, concurrency=2, **proxy)``: the shrunk demo space
    (conftest.py), three random trials, no scheduler, with a prescreen section and ``proxy`` fields."""
    def make(name: str = "pre", prescreen: dict | None = None, concurrency: int = 2, **proxy) -> Path:
        overrides = {f"proxy__{k}": v for k, v in proxy.items()}
        if prescreen is not None:
            overrides["search__prescreen"] = prescreen
        return demo_space(name, search__sampler="random", search__trials=3, search__scheduler="none",
                          search__concurrency=concurrency, **overrides)

    return make


def test_sample_params_are_the_params_of_the_sampled_spec():
    space = load_space(DEMO)
    for seed in range(50):
        params = space.sample_params(random.Random(seed))
        assert space.spec_from_params(params) == space.sample(random.Random(seed))
        assert set(params) <= set(space.parameters())


def test_draw_feasible_is_distinct_feasible_and_excludes():
    space = load_space(DEMO)
    first = draw_feasible(space, random.Random(0), 30)
    keys = [param_key(p) for p in first]
    assert len(set(keys)) == 30
    assert all(space.feasible(space.spec_from_params(p)) for p in first)
    more = draw_feasible(space, random.Random(0), 10, exclude=keys)
    assert not {param_key(p) for p in more} & set(keys)


def test_the_best_candidate_is_chosen_and_every_score_recorded():
    space = load_space(DEMO)
    points = prescreen_points(space, 3, 5, "synflow", seed=1)
    assert len(points) == 3
    assert len({param_key(p.params) for p in points}) == 3
    for p in points:
        assert len(p.scores) == len(p.names) == 5
        assert p.value == max(p.scores) and p.scores.index(p.value) == p.chosen
        spec = space.spec_from_params(p.params)
        assert space.feasible(spec)
        assert p.names[p.chosen] == spec.name
        # the recorded score is the score of the spec that gets trained
        assert score_spec(spec, ["synflow"], seed=1, width=space.proxy.width).values["synflow"] == p.value
        attrs = p.user_attrs
        assert attrs["prescreen_score"] == p.value and attrs["prescreen_scores"] == p.scores
        assert attrs["prescreen_method"] == "synflow" and attrs["prescreen_seconds"] > 0
    again = prescreen_points(space, 3, 5, "synflow", seed=1)
    assert [p.params for p in again] == [p.params for p in points]  # deterministic for a seed
    assert [p.params for p in prescreen_points(space, 3, 5, "synflow", seed=2)] != [p.params for p in points]


def test_a_data_score_reads_the_proxy_data():
    space = load_space(DEMO)
    (point,) = prescreen_points(space, 1, 3, "naswot", seed=0, batch_size=16)
    assert all(math.isfinite(v) for v in point.scores)
    assert point.value == max(point.scores)


def test_ties_and_nan_pick_the_first_best():
    assert _best([1.0, 3.0, 3.0, 2.0]) == 1
    assert _best([math.nan, -math.inf, 0.0]) == 2
    assert _best([math.nan, math.nan]) == 0


def test_enqueue_records_the_scores_on_waiting_trials(pre_space):
    space = load_space(pre_space(prescreen={"candidates": 3, "trials": 2}))
    study = optuna.create_study(directions=["maximize", "minimize"])
    points = enqueue_prescreened(study, space, trials=3)
    assert len(points) == len(study.get_trials(states=(optuna.trial.TrialState.WAITING,))) == 2  # not 3
    for point in points:
        trial = study.ask()  # what the searcher does: the enqueued trials come first, as they are
        assert space.suggest(trial) == space.spec_from_params(point.params)
        assert trial.params == point.params
        assert trial.user_attrs["prescreen_scores"] == point.scores
        assert trial.user_attrs["prescreen_score"] == max(point.scores)
    assert enqueue_prescreened(study, space, trials=3) == []  # a continued study keeps its points
    off = load_space(pre_space(name="off"))
    assert off.search.prescreen is None  # off by default
    assert enqueue_prescreened(optuna.create_study(), off, trials=3) == []


def test_all_trials_by_default(pre_space):
    space = load_space(pre_space(prescreen={"candidates": 2}))
    assert len(enqueue_prescreened(optuna.create_study(directions=["maximize", "minimize"]), space, trials=4)) == 4


@pytest.mark.parametrize("section, field, message", [
    ({"candidates": 1}, "search.prescreen.candidates", "greater than or equal to 2"),
    ({"score": "flops"}, "search.prescreen.score", "'synflow', 'naswot', 'grad_norm' or 'snip'"),
    ({"trials": 0}, "search.prescreen.trials", "greater than or equal to 1"),
    ({"candidate": 4}, "search.prescreen.candidate", "unknown key"),
])
def test_bad_prescreen_sections_name_file_and_field(pre_space, section, field, message):
    path = pre_space(prescreen=section)
    with pytest.raises(RKSearchError) as e:
        load_space(path)
    assert f"{path}: {field}: " in str(e.value) and message in str(e.value)


def test_grid_has_nothing_to_prescreen(pre_space):
    data = yaml.safe_load(pre_space(prescreen={}).read_text())
    data["search"]["sampler"] = "grid"
    with pytest.raises(RKSearchError, match=r"x.yaml: search.prescreen: grid trains every point"):
        parse_space(data, source="x.yaml")


def test_too_small_a_space_for_the_candidates(pre_space):
    data = yaml.safe_load(pre_space(prescreen={"candidates": 3}).read_text())
    data["periods"] = {"count": 2, "method": "erk", "stages": [2, 3], "growth_rate": 4}  # 4 specs
    data["network"] = {k: v for k, v in data["network"].items() if k != "bottleneck"}
    space = parse_space(data, source="tiny.yaml")
    with pytest.raises(RKSearchError, match=r"tiny.yaml: search.prescreen.candidates: found only 2 of 3"):
        enqueue_prescreened(optuna.create_study(directions=["maximize", "minimize"]), space, trials=3)


def test_data_errors_name_the_space_and_the_proxy_field(pre_space):
    space = load_space(pre_space(prescreen={"score": "snip"}, dataset="imagefolder", root="nowhere.zip"))
    with pytest.raises(RKSearchError, match=r"pre.yaml: proxy.root: nowhere.zip: no such folder"):
        prescreen_points(space, 1, 2, "snip")


@pytest.mark.slow
def test_a_search_trains_the_prescreened_candidates(tmp_path: Path, pre_space, ray_session):
    """Needs ``enqueue_prescreened`` called from ``run_search``: real Ray (the session's), real training."""
    from rksearch.search.driver import run_search

    space = load_space(pre_space(prescreen={"candidates": 4, "trials": 2}, concurrency=1))  # one worker: a cold start less
    result = run_search(space, out=tmp_path / "studies")
    study = optuna.load_study(study_name="pre", storage=result.storage)
    trials = sorted(study.trials, key=lambda t: t.number)
    screened = [t for t in trials if "prescreen_scores" in t.user_attrs]
    assert len(screened) == 2 and [t.number for t in screened] == [0, 1]
    expected = prescreen_points(space, 2, 4, "synflow", seed=space.search.seed or 0)
    for trial, point in zip(screened, expected):
        assert trial.params == point.params  # the best candidate is what was trained
        assert trial.user_attrs["prescreen_scores"] == point.scores
        assert trial.user_attrs["outcome"] == "trained" and trial.state == optuna.trial.TrialState.COMPLETE
        assert trial.user_attrs["name"] == point.names[point.chosen]
    assert result.done == 3  # the third trial is the sampler's
    assert "prescreen_scores" not in trials[-1].user_attrs
