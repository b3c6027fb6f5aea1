"""Latency in a search: looked up (or measured) at sampling time, and max_latency_ms rejects before training.

The searcher is the real one, driven in process by the replay simulator over the tiny replay
space (tests/helpers.py), with a latency table written by the test for a device this machine is
not: every latency is the table's, so each rejection can be checked against the number behind it.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from optuna.trial import TrialState

from rksearch.core.errors import RKSearchError
from rksearch.models.registry import count
from rksearch.search.latency import check_same_target, search_latency
from rksearch.search.replay import load_table
from rksearch.search.simulate import simulate
from rksearch.space.search_space import load_space
from rksearch.training.latency import DeviceKey, Latency
from rksearch.training.latency_table import LatencyTable
from helpers import cli, load, write_space, write_table

GPU = DeviceKey("cuda", "Test GPU 80GB", "2.14.1", 8, 1, "fp32", True, "cuda-test")


def fake_ms(spec) -> float:
    return count(spec).flops / 1e6


def latency_table(folder: Path, space_path: Path, key: DeviceKey = GPU, *, drop: int = 0) -> Path:
    """Every spec of the space but the first ``drop``, at ``fake_ms`` (one ms per MFLOP)."""
    space = load_space(space_path)
    table = LatencyTable(folder / "gpu.sqlite", key)
    for i, params in enumerate(space.enumerate_params()):
        spec = space.spec_from_params(params)
        if i >= drop:
            table.put(spec, Latency(fake_ms(spec), fake_ms(spec) * 1.1, 0.05, 20, 10, True, True))
    return table.path


def latency_space(tmp_path: Path, bound: float | None, **changes) -> Path:
    constraints = {"max_latency_ms": bound} if bound is not None else {}
    tmp_path.mkdir(parents=True, exist_ok=True)
    return write_space(tmp_path, trials=10, objectives=["accuracy", "latency"], constraints=constraints,
                       reference_point={"accuracy": 0.0, "latency": 100.0}, search__sampler="random", **changes)


def test_max_latency_rejects_before_training_and_latency_is_an_objective(tmp_path: Path) -> None:
    probe = write_space(tmp_path)
    everything = sorted(fake_ms(load_space(probe).spec_from_params(p)) for p in load_space(probe).enumerate_params())
    bound = everything[len(everything) // 2]  # half the space is too slow
    space_path = latency_space(tmp_path, bound)
    lat_path = latency_table(tmp_path, space_path, drop=4)  # 4 specs the table lacks, and this machine is no GPU
    sim = simulate(load_space(space_path), load_table(write_table(tmp_path, space_path)), latency_table=str(lat_path))
    trials = sim.study.get_trials(deepcopy=False)
    trained = [t for t in trials if t.user_attrs.get("outcome") in ("trained", "pruned")]
    slow = [t for t in trials if "max_latency_ms" in t.user_attrs.get("reason", "")]
    lacking = [t for t in trials if "no latency for it in gpu.sqlite" in t.user_attrs.get("reason", "")]
    assert len(trained) == 10 and slow
    for t in slow:  # rejected at sampling time: never trained, never replayed
        assert t.state == TrialState.FAIL and t.user_attrs["outcome"] == "rejected"
        assert t.user_attrs["latency"] > bound and "accuracy" not in t.user_attrs and "epochs" not in t.user_attrs
    for t in lacking:
        assert t.state == TrialState.FAIL and "latency" not in t.user_attrs and "accuracy" not in t.user_attrs
    for t in trained:
        spec_ms = fake_ms(load_space(space_path).spec_from_params(t.params))
        assert t.user_attrs["latency"] == pytest.approx(spec_ms) and spec_ms <= bound
        if t.state == TrialState.COMPLETE:
            assert t.values == [t.user_attrs["accuracy"], pytest.approx(spec_ms)]
    assert {n for n, _ in sim.costs} == {t.number for t in trained}  # only these were replayed


def test_the_target_is_the_tables_key_and_a_mismatch_is_named(tmp_path: Path) -> None:
    space_path = latency_space(tmp_path, 5.0, latency={"batch": 32, "device": "cuda"})
    lat_path = latency_table(tmp_path, latency_space(tmp_path / "other", None))
    with pytest.raises(RKSearchError) as e:
        search_latency(load_space(space_path), lat_path)
    assert str(e.value) == ("--latency-table: the table gpu.sqlite holds latencies at batch 1, the space's "
                            f"latency.batch is 32 ({GPU.text()})")
    agreeing = latency_space(tmp_path / "agree", 5.0, latency={"device": "cuda", "batch": 1})
    source = search_latency(load_space(agreeing), lat_path)
    assert source.key == GPU and source.given and not source.measurable and source.max_ms == 5.0
    with pytest.raises(RKSearchError, match="measured latency on AMD EPYC .*, this run on Test GPU 80GB"):  # a continued study keeps its key
        check_same_target("AMD EPYC (cpu), torch 2.14.1, 2 threads, batch 1, fp32, channels_last", source,
                          load_space(agreeing))
    with pytest.raises(RKSearchError, match="no latency objective and no constraints.max_latency_ms"):
        search_latency(load_space(write_space(tmp_path)), lat_path)


@pytest.mark.parametrize("kind, needle", [
    ("batch", "--latency-table: the table gpu.sqlite holds latencies at batch 1, the space's latency.batch is 32"),
    ("no_latency", "--latency-table: the space has no latency objective and no constraints.max_latency_ms"),
    ("not_a_table", "not a latency table"),
])
def test_a_wrong_latency_table_exits_2_before_anything_runs(tmp_path: Path, capsys, monkeypatch, kind: str,
                                                           needle: str) -> None:
    monkeypatch.chdir(tmp_path)
    lat_path = latency_table(tmp_path, latency_space(tmp_path / "t", None))
    space = {"batch": lambda: latency_space(tmp_path, 5.0, latency={"batch": 32}),
             "no_latency": lambda: write_space(tmp_path),
             "not_a_table": lambda: latency_space(tmp_path, 5.0)}[kind]()
    if kind == "not_a_table":
        lat_path = write_table(tmp_path, space)  # a replay CSV, not a latency table
    table = write_table(tmp_path, space)
    before = sorted(p.name for p in tmp_path.iterdir())
    ray_up = "ray" in sys.modules and sys.modules["ray"].is_initialized()
    code, out, err = cli(["run", str(space), "--replay", str(table), "--latency-table", str(lat_path),
                          "--out", str(tmp_path / "studies")], capsys)
    assert code == 2 and needle in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert ray_up or "ray" not in sys.modules or not sys.modules["ray"].is_initialized()


@pytest.mark.slow
def test_a_search_reads_its_target_from_the_table_on_the_real_stack(tmp_path: Path, rksearch_cli,
                                                                     ray_session) -> None:
    """Ray Tune, the driver and the study folder: latency is an objective from the given table, the
    study records its target, and continuing it against another device's table is refused."""
    probe = load_space(write_space(tmp_path))
    everything = sorted(fake_ms(probe.spec_from_params(p)) for p in probe.enumerate_params())
    space_path = latency_space(tmp_path, everything[len(everything) // 2], search__concurrency=1)
    lat_path = latency_table(tmp_path, space_path)
    table = write_table(tmp_path, space_path)
    r = rksearch_cli("run", space_path, "--replay", table, "--latency-table", lat_path, "--out", tmp_path / "studies",
                     "--trials", "4")
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"latency: {GPU.text()}, table {lat_path}; specs it lacks are rejected" in r.stdout
    study = load(tmp_path / "studies" / "tiny")
    assert study.user_attrs["latency_device"] == GPU.text()
    space = load_space(space_path)
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert done and all(t.values[1] == pytest.approx(fake_ms(space.spec_from_params(t.params))) for t in done)
    assert "latency" in (tmp_path / "studies" / "tiny" / "trials.csv").read_text().splitlines()[0]
    other = DeviceKey(**{**GPU.to_dict(), "threads": 16})
    (tmp_path / "other").mkdir()
    r = rksearch_cli("run", space_path, "--replay", table, "--latency-table",
                     latency_table(tmp_path / "other", space_path, other), "--out", tmp_path / "studies", "--trials", "5")
    assert r.returncode == 2 and f"study tiny measured latency on {GPU.text()}, this run on {other.text()}" in r.stderr


@pytest.mark.slow
def test_a_trained_search_measures_latency_on_this_machine_at_sampling_time(tmp_path: Path, demo_space, rksearch_cli,
                                                                            ray_session) -> None:
    """No table given: the driver measures each candidate on this machine's CPU into the cache's
    table of its key, before the trial trains; the trained trials report that latency."""
    space = demo_space(objectives=["accuracy", "latency"], reference_point={"accuracy": 0.0, "latency": 1000},
                       latency={"device": "cpu", "threads": 1}, search__trials=2, search__concurrency=1)
    r = rksearch_cli("run", space, "--out", tmp_path / "studies", env={"RKSEARCH_CACHE": str(tmp_path / "cache")})
    assert r.returncode == 0, r.stderr[-3000:]
    study = load(tmp_path / "studies" / "e2e")
    tables = list((tmp_path / "cache" / "latency").glob("*.sqlite"))
    assert len(tables) == 1 and LatencyTable.read(tables[0]).key.threads == 1
    assert study.user_attrs["latency_device"] == LatencyTable.read(tables[0]).key.text()
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(done) == 2
    for t in done:
        measured = LatencyTable.read(tables[0]).get(load_space(space).spec_from_params(t.params))
        assert t.values[1] == t.user_attrs["latency"] == measured.median_ms
