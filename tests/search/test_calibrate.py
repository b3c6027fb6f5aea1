"""``rksearch calibrate``: budgets, the statistics by hand, user errors, and one real calibration."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from rksearch.search.calibrate_plan import Budget, job_identity, parse_budgets
from rksearch.cli import main
from rksearch.proxies.fidelity import BudgetFidelity, budget_fidelity, noise_tau, recommend
from rksearch.core.errors import RKSearchError
from rksearch.proxies.ranking import kendall_tau, spearman_rho, top_k_overlap
from rksearch.space.search_space import load_space

from helpers import MANY_PROCESSES

ROOT = Path(__file__).resolve().parents[2]


def tiny_space(tmp_path: Path, name: str = "cal") -> Path:
    """The demo space, shrunk so one run takes a second or two."""
    data = yaml.safe_load((ROOT / "search_spaces" / "demo.yaml").read_text())
    data["name"] = name
    data["proxy"].update({"train_subset": 256, "val_size": 128, "epochs": 1, "batch_size": 64})
    data["search"].update({"concurrency": 2, "scheduler": {"kind": "asha", "grace_epochs": 1, "reduction_factor": 2}})
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# -- budgets and statistics -------------------------------------------------------------------

def test_budgets_are_sorted_by_cost():
    budgets = parse_budgets("16, 4x0.25,2")
    assert budgets == [Budget(4, 0.25), Budget(2), Budget(16)]
    assert [b.label for b in budgets] == ["4x0.25", "2", "16"]
    assert [b.cost for b in budgets] == [1.0, 2.0, 16.0]


@pytest.mark.parametrize("text, message", [
    ("4", "at least two budgets"),
    ("0,2", "epochs must be >= 1"),
    ("2,4x1.5", "data fraction in (0, 1]"),
    ("2,two", "'two' is not a budget"),
    ("2,4,2", "2 is listed twice"),
    ("1,4x0.5,2", "cost the same"),
])
def test_bad_budgets(text, message):
    with pytest.raises(RKSearchError) as e:
        parse_budgets(text, "s.yaml")
    assert str(e.value).startswith("s.yaml: --budgets: ") and message in str(e.value)


def test_runs_recorded_before_a_proxy_field_existed_or_elsewhere_are_reused():
    from rksearch.training.proxy import ProxyConfig

    now = {"spec": "{}", "proxy": ProxyConfig(epochs=2, device="cuda", cuda_graph=True).model_dump()}
    then = {**now, "proxy": {k: v for k, v in now["proxy"].items() if k not in ("cuda_graph", "static_shapes")}}
    then["proxy"]["device"] = "cpu"  # how a run trains is not what it measures
    assert job_identity(json.dumps(then)) == job_identity(json.dumps(now))
    other = {**now, "proxy": {**now["proxy"], "epochs": 3}}
    assert job_identity(json.dumps(other)) != job_identity(json.dumps(now))


def test_budget_fidelity_by_hand():
    reference = [1.0, 2.0, 3.0, 4.0]
    acc = [[0.1, 0.2, 0.4, 0.3], [0.1, 0.2, 0.3, 0.4]]  # two seeds; the means tie the last two specs
    seconds = [[1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0]]
    nested = ([[0.4, 0.3, 0.2, 0.1]] * 2, [[0.5] * 4] * 2)
    b = budget_fidelity("2", 2, 1.0, acc, seconds, reference, 2, nested)
    # means 0.1, 0.2, 0.35, 0.35: 5 concordant pairs, none discordant, one tie on this side
    assert b.tau == pytest.approx(5 / math.sqrt(5 * 6))
    assert b.rho == pytest.approx(spearman_rho([1, 2, 3.5, 3.5], reference))
    assert b.top_k == 1.0
    assert b.tau_seeds == pytest.approx([4 / 6, 1.0])
    assert b.noise_tau == pytest.approx(4 / 6)  # the seeds disagree on one pair of six
    assert b.seconds == 14.0 and b.seconds_per_run == 14.0 / 8
    assert b.nested_tau == -1.0 and b.nested_seconds_per_run == 0.5
    assert noise_tau([[1, 2, 3]]) is None


def test_recommendation_is_the_cheapest_budget_that_reaches_the_threshold():
    def fid(label: str, epochs: int, fraction: float, tau: float) -> BudgetFidelity:
        return BudgetFidelity(label, epochs, fraction, float(epochs), 0.0, tau, tau, 1.0, [tau], None)

    budgets = [fid("1", 1, 1, math.nan), fid("4x0.25", 4, 0.25, 0.5), fid("2", 2, 1, 0.7), fid("4", 4, 1, 0.9),
               fid("8", 8, 1, 1.0)]
    assert recommend(budgets, 0.6).budget == "2"
    assert recommend(budgets, 0.4).budget == "4x0.25"
    assert recommend(budgets, 0.95).budget == "8"
    assert recommend([fid("1", 1, 1, math.nan), fid("2", 2, 1, math.nan)], 0.6) is None


# -- user errors ------------------------------------------------------------------------------

@pytest.mark.parametrize("args, field, message", [
    (["--budgets", "4"], "--budgets", "at least two budgets"),
    (["--budgets", "1,x"], "--budgets", "'x' is not a budget"),
    (["--sample", "3"], "--sample", "too few to compare rankings"),
    (["--sample", "5000"], "--sample", "distinct feasible specs"),
    (["--seeds", "0"], "--seeds", "at least 1"),
    (["--threshold", "1.5"], "--threshold", "[-1, 1]"),
    (["--top-k", "30"], "--top-k", "must be in 1..20"),
    (["--scores", "synflow,magic"], "--scores", "unknown score 'magic'"),
    (["--write-space", "{space}"], "--write-space", "is the input space"),
    (["--write-space", "{tmp}/missing/out.yaml"], "--write-space", "its folder does not exist"),
    (["--write-space", "/proc/calibrated.yaml"], "--write-space", "/proc/calibrated.yaml: cannot write there"),  # not after training
])
def test_bad_options_are_one_line_and_write_nothing(tmp_path: Path, capsys, args, field, message):
    space = tiny_space(tmp_path)
    out = tmp_path / "studies"
    args = [a.format(space=space, tmp=tmp_path) for a in args]
    with pytest.raises(SystemExit) as e:
        main(["calibrate", str(space), "--out", str(out), *args])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith(f"error: {space}: {field}: ") and message in err
    assert not out.exists()


def test_bad_proxy_data_names_the_space_field(tmp_path: Path, capsys):
    path = tiny_space(tmp_path)
    data = yaml.safe_load(path.read_text())
    data["proxy"]["train_subset"] = 100_000
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SystemExit) as e:
        main(["calibrate", str(path), "--sample", "4", "--budgets", "1,2", "--out", str(tmp_path / "s")])
    assert e.value.code == 2
    assert f"{path}: proxy.train_subset: asks for 100000 images" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


# -- end to end -------------------------------------------------------------------------------

def same(reported: float | None, computed: float) -> None:
    """A reported number (JSON null for NaN) against the one computed from the study."""
    if reported is None:
        assert math.isnan(computed)
    else:
        assert reported == pytest.approx(computed)


@MANY_PROCESSES
@pytest.mark.slow
def test_calibrate_end_to_end(tmp_path: Path, rksearch_cli, ray_session):
    """Real Ray (the session's, in this process), real training: 4 specs x 2 budgets x 2 seeds, one
    run failing on purpose (the driver reads RKSEARCH_INJECT_FAULTS and hands the run its fault)."""
    space_file = tiny_space(tmp_path)
    before = space_file.read_bytes()
    written = tmp_path / "calibrated.yaml"
    args = [str(space_file), "--sample", "4", "--budgets", "1,2", "--seeds", "2", "--threshold", "-1",
            "--scores", "synflow,flops,params", "--out", str(tmp_path / "studies"), "--write-space", str(written),
            "--json"]
    r = rksearch_cli("calibrate", *args, env={"RKSEARCH_INJECT_FAULTS": "raise@0"})
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(r.stdout)
    assert len(report["specs"]) == 3 and len(report["dropped"]) == 1  # the spec of the failed run is left out
    assert (report["runs"], report["reused"]) == (16, 0)

    study_dir = tmp_path / "studies" / "cal-calibrate"
    study = optuna.load_study(study_name="cal-calibrate", storage=f"sqlite:///{study_dir / 'optuna.db'}")
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert [t.number for t in failed] == [0] and "injected failure" in failed[0].user_attrs["fail_reason"]
    assert failed[0].user_attrs["name"] == report["dropped"][0]

    # the same command again trains only the failed run
    r = rksearch_cli("calibrate", *args)
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(r.stdout)
    assert (report["runs"], report["reused"]) == (16, 15)
    study = optuna.load_study(study_name="cal-calibrate", storage=f"sqlite:///{study_dir / 'optuna.db'}")
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(study.trials) == 17 and len(complete) == 16 and report["dropped"] == []
    runs = {(t.user_attrs["name"], t.user_attrs["budget"], t.user_attrs["seed"]): t for t in complete}
    assert len(runs) == 16  # one trial per (spec, budget, seed)
    for (name, budget, seed), t in runs.items():
        ua = t.user_attrs
        assert ua["accuracy"] == t.value and 0 <= t.value <= 1 and ua["seconds"] > 0
        assert ua["epochs"] == int(budget) and len(ua["curve"]) == int(budget)
        assert load_space(space_file).spec_from_params(t.params).name == name

    # the report's numbers are those of the stored study
    names = report["specs"]
    acc = {b: [[runs[(n, b, s)].value for n in names] for s in (0, 1)] for b in ("1", "2")}
    mean = {b: [(x + y) / 2 for x, y in zip(*acc[b])] for b in acc}
    one, two = report["budgets"]
    assert (one["budget"], two["budget"], report["reference"]) == ("1", "2", "2")
    same(one["tau"], kendall_tau(mean["1"], mean["2"]))
    same(one["rho"], spearman_rho(mean["1"], mean["2"]))
    same(one["top_k"], top_k_overlap(mean["1"], mean["2"], report["top_k"]))
    same(one["noise_tau"], kendall_tau(*acc["1"]))
    same(two["noise_tau"], kendall_tau(*acc["2"]))
    nested = [sum(runs[(n, "2", s)].user_attrs["curve"][0][0] for s in (0, 1)) / 2 for n in names]
    same(one["nested_tau"], kendall_tau(nested, mean["2"]))
    assert two["tau"] in (1.0, None)  # None: every spec tied at the reference
    same(one["seconds"], sum(runs[(n, "1", s)].user_attrs["seconds"] for n in names for s in (0, 1)))
    flops = {s["score"]: s for s in report["scores"]}["flops"]
    same(flops["rho"], spearman_rho([runs[(n, "2", 0)].user_attrs["zero_cost"]["flops"] for n in names], mean["2"]))

    # threshold -1: the cheapest budget with a ranking is recommended and written into a copy of the space
    assert report["recommended"] == ("1" if one["tau"] is not None else "2")
    assert space_file.read_bytes() == before
    calibrated = load_space(written)
    assert calibrated.proxy.epochs == int(report["recommended"]) and calibrated.proxy.train_subset == 256
    assert calibrated.name == "cal-calibrated"  # a study of its own, not the space's of another proxy
    assert json.loads((study_dir / "calibration.json").read_text())["budgets"] == report["budgets"]
    html = (study_dir / "calibration.html").read_text()
    assert "Kendall tau vs the largest budget" in html and "noise floor" in html


@MANY_PROCESSES
@pytest.mark.slow
def test_sigterm_ends_the_unfinished_runs(tmp_path: Path):
    """A stopped calibration leaves no RUNNING trial behind, exits 143 and shuts Ray down."""
    import signal
    import time

    space_file = tiny_space(tmp_path)
    study_dir = tmp_path / "studies" / "cal-calibrate"
    cmd = [sys.executable, "-m", "rksearch", "calibrate", str(space_file), "--sample", "4", "--budgets", "1,2",
           "--seeds", "2", "--out", str(tmp_path / "studies")]
    driver = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)

    def trials(*states: optuna.trial.TrialState) -> list:
        storage = optuna.storages.RDBStorage(f"sqlite:///{study_dir / 'optuna.db'}", skip_table_creation=True)
        return optuna.load_study(study_name="cal-calibrate", storage=storage).get_trials(states=states)

    try:
        end = time.monotonic() + 300
        while True:  # Tune is running once it has asked for a run (no need to wait for one to finish)
            assert driver.poll() is None and time.monotonic() < end, driver.communicate()[1][-1500:]
            try:
                if trials(optuna.trial.TrialState.RUNNING):
                    break
            except Exception:  # the database is not there yet
                pass
            time.sleep(0.5)
        driver.send_signal(signal.SIGTERM)
        _, stderr = driver.communicate(timeout=120)
    finally:
        try:
            os.killpg(driver.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert driver.returncode == 143 and stderr.strip().splitlines()[-1] == "terminated", stderr[-1500:]
    assert not trials(optuna.trial.TrialState.RUNNING)
    failed = trials(optuna.trial.TrialState.FAIL)
    assert failed and all(t.user_attrs["fail_reason"] == "the calibration was terminated (SIGTERM)" for t in failed)
