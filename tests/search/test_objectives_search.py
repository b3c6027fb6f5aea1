"""Every objective a space may name survives a real multi-epoch search (Tune refuses a result that
lacks one of the searcher's metrics, so each epoch's report must hold them all)."""
from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from helpers import load


@pytest.mark.slow
def test_throughput_is_reported_every_epoch(tmp_path: Path, demo_space, rksearch_cli, ray_session) -> None:
    space = demo_space("thr", objectives=["accuracy", "throughput"], reference_point=None, proxy__epochs=2,
                       search__trials=1, search__concurrency=1, search__scheduler="none")
    r = rksearch_cli("run", space, "--out", tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    (t,) = [t for t in load(tmp_path / "thr").trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert t.user_attrs["epochs"] == 2
    assert t.values == [t.user_attrs["accuracy"], t.user_attrs["throughput"]] and t.values[1] > 0
