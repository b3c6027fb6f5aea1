"""The live status line's arithmetic and wording: ETA, running trials' epochs, durations (no Ray run)."""
from __future__ import annotations

from types import SimpleNamespace

import optuna
import pytest

from helpers import write_space
from rksearch.search.progress import at_epochs, duration, eta, summarise
from rksearch.search.records import Tally
from rksearch.space.search_space import load_space


def test_no_eta_before_a_trial_has_finished():
    assert eta(10, [0.5, 0.2], None, 2) is None


def test_eta_is_the_work_left_at_the_measured_mean_over_the_slots():
    # 4 to start + half of one running + all of another (at epoch 0) = 5.5 trials of 100 s on 2 slots
    assert eta(4, [0.5, 0.0], 100.0, 2) == pytest.approx(275.0)
    assert eta(4, [0.5, 0.0], 100.0, 1) == pytest.approx(550.0)


def test_eta_is_never_less_than_the_longest_trial_left():
    assert eta(0, [0.25], 100.0, 4) == pytest.approx(75.0)  # one trial left on four slots: its own time
    assert eta(1, [], 100.0, 8) == pytest.approx(100.0)  # one to start: a whole trial
    assert eta(0, [], 100.0, 2) == 0.0  # nothing left


def test_eta_clamps_a_trial_past_its_budget():
    assert eta(0, [1.5, 0.5], 10.0, 2) == pytest.approx(5.0)


def test_at_epochs_lists_each_running_trials_epoch():
    assert at_epochs([], 10) == ""
    assert at_epochs([3], 10) == " (epoch 3 of 10)"
    assert at_epochs([5, 0, 3], 10) == " (epochs 0, 3, 5 of 10)"
    many = at_epochs(range(12), 20)
    assert many.startswith(" (epochs 0, 1, 2") and "(4 more)" in many and many.endswith("of 20)")


@pytest.mark.parametrize("seconds, text", [(0, "0 s"), (42.4, "42 s"), (59.6, "1 min 00 s"), (725, "12 min 05 s"),
                                           (3600, "1 h 00 min"), (11_220, "3 h 07 min"), (-3, "0 s")])
def test_duration(seconds, text):
    assert duration(seconds) == text


def test_the_tally_follows_running_trials_and_their_measured_wall_time():
    t = Tally()
    t.started("a")
    t.started("b", baseline=True)
    t.epochs["a"] = 2
    assert (t.running, t.running_baselines, t.peak_running, t.epochs) == (2, 1, 2, {"a": 2, "b": 0})
    t.ended("a", False, {"time_total_s": 30.0})
    t.ended("b", True, {})  # a crashed worker: no measured time
    assert (t.running, t.running_baselines, t.peak_running, t.epochs) == (0, 0, 2, {})
    assert (t.wall_seconds, t.timed) == (30.0, 1)


def _searcher(tmp_path, tally: Tally, target: int = 10):
    space = load_space(write_space(tmp_path, trials=target))
    study = optuna.create_study(directions=space.directions)
    return SimpleNamespace(tally=tally, space=space, study=study, target=target, pending_baselines=[])


def test_the_status_line_says_epochs_elapsed_and_eta(tmp_path):
    tally = Tally(trained=2, pruned=1, failed=1)
    for trial_id in ("x", "y"):
        tally.started(trial_id)
    tally.epochs.update(x=1, y=0)
    searcher = _searcher(tmp_path, tally)
    epochs = searcher.space.proxy.epochs
    line = summarise(searcher, 125.0)
    assert f"running 2 (epochs 0, 1 of {epochs})" in line and "2 min 05 s" in line and "failed 1" in line
    assert "ETA ?" in line  # no trial of this run has a measured time yet
    tally.wall_seconds, tally.timed = 120.0, 3  # 40 s a trial; nothing done in the study yet: 10 - 2 running to start
    left = eta(8, [1 / epochs, 0.0], 40.0, 2)
    assert f"ETA {duration(left)}" in summarise(searcher, 125.0)
