"""Heartbeats: a driver on another host counts as live while its trials' heartbeats are fresh;
silent for HEARTBEAT_TIMEOUT, its RUNNING trials end FAIL with the reason, at a driver's start
and, in a shared storage, from a live driver's heartbeat thread."""
from __future__ import annotations

import datetime
import time

import optuna

from rksearch.search.liveness import HEARTBEAT, HEARTBEAT_TIMEOUT, beating, driver_id, fail_stale_trials, live_trials

REMOTE = "another-host.example:4242"


def running(study: optuna.Study, driver: str | None, *, age: float = 0.0, **attrs) -> None:
    study.add_trial(optuna.trial.FrozenTrial(
        number=0, trial_id=0, state=optuna.trial.TrialState.RUNNING, value=None,
        datetime_start=datetime.datetime.now() - datetime.timedelta(seconds=age), datetime_complete=None, params={},
        distributions={}, user_attrs={"driver": driver, **attrs} if driver else attrs, system_attrs={},
        intermediate_values={}))


def test_another_hosts_driver_is_live_until_its_heartbeat_times_out(tmp_path) -> None:
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'db.sqlite'}")
    study = optuna.create_study(storage=storage, study_name="s")
    now = time.time()
    running(study, REMOTE, age=3600, **{HEARTBEAT: now - 30})  # beating: live
    running(study, REMOTE, age=3600, **{HEARTBEAT: now - HEARTBEAT_TIMEOUT - 60})  # silent: dead
    running(study, REMOTE, age=60)  # no heartbeat yet, young: live
    running(study, REMOTE, age=HEARTBEAT_TIMEOUT + 60)  # never beat, old: dead
    assert live_trials(storage, "s") == [0, 2]
    assert fail_stale_trials(study, storage, shared=True) == 2
    assert [t.state.name for t in study.trials] == ["RUNNING", "FAIL", "RUNNING", "FAIL"]
    reason = study.trials[1].user_attrs["fail_reason"]
    assert reason == f"its driver {REMOTE} sent no heartbeat for 10 minutes before the trial finished"


def test_the_heartbeat_thread_beats_for_its_trials_and_fails_silent_ones() -> None:
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="s")
    running(study, driver_id())
    running(study, REMOTE, age=3600, **{HEARTBEAT: time.time() - HEARTBEAT_TIMEOUT - 60})
    before = time.time()
    with beating([study], storage, shared=True, interval=0.05):
        deadline = time.time() + 30
        while time.time() < deadline and (HEARTBEAT not in study.trials[0].user_attrs
                                          or study.trials[1].state.name == "RUNNING"):
            time.sleep(0.05)
    mine, theirs = study.trials
    assert mine.state.name == "RUNNING" and mine.user_attrs[HEARTBEAT] >= before
    assert theirs.state.name == "FAIL" and "sent no heartbeat" in theirs.user_attrs["fail_reason"]


def test_a_folders_own_database_is_not_checked_by_the_thread() -> None:
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="s")
    running(study, REMOTE, age=3600, **{HEARTBEAT: time.time() - HEARTBEAT_TIMEOUT - 60})
    with beating([study], storage, shared=False, interval=0.01):
        time.sleep(0.3)
    assert study.trials[0].state.name == "RUNNING"  # left to the next start's fail_stale_trials
