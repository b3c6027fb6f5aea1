"""A study in a real PostgreSQL server, shared by two drivers at once: what a search on a Ray
cluster with one database looks like."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import pytest

from rksearch.analysis.study import load_study

from helpers import MANY_PROCESSES

pytestmark = pytest.mark.slow


def _as_server_user(*cmd: str) -> list[str]:
    """PostgreSQL refuses to run as root: there, run it as the ``postgres`` account."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else list(cmd)


@pytest.fixture(scope="module")
def postgres() -> str:
    """A throwaway PostgreSQL server on a free local port; the URL of its ``rksearch`` database."""
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl is None:
        if os.environ.get("CI") == "true":
            pytest.fail("pg_ctl missing: .ci/install-postgres installs PostgreSQL")
        pytest.skip("no PostgreSQL server here (run .ci/install-postgres)")
    import psycopg

    home = Path(tempfile.mkdtemp(prefix="rksearch-pg-"))  # not pytest's tmp_path: the server's account reads it
    if os.geteuid() == 0:
        shutil.chown(home, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = home / "data"
    subprocess.run(_as_server_user(pg_ctl, "initdb", "-s", "-D", str(data), "-o", "-A trust -U postgres"),
                   check=True, capture_output=True)
    subprocess.run(_as_server_user(pg_ctl, "start", "-w", "-D", str(data), "-l", str(home / "log"), "-o",
                                   f"-p {port} -k {home} -c listen_addresses=127.0.0.1"),
                   check=True, capture_output=True)
    try:
        with psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres", autocommit=True) as c:
            c.execute("CREATE DATABASE rksearch")
        yield f"postgresql://postgres@127.0.0.1:{port}/rksearch"
    finally:
        subprocess.run(_as_server_user(pg_ctl, "stop", "-D", str(data), "-m", "fast"), capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


@MANY_PROCESSES
def test_two_drivers_share_one_study(postgres: str, tmp_path: Path, demo_space, rksearch_cli, ray_session) -> None:
    """Two ``rksearch run`` at once on one study: together they train the space's trial count
    once (the other driver's running trial may add one), never the same spec or baseline twice,
    and each study folder, renamed by ``--fresh`` or not, reads the whole study from the server.
    The two drivers are processes of their own (a driver is host:pid); the rest runs in this one."""
    space = demo_space("shared", search__trials=6, search__concurrency=1, baselines=["densenet-bc-16-k4"])
    logs = {d: (tmp_path / f"{d}.out", tmp_path / f"{d}.err") for d in "ab"}  # files: no pipe fills and stalls one
    drivers = {}
    for d, (out, err) in logs.items():
        with out.open("w") as o, err.open("w") as e:
            drivers[d] = subprocess.Popen([sys.executable, "-m", "rksearch", "run", str(space), "--out",
                                           str(tmp_path / d), "--storage", postgres], stdout=o, stderr=e)
    for d, p in drivers.items():
        assert p.wait(timeout=600) == 0, logs[d][1].read_text()[-3000:]
        assert "the study is in postgresql://postgres@127.0.0.1" in logs[d][0].read_text()

    trials = optuna.load_study(study_name="shared", storage=postgres).trials
    baselines = optuna.load_study(study_name="shared/baselines", storage=postgres).trials
    baseline = [t for t in baselines if t.user_attrs.get("kind") == "baseline" and t.state.name == "COMPLETE"]
    assert len(baseline) == 1  # one driver trains it; the other sees it taken
    done = [t for t in trials if t.user_attrs.get("outcome") in ("trained", "pruned")]
    assert 6 <= len(done) <= 7, [(t.number, t.user_attrs.get("outcome")) for t in trials]
    assert len({t.user_attrs["spec_key"] for t in done}) == len(done)  # no spec trained twice
    assert len({t.user_attrs["driver"] for t in done}) == 2  # both drivers trained
    for d in "ab":  # each folder records the server, and reads the whole study from it
        folder = tmp_path / d / "shared"
        assert (folder / "storage.url").read_text().strip() == postgres and not (folder / "optuna.db").exists()
        assert len(load_study(folder).trials) == len(trials) + len(baselines)
        assert len((folder / "trials.csv").read_text().splitlines()) >= len(done) + 1

    r = rksearch_cli("export", tmp_path / "a" / "shared", "-o", tmp_path / "best.yaml")
    assert r.returncode == 0 and (tmp_path / "best.yaml").is_file(), r.stderr

    r = rksearch_cli("run", space, "--out", tmp_path / "a", "--storage", postgres, "--fresh", "--trials", "1")
    assert r.returncode == 0, r.stderr[-3000:]
    [aside] = [p for p in (tmp_path / "a").iterdir() if p.name.startswith("shared.")]
    assert sorted(optuna.get_all_study_names(postgres)) == sorted(["shared", "shared/baselines", aside.name,
                                                                   f"{aside.name}/baselines"])
    assert len(load_study(aside).trials) == len(trials) + len(baselines)  # the old trials, copied aside
    assert len(load_study(tmp_path / "a" / "shared").trials) >= 1


SECRET = "Pw-9c41e"


def _with_password(url: str) -> str:
    """The fixture's URL with a password (the throwaway server trusts every local login, so any
    password opens it: what is tested is where the password goes, not that the server checks it)."""
    return url.replace("postgresql://postgres@", f"postgresql://postgres:{SECRET}@")


@MANY_PROCESSES
def test_a_password_is_recorded_nowhere(postgres: str, tmp_path: Path, demo_space, rksearch_cli, ray_session) -> None:
    """A password in the space's ``storage:`` and in ``--set`` reaches no file of the study folder,
    no user attribute of the study or its baselines' study, no line the run or an error prints,
    and nothing under Ray's temporary folder; a continued run and ``pareto``/``export`` take the
    full URL from ``RKSEARCH_STORAGE`` and, without it, say so in one line (exit 2)."""
    url = _with_password(postgres)
    marker = tmp_path / "started"  # files Ray writes from now on
    marker.touch()
    space = demo_space("secret", search__trials=2, search__concurrency=1, baselines=["densenet-bc-16-k4"], storage=url)
    seen: list[str] = []

    def clean(r, code: int = 0) -> None:
        seen.extend((r.stdout, r.stderr))
        assert r.returncode == code, r.stderr[-3000:]
        assert SECRET not in r.stdout + r.stderr
        if code == 2:
            assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr

    r = rksearch_cli("run", space, "--out", tmp_path / "out", "--set", f"storage={url}", env={"RKSEARCH_STORAGE": ""})
    clean(r)
    folder = tmp_path / "out" / "secret"
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"space.yaml", "storage.url", "trials.csv", "pareto.html"}
    for p in files:
        assert SECRET.encode() not in p.read_bytes(), p
    assert "postgresql://postgres:***@127.0.0.1" in r.stdout and "RKSEARCH_STORAGE" in r.stdout  # the next steps
    assert "postgresql://postgres:***@" in (folder / "space.yaml").read_text()
    frozen = {s.study_name: s for s in optuna.storages.RDBStorage(postgres).get_all_studies()}
    for name in ("secret", "secret/baselines"):
        trials = optuna.load_study(study_name=name, storage=postgres).trials
        texts = [repr(frozen[name].user_attrs), repr(frozen[name].system_attrs)]
        texts += [repr((t.user_attrs, t.system_attrs, t.params)) for t in trials]
        assert trials and not any(SECRET in t for t in texts), name
    assert "postgresql://postgres:***@" in optuna.load_study(study_name="secret", storage=postgres).user_attrs["space"]

    copy = folder / "space.yaml"  # a run of the folder's copy: its storage is masked
    clean(rksearch_cli("run", copy, "--out", tmp_path / "out", "--trials", "3", env={"RKSEARCH_STORAGE": ""}), 2)
    assert "set RKSEARCH_STORAGE to its full URL" in seen[-1]
    clean(rksearch_cli("run", copy, "--out", tmp_path / "out", "--trials", "3", env={"RKSEARCH_STORAGE": url}))
    assert len([t for t in optuna.load_study(study_name="secret", storage=postgres).trials
                if t.user_attrs.get("outcome") in ("trained", "pruned")]) >= 3

    for command in (["pareto", folder], ["export", folder, "-o", tmp_path / "best.yaml"]):
        clean(rksearch_cli(*command, env={"RKSEARCH_STORAGE": ""}), 2)
        assert "password masked" in seen[-1] and "RKSEARCH_STORAGE" in seen[-1]
        clean(rksearch_cli(*command, env={"RKSEARCH_STORAGE": url}))
    bad = f"postgresql://postgres:{SECRET}@127.0.0.1:notaport/rksearch"  # SQLAlchemy cannot parse it
    clean(rksearch_cli("pareto", folder, "--storage", bad), 2)
    clean(rksearch_cli("run", space, "--out", tmp_path / "other", "--storage", bad), 2)

    for p in [p for p in folder.rglob("*") if p.is_file()]:
        assert SECRET.encode() not in p.read_bytes(), p
    ray_tmp = Path(tempfile.gettempdir()) / "ray"
    if ray_tmp.is_dir():  # Ray's session folders, world-readable: logs, Tune's state and the searcher's pickle
        hits = subprocess.run(["find", str(ray_tmp), "-type", "f", "-newer", str(marker), "-exec", "grep", "-lsF",
                               SECRET, "{}", "+"], capture_output=True, text=True).stdout
        assert hits == "", hits
