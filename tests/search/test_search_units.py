"""Unit tests of the search driver's arithmetic and choices (no Ray started, no training): fast, unlike test_search.py."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_overhead_share_counts_concurrency() -> None:
    """Issue 22's demo numbers by hand: 151 s of trials in 103 s of wall time at concurrency 2 is
    27 % overhead (the old formula, without concurrency, said 0 %)."""
    from rksearch.search.overhead import overhead_share

    assert overhead_share(151, 103, 2) == pytest.approx(1 - 151 / 206)
    assert round(100 * overhead_share(151, 103, 2)) == 27
    assert overhead_share(100, 100, 1) == 0.0 and overhead_share(50, 100, 1) == 0.5
    assert overhead_share(0, 0, 2) == 0.0 and overhead_share(300, 100, 2) == 0.0  # clamped


@pytest.mark.parametrize("address, env, joins", [
    (None, None, "local"),            # a Ray of its own, never one `ray start` announced here
    (None, "10.0.0.1:6379", None),    # RAY_ADDRESS: Ray's own way to name a cluster is kept
])
def test_without_an_address_the_search_starts_its_own_ray(monkeypatch, address, env, joins) -> None:
    import ray

    from rksearch.search.cluster import init_ray
    from rksearch.space.search_space import load_space

    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    if env is None:
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
    else:
        monkeypatch.setenv("RAY_ADDRESS", env)
    init_ray(address, load_space(ROOT / "search_spaces" / "demo.yaml"))
    assert calls and calls[0].get("address") == joins
