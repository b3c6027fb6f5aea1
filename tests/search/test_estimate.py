"""The cost estimate before a search: ASHA's share of epochs by hand, and the estimate against a measured trial."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from rksearch.search.estimate import TRIAL_START_S, asha_share, estimate
from rksearch.space.search_space import load_space

ROOT = Path(__file__).resolve().parents[2]


def test_asha_share_by_hand() -> None:
    assert asha_share(1, 2, 3) == pytest.approx((1 + 1 * 0.5 + 1 * 0.25) / 3)  # rungs 1, 2; a quarter reach 3
    assert asha_share(1, 3, 9) == pytest.approx((1 + 2 / 3 + 6 / 9) / 9)  # rungs 1, 3
    assert asha_share(4, 2, 4) == 1.0 and asha_share(1, 2, 1) == 1.0  # no rung before the end


@pytest.mark.slow
def test_the_estimate_is_within_a_factor_of_two_of_a_measured_trial(tmp_path: Path, monkeypatch) -> None:
    import torch

    from rksearch.training.proxy import proxy_evaluate

    monkeypatch.setenv("RKSEARCH_CACHE", str(tmp_path / "cache"))
    space = load_space(ROOT / "search_spaces" / "demo.yaml",
                       {"proxy.epochs": 1, "proxy.train_subset": 512, "proxy.val_size": 128})
    e = estimate(space)
    assert [t.role for t in e.timed] == ["small", "median", "large"]
    assert e.timed[0].flops <= e.timed[1].flops <= e.timed[2].flops
    assert "on this machine (CPU, " in e.line() and (tmp_path / "cache" / "estimates.json").is_file()
    median = e.timed[1]
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # what the trial gets: the space's one CPU
    try:
        t0 = time.perf_counter()
        proxy_evaluate(median.spec, space.proxy)
        measured = time.perf_counter() - t0
    finally:
        torch.set_num_threads(before)
    # the training; a search adds TRIAL_START_S per trial for Tune and set-up. Timed again after the
    # trial (a cache of its own): what else the machine runs (the other test worker) may change between
    # the estimate and the trial, and the trial may fall anywhere between the two estimates
    monkeypatch.setenv("RKSEARCH_CACHE", str(tmp_path / "cache-after"))
    predicted = sorted((e.trial_seconds["median"], estimate(space).trial_seconds["median"]))
    assert 0.5 * predicted[0] <= measured <= 2.0 * predicted[1], (predicted, measured)
    assert e.total_seconds > e.trial_seconds["median"] * e.epochs_share * e.trials / e.concurrency + TRIAL_START_S


@pytest.mark.slow
def test_dry_run_prints_the_estimate_and_writes_nothing(tmp_path: Path, capsys, monkeypatch) -> None:
    from helpers import cli

    monkeypatch.setenv("RKSEARCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(["run", str(ROOT / "search_spaces" / "demo.yaml"), "--dry-run", "--out", "studies"], capsys)
    assert code == 0, err
    assert "demo: about " in out and "on this machine (CPU, " in out and "12 trials, 2 at once" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]  # no study folder
