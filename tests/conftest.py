"""Shared fixtures: one Ray for the whole session, the demo space shrunk for tests, and the
``rksearch`` command in this process or in a process of its own.

A search run in this process (``rksearch_cli("run", ...)`` or ``run_search``) joins the session's
Ray (``ray_session``): it costs a cold interpreter and a ``ray.init`` less than ``rksearch run`` in
a subprocess (about 13 s wall, 8 s CPU on 2 cores at load 4). Keep a subprocess for what only one
shows: signals, SIGKILL, exit statuses of the installed entry point, a Ray of its own, two drivers
at once.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEMO_SPACE = ROOT / "search_spaces" / "demo.yaml"


def pytest_configure(config: pytest.Config) -> None:
    """Hypothesis: fewer examples under ``-m "not slow"`` (``make test-fast``), the default otherwise."""
    try:
        from hypothesis import settings
    except ImportError:  # pragma: no cover - a dev dependency
        return
    settings.register_profile("fast", max_examples=25)
    if "not slow" in (config.getoption("markexpr", "") or "") and not os.environ.get("HYPOTHESIS_PROFILE"):
        settings.load_profile("fast")


def pytest_collection_finish(session: pytest.Session) -> None:
    """Torch in this process on one thread, as test_bench.py and test_models.py set it when collected
    (so a file run alone is timed as in the suite): on 2 shared cores two threads contend (the 40
    random specs of test_count.py: 2 s on one thread, 25 s and more on two). Subprocesses and Ray
    workers keep their own settings."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


def ray_is_up() -> bool:
    return "ray" in sys.modules and sys.modules["ray"].is_initialized()


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for every test of the session that needs one, started on first use (a
    search in this process joins it: ``init_ray`` skips ``ray.init`` when Ray is up). The same
    settings as ``rksearch run`` on this machine, two CPUs; always a new local Ray (``local``),
    never a cluster another process's ``ray.cluster_utils.Cluster`` announced."""
    import ray

    started = not ray.is_initialized()
    if started:
        for key, value in (("RAY_DEDUP_LOGS", "0"), ("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1"),
                           ("RAY_AIR_NEW_OUTPUT", "0"), ("TUNE_DISABLE_SIGINT_HANDLER", "1"),
                           ("RAY_USAGE_STATS_ENABLED", "0")):
            os.environ.setdefault(key, value)
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=True,
                 logging_level="ERROR")
    yield ray
    if started:
        ray.shutdown()


def set_fields(data: dict, overrides: dict) -> None:
    """``section__field=value`` sets ``data[section][field]``; ``section=value`` a whole section."""
    for key, value in overrides.items():
        section, _, field = key.partition("__")
        if field:
            data[section][field] = value
        else:
            data[section] = value


def write_demo_space(folder: Path, name: str = "e2e", **overrides) -> Path:
    """The shipped demo space, shrunk so a trial takes a second or two, as ``folder/<name>.yaml``."""
    data = yaml.safe_load(DEMO_SPACE.read_text())
    data["name"] = name
    data["proxy"].update({"train_subset": 256, "val_size": 128, "epochs": 1, "batch_size": 64})
    data["search"].update({"trials": 6, "concurrency": 2})
    set_fields(data, overrides)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def demo_space(tmp_path: Path) -> Callable[..., Path]:
    """``demo_space(name="e2e", folder=tmp_path, **overrides)``: the path of the shrunk demo space;
    ``proxy__epochs=3`` sets a field of a section, ``baselines=[...]`` a whole section."""
    def make(name: str = "e2e", folder: Path | None = None, **overrides) -> Path:
        return write_demo_space(folder if folder is not None else tmp_path, name, **overrides)

    return make


def run_rksearch(*args: str, env: dict | None = None, cwd: Path | None = None,
                 timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m rksearch ARGS`` in a process of its own (``env`` on top of this one's)."""
    return subprocess.run([sys.executable, "-m", "rksearch", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env={**os.environ, **(env or {})})


@pytest.fixture(scope="session")
def rksearch() -> Callable[..., subprocess.CompletedProcess]:
    """``rksearch(*args, env=None, cwd=None, timeout=600)``: the command in a process of its own
    (the installed entry point, a cold start: 2-6 s of imports on 2 busy cores before any work)."""
    return run_rksearch


@pytest.fixture
def rksearch_cli(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch):
    """``rksearch_cli(*args, cwd=None, env=None)``: the command through the same entry point
    (``rksearch.cli.main``), in this process: a CompletedProcess with its exit status and what it
    printed. Whether Ray is up must not change (a command that needs Ray: use ``ray_session``;
    one refused before Ray starts leaves it as it was)."""
    from rksearch.cli import main

    def call(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
        args = [str(a) for a in args]
        with monkeypatch.context() as m:
            if cwd is not None:
                m.chdir(cwd)
            for key, value in (env or {}).items():
                m.setenv(key, value)
            ray_before = ray_is_up()
            capsys.readouterr()
            try:
                main(args)
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            captured = capsys.readouterr()
        assert ray_is_up() == ray_before, f"rksearch {' '.join(args)} started Ray: give the test ray_session"
        return subprocess.CompletedProcess(args, code, captured.out, captured.err)

    return call
