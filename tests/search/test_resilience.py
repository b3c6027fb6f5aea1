"""Searches that survive: a killed driver, failing trials, readers, reruns (a two-node cluster:
test_cluster.py).

A driver that is signalled or killed is a process of its own; the other searches run in this
process, on the session's Ray."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest

from rksearch.search.preflight import failure_bound
from rksearch.analysis.study import load_study
from helpers import MANY_PROCESSES, load, write_space, write_table

DONE = ("trained", "pruned")


def done_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return done_trials_of(study.trials)


def done_trials_of(trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    return [t for t in trials if t.user_attrs.get("outcome") in DONE]


def wait_for(predicate, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if predicate():
                return
        except AssertionError:
            raise
        except Exception:  # the study may not exist yet
            pass
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
@pytest.mark.parametrize("sig, group, status, said, reason", [
    (signal.SIGINT, False, 130, "interrupted", "the search was interrupted"),
    (signal.SIGTERM, False, 143, "terminated", "the search was terminated (SIGTERM)"),
    (signal.SIGTERM, True, 143, "terminated", "the search was terminated (SIGTERM)"),  # timeout, batch schedulers
], ids=["ctrl-c", "kill", "kill-group"])
@MANY_PROCESSES
def test_ctrl_c_or_sigterm_stops_the_search(tmp_path: Path, demo_space, sig: int, group: bool, status: int,
                                            said: str, reason: str) -> None:
    """Ctrl-C (SIGINT) or ``kill``/``timeout``/a batch scheduler (SIGTERM, to the driver or to its
    whole process group, Ray's processes included): exit status 130 or 143 and one line, so
    ``run && export`` stops; the running trials end FAIL, the outputs are written, not the
    summary of a finished search, and no Ray process outlives the driver."""
    space = demo_space("stopped", search__trials=6, search__concurrency=1, search__scheduler="none",
                       proxy__epochs=3, proxy__train_subset=512)
    out = tmp_path / "studies"
    driver = subprocess.Popen([sys.executable, "-m", "rksearch", "run", str(space), "--out", str(out)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        seen: dict[int, float] = {}  # RUNNING trial -> when first seen

        def training() -> bool:
            """A trial RUNNING for 1 s went to a worker (starting or training): a proposal the searcher rejects (FLOPs, a repeat)
            is RUNNING only for the milliseconds the check takes, and a signal then fails no trial."""
            assert driver.poll() is None, driver.communicate()[1][-1500:]
            if not (out / "stopped" / "optuna.db").exists():
                return False
            now = time.monotonic()
            for t in load(out / "stopped").trials:
                if t.state == optuna.trial.TrialState.RUNNING:
                    seen.setdefault(t.number, now)
                    if now - seen[t.number] >= 1.0:
                        return True
            return False

        wait_for(training, 300, "a trial training")
        os.killpg(driver.pid, sig) if group else driver.send_signal(sig)
        stdout, stderr = driver.communicate(timeout=120)
        wait_for(lambda: not _group_alive(driver.pid), 60, "the driver's Ray processes to end")
    finally:
        try:
            os.killpg(driver.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert driver.returncode == status and stderr.strip().splitlines()[-1] == said, stderr[-1500:]
    assert "trials done" not in stdout
    trials = load(out / "stopped").trials
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    assert any(t.user_attrs.get("fail_reason") == reason for t in trials), [t.user_attrs.get("fail_reason") for t in trials]
    assert (out / "stopped" / "trials.csv").is_file()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


@MANY_PROCESSES
@pytest.mark.slow
def test_kill_the_driver_then_resume(tmp_path: Path, demo_space, rksearch_cli, ray_session) -> None:
    """The killed driver is a process of its own (SIGKILL); the resume runs in this process."""
    space = demo_space("killed", search__trials=3, search__concurrency=1, search__scheduler="none",
                       proxy__epochs=2)
    out = tmp_path / "studies"
    cmd = [sys.executable, "-m", "rksearch", "run", str(space), "--out", str(out)]
    log = tmp_path / "driver.log"
    with open(log, "w") as sink:
        driver = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=sink, start_new_session=True)
    study_dir = out / "killed"
    try:
        def wanted() -> bool:
            trials = load(study_dir).trials
            return len(done_trials_of(trials)) >= 1 and any(t.state == optuna.trial.TrialState.RUNNING for t in trials)

        def mid_search() -> bool:
            assert driver.poll() is None, f"the search ended before it could be killed: {log.read_text()[-1500:]}"
            if not wanted():
                return False
            # the running trial may end (or a rejected proposal be told FAIL) before the kill lands: frozen,
            # the driver writes nothing more, so what is read now is what the kill leaves
            driver.send_signal(signal.SIGSTOP)
            if wanted():
                return True
            driver.send_signal(signal.SIGCONT)
            return False

        wait_for(mid_search, 300, "a done trial beside a running one")
        driver.send_signal(signal.SIGKILL)
        driver.wait(30)
    finally:
        time.sleep(1)
        try:  # the dead driver's Ray processes share its session: clear them away
            os.killpg(driver.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    before = {t.number: (t.state, t.values, t.user_attrs["spec_key"]) for t in done_trials(load(study_dir))}
    stale = [t.number for t in load(study_dir).trials if t.state == optuna.trial.TrialState.RUNNING]
    assert before and stale, (before, stale)

    reads, errors, stop = [0], [], threading.Event()

    def reader() -> None:  # a notebook reading the study while the search writes it
        while not stop.is_set():
            try:
                load_study(study_dir)
                reads[0] += 1
            except Exception as e:  # noqa: BLE001 - any failure to read is the finding
                errors.append(repr(e))
            time.sleep(0.2)

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    try:
        r = rksearch_cli("run", space, "--out", out)
    finally:
        stop.set()
    th.join(10)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not errors and reads[0] > 3, (errors[:3], reads)
    assert f"pid {driver.pid}" in r.stdout and "no longer running" in r.stdout  # its study lock, taken over
    assert not (out / ".killed.lock").exists() and not (out / ".killed.lock.json").exists()

    study = load(study_dir)
    done = done_trials(study)
    assert len(done) == 3
    assert len({t.user_attrs["spec_key"] for t in done}) == 3  # no spec trained twice
    for number, (state, values, key) in before.items():  # no finished trial lost or changed
        t = study.trials[number]
        assert (t.state, t.values, t.user_attrs["spec_key"]) == (state, values, key)
    for number in stale:
        t = study.trials[number]
        assert t.state == optuna.trial.TrialState.FAIL
        assert "driver died" in t.user_attrs["fail_reason"]
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    csv = pd.read_csv(study_dir / "trials.csv")
    assert list(zip(csv["number"], csv["state"])) == [(t.number, t.state.name) for t in study.trials]


@pytest.mark.slow
def test_failing_trials_are_recorded_and_bounded(tmp_path: Path, demo_space, rksearch_cli, ray_session) -> None:
    """The driver reads RKSEARCH_INJECT_FAULTS and hands each trial its fault: in this process too."""
    space = demo_space("faulty", constraints=None, reference_point=None, search__trials=4,
                       search__concurrency=1, search__sampler="random")  # one worker: a fit's cold start less
    out = tmp_path / "studies"
    r = rksearch_cli("run", space, "--out", out, env={"RKSEARCH_INJECT_FAULTS": "raise@0,nan@1,oom@2"})
    assert r.returncode == 0, r.stderr[-3000:]
    study = load(out / "faulty")
    reasons = {t.number: t.user_attrs.get("fail_reason", "") for t in study.trials[:3]}
    assert all(study.trials[n].state == optuna.trial.TrialState.FAIL for n in range(3)), reasons
    assert "injected failure [at rksearch/search/trial.py:" in reasons[0]  # where it failed, in the worker
    assert 'in run_trial: raise RuntimeError("injected failure")]' in reasons[0]
    assert "[at rksearch/" in reasons[1]
    assert "TrainingDiverged" in reasons[1]
    assert "out of memory" in reasons[2]
    assert len(done_trials(study)) == 4  # the search went on past its failures
    assert "failed" in r.stdout and "rksearch/search/trial.py:" in r.stdout

    r = rksearch_cli("run", space, "--out", tmp_path / "bounded", "--max-failures", "1",
                     env={"RKSEARCH_INJECT_FAULTS": "raise@0,raise@1,raise@2,raise@3,raise@4,raise@5"})
    assert r.returncode == 1
    assert "error: --max-failures: stopped after 2 failed trials (max_failures 1)" in r.stderr, r.stderr[-3000:]
    assert "injected failure" in r.stderr and "Traceback" not in r.stderr
    bounded = load(tmp_path / "bounded" / "faulty")  # the stop leaves no trial RUNNING, and its outputs
    assert not [t.number for t in bounded.trials if t.state == optuna.trial.TrialState.RUNNING]
    assert (tmp_path / "bounded" / "faulty" / "trials.csv").is_file()


def test_a_search_whose_every_trial_fails_still_ends() -> None:
    """Unset, the bound is the trials asked for, at least 10 (the stop itself is tested above)."""
    assert failure_bound(None, 4) == (10, "max_failures unset: at most 10, the trials asked for or 10")
    assert failure_bound(None, 30)[0] == 30
    assert failure_bound(0, 30) == (0, "max_failures 0")


@pytest.mark.slow
def test_same_seed_same_proposals(tmp_path: Path, rksearch_cli, ray_session) -> None:
    """Two searches of one space, one after the other into two folders, propose the same specs.
    What a trial trains does not steer the proposals' seeds, so the trials replay a table (seconds,
    not minutes); the samplers, Tune and the study are the real ones."""
    names = []
    for run in ("a", "b"):  # each runs one trial at a time
        folder = tmp_path / run
        folder.mkdir()
        space = write_space(folder, trials=4, search__concurrency=1)
        table = write_table(folder, space)
        r = rksearch_cli("run", space, "--replay", table, "--out", folder / "studies")
        assert r.returncode == 0, r.stderr[-3000:]
        names.append([t.user_attrs["name"] for t in load(folder / "studies" / "tiny").trials])
    assert names[0] == names[1]
    assert len(names[0]) >= 4
