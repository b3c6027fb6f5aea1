"""One writer per study folder: a second ``rksearch run`` on a held folder is refused naming the
holder (host, pid, since), writing nothing; a dead holder's lock is taken over with a notice."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from rksearch.search.study_lock import lock_file, owner_file, study_lock
from rksearch.storage.folder import record_storage

HOLD = """
import sys, time
from pathlib import Path
from rksearch.search.study_lock import study_lock
with study_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(120)
"""


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*"))}


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_second_run_on_a_held_folder_is_refused_and_writes_nothing(tmp_path, demo_space, rksearch_cli) -> None:
    space = demo_space("held")
    out = tmp_path / "studies"
    study_dir = out / "held"
    study_dir.mkdir(parents=True)
    (study_dir / "trials.csv").write_text("number,state\n0,COMPLETE\n")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(study_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = snapshot(out)
        r = rksearch_cli("run", space, "--out", out)
        assert snapshot(out) == before
    finally:
        holder.kill()
        holder.wait()
    line = r.stderr.strip()
    assert r.returncode == 2 and "\n" not in line and "Traceback" not in line, r.stderr
    assert f"{study_dir}: in use by another rksearch run" in line
    assert f"host {socket.gethostname()}, pid {holder.pid}, since 20" in line and "UTC" in line


def test_a_dead_holders_lock_is_taken_over_with_a_notice(tmp_path) -> None:
    study_dir = tmp_path / "s"
    lock_file(study_dir).write_text("")
    pid = dead_pid()
    owner_file(study_dir).write_text(json.dumps({"host": socket.gethostname(), "pid": pid, "since": "2026-01-01"}))
    notices: list[str] = []
    with study_lock(study_dir, notices.append):
        assert json.loads(owner_file(study_dir).read_text())["pid"] == os.getpid()
    assert len(notices) == 1 and f"pid {pid}, since 2026-01-01, no longer running" in notices[0]
    assert "taking it over" in notices[0]
    assert list(tmp_path.iterdir()) == []  # the lock and its owner file go with the run


def test_the_cli_prints_the_takeover_and_a_refused_run_leaves_no_folder(tmp_path, demo_space, rksearch_cli) -> None:
    """A run that stops at a preflight check after taking the lock: the notice, then its error."""
    space = demo_space("stale")
    out = tmp_path / "studies"
    study_dir = out / "stale"
    study_dir.mkdir(parents=True)
    record_storage(study_dir, f"sqlite:///{tmp_path / 'elsewhere.db'}")  # another storage: refused after the lock
    owner_file(study_dir).write_text(json.dumps({"host": socket.gethostname(), "pid": dead_pid(), "since": "x"}))
    r = rksearch_cli("run", space, "--out", out)
    assert r.returncode == 2 and "holds a study in" in r.stderr, r.stderr
    assert "held this study" in r.stdout and "no longer running" in r.stdout and "taking it over" in r.stdout
    assert sorted(p.name for p in out.iterdir()) == ["stale"]  # the lock and its owner file go with the run
    new = tmp_path / "new"  # refused after taking the lock, before Ray: no --out folder, no lock left
    r = rksearch_cli("run", space, "--out", new, "--address", "127.0.0.1:1")
    assert r.returncode == 2 and "cannot reach a Ray cluster" in r.stderr, r.stderr
    assert not new.exists()
