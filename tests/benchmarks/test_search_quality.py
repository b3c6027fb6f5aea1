"""The search-quality benchmark's statistics against hand-computed cases, and one tiny real run."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from rksearch.search.replay import load_table
from rksearch.search.simulate import simulate
from rksearch.space.search_space import load_space
from helpers import write_space, write_table

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import search_quality as sq  # noqa: E402


def test_iqm_is_the_mean_of_the_middle_half() -> None:
    assert sq.iqm(np.array([1, 2, 3, 4])) == 2.5
    assert sq.iqm(np.array([8, 1, 7, 2, 6, 3, 5, 4])) == 4.5  # mean of 3, 4, 5, 6
    assert sq.iqm(np.array([0, 0, 0, 100])) == 0.0  # an outlier seed does not move it


def test_bootstrap_interval() -> None:
    assert sq.bootstrap_ci(np.full(10, 0.7)) == (pytest.approx(0.7), pytest.approx(0.7))
    values = np.arange(20, dtype=float)
    lo, hi = sq.bootstrap_ci(values)
    assert 0 < lo < sq.iqm(values) < hi < 19 and sq.bootstrap_ci(values) == (lo, hi)  # seeded: reproducible


def test_normalized_hypervolume_by_hand() -> None:
    # one point (0.5, 1e6) against (0.1, 3e6): a rectangle of 0.4 x 2e6
    assert sq.normalized_hv(np.array([[0.5, 1e6]]), 1.6e6, (0.1, 3e6)) == pytest.approx(0.5)
    # a dominated point adds nothing; a second front point adds its slab
    pts = np.array([[0.5, 1e6], [0.4, 2e6], [0.6, 2e6]])
    by_hand = 0.4 * 1e6 + 0.5 * 1e6  # accuracy 0.5 over [1e6, 2e6], 0.6 - 0.1 over [2e6, 3e6]
    assert sq.normalized_hv(pts, by_hand, (0.1, 3e6)) == pytest.approx(1.0)
    assert sq.normalized_hv(np.empty((0, 2)), 1.0, (0.1, 3e6)) == 0.0


def test_a_search_scores_at_most_the_true_front_and_grows_with_cost(tmp_path: Path) -> None:
    space_path = write_space(tmp_path)
    table = load_table(write_table(tmp_path, space_path))
    space = load_space(space_path)
    judge = sq.Judge.of(table, 3, (0.0, 10e6))
    assert judge.score(list(table.curves)) == pytest.approx(1.0)  # every spec: the true front
    sim = simulate(sq.strategy_space(space, "random"), table, seed=3, budget=0.3 * judge.table_cost)
    assert judge.table_cost * 0.3 <= sim.cost < judge.table_cost * 0.3 + max(c for _, c in sim.costs)
    scores = sq.curve(sim, judge, [0.1 * judge.table_cost, 0.2 * judge.table_cost, 0.3 * judge.table_cost])
    assert scores == sorted(scores) and 0 < scores[-1] <= 1.0


def test_bad_arguments_exit_2(tmp_path: Path, capsys) -> None:
    space_path = write_space(tmp_path)
    assert sq.main([str(space_path), str(tmp_path / "none.csv"), "--seeds", "2"]) == 2
    err = capsys.readouterr().err
    assert "no such table" in err and len(err.strip().splitlines()) == 1
    assert sq.main([str(space_path), str(tmp_path / "none.csv"), "--seeds", "1"]) == 2


def test_a_prescreened_strategy_reads_the_cache_and_pays_for_its_scoring(tmp_path: Path) -> None:
    space_path = write_space(tmp_path)
    table = load_table(write_table(tmp_path, space_path))
    space, judge = load_space(space_path), sq.Judge.of(table, 3, (0.0, 10e6))
    cache = {n: {"synflow": float(flops), "synflow_seconds": 0.5} for n, (flops, _) in table.counts.items()}
    every = sq.strategy_space(space, "random+zc", specs=len(table.curves))
    assert every.search.prescreen.trials == len(table.curves) - 8 + 1  # each slot can still draw 8 untaken specs
    s_space = sq.strategy_space(space, "tpe+zc4", score="synflow", candidates=8, specs=len(table.curves))
    assert (s_space.search.sampler, s_space.search.scheduler.kind, s_space.search.prescreen.trials) == ("tpe", "none", 4)
    scorer = sq.CachedScorer(cache, "synflow")
    sim = simulate(s_space, table, seed=0, budget=0.3 * judge.table_cost, scorer=scorer)
    trials = sorted(sim.study.trials, key=lambda t: t.number)
    pre = [t for t in trials if "prescreen_score" in t.user_attrs]
    assert [t.number for t in pre] == [0, 1, 2, 3] and len(trials) > 4  # a warm start; then TPE proposes
    for t in pre:  # the best of its 8 candidates by the cached score (here FLOPs: the largest)
        assert t.user_attrs["prescreen_score"] == max(t.user_attrs["prescreen_scores"]) == cache[t.user_attrs["name"]]["synflow"]
    scored = {n for t in pre for n in t.user_attrs["prescreen_names"]}
    assert scorer.spent == pytest.approx(0.5 * len(scored))  # each distinct candidate paid once
    assert sq.curve(sim, judge, [scorer.spent], scorer.spent) == [0.0]  # the clock starts after the scoring


def test_the_scripts_errors(tmp_path: Path, capsys) -> None:
    space_path = write_space(tmp_path)
    table_path = write_table(tmp_path, space_path)
    base = [str(space_path), str(table_path), "--seeds", "2", "--budget", "0.2"]
    assert sq.main([*base, "--strategies", "random+zc"]) == 2
    assert "--zerocost" in capsys.readouterr().err
    assert sq.main([*base, "--strategies", "annealing"]) == 2
    assert "unknown strategy" in capsys.readouterr().err
    assert sq.main([*base, "--replot", "--out", str(tmp_path)]) == 2  # no report.json there


@pytest.mark.slow
def test_a_prescreened_run_end_to_end(tmp_path: Path) -> None:
    """Two strategies replayed twice each (about 18 s on 2 busy cores), then the figure redrawn from the report."""
    import json

    space_path = write_space(tmp_path)
    table_path = write_table(tmp_path, space_path)
    names = list(load_table(table_path).curves)
    base = [str(space_path), str(table_path), "--seeds", "2", "--budget", "0.2"]
    cache = tmp_path / "zerocost.csv"
    cache.write_text("name,naswot,naswot_seconds\n" + "".join(f"{n},{i},0.01\n" for i, n in enumerate(names)))
    assert sq.main([*base, "--strategies", "random", "tpe+zc", "--zerocost", str(cache), "--zc-score", "naswot",
                    "--out", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["zc_score"] == "naswot" and report["strategies"]["random"]["scoring_seconds_mean"] == 0.0
    assert 0 < report["strategies"]["tpe+zc"]["scoring_seconds_mean"] <= 0.01 * len(names) + 1e-9
    (tmp_path / "out" / "figure.html").unlink()
    assert sq.main([*base, "--replot", "--out", str(tmp_path / "out")]) == 0  # redrawn from the report alone
    assert (tmp_path / "out" / "figure.html").is_file()
