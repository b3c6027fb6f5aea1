"""Rank statistics against hand-computed cases (and scipy where it happens to be installed)."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rksearch.core.errors import RKSearchError
from rksearch.proxies.ranking import average_ranks, kendall_tau, spearman_rho, top_k, top_k_overlap

# b against a = 1..5: pairs (3,1) (3,2) (5,4) discordant, the other 7 concordant -> tau = 4/10;
# rank differences -2, 1, 1, -1, 1 -> rho = 1 - 6 * 8 / (5 * 24)
A, B = [1, 2, 3, 4, 5], [3, 1, 2, 5, 4]
# with ties: 4 concordant pairs, one pair tied in a only and one in b only -> tau-b = 4 / sqrt(5 * 5);
# average ranks (1, 2.5, 2.5, 4) and (1, 2, 3.5, 3.5) -> rho = 3.75 / 4.5
TA, TB = [1, 2, 2, 3], [1, 2, 3, 3]


def test_hand_computed_without_ties():
    assert kendall_tau(A, B) == pytest.approx(0.4)
    assert spearman_rho(A, B) == pytest.approx(0.6)


def test_hand_computed_with_ties():
    assert kendall_tau(TA, TB) == pytest.approx(0.8)
    assert spearman_rho(TA, TB) == pytest.approx(5 / 6)


def test_average_ranks_share_the_mean_of_tied_positions():
    assert average_ranks([5, 7, 5]) == [1.5, 3.0, 1.5]
    assert average_ranks([2, 2, 2, 1]) == [3.0, 3.0, 3.0, 1.0]


def test_extremes_and_constant_input():
    assert kendall_tau(A, A) == 1.0 and spearman_rho(A, A) == pytest.approx(1.0)
    assert kendall_tau(A, A[::-1]) == -1.0 and spearman_rho(A, A[::-1]) == pytest.approx(-1.0)
    assert math.isnan(kendall_tau(A, [1] * 5)) and math.isnan(spearman_rho(A, [1] * 5))


def test_infinite_scores_still_rank():
    # a singular NASWOT kernel scores -inf: the worst, not a hole in the ranking
    assert kendall_tau([-math.inf, 1, 2], [0, 1, 2]) == 1.0
    assert spearman_rho([-math.inf, -math.inf, 2], [0, 1, 2]) == pytest.approx(math.sqrt(3) / 2)


def test_accepts_tensors():
    assert kendall_tau(torch.tensor(A), torch.tensor(B, dtype=torch.float64)) == pytest.approx(0.4)


@pytest.mark.parametrize(
    "a, b, message",
    [([1, 2], [1, 2, 3], "2 values with 3"), ([1], [1], "at least 2"), ([1, math.nan], [1, 2], "NaN")],
)
def test_bad_input_is_a_user_error(a, b, message):
    for f in (kendall_tau, spearman_rho):
        with pytest.raises(RKSearchError, match=message):
            f(a, b)


def test_top_k_overlap():
    a, b = [0.9, 0.8, 0.1, 0.5], [0.1, 0.8, 0.9, 0.7]
    assert top_k(a, 2) == [0, 1] and top_k(b, 2) == [2, 1]
    assert top_k_overlap(a, b, 2) == 0.5
    assert top_k_overlap(a, b, 1) == 0.0
    assert top_k_overlap(a, b, 4) == 1.0
    assert top_k([1, 3, 3], 1) == [1]  # ties: the earlier wins
    with pytest.raises(RKSearchError, match="k must be in 1..4"):
        top_k_overlap(a, b, 5)


values = st.lists(st.integers(-5, 5), min_size=2, max_size=12)


@given(st.data())
def test_properties(data):
    a = data.draw(values)
    b = data.draw(st.lists(st.integers(-5, 5), min_size=len(a), max_size=len(a)))
    tau, rho = kendall_tau(a, b), spearman_rho(a, b)
    if math.isnan(tau):
        assert len(set(a)) == 1 or len(set(b)) == 1
        return
    assert -1 - 1e-12 <= tau <= 1 + 1e-12 and -1 - 1e-12 <= rho <= 1 + 1e-12
    assert kendall_tau(b, a) == pytest.approx(tau)
    # invariant under a strictly increasing transform, negated by a decreasing one
    assert kendall_tau([x**3 + 10 for x in a], b) == pytest.approx(tau)
    assert spearman_rho([-x for x in a], b) == pytest.approx(-rho)


def test_against_scipy_if_installed():
    stats = pytest.importorskip("scipy.stats")
    rng = torch.Generator().manual_seed(0)
    for _ in range(20):
        a = torch.randint(0, 6, (15,), generator=rng).tolist()
        b = torch.randint(0, 6, (15,), generator=rng).tolist()
        assert kendall_tau(a, b) == pytest.approx(stats.kendalltau(a, b).statistic)
        assert spearman_rho(a, b) == pytest.approx(stats.spearmanr(a, b).statistic)
