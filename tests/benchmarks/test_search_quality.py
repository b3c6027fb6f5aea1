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
