"""Which trials a live driver holds: driver ids, heartbeats, trials a dead driver left RUNNING, a run's trials settled at its end."""
from __future__ import annotations

import datetime
import os
import socket
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import optuna
from optuna.trial import TrialState

from rksearch.core.stopping import shielded, terminated
from rksearch.search.records import FAILED, SearchAborted


def driver_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def alive(driver: str) -> bool:
    host, _, pid = driver.rpartition(":")
    if host != socket.gethostname():
        return True  # another machine's driver: not ours to judge
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True


HEARTBEAT = "heartbeat"  # a trial's user attribute: when its driver last said it runs (seconds since the epoch)
HEARTBEAT_SECONDS = 60.0  # how often a driver says so
HEARTBEAT_TIMEOUT = 600.0  # silence after which another host's driver counts as dead


def holds(trial: optuna.trial.FrozenTrial, now: float | None = None) -> bool:
    """Whether a live driver holds RUNNING ``trial``: on this host, its process runs; on another,
    its last heartbeat (else its start) is less than HEARTBEAT_TIMEOUT old."""
    driver = trial.user_attrs.get("driver")
    if not driver:
        return False
    if driver.rpartition(":")[0] == socket.gethostname():
        return alive(driver)
    last = trial.user_attrs.get(HEARTBEAT)
    last = last if isinstance(last, (int, float)) else trial.datetime_start.timestamp()
    return (time.time() if now is None else now) - last < HEARTBEAT_TIMEOUT


def why_stale(trial: optuna.trial.FrozenTrial) -> str:
    driver = trial.user_attrs.get("driver")
    if driver and driver.rpartition(":")[0] != socket.gethostname():
        return f"its driver {driver} sent no heartbeat for {HEARTBEAT_TIMEOUT / 60:.0f} minutes before the trial finished"
    return "its driver died before the trial finished"


def fail_stale_trials(study: optuna.Study, storage: optuna.storages.BaseStorage, *, shared: bool = False) -> int:
    """Mark FAIL the trials a dead driver left RUNNING in ``study`` (held in ``storage``); returns
    how many. In a ``shared`` storage a trial no driver has claimed yet is left alone while it is
    young: another driver may be proposing it right now (in a folder's own database it is a killed
    driver's)."""
    n = 0
    cutoff = datetime.datetime.now() - datetime.timedelta(minutes=10 if shared else 0)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        driver = t.user_attrs.get("driver")
        if driver is not None and holds(t):
            continue
        if driver is None and t.datetime_start > cutoff:
            continue
        fail_trial(study, storage, t.number, why_stale(t))
        n += 1
    return n


@contextmanager
def beating(studies: list[optuna.Study], storage: optuna.storages.BaseStorage, *, shared: bool,
            interval: float = HEARTBEAT_SECONDS) -> Iterator[None]:
    """While the search runs, every ``interval`` seconds: a heartbeat on each RUNNING trial of this
    driver, so drivers on other hosts sharing the storage see it live; and, in a ``shared``
    storage, the trials of drivers silent for HEARTBEAT_TIMEOUT (a host that died) end FAIL."""
    me, stop = driver_id(), threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            for study in studies:
                try:
                    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                        if t.user_attrs.get("driver") == me:
                            _trial(study, storage, t.number).set_user_attr(HEARTBEAT, time.time())
                    if shared:
                        fail_stale_trials(study, storage, shared=True)
                except Exception:  # noqa: BLE001 - a trial that finished meanwhile, a storage hiccup: the next beat
                    pass

    thread = threading.Thread(target=beat, name="rksearch-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(30)


def _trial(study: optuna.Study, storage: optuna.storages.BaseStorage, number: int) -> optuna.Trial:
    """A handle on RUNNING trial ``number`` from the storage's public API (the id of a frozen trial
    is not public in Optuna)."""
    return optuna.Trial(study, storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(study.study_name), number))


def fail_trial(study: optuna.Study, storage: optuna.storages.BaseStorage, number: int, reason: str) -> None:
    """End trial ``number`` of ``study``, RUNNING and not this process's to tell, as FAIL with
    ``reason``."""
    trial = _trial(study, storage, number)
    trial.set_user_attr("outcome", FAILED)
    trial.set_user_attr("fail_reason", reason)
    study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)


def live_trials(rdb: optuna.storages.RDBStorage, name: str) -> list[int]:
    """Trials of study ``name`` that a live driver is training (none where there is no such study)."""
    if name not in {s.study_name for s in rdb.get_all_studies()}:
        return []
    study = optuna.load_study(study_name=name, storage=rdb)
    return [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if holds(t)]


@contextmanager
def settled(studies: list[optuna.Study], storage: optuna.storages.BaseStorage, *, shared: bool,
            write_outputs: Callable[[], Any]) -> Iterator[None]:
    """No trial of this driver stays RUNNING when the search ends, is interrupted or stops itself.
    On Ctrl-C or SIGTERM its running trials end FAIL, ``write_outputs()`` runs, and the interrupt
    goes on to the caller (exit status 130 or 143), so ``run && export`` stops; on a stop (too
    many failures, an exhausted space) the trials Tune left unfinished end FAIL too. (A crash
    leaves them to the next start's :func:`fail_stale_trials`.)"""
    started = datetime.datetime.now()  # Optuna's clock for datetime_start
    me = driver_id()

    def fail_running(why: str, *, unclaimed: bool) -> None:
        for study in studies:
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                # unclaimed: a trial without a driver was created and interrupted before it had any attrs
                if t.user_attrs.get("driver", me if unclaimed else None) == me and t.datetime_start >= started:
                    fail_trial(study, storage, t.number, why)

    try:
        yield
    except KeyboardInterrupt as e:
        why = "the search was terminated (SIGTERM)" if terminated(e) else "the search was interrupted"
        with shielded():  # (which hides the SIGTERM handler that terminated() asks: ask first)
            fail_running(why, unclaimed=not shared)
            try:
                write_outputs()
            finally:
                raise
    except SearchAborted as e:
        fail_running(f"the search stopped: {e.message}", unclaimed=False)
        write_outputs()
        raise
    fail_running("the search stopped before the trial finished", unclaimed=False)
