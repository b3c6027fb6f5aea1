"""Unit tests of the search driver's arithmetic (no Ray, no training): fast, unlike test_search.py."""
from __future__ import annotations

import pytest


def test_overhead_share_counts_concurrency() -> None:
    """Issue 22's demo numbers by hand: 151 s of trials in 103 s of wall time at concurrency 2 is
    27 % overhead (the old formula, without concurrency, said 0 %)."""
    from rksearch.search.driver import overhead_share

    assert overhead_share(151, 103, 2) == pytest.approx(1 - 151 / 206)
    assert round(100 * overhead_share(151, 103, 2)) == 27
    assert overhead_share(100, 100, 1) == 0.0 and overhead_share(50, 100, 1) == 0.5
    assert overhead_share(0, 0, 2) == 0.0 and overhead_share(300, 100, 2) == 0.0  # clamped
