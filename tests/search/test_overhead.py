"""Where a search's time went (rksearch.search.overhead): the account the searcher keeps of its
trials, and the breakdown of the slot time the summary prints, against hand-computed cases."""
from __future__ import annotations

import pytest

from rksearch.search.overhead import Breakdown, TimeAccount


def finished(account: TimeAccount, trial_id: str, started_at: float, **result) -> None:
    account._proposed_at[trial_id] = started_at - result.pop("waited")
    account.ended(trial_id, {"started_at": started_at, **result})


def test_the_account_sums_the_trials_and_their_waits() -> None:
    a = TimeAccount()
    finished(a, "t1", 1000.0, waited=6.0, seconds=20.0, data_seconds=1.0, build_seconds=0.5, val_seconds=2.0)
    finished(a, "t2", 1010.0, waited=1.0, seconds=10.0, data_seconds=0.2, build_seconds=0.3, val_seconds=1.0)
    a.ended("t3", {"seconds": 4.0, "failed": True})  # a failed trial: its seconds, no set-up reported
    assert a.trial_seconds == 34.0 and a.worker_wait == pytest.approx(7.0)
    assert a.in_trial == pytest.approx({"data_seconds": 1.2, "build_seconds": 0.8, "val_seconds": 3.0})
    assert a.first_step_at == pytest.approx(1001.5)  # the first trial's start + its data + its build
    a.proposed(None, 0.25)  # a proposal that started no trial still cost the sampler
    a.proposed("t4", 0.5)
    assert a.sampler == 0.75 and "t4" in a._proposed_at


def test_a_skewed_clock_never_makes_a_negative_wait() -> None:
    a = TimeAccount()
    finished(a, "t1", 1000.0, waited=-3.0, seconds=5.0)  # a worker whose clock runs behind the driver's
    assert a.worker_wait == 0.0


def test_the_breakdown_adds_up_to_the_slot_time() -> None:
    """2 slots x 100 s = 200 slot-seconds: 150 s in trials (25 % overhead); Ray start 5 s and checks
    1 s and outputs 1 s of wall keep both slots idle (14 slot-s), workers took 12 s to start, the
    sampler 2 s; the rest, 22 s, no clock saw."""
    a = TimeAccount(trial_seconds=150.0, worker_wait=12.0, sampler=2.0,
                    in_trial={"data_seconds": 4.0, "build_seconds": 2.0, "val_seconds": 10.0})
    b = Breakdown(100.0, 2, a, ray_start=5.0, checks=1.0, outputs=1.0, first_step=7.5)
    assert b.share == pytest.approx(0.25)
    outside = dict(b.outside())
    assert outside == pytest.approx({"Ray start": 10.0, "checks": 2.0, "workers starting": 12.0, "sampler": 2.0,
                                     "outputs": 2.0, "other": 22.0})
    assert sum(outside.values()) + a.trial_seconds == pytest.approx(b.capacity)
    assert dict(b.inside()) == pytest.approx({"data": 4.0, "model build": 2.0, "validation": 10.0, "training": 134.0})
    assert b.line() == ("overhead 25 % of 2 trial slots x 100 s (Ray start 5 %, checks 1 %, workers starting 6 %, "
                        "sampler 1 %, outputs 1 %, other 11 %); in trials: data 2 %, model build 1 %, validation 5 %, "
                        "training 67 %; first training step after 7.5 s")


def test_no_time_no_division() -> None:
    assert Breakdown(0.0, 2, TimeAccount()).line() == "overhead 0 %"
