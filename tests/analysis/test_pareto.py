"""Pareto fronts, hypervolume, knee, picks, ``rksearch pareto`` / ``export`` on real Optuna studies."""
from __future__ import annotations

import csv as csvlib
import hashlib
import json
import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import optuna
import pytest
from study_factory import make_study

from rksearch import RKNetSpec, count, load_spec
from rksearch.core.errors import RKSearchError
from rksearch.analysis.export import pick
from rksearch.analysis.pareto import front, hypervolume, hypervolume_history, knee_index, pareto_mask
from rksearch.analysis.report import write_report
from rksearch.analysis.plots import pareto_figure
from rksearch.analysis.study import load_study
from rksearch.analysis.choices import choice_effects

MAXMIN = ("maximize", "minimize")


@pytest.fixture(scope="module")
def studies(tmp_path_factory) -> Path:
    """Built once: a random study and one with a hand-made front (trial values given)."""
    root = tmp_path_factory.mktemp("studies")
    make_study(root, "demo", n=20)
    # (accuracy, FLOPs): a clear knee at (0.85, 2e8); one dominated point, plus pruned/failed trials
    make_study(root, "known", points=[(0.5, 1e8), (0.85, 2e8), (0.88, 5e8), (0.9, 1e9), (0.6, 6e8)],
               reference_point={"accuracy": 0.0, "flops": 2e9})
    return root


@pytest.fixture
def study(studies, tmp_path) -> Path:
    """A private copy of the random study, free to break."""
    return Path(shutil.copytree(studies / "demo", tmp_path / "demo"))


@pytest.fixture
def rk(rksearch_cli):
    """Run the CLI in-process (conftest.py): (exit status, stdout, stderr)."""
    def run(*args: str) -> tuple[int, str, str]:
        r = rksearch_cli(*args)
        return r.returncode, r.stdout, r.stderr
    return run


# -- hypervolume, front, knee on arrays ------------------------------------------------------


def test_hypervolume_2d_by_hand() -> None:
    # min form (-0.9, 3), (-0.8, 2), (-0.6, 1), ref (-0.5, 4): slabs 0.1*1 + 0.2*2 + 0.1*3 = 0.8
    pts = [(0.9, 3), (0.8, 2), (0.6, 1)]
    assert hypervolume(pts, (0.5, 4), MAXMIN) == pytest.approx(0.8)
    # a dominated point and one outside the reference box change nothing
    assert hypervolume(pts + [(0.7, 2.5), (0.95, 5)], (0.5, 4), MAXMIN) == pytest.approx(0.8)
    assert hypervolume([(0.4, 1)], (0.5, 4), MAXMIN) == 0.0
    assert hypervolume([(1, 1)], (3, 5), ("minimize", "minimize")) == pytest.approx(8.0)


def test_hypervolume_3d_by_hand() -> None:
    # three 3x3x1 slabs: 27 - 3 pairwise overlaps of 3 + the common 1x1x1 cube = 19
    pts = [(1, 1, 3), (1, 3, 1), (3, 1, 1)]
    assert hypervolume(pts, (4, 4, 4), ("minimize",) * 3) == pytest.approx(19.0)
    assert hypervolume([(2, 1, 0)], (4, 4, 4), ("minimize",) * 3) == pytest.approx(2 * 3 * 4)
    # maximising the first objective mirrors it: same volume
    mirrored = [(-a, b, c) for a, b, c in pts]
    assert hypervolume(mirrored, (-4, 4, 4), ("maximize", "minimize", "minimize")) == pytest.approx(19.0)


@pytest.mark.parametrize("d", [2, 3, 4])
def test_hypervolume_matches_optuna(d: int) -> None:
    from optuna._hypervolume import compute_hypervolume

    rng = np.random.default_rng(d)
    for _ in range(5):
        pts = rng.random((30, d))
        ref = np.full(d, 1.1)
        assert hypervolume(pts, ref, ("minimize",) * d) == pytest.approx(compute_hypervolume(pts, ref), rel=1e-9)


def test_pareto_mask() -> None:
    v = np.array([(0.9, 3), (0.8, 2), (0.7, 2.5), (0.8, 2), (0.6, 1), (0.6, 1.5)])
    assert pareto_mask(v, MAXMIN).tolist() == [True, True, False, True, True, False]


def test_knee_on_a_known_front() -> None:
    # normalised (min form): x = [0, 1/9, 4/9, 1], y = [1, 0.125, 0.05, 0]; the line x + y = 1 is
    # farthest from (1/9, 0.125): distance (1 - 0.236) / sqrt(2) = 0.540
    acc_flops = [(0.5, 1), (0.85, 2), (0.88, 5), (0.9, 10)]
    assert knee_index(acc_flops, MAXMIN) == 1
    # a symmetric 3-objective front: the balanced point bulges towards the ideal corner
    pts = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (0.2, 0.2, 0.2), (0.5, 0.4, 0.4)]
    assert knee_index(pts, ("minimize",) * 3) == 3
    assert knee_index([(0.7, 3.0)], MAXMIN) == 0
    # two points of three objectives: both extremes, no knee; the better accuracy (found by QA)
    assert knee_index([(0.084, 2e6, 1.0), (0.104, 3e6, 2.0)], ("maximize", "minimize", "minimize")) == 1


# -- studies ---------------------------------------------------------------------------------


def test_load_study_table(studies) -> None:
    s = load_study(studies / "demo")
    assert s.objectives == ("accuracy", "flops") and s.directions == MAXMIN
    assert s.state_counts() == {"COMPLETE": 20, "PRUNED": 3, "FAIL": 2}
    assert list(s.trials["number"]) == list(range(25))
    for _, r in s.trials.iterrows():
        spec = RKNetSpec.from_yaml(r["spec"])
        assert r["name"] == spec.name and r["periods"] == len(spec.periods)
        for i, p in enumerate(spec.periods):
            assert (r[f"p{i}_method"], r[f"p{i}_stages"], r[f"p{i}_steps"], r[f"p{i}_growth_rate"], r[f"p{i}_m"]) == (
                p.method, p.stages, p.steps, p.growth_rate, p.m)
        if r["state"] == "COMPLETE":
            assert r["flops"] == count(spec).flops
    assert s.trials.loc[s.trials["state"] == "FAIL", "fail_reason"].notna().all()


def test_front_is_the_brute_force_front(studies) -> None:
    s = load_study(studies / "demo")
    f = front(s)
    done = s.completed
    expect = {
        int(a["number"]) for _, a in done.iterrows()
        if not any(b["accuracy"] >= a["accuracy"] and b["flops"] <= a["flops"]
                   and (b["accuracy"] > a["accuracy"] or b["flops"] < a["flops"]) for _, b in done.iterrows())
    }
    assert set(f.members["number"]) == expect
    assert set(f.members["state"]) == {"COMPLETE"}
    assert f.derived == ("accuracy", "flops") and f.notes  # no stored reference point: derived and said so
    assert f.reference["accuracy"] == 0 and f.reference["flops"] == pytest.approx(1.1 * done["flops"].max())


def test_pruned_and_failed_never_on_the_front(studies, tmp_path) -> None:
    """A pruned trial whose partial accuracy would dominate everything still stays off the front."""
    path = Path(shutil.copytree(studies / "known", tmp_path / "known"))
    from study_factory import storage

    st = optuna.load_study(study_name="known", storage=storage(path / "optuna.db"))
    pruned = next(t for t in st.trials if t.state.name == "PRUNED")
    attrs = {**pruned.user_attrs, "accuracy": 0.99, "flops": 1.0}
    st.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED, params=pruned.params,
                                           distributions=pruned.distributions, user_attrs=attrs))
    s = load_study(path)
    f = front(s)
    assert set(f.members["number"]) == {t.number for t in st.trials if t.state.name == "COMPLETE"
                                        and t.values[0] in (0.5, 0.85, 0.88, 0.9)}
    assert not set(f.members["number"]) & set(s.trials.loc[s.trials["state"] != "COMPLETE", "number"])


def test_stored_reference_and_hypervolume(studies) -> None:
    s = load_study(studies / "known")
    f = front(s)
    assert f.reference == {"accuracy": 0.0, "flops": 2e9} and f.derived == ()
    # by hand, in accuracy x GFLOPs against (0, 2): slabs of the staircase
    by_hand = 0.5 * (0.2 - 0.1) + 0.85 * (0.5 - 0.2) + 0.88 * (1.0 - 0.5) + 0.9 * (2.0 - 1.0)
    assert f.hypervolume == pytest.approx(by_hand)
    hist = hypervolume_history(s)
    assert hist["hypervolume"].is_monotonic_increasing and hist["cost"].is_monotonic_increasing
    assert hist["hypervolume"].iloc[-1] == pytest.approx(by_hand)
    assert len(hist) == len(s.trials)
    grew = hist["hypervolume"].diff().fillna(hist["hypervolume"]) > 0
    assert set(hist.loc[grew, "state"]) == {"COMPLETE"}


def test_knee_of_a_study(studies) -> None:
    s = load_study(studies / "known")
    f = front(s)
    knee = s.trials[s.trials["number"] == f.knee].iloc[0]
    assert (knee["accuracy"], knee["flops"]) == (0.85, 2e8)
    assert len(f.members) == 4


def test_loading_writes_nothing(studies) -> None:
    db = studies / "known" / "optuna.db"
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in db.parent.iterdir()}
    load_study(db.parent)
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in db.parent.iterdir()}
    assert before == after


def _set_attr(path: Path, key: str, value) -> None:
    con = sqlite3.connect(path / "optuna.db")
    con.execute("UPDATE study_user_attributes SET value_json = ? WHERE key = ?", (json.dumps(value), key))
    if con.total_changes == 0:
        con.execute("INSERT INTO study_user_attributes (study_id, key, value_json) VALUES (1, ?, ?)", (key, json.dumps(value)))
    con.commit()
    con.close()


def test_study_errors(study, tmp_path) -> None:
    cases = []
    cases.append((tmp_path / "missing", "no such study folder"))
    (tmp_path / "file").write_text("x")
    cases.append((tmp_path / "file", "expected a study folder"))
    (tmp_path / "empty").mkdir()
    cases.append((tmp_path / "empty", "no optuna.db"))
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "optuna.db").write_bytes(b"this is not a database at all" * 40)
    cases.append((tmp_path / "junk", "not an SQLite database"))
    (tmp_path / "other").mkdir()
    con = sqlite3.connect(tmp_path / "other" / "optuna.db")
    con.execute("CREATE TABLE things (x)")
    con.commit()
    con.close()
    cases.append((tmp_path / "other", "holds no Optuna study"))
    renamed = Path(shutil.copytree(study, tmp_path / "renamed"))
    cases.append((renamed, "holds 'demo', not study 'else'"))
    for path, needle in cases:
        with pytest.raises(RKSearchError, match=needle) as e:
            load_study(path, name="else" if path == renamed else None)
        assert e.value.source is not None
    assert load_study(renamed).name == "demo"  # a copied folder reads the one study its database holds


def test_corrupt_pages(study) -> None:
    db = study / "optuna.db"
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    for p in study.glob("optuna.db-*"):
        p.unlink()
    data = bytearray(db.read_bytes())
    data[100:] = b"\xff" * (len(data) - 100)
    db.write_bytes(bytes(data))
    with pytest.raises(RKSearchError, match="optuna.db: (corrupt SQLite database|cannot read)"):
        load_study(study)


@pytest.mark.parametrize("key, value, needle", [
    ("objectives", ["accuracy", "speed"], "user_attrs.objectives: unknown objective 'speed'"),
    ("objectives", "accuracy", "user_attrs.objectives: expected a list"),
    ("objectives", ["flops", "accuracy"], "need directions"),
    ("reference_point", {"accuracy": 0, "flops": "big"}, "user_attrs.reference_point.flops: expected a finite number"),
    ("reference_point", [0, 1], "user_attrs.reference_point: expected a mapping"),
])
def test_bad_study_attrs(study, key, value, needle) -> None:
    _set_attr(study, key, value)
    with pytest.raises(RKSearchError, match=needle):
        load_study(study)


# -- picks -------------------------------------------------------------------------------------


def test_picks(studies) -> None:
    s = load_study(studies / "demo")
    done = s.completed
    best = pick(s, "best-accuracy")
    assert best.row["accuracy"] == done["accuracy"].max() and "highest accuracy" in best.reason
    cheap = pick(s, "min-flops")
    assert cheap.row["flops"] == done["flops"].min()
    limit = float(done["flops"].median())
    bounded = pick(s, "best-accuracy", max_flops=limit)
    assert bounded.row["flops"] <= limit
    assert bounded.row["accuracy"] == done.loc[done["flops"] <= limit, "accuracy"].max()
    knee = pick(s, "knee", max_params=float(done["params"].median()))
    assert knee.row["params"] <= done["params"].median() and "knee" in knee.reason
    assert pick(s, "trial:3").number == 3
    pruned = int(s.trials.loc[s.trials["state"] == "PRUNED", "number"].iloc[0])
    assert "PRUNED" in pick(s, f"trial:{pruned}").reason


@pytest.mark.parametrize("how, kw, needle", [
    ("knee", {"max_flops": 1.0}, "--pick: no feasible trial: 0 of 20 completed trials with flops <= 1; loosen --max-flops"),
    ("best-accuracy", {"max_params": -5}, "--max-params: must be positive"),
    ("fastest", {}, "--pick: unknown pick 'fastest'"),
    ("trial:x", {}, "expected trial:N"),
    ("trial:99", {}, "no trial 99"),
])
def test_pick_errors(studies, how, kw, needle) -> None:
    with pytest.raises(RKSearchError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        pick(load_study(studies / "demo"), how, **kw)


def test_analysis_arguments_as_a_notebook_gives_them(studies) -> None:
    s = load_study(studies / "demo")
    limit = float(s.completed["flops"].median())
    assert pick(s, "best-accuracy", max_flops=f"{limit / 1e6}M").number == pick(s, "best-accuracy", max_flops=limit).number
    assert choice_effects(s, "accuracy").equals(choice_effects(s, ["accuracy"]))
    effects = choice_effects(s, "accuracy")
    for i in range(3):  # an IRK period's m is no choice: only ERK periods count for p{i}_m
        erk = int((s.completed[f"p{i}_method"] == "erk").sum())
        assert effects.loc[effects["choice"] == f"p{i}_m", "trials"].sum() == erk
    assert not effects["value"].str.endswith(".0").any()
    assert set(choice_effects(s, ["accuracy", "seconds"]).columns) >= {"mean_accuracy", "mean_seconds"}
    with pytest.raises(RKSearchError, match="metrics: no measured column 'bogus'; one of .*accuracy"):
        choice_effects(s, ["accuracy", "bogus"])
    with pytest.raises(RKSearchError, match=r"reference: no value for flops: give one per objective \(accuracy, flops\)"):
        front(s, reference={"accuracy": 0.0})
    with pytest.raises(RKSearchError, match="reference: no value for flops"):
        hypervolume_history(s, reference={"accuracy": 0.0})


def test_a_front_too_small_for_a_knee(studies) -> None:
    """Every member of a front of two is an extreme: the pick says it took the best accuracy."""
    s = load_study(studies / "demo")
    done = s.completed.sort_values("flops")
    for limit in done["flops"]:
        members = front(s, candidates=done[done["flops"] <= limit]).members
        if len(members) == 2:
            break
    else:
        pytest.fail("no FLOPs bound leaves a front of two")
    chosen = pick(s, "knee", max_flops=float(limit))
    assert chosen.number == int(members.loc[members["accuracy"].idxmax(), "number"])
    assert "front of" in chosen.reason and "has 2 members, too few for a knee: its best accuracy" in chosen.reason


def test_pick_failed_trial(studies) -> None:
    s = load_study(studies / "demo")
    failed = int(s.trials.loc[s.trials["state"] == "FAIL", "number"].iloc[0])
    with pytest.raises(RKSearchError, match=f"trial {failed} is FAIL"):
        pick(s, f"trial:{failed}")


# -- figure and report -------------------------------------------------------------------------


def test_figure(studies) -> None:
    s = load_study(studies / "demo")
    fig = pareto_figure(s, paper=True)
    names = [t.name for t in fig.data]
    f = front(s)
    front_trace = next(t for t in fig.data if t.name.startswith("Pareto front"))
    assert sorted(int(n) for n in front_trace.customdata[:, 0]) == sorted(f.members["number"])
    assert front_trace.mode == "lines+markers"
    assert any(n.startswith("dominated") for n in names) and any(n.startswith("knee") for n in names)
    assert any("paper, full training" in n for n in names)
    assert all(row[1] in s.trials["name"].values for row in front_trace.customdata)  # hover: name
    assert fig.layout.xaxis.type == "log"  # specs from 0.1 to several GFLOPs (and the paper's up to 20)
    narrow = pareto_figure(load_study(studies / "known"))
    assert narrow.layout.xaxis.type == "linear"  # 0.1 .. 1 GFLOPs: one decade
    assert len(pareto_figure(s, "accuracy,flops,params").data[0].z) > 0  # 3 objectives: a 3-D plot


def test_write_report(study) -> None:
    report = write_report(study)
    csv = (study / "trials.csv").read_text()
    assert csv.splitlines()[0].startswith("number,state,name,accuracy,flops")
    assert len(csv.splitlines()) == 26 and "rknet: 1" not in csv
    rows = list(csvlib.DictReader(csv.splitlines()))
    assert any(r["accuracy"] == "" for r in rows)  # failed and pruned trials leave blanks...
    for column in ("flops", "params", "epochs", "p0_stages", "p0_growth_rate"):  # ...and counts stay whole
        assert all(r[column] == "" or r[column].isdigit() for r in rows), (column, {r[column] for r in rows})
    html = (study / "pareto.html").read_text()
    assert 'src="../plotly.min.js"' in html and "Pareto front" in html and "hypervolume history" in html
    assert len(html) < 200_000 and (study.parent / "plotly.min.js").stat().st_size > 1_000_000  # once per --out
    assert report.front.hypervolume > 0


# -- commands ----------------------------------------------------------------------------------


def test_pareto_command(studies, rk, tmp_path) -> None:
    html = tmp_path / "front.html"
    code, out, err = rk("pareto", studies / "known", "--html", html, "--paper")
    assert code == 0, err
    assert "Pareto front: 4 of 5 completed trials" in out
    assert "reference point: accuracy 0 %, flops 2 GFLOPs" in out
    assert "hypervolume: 1.645 (accuracy x GFLOPs)" in out
    assert "hypervolume history" in out and "knee (trial" in out
    assert html.stat().st_size < 200_000 and 'src="plotly.min.js"' in html.read_text()  # plotly.js beside it:
    assert (tmp_path / "plotly.min.js").stat().st_size > 1_000_000  # the page opens offline
    code, out, _ = rk("pareto", studies / "known", "--objectives", "accuracy,params")
    assert code == 0 and "objectives: accuracy (max), params (min)" in out and "derived for params" in out


def test_pareto_table_in_a_terminal(studies, rksearch) -> None:
    """The real console script (a process of its own: rich reads COLUMNS when it starts): exit 0,
    every front member's name in full."""
    r = rksearch("pareto", studies / "demo", env={"COLUMNS": "200"}, timeout=120)
    assert r.returncode == 0, r.stderr
    for name in front(load_study(studies / "demo")).members["name"]:
        assert name in r.stdout


@pytest.mark.parametrize("args, needle", [
    (["--objectives", "accuracy,speed"], "--objectives: unknown objective 'speed'"),
    (["--objectives", "accuracy"], "--objectives: need at least two different objectives"),
    (["--objectives", "accuracy,flops,params,throughput", "--html", "{tmp}/x.html"], "--objectives: a plot shows 2 or 3"),
    (["--objectives", "accuracy,latency"], "--objectives: no completed trial measured 'latency'"),
    (["--html", "{tmp}/nowhere/x.html"], "x.html: --html: its folder does not exist"),
    (["--html", "/proc/pareto.html"], "/proc/pareto.html: --html: cannot write there"),  # before the table, not after
])
def test_pareto_errors(studies, rk, tmp_path, args, needle) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code, out, err = rk("pareto", studies / "demo", *args)
    assert code == 2 and needle in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and not out.strip()  # refused before any work
    assert not list(tmp_path.glob("*.html"))


def test_pareto_not_a_study(rk, tmp_path) -> None:
    code, _, err = rk("pareto", tmp_path)
    assert code == 2 and f"{tmp_path}: not a study folder: no optuna.db" in err


def test_export_describe_round_trip(studies, rk, tmp_path) -> None:
    out_file = tmp_path / "best.yaml"
    code, out, err = rk("export", studies / "demo", "--pick", "knee", "--max-flops", "0.5G", "-o", out_file)
    assert code == 0, err
    s = load_study(studies / "demo")
    knee = front(s, candidates=s.completed[s.completed["flops"] <= 5e8]).knee
    assert f"trial {knee} (" in out and "knee of the accuracy/flops front" in out and f"wrote {out_file}" in out
    text = out_file.read_text()
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert f"study demo ({studies / 'demo'}), trial {knee} (complete)" in header[0]
    assert header[2].startswith("# proxy accuracy ") and "after 3 epochs" in header[2]
    spec = load_spec(out_file)
    assert spec == s.spec(knee)
    row = s.trials[s.trials["number"] == knee].iloc[0]
    assert f"{row['flops'] / 1e9:.4f} GFLOPs, {row['params'] / 1e6:.4f} M params" in header[3]
    code, out, err = rk("describe", out_file, "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["name"] == row["name"] and info["flops"] == row["flops"] and info["params"] == row["params"]


def test_export_json_and_picks(studies, rk, tmp_path) -> None:
    code, out, err = rk("export", studies / "known", "--pick", "best-accuracy", "-o", tmp_path / "b.json")
    assert code == 0, err
    assert "proxy accuracy 0.9000" in out and "highest accuracy of the 5 completed trials" in out
    assert RKNetSpec.from_json((tmp_path / "b.json").read_text())
    code, out, _ = rk("export", studies / "known", "--pick", "min-flops", "--max-params", "100M", "-o", tmp_path / "c.yaml")
    assert code == 0 and "fewest FLOPs" in out and "0.1000 GFLOPs" in out


@pytest.mark.parametrize("args, needle", [
    (["--pick", "knee", "--max-flops", "1k"], "--pick: no feasible trial"),
    (["--pick", "nearest"], "--pick: unknown pick 'nearest'; expected one of knee, best-accuracy, min-flops, trial:N"),
    (["--max-flops", "lots"], "--max-flops: expected a number such as 2e8, 200M or 0.2G, got 'lots'"),
    (["--max-params", "-3"], "--max-params: must be positive, got -3"),
    (["--pick", "trial:1000"], "--pick: no trial 1000"),
])
def test_export_errors_write_nothing(studies, rk, tmp_path, args, needle) -> None:
    out_file = tmp_path / "best.yaml"
    out_file.write_text("precious\n")
    code, _, err = rk("export", studies / "demo", *args, "-o", out_file)
    assert code == 2 and needle in err and "Traceback" not in err, err
    assert out_file.read_text() == "precious\n"  # never overwritten, not even partly
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.yaml"]


@pytest.mark.parametrize("target, needle", [
    ("{tmp}", "is a directory"), ("{tmp}/no/dir/best.yaml", "its folder does not exist"),
    ("{tmp}/best.txt", "expected a .yaml, .yml or .json file name"),
])
def test_export_bad_output(studies, rk, tmp_path, target, needle) -> None:
    code, _, err = rk("export", studies / "demo", "-o", target.replace("{tmp}", str(tmp_path)))
    assert code == 2 and f"-o: {needle}" in err
    assert not list(tmp_path.iterdir())


def test_missing_options(rk, studies) -> None:
    code, _, err = rk("export", studies / "demo")
    assert code == 2 and "-o" in err


@pytest.mark.slow
def test_export_then_train(studies, rk, tmp_path) -> None:
    """``rksearch train`` takes what ``rksearch export`` wrote (the cheapest spec, one short epoch)."""
    spec_file = tmp_path / "best.yaml"
    assert rk("export", studies / "demo", "--pick", "min-flops", "-o", spec_file)[0] == 0
    run = tmp_path / "run"
    code, out, err = rk("train", spec_file, "--dataset", "demo", "--epochs", "1", "--train-subset", "64",
                        "--val-size", "0", "--device", "cpu", "--out", run)
    assert code == 0, err
    assert load_spec(run / "spec.yaml") == load_spec(spec_file)
    assert "test accuracy" in out and (run / "model.pt").is_file()


# -- a study held in another storage ---------------------------------------------------------------


def _moved(study: Path, tmp_path: Path) -> str:
    """Move ``study``'s database out of its folder; the URL it now lives at."""
    other = tmp_path / "shared" / "all-studies.db"
    other.parent.mkdir()
    src, dst = sqlite3.connect(study / "optuna.db"), sqlite3.connect(other)
    src.backup(dst)
    src.close()
    dst.close()
    for p in study.glob("optuna.db*"):
        p.unlink()
    return f"sqlite:///{other}"


def test_study_in_the_storage_its_space_names(study, tmp_path, rk) -> None:
    """``storage:`` in the folder's space copy (as ``rksearch run`` leaves it) is where the study is
    read, reported and exported from; ``--storage`` reaches it without the folder."""
    trials = len(load_study(study).trials)
    url = _moved(study, tmp_path)
    with pytest.raises(RKSearchError, match="no optuna.db"):
        load_study(study)
    space = study / "space.yaml"
    space.write_text(space.read_text() + f"\nstorage: {url}\n")
    s = load_study(study)
    assert len(s.trials) == trials and s.url == url and s.path == study and not (study / "optuna.db").exists()
    write_report(study)  # what rksearch run writes last, wherever the storage is
    assert len((study / "trials.csv").read_text().splitlines()) == trials + 1
    assert "Pareto front" in (study / "pareto.html").read_text()
    elsewhere = load_study(tmp_path / "not-here" / "demo", storage=url)
    assert len(elsewhere.trials) == trials
    code, out, err = rk("pareto", tmp_path / "not-here" / "demo", "--storage", url)
    assert code == 0 and "Pareto front" in out, err
    code, out, err = rk("export", study, "-o", tmp_path / "best.yaml")
    assert code == 0 and load_spec(tmp_path / "best.yaml").name in out, err


def test_fresh_sets_a_study_aside_in_its_own_storage(study, tmp_path) -> None:
    """``run --fresh`` on a folder whose study lives elsewhere: the old trials move to
    ``demo.<time>`` in that storage, beside the renamed folder that reads them."""
    import optuna

    from rksearch.search.study_dir import set_aside
    from rksearch.storage.folder import default_storage, record_storage

    trials = len(load_study(study).trials)
    url = _moved(study, tmp_path)
    record_storage(study, url)
    set_aside(study, default_storage(study))  # this run's storage differs: the folder's record says where
    [aside] = [p for p in tmp_path.iterdir() if p.name.startswith("demo.")]
    assert not study.exists() and optuna.get_all_study_names(url) == [aside.name]
    assert len(load_study(aside).trials) == trials


def test_fresh_on_a_folder_that_cannot_move_moves_nothing(study, tmp_path, monkeypatch) -> None:
    """A read-only --out: one error naming --fresh, and the study stays where it was, in its
    folder and in its storage (the copy made aside there is deleted again)."""
    import errno

    import optuna

    from rksearch.search.study_dir import set_aside
    from rksearch.storage.folder import record_storage

    url = _moved(study, tmp_path)
    record_storage(study, url)

    def read_only(self, target):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    monkeypatch.setattr(Path, "rename", read_only)
    with pytest.raises(RKSearchError, match="--fresh: cannot move the study aside to demo.* Read-only file system"):
        set_aside(study, url)
    assert study.is_dir() and optuna.get_all_study_names(url) == ["demo"]


def test_fresh_touches_no_study_the_folder_does_not_hold(study, tmp_path) -> None:
    """A folder with its own optuna.db, and another storage that holds a study of the same name:
    only the folder moves."""
    import optuna

    from rksearch.search.study_dir import set_aside

    other = f"sqlite:///{tmp_path / 'other.db'}"
    optuna.create_study(study_name="demo", storage=other)
    set_aside(study, other)
    assert optuna.get_all_study_names(other) == ["demo"] and not study.exists()
    [aside] = [p for p in tmp_path.iterdir() if p.name.startswith("demo.")]
    assert (aside / "optuna.db").is_file()


def test_fresh_without_a_folder_sets_aside_the_study_in_the_storage(tmp_path) -> None:
    import optuna

    from rksearch.search.study_dir import set_aside

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    optuna.create_study(study_name="demo", storage=url).enqueue_trial({"x": 1})
    assert set_aside(tmp_path / "demo", url) is None  # no folder to rename
    [aside] = optuna.get_all_study_names(url)
    assert aside.startswith("demo.") and len(optuna.load_study(study_name=aside, storage=url).trials) == 1


def test_fresh_refusals_move_nothing(study, tmp_path) -> None:
    import optuna

    from rksearch.search.study_dir import set_aside
    from rksearch.storage.folder import default_storage, record_storage
    from rksearch.search.liveness import driver_id

    (study / "storage.url").write_text("mysql://me:***@db.example/studies\n")
    with pytest.raises(RKSearchError, match="password masked.*set RKSEARCH_STORAGE"):
        set_aside(study, default_storage(study))
    (study / "storage.url").unlink()
    running = optuna.load_study(study_name="demo", storage=default_storage(study)).ask()
    running.set_user_attr("driver", driver_id())  # this process: alive
    with pytest.raises(RKSearchError, match=r"another rksearch run is training trials \[25\]"):
        set_aside(study, default_storage(study))
    url = _moved(study, tmp_path)
    record_storage(study, url)
    with pytest.raises(RKSearchError, match="another rksearch run"):
        set_aside(study, url)
    assert study.is_dir() and optuna.get_all_study_names(url) == ["demo"]


def test_dashboard_on_the_storage_its_space_names(study, tmp_path) -> None:
    from rksearch.analysis.dashboard import dashboard

    url = _moved(study, tmp_path)
    board = dashboard(tmp_path / "demo", port=0, storage=url)
    board.start()
    try:
        detail = json.loads(__import__("urllib.request").request.urlopen(
            f"{board.base_url}/api/studies/{board.study_id}", timeout=60).read())
        assert len(detail["trials"]) == 25
    finally:
        board.stop()


def test_storage_errors(study, tmp_path, rk) -> None:
    url = _moved(study, tmp_path)
    missing = f"sqlite:///{tmp_path / 'nothing.db'}"
    cases = [
        (missing, "no such SQLite database"),
        ("nosuchdb://host/x", "cannot open the storage"),
        ("postgresql://me:s3cret@127.0.0.1:1/studies", "cannot"),
    ]
    for storage, needle in cases:
        code, out, err = rk("pareto", study, "--storage", storage)
        assert code == 2 and needle in err and "Traceback" not in err, err
        assert "s3cret" not in err
    assert not (tmp_path / "nothing.db").exists()  # opening never creates a database
    (study / "storage.url").write_text(missing + "\n")
    with pytest.raises(RKSearchError, match=f"^{study / 'storage.url'}: sqlite:///.*nothing.db: no such SQLite"):
        load_study(study)  # a bad record names its file
    (study / "storage.url").unlink()
    with pytest.raises(RKSearchError, match="holds 'demo', not study 'other'"):
        load_study(tmp_path / "other", storage=url)


def test_recorded_storage(study, tmp_path, monkeypatch) -> None:
    """What rksearch run records: absolute SQLite paths, no password, one study per folder."""
    from rksearch.storage.folder import default_storage, record_storage
    from rksearch.search.preflight import check_same_storage
    from rksearch.storage.urls import absolute_url

    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    assert absolute_url("sqlite:///rel.db?timeout=5") == f"sqlite:///{tmp_path / 'cwd' / 'rel.db'}?timeout=5"
    assert absolute_url("sqlite:////abs/x.db") == "sqlite:////abs/x.db"
    assert absolute_url("postgresql://u@h/db") == "postgresql://u@h/db"
    check_same_storage(study, default_storage(study), "--storage")  # the folder's own optuna.db
    with pytest.raises(RKSearchError, match="holds a study in sqlite:///.*optuna.db, not in sqlite:////elsewhere.db"):
        check_same_storage(study, "sqlite:////elsewhere.db", "--storage")
    record_storage(study, "mysql://me:s3cret@db.example/studies")
    assert (study / "storage.url").read_text().strip() == "mysql://me:***@db.example/studies"
    check_same_storage(study, "mysql://me:s3cret@db.example/studies", "--storage")  # the same, password aside
    monkeypatch.delenv("RKSEARCH_STORAGE", raising=False)
    with pytest.raises(RKSearchError, match=r"storage.url: the storage mysql://me:\*\*\*@db.example/studies has its "
                                            "password masked .*; set RKSEARCH_STORAGE to its full URL"):
        load_study(study)
    record_storage(study, default_storage(study))
    assert not (study / "storage.url").exists() and len(load_study(study).trials) == 25
