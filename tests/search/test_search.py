"""End-to-end searches with real Ray Tune, real Optuna storage and real training on demo data (in
this process, on the session's Ray: see conftest.py), and the driver's units beside them."""
from __future__ import annotations

import socket
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

from helpers import MANY_PROCESSES, load, write_space, write_table
from rksearch.arch.rknet import RKNetSpec
from rksearch.analysis.study import load_study

ROOT = Path(__file__).resolve().parents[2]




def outcomes(study: optuna.Study) -> list[str]:
    return [t.user_attrs.get("outcome") for t in study.trials]


@MANY_PROCESSES
@pytest.mark.slow
def test_search_end_to_end_and_continue(tmp_path: Path, demo_space, rksearch_cli, ray_session) -> None:
    """A search trains, ASHA stops the weak (PRUNED, partial results kept as attributes), the
    outputs are written; run again it continues; --fresh moves the old study aside."""
    space = demo_space(proxy__epochs=3, search__concurrency=1,  # one worker a run: two cold starts less
                       search__scheduler={"kind": "asha", "grace_epochs": 1, "reduction_factor": 4})
    out = tmp_path / "studies"
    r = rksearch_cli("run", space, "--out", out)
    assert r.returncode == 0, r.stderr[-3000:]
    study_dir = out / "e2e"
    study = load(study_dir)
    done = [t for t in study.trials if t.user_attrs.get("outcome") in ("trained", "pruned")]
    assert len(done) == 6
    trained = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert trained, outcomes(study)
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned, outcomes(study)
    for t in pruned:
        assert t.values is None
        assert t.user_attrs["outcome"] == "pruned"
        assert t.user_attrs["epoch"] < 3 and "accuracy" in t.user_attrs
    for t in trained:
        ua = t.user_attrs
        for key in ("spec", "name", "flops", "params", "accuracy", "epochs", "images_per_s", "seconds",
                    "ray_trial_id", "node", "trained_flops", "trained_params"):
            assert key in ua, (key, ua)
        spec = RKNetSpec.from_yaml(ua["spec"])
        assert spec.name == ua["name"]
        assert ua["flops"] <= 12e6  # the space's constraint holds for every trained candidate
        assert t.values == [ua["accuracy"], ua["flops"]]
        assert 0.0 <= ua["accuracy"] <= 1.0
        assert ua["epochs"] == 3
    assert len({t.user_attrs["spec_key"] for t in done}) == len(done)  # nothing trained twice
    assert study.user_attrs["objectives"] == ["accuracy", "flops"]

    csv = pd.read_csv(study_dir / "trials.csv")
    assert list(csv["number"]) == [t.number for t in study.trials]
    assert list(csv["state"]) == [t.state.name for t in study.trials]
    for col in ("number", "state", "name", "accuracy", "flops", "params", "epochs", "seconds", "p0_stages"):
        assert col in csv.columns
    assert (study_dir / "pareto.html").stat().st_size > 1000
    assert "Pareto front" in r.stdout

    before = {t.number: t.user_attrs.get("ray_trial_id") for t in done}
    r = rksearch_cli("run", space, "--out", out, "--trials", "7")  # one more
    assert r.returncode == 0, r.stderr[-3000:]
    study = load(study_dir)
    done2 = [t for t in study.trials if t.user_attrs.get("outcome") in ("trained", "pruned")]
    assert len(done2) == 7
    assert {t.number: t.user_attrs.get("ray_trial_id") for t in done2 if t.number in before} == before
    assert len({t.user_attrs["spec_key"] for t in done2}) == 7

    r = rksearch_cli("run", space, "--out", out, "--fresh", "--trials", "1")
    assert r.returncode == 0, r.stderr[-3000:]
    aside = [p for p in out.iterdir() if p.name.startswith("e2e.")]
    assert len(aside) == 1 and (aside[0] / "optuna.db").is_file()
    assert f"the old study is now {aside[0]}" in r.stdout
    assert len(load(study_dir).trials) >= 1
    assert len(load_study(aside[0]).trials) == len(study.trials)  # the renamed folder still reads


@pytest.mark.slow
def test_baselines_trained_once_beside_the_search(tmp_path: Path, demo_space, rksearch_cli, ray_session) -> None:
    """With NSGA-II, whose Optuna 5.1 release crashed on a study whose trial list left baselines out."""
    baselines = ["densenet-bc-16-k4", {"name": "cliquenet-t6-k4", "init_channels": 16}]
    space = demo_space("with_baselines", baselines=baselines, proxy__epochs=2, search__trials=2,
                       search__sampler="nsga2", search__concurrency=1,  # one worker a run: two cold starts less
                       search__scheduler={"kind": "asha", "grace_epochs": 1, "reduction_factor": 2})
    out = tmp_path / "studies"
    r = rksearch_cli("run", space, "--out", out)
    assert r.returncode == 0, r.stderr[-3000:]
    study_dir = out / "with_baselines"
    study, of_baselines = load(study_dir), load(study_dir, "with_baselines/baselines")
    assert not any(t.user_attrs.get("kind") == "baseline" for t in study.trials)  # no sampler sees them
    marked = of_baselines.trials
    assert [t.user_attrs["baseline"] for t in marked] == ["DenseNet-BC-16-k4", "CliqueNet-T6-k4"]
    assert all(t.user_attrs["kind"] == "baseline" for t in marked)
    for t in marked:  # the whole proxy (ASHA never stops a baseline), the searched trials' attrs
        assert t.state == optuna.trial.TrialState.COMPLETE and t.user_attrs["epochs"] == 2 and t.params == {}
        for key in ("spec", "spec_key", "name", "flops", "params", "accuracy", "trained_flops", "ray_trial_id"):
            assert key in t.user_attrs, key
    searched = [t for t in study.trials if t.user_attrs.get("outcome") in ("trained", "pruned")]
    assert len(searched) == 2  # search.trials counts the searched trials only
    assert "Pareto front" in r.stdout and "baselines (same proxy" in r.stdout

    r = rksearch_cli("run", space, "--out", out, "--trials", "3")
    assert r.returncode == 0, r.stderr[-3000:]
    again = load(study_dir, "with_baselines/baselines").trials
    assert [(t.number, t.user_attrs["ray_trial_id"]) for t in again] == \
        [(t.number, t.user_attrs["ray_trial_id"]) for t in marked]  # not trained again

    csv = pd.read_csv(study_dir / "trials.csv")
    assert list(csv.loc[csv["kind"] == "baseline", "name"]) == ["DenseNet-BC-16-k4", "CliqueNet-T6-k4"]
    html = (study_dir / "pareto.html").read_text()
    assert "baselines (2, same proxy, not searched)" in html and "CliqueNet-T6-k4" in html
    r = rksearch_cli("pareto", study_dir)
    front_table = r.stdout.split("Pareto front:")[1]
    assert r.returncode == 0 and "DenseNet-BC" not in front_table and "CliqueNet" not in front_table
    r = rksearch_cli("export", study_dir, "--pick", "best-accuracy", "-o", tmp_path / "best.yaml")
    assert r.returncode == 0 and "rknet: 1" in (tmp_path / "best.yaml").read_text()


def test_a_continued_study_keeps_its_objectives_and_proxy(tmp_path: Path) -> None:
    """What the study's trials measured may not change under them; how they train may."""
    from rksearch.core.errors import RKSearchError
    from rksearch.storage.open import open_storage
    from rksearch.search.preflight import check_continuable
    from rksearch.space.search_space import parse_space

    data = yaml.safe_load((ROOT / "search_spaces" / "demo.yaml").read_text())

    def space(**changes):
        return parse_space({**data, **changes}, source="demo.yaml")

    rdb = open_storage(f"sqlite:///{tmp_path / 'studies.db'}")
    check_continuable(rdb, space())  # no study yet
    study = optuna.create_study(study_name="demo", storage=rdb, directions=["maximize", "minimize"])
    study.set_user_attr("objectives", ["accuracy", "flops"])
    study.set_user_attr("proxy", {k: v for k, v in space().proxy.model_dump().items() if k != "static_shapes"})
    check_continuable(rdb, space())  # a field added since reads as it was
    check_continuable(rdb, space(proxy={**data["proxy"], "static_shapes": False, "cudnn_benchmark": False,
                                        "root": "elsewhere"}))
    with pytest.raises(RKSearchError, match=r"demo.yaml: objectives: study demo was run with objectives "
                                            r"\['accuracy', 'flops'\], not \['accuracy', 'params'\]; start over"):
        check_continuable(rdb, space(objectives=["accuracy", "params"], reference_point={"accuracy": 0, "params": 1e6}))
    with pytest.raises(RKSearchError, match="demo.yaml: proxy.epochs: study demo trained its candidates with epochs: 3, not 4"):
        check_continuable(rdb, space(proxy={**data["proxy"], "epochs": 4}))


def test_an_unreachable_ray_address_is_refused_at_once() -> None:
    from rksearch.core.errors import RKSearchError
    from rksearch.search.cluster import check_reachable
    from rksearch.space.search_space import load_space

    space = load_space(ROOT / "search_spaces" / "demo.yaml")
    for address in ("127.0.0.1:1", "[::1]:1"):  # ray:// is refused before (test_cluster.py)
        with pytest.raises(RKSearchError, match=r"^--address: cannot reach a Ray cluster at ") as e:
            check_reachable(address, space, timeout=5)
        assert "Name or service not known" not in str(e.value)  # [::1] is an address, not a host name
    check_reachable("auto", space)  # Ray resolves it


@pytest.mark.parametrize("race", [
    "(sqlite3.IntegrityError) UNIQUE constraint failed: alembic_version.version_num",
    '(psycopg.errors.UniqueViolation) duplicate key value violates unique constraint "pg_type_typname_nsp_index"',
])
def test_opening_the_storage_survives_a_race_creating_the_schema(tmp_path: Path, monkeypatch, race: str) -> None:
    """A reader opening a new study's database as the search creates it may stamp Optuna's schema
    version first (SQLite), or two drivers create the tables at once (PostgreSQL); the loser's
    creation fails, and opening again finds the schema there."""
    from rksearch.storage import open as search

    real, calls = optuna.storages.RDBStorage, []

    def racing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError(race)
        return real(*args, **kwargs)

    monkeypatch.setattr(optuna.storages, "RDBStorage", racing)
    assert search.open_storage(f"sqlite:///{tmp_path / 'new.db'}") is not None and len(calls) == 2


def test_a_continued_study_draws_new_proposals(demo_space) -> None:
    """Seeded with the seed plus the trials the study holds: reproducible, and not the fresh run's
    draws again (every one of them would be settled as a duplicate)."""
    from rksearch.search.samplers import make_sampler
    from rksearch.space.search_space import load_space

    space = load_space(demo_space(search__sampler="random"))

    def first_proposals(trials_before: int) -> list[dict]:
        study = optuna.create_study(sampler=make_sampler(space, trials_before))
        return [space.suggest(study.ask()).to_dict() for _ in range(3)]

    assert first_proposals(0) == first_proposals(0) and first_proposals(6) == first_proposals(6)
    assert first_proposals(0) != first_proposals(6)


def test_stale_trials_are_failed_and_a_proposal_in_flight_is_not() -> None:
    """At its start a driver fails what dead drivers left RUNNING; in a shared storage not a trial
    another driver created a moment ago and has not claimed yet (that killed the other driver)."""
    import datetime

    from rksearch.search.liveness import driver_id, fail_stale_trials

    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage)
    now = datetime.datetime.now()
    dead = f"{socket.gethostname()}:999999999"
    for driver, age in ((driver_id(), 60), (dead, 60), (None, 0), (None, 3600)):
        study.add_trial(optuna.trial.FrozenTrial(
            number=0, trial_id=0, state=optuna.trial.TrialState.RUNNING, value=None,
            datetime_start=now - datetime.timedelta(seconds=age), datetime_complete=None, params={},
            distributions={}, user_attrs={"driver": driver} if driver else {}, system_attrs={},
            intermediate_values={}))
    assert fail_stale_trials(study, storage, shared=True) == 2
    assert [t.state.name for t in study.trials] == ["RUNNING", "FAIL", "RUNNING", "FAIL"]
    assert fail_stale_trials(study, storage) == 1  # a folder's own database: an unclaimed trial is a killed driver's
    assert [t.state.name for t in study.trials] == ["RUNNING", "FAIL", "FAIL", "FAIL"]
    assert study.trials[1].user_attrs["fail_reason"] == "its driver died before the trial finished"


@pytest.mark.slow
def test_a_gpu_space_runs_on_the_cpu_with_a_notice(tmp_path: Path, rksearch_cli, ray_session) -> None:
    """No GPU here: a space asking for a quarter GPU and 4 CPUs per trial runs on the CPU, one CPU
    per trial, and says what changed; the overrides it ran with are recorded. (The trials replay a
    table: where a trial runs is settled before it trains.)"""
    space = write_space(tmp_path, trials=2, search__resources={"cpu": 4, "gpu": 0.25}, search__concurrency=4)
    table = write_table(tmp_path, space)
    r = rksearch_cli("run", space, "--replay", table, "--out", tmp_path, "--set", "proxy.val_size=64")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "no GPU here: trials run on the CPU (search.resources 4 CPU + 0.25 GPU -> 1 CPU, concurrency 4 -> " in r.stdout
    study = load(tmp_path / "tiny")
    assert sum(t.user_attrs.get("outcome") in ("trained", "pruned") for t in study.trials) == 2
    assert study.user_attrs["overrides"] == {"proxy.val_size": 64} and study.user_attrs["proxy"]["val_size"] == 64
    assert (tmp_path / "tiny" / "space.yaml").read_text().startswith("# run with --set proxy.val_size=64\n")
