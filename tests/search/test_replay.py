"""Replayed searches (``rksearch run --replay TABLE``): the real search stack, learning curves from a table.

The table here is written by the test for a 64-spec space (names, FLOPs and params from the real
counter; accuracies a known function of FLOPs, epoch and seed), so every replayed number can be
checked against the row it must come from. The search itself is real: Ray Tune, Optuna, ASHA,
the study folder and its outputs.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest

from rksearch.core.errors import RKSearchError
from rksearch.analysis.pareto import hypervolume_history
from rksearch.search.replay import check_replayable, load_table
from rksearch.search.simulate import simulate
from rksearch.space.search_space import load_space
from rksearch.analysis.study import load_study
from helpers import EPOCHS, MANY_PROCESSES, accuracy, cli, write_space, write_table









def test_table_is_read_and_checked(tmp_path: Path) -> None:
    space_path = write_space(tmp_path)
    table = load_table(write_table(tmp_path, space_path))
    assert len(table.curves) == 64 and table.epochs == EPOCHS and table.cost_column == "seconds"
    name = next(iter(table.curves))
    flops = table.counts[name][0]
    assert table.curve(name, 1).accuracy == tuple(accuracy(flops, e, 1) for e in (1, 2, 3))
    assert table.seed_for(name, "0:5") == table.seed_for(name, "0:5") in (0, 1)
    assert {table.seed_for(name, f"0:{n}") for n in range(20)} == {0, 1}  # one seed per trial, both drawn
    check_replayable(load_space(space_path), table)
    assert "another network under the same name" in table.check_spec(name, flops + 1, table.counts[name][1])


def bad_table(tmp_path: Path, kind: str) -> Path:
    space_path = write_space(tmp_path)
    path = write_table(tmp_path, space_path)
    frame = pd.read_csv(path)
    if kind == "no_column":
        frame = frame.drop(columns=["val_acc"])
    elif kind == "bad_name":
        frame.loc[0, "name"] = "ResNet-50"
    elif kind == "out_of_range":
        frame.loc[3, "val_acc"] = 1.5
    elif kind == "not_a_number":
        frame["seconds"] = frame["seconds"].astype(object)
        frame.loc[2, "seconds"] = "soon"
    elif kind == "missing_specs":
        path = write_table(tmp_path, space_path, drop=5)
        return path
    elif kind == "few_epochs":
        return write_table(tmp_path, space_path, epochs=2)
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("kind, needle", [
    ("missing", "no such table"),
    ("no_column", "no column val_acc"),
    ("bad_name", "name 'ResNet-50' is not a spec name"),
    ("out_of_range", "row 5: val_acc 1.5 is not between 0 and 1"),
    ("not_a_number", "row 4: seconds 'soon' is not a finite number"),
    ("missing_specs", "5 of the 64 feasible specs of space tiny are not in the table: ERKNet-2x1_2x1_2x1"),
    ("few_epochs", "proxy.epochs: 3 epochs, but the table table.csv holds 2"),
    ("throughput", "a replayed search answers accuracy, flops, params (from the table) and latency (measured), not throughput"),
])
def test_bad_tables_exit_2_with_one_line_and_write_nothing(tmp_path: Path, capsys, monkeypatch, kind: str,
                                                            needle: str) -> None:
    monkeypatch.chdir(tmp_path)
    if kind == "missing":
        space, table = write_space(tmp_path), tmp_path / "nowhere.csv"
    elif kind == "throughput":
        space = write_space(tmp_path, objectives=["accuracy", "throughput"])
        space.write_text(space.read_text().replace("flops: 10M", "throughput: 100"))
        table = write_table(tmp_path, space)
    else:
        table = bad_table(tmp_path, kind)
        space = tmp_path / "tiny.yaml"
    before = sorted(p.name for p in tmp_path.iterdir())
    ray_up = "ray" in sys.modules and sys.modules["ray"].is_initialized()  # an earlier in-process search's
    code, out, err = cli(["run", str(space), "--replay", str(table), "--out", str(tmp_path / "studies")], capsys)
    assert code == 2 and needle in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no study folder
    assert ray_up or "ray" not in sys.modules or not sys.modules["ray"].is_initialized()  # refused before Ray starts


@pytest.mark.slow
def test_a_replayed_search_is_the_real_stack_with_the_tables_numbers(tmp_path: Path, rksearch_cli,
                                                                     ray_session) -> None:
    """ASHA prunes, PRUNED trials carry no values, the front holds COMPLETE trials only, and every
    accuracy and cost is the table's, at the seed the trial drew and the epoch it reached. At
    concurrency 1 the in-process simulator proposes the same specs and prunes the same trials."""
    space = write_space(tmp_path, trials=16, search__concurrency=1)
    table_path = write_table(tmp_path, space)
    r = rksearch_cli("run", space, "--replay", table_path, "--out", tmp_path / "studies")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "replayed from table.csv" in r.stdout and "Pareto front" in r.stdout
    assert "accuracy measured on 500 validation images: ±" in r.stdout  # the proxy's val_size, under the front
    folder = tmp_path / "studies" / "tiny"
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{folder / 'optuna.db'}")
    assert study.user_attrs["replay"] == "table.csv"
    table = load_table(table_path)
    done = [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    assert len(done) == 16
    pruned = [t for t in done if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned and all(t.values is None and t.user_attrs["epoch"] < EPOCHS for t in pruned)
    for t in done:
        ua = t.user_attrs
        curve = table.curve(ua["name"], ua["table_seed"])
        assert ua["table_seed"] == table.seed_for(ua["name"], f"0:{t.number}")
        assert ua["accuracy"] == curve.accuracy[ua["epoch"] - 1] and ua["seconds"] == curve.cost[ua["epoch"] - 1]
        assert ua["hostname"] == socket.gethostname() and len(ua["node"]) > 8  # where it ran, as a trained trial
        if t.state == optuna.trial.TrialState.COMPLETE:
            assert t.values == [curve.accuracy[-1], table.counts[ua["name"]][0]] and ua["epochs"] == EPOCHS
    hist = hypervolume_history(load_study(folder))  # against the table's cost, the replay's clock
    assert hist["cost"].iloc[-1] == pytest.approx(sum(t.user_attrs["seconds"] for t in done))
    assert hist["cost"].is_monotonic_increasing and hist["hypervolume"].iloc[-1] > 0
    simulated = simulate(load_space(space), table)
    assert [(t.number, t.state, t.user_attrs.get("name"), t.user_attrs.get("epoch")) for t in simulated.study.trials] \
        == [(t.number, t.state, t.user_attrs.get("name"), t.user_attrs.get("epoch")) for t in study.trials]
    assert simulated.cost == pytest.approx(hist["cost"].iloc[-1])
    csv_rows = pd.read_csv(folder / "trials.csv")
    assert set(csv_rows["state"]) >= {"COMPLETE", "PRUNED"} and (folder / "pareto.html").is_file()

    r = rksearch_cli("run", space, "--out", tmp_path / "studies", "--trials", "17")
    assert r.returncode == 2 and "study tiny replayed the table table.csv; this run trains" in r.stderr, r.stderr


def test_a_replayed_study_is_not_continued_by_training(tmp_path: Path) -> None:
    from rksearch.storage.open import open_storage
    from rksearch.search.preflight import check_continuable

    space = load_space(write_space(tmp_path))
    table = load_table(write_table(tmp_path, tmp_path / "tiny.yaml"))
    rdb = open_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    study = optuna.create_study(study_name="tiny", storage=rdb, directions=["maximize", "minimize"])
    study.set_user_attr("replay", "table.csv")
    study.set_user_attr("proxy", space.proxy.model_dump())
    check_continuable(rdb, space, replay=table)
    with pytest.raises(RKSearchError, match="study tiny replayed the table table.csv; this run trains"):
        check_continuable(rdb, space)


@MANY_PROCESSES
@pytest.mark.slow
def test_progress_to_a_file_is_plain_lines_that_appear_while_it_runs(tmp_path: Path) -> None:
    """stdout a log file: one plain line per finished trial, written as they finish (not at the end)."""
    import time

    space = write_space(tmp_path, trials=6)
    table = write_table(tmp_path, space)
    log = tmp_path / "run.log"
    with log.open("w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "rksearch", "run", str(space), "--replay", str(table), "--out",
                                 str(tmp_path / "studies")], stdout=f, stderr=subprocess.STDOUT,
                                env={**os.environ, "OMP_NUM_THREADS": "4"})
    try:
        deadline = time.monotonic() + 300
        while "done 1 (" not in log.read_text() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert "done 1 (" in log.read_text() and proc.poll() is None, log.read_text()[-2000:]  # before the end
        assert proc.wait(timeout=600) == 0, log.read_text()[-2000:]
    finally:
        proc.kill()
    text = log.read_text()
    status = [line for line in text.splitlines() if line.startswith("tiny ") and " done " in line]
    assert len(status) >= 6 and "\x1b[" not in text  # a line per finished trial, no terminal codes
    assert text.index("done 1 (") < text.index("Pareto front")
    timed = [line for line in status if " done 0 (" not in line]  # a trial has finished: its wall time is measured
    assert timed and all(" ETA " in line and " ETA ?" not in line for line in timed), timed
    assert any(" of 3)" in line for line in status), status  # the epoch of each running trial
    assert "OMP_NUM_THREADS=4 in the environment, but each trial gets 1 CPU(s) from Ray" in text  # said once
    assert text.count("OMP_NUM_THREADS=4") == 1


def test_simulate_queues_a_grid_as_the_search_does(tmp_path: Path) -> None:
    """A grid space: every point once, in order, no duplicate proposals (the grid is enqueued)."""
    space = load_space(write_space(tmp_path, trials=12, search__sampler="grid", search__scheduler={"kind": "none"}))
    table = load_table(write_table(tmp_path, tmp_path / "tiny.yaml"))
    sim = simulate(space, table)
    ran = [t for t in sim.study.trials if t.state.name != "WAITING"]  # the rest of the grid stays queued
    names = [t.user_attrs["name"] for t in ran]
    assert len(names) == 12 and len(set(names)) == 12 and all(t.state.name == "COMPLETE" for t in ran)
    assert names == [space.spec_from_params(p).name for p in list(space.enumerate_params())[:12]]


@pytest.mark.slow  # the sampler's repeats until all 64 specs are trained: about 10 s
def test_simulate_ends_when_every_spec_is_trained(tmp_path: Path) -> None:
    """A budget beyond the table: the replay stops once the space is exhausted (every feasible spec
    trained), as a finished search, instead of failing on the sampler's endless repeats."""
    space = load_space(write_space(tmp_path, search__sampler="random"))
    table = load_table(write_table(tmp_path, tmp_path / "tiny.yaml"))
    sim = simulate(space, table, seed=3, budget=1e12)
    trained = {t.user_attrs["name"] for t in sim.study.trials if t.state.name in ("COMPLETE", "PRUNED")}
    assert len(trained) == len(list(space.enumerate_params())) == 64
    assert sim.cost < 1e12
