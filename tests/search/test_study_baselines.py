"""Baselines beside a search: the ``baselines:`` section, their trials in the baselines' own study
(recorded by the real searcher, no sampler involved), and the analysis that reads both studies and
keeps baselines off the front.

Proxy results are given, not trained (the end-to-end run is in test_search.py); training a
baseline with the proxy and with ``rksearch train`` is real, on a few demo images.
"""
from __future__ import annotations

import copy
import io
import random
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
import yaml

from rksearch.models.registry import count
from rksearch.arch.baselines import DenseNetSpec, baseline_spec
from rksearch.arch.resolve import any_spec_from_dict, load_any_spec
from rksearch.core.errors import RKSearchError
from rksearch.analysis.export import export, pick
from rksearch.analysis.pareto import front
from rksearch.analysis.report import ParetoReport, trials_csv
from rksearch.analysis.plots import pareto_figure
from rksearch.training.proxy import ProxyConfig, proxy_evaluate
from rksearch.space.search_space import parse_space
from rksearch.analysis.study import load_study
from study_factory import storage
from helpers import cli

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning")

ROOT = Path(__file__).resolve().parents[2]
DEMO = yaml.safe_load((ROOT / "search_spaces" / "demo.yaml").read_text())
TINY = ["densenet-bc-16-k4", {"name": "cliquenet-t6-k4", "init_channels": 16}]


def space_with(baselines: Any = TINY, sampler: str = "tpe", **network: Any):
    data = copy.deepcopy(DEMO)
    data["baselines"] = baselines
    data["search"]["sampler"] = sampler
    data["network"].update(network)
    return parse_space(data, source="space.yaml")


# -- the space section ---------------------------------------------------------------------------


def test_entries_take_the_networks_fixed_fields() -> None:
    space = space_with(["densenet-bc-16-k4", {"name": "densenet121", "label": "DN121 on CIFAR"},
                        {"baseline": "cliquenet", "T": 6, "growth_rate": 4, "init_channels": 8}], num_classes=100)
    labels = [b.label for b in space.baselines]
    assert labels == ["DenseNet-BC-16-k4", "DN121 on CIFAR", "CliqueNet-T6-k4"]
    first, dn121, clique = (b.spec for b in space.baselines)
    assert first == baseline_spec("densenet-bc-16-k4", num_classes=100)
    assert (dn121.stem, dn121.input_size, dn121.num_classes, dn121.block_config) == ("cifar", 32, 100, (6, 12, 24, 16))
    assert (clique.T, clique.init_channels, clique.num_classes) == (6, 8, 100)
    assert space_with(None).baselines == ()


@pytest.mark.parametrize("baselines, field, text", [
    ("densenet-bc-100", "baselines", "expected a non-empty list"),
    ([], "baselines", "expected a non-empty list"),
    (["densenet-bc-16-k4", "resnet50"], "baselines.1", "unknown baseline 'resnet50': expected densenet121"),
    (["densenet-bc-99"], "baselines.0", "L = 6n + 4"),
    ([3], "baselines.0", "expected a baseline name (densenet-bc-100, cliquenet, ...), {name: "),
    ([{"growth_rate": 4}], "baselines.0", "give either name (a baseline name) or baseline"),
    ([{"name": "cliquenet", "baseline": "cliquenet"}], "baselines.0", "not both or neither"),
    ([{"name": 12}], "baselines.0.name", "expected a baseline name"),
    ([{"baseline": "resnet"}], "baselines.0.baseline", "unknown baseline 'resnet'"),
    ([{"baseline": "densenet", "growth_rate": 4}], "baselines.0", "block_config: Field required"),
    ([{"name": "densenet-bc-16", "growth_rate": "x"}], "baselines.0", "growth_rate: Input should be a valid integer"),
    ([{"name": "cliquenet", "colour": "red"}], "baselines.0", "colour: unknown key"),
    ([{"baseline": "densenet", "block_config": [4, 4], "growth_rate": -4}], "baselines.0",
     "growth_rate: Input should be greater than or equal to 1"),
    ([{"name": "cliquenet", "num_classes": 100}], "baselines.0.num_classes", "set by network.num_classes"),
    ([{"name": "cliquenet", "label": ""}], "baselines.0.label", "non-empty text"),
    (["densenet-bc-16", {"name": "densenet-bc-16"}], "baselines.1", "repeats item 0: the same spec"),
    (["densenet-bc-16", {"name": "densenet-bc-28", "label": "DenseNet-BC-16-k12"}], "baselines.1", "item 0's label"),
])
def test_bad_entries_name_the_file_and_entry(baselines: Any, field: str, text: str) -> None:
    with pytest.raises(RKSearchError) as e:
        space_with(baselines)
    assert str(e.value).startswith(f"space.yaml: {field}: "), str(e.value)
    assert text in str(e.value) and "init_channels" not in str(e.value)  # derived from k: never blamed


def test_shipped_baselines_space() -> None:
    from rksearch.space.search_space import load_space

    space = load_space(ROOT / "search_spaces" / "baselines_cifar.yaml")
    names = [b.spec.name for b in space.baselines]
    assert names[:3] == ["DenseNet-BC-100-k12", "DenseNet-40-k12", "CliqueNet-T12-k36"]
    assert all(b.spec.input_size == 32 and b.spec.num_classes == 10 for b in space.baselines)


# -- the searcher --------------------------------------------------------------------------------


def run_searcher(path: Path, space, n: int, results: dict[str, dict] | None = None, seed: int = 0):
    """``n`` trials proposed and recorded by the real searcher; a baseline's result comes from
    ``results[label]`` (an empty dict fails it), a searched one is a made-up accuracy."""
    from rksearch.search.searcher import RKSearcher

    searcher = RKSearcher(space, storage(path / "optuna.db"), "test-driver")
    searcher.study.set_user_attr("objectives", space.objectives)
    searcher.initially_pending = [b.label for b in searcher.pending_baselines]
    rng = random.Random(seed)
    for i in range(n):
        config = searcher.suggest(f"t{i}")
        label = config.get("baseline")
        c = count(any_spec_from_dict(config["spec"]))
        measured = {"accuracy": 0.3 + 0.4 * rng.random(), "flops": c.flops, "params": c.params, "epochs": 3,
                    "final": True}
        result = (results or {}).get(label, {**measured, "accuracy": 0.99}) if label else measured
        searcher.on_trial_complete(f"t{i}", result)
    return searcher


SAMPLERS = {"tpe": optuna.samplers.TPESampler, "nsga2": optuna.samplers.NSGAIISampler,
            "nsga3": optuna.samplers.NSGAIIISampler, "gp": optuna.samplers.GPSampler,
            "qmc": optuna.samplers.QMCSampler, "random": optuna.samplers.RandomSampler}


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_baselines_are_trials_the_sampler_never_sees(tmp_path: Path, sampler: str) -> None:
    """Every sampler, unwrapped, over a study that holds only what it proposed: the baselines are
    trials of ``<name>/baselines`` in the same storage (Optuna 5.1's NSGA-II crashed on the wrapper
    that hid them before)."""
    space = space_with(sampler=sampler)
    searcher = run_searcher(tmp_path / "demo", space, 14)
    study, baselines = searcher.study, searcher.baselines_study
    assert type(study.sampler) is SAMPLERS[sampler] and baselines.study_name == "demo/baselines"
    assert [s.study_name for s in optuna.get_all_study_summaries(storage(tmp_path / "demo" / "optuna.db"))] == \
        ["demo", "demo/baselines"]
    for t, b in zip(baselines.trials, space.baselines, strict=True):
        ua = t.user_attrs
        assert (t.state, ua["kind"], ua["baseline"], ua["outcome"]) == (optuna.trial.TrialState.COMPLETE, "baseline",
                                                                         b.label, "trained")
        assert any_spec_from_dict(yaml.safe_load(ua["spec"])) == b.spec
        assert (ua["flops"], ua["params"]) == (count(b.spec).flops, count(b.spec).params)
        assert t.params == {} and t.values[0] == 0.99
    searched = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(searched) >= 10 and all("kind" not in t.user_attrs and t.params for t in study.trials)
    if sampler in ("nsga2", "nsga3"):  # the intersection of every complete trial's params: all global choices
        space_seen = study.sampler.infer_relative_search_space(study, study.trials[-1])
        assert "periods" in space_seen and "growth_rate" in space_seen
    assert searcher.tally.baselines == 2


def test_rerun_trains_only_the_baselines_not_yet_trained(tmp_path: Path) -> None:
    space = space_with(TINY + ["densenet-bc-22-k4"])
    searcher = run_searcher(tmp_path / "demo", space, 4, results={"DenseNet-BC-22-k4": {}})
    assert [t.user_attrs["outcome"] for t in searcher.baselines_study.trials] == ["trained", "trained", "failed"]
    before = len(searcher.baselines_study.trials)
    again = run_searcher(tmp_path / "demo", space, 2)
    assert again.initially_pending == ["DenseNet-BC-22-k4"]  # the failed one, not the trained two
    new = again.baselines_study.trials[before:]
    assert [t.user_attrs["baseline"] for t in new] == ["DenseNet-BC-22-k4"] and new[0].user_attrs["outcome"] == "trained"
    assert "kind" not in again.study.trials[-1].user_attrs
    assert run_searcher(tmp_path / "demo", space, 0).initially_pending == []


def test_budget_counts_searched_trials_only(tmp_path: Path) -> None:
    from rksearch.search.records import count_done

    searcher = run_searcher(tmp_path / "demo", space_with(), 6)
    searched = sum(t.state == optuna.trial.TrialState.COMPLETE for t in searcher.study.trials)
    assert count_done(searcher.study) == searched


# -- the analysis --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("baselines") / "demo"
    run_searcher(path, space_with(), 16, results={"DenseNet-BC-16-k4": {
        "accuracy": 0.99, "flops": 1.0, "params": 1.0, "epochs": 3, "final": True}})
    return path


def test_front_hypervolume_and_picks_exclude_baselines(study_dir: Path) -> None:
    s = load_study(study_dir)
    assert list(s.baselines["name"]) == ["DenseNet-BC-16-k4", "CliqueNet-T6-k4"]
    assert set(s.trials["kind"]) == {"search", "baseline"} and not (s.completed["kind"] == "baseline").any()
    f = front(s)
    assert not f.members["kind"].eq("baseline").any() and f.candidates == len(s.completed)
    everything = front(s, candidates=s.trials[s.trials["state"] == "COMPLETE"])
    assert everything.members[["kind", "number"]].values.tolist() == [["baseline", 0]]  # it would dominate them all
    assert f.hypervolume < everything.hypervolume and len(f.members) > 1
    for how in ("knee", "best-accuracy", "min-flops"):
        assert pick(s, how).row["kind"] == "search"
    assert "baselines" in s.summary()


def test_report_and_plot_show_baselines_apart(study_dir: Path) -> None:
    s = load_study(study_dir)
    report = ParetoReport.of(s)
    lines = "\n".join(report.lines())
    assert "baselines (same proxy, not on the front" in lines and "baseline 1 CliqueNet-T6-k4: accuracy" in lines
    fig = pareto_figure(s)
    marked = [t for t in fig.data if t.name.startswith("baselines")]
    assert len(marked) == 1 and list(marked[0].text) == ["DenseNet-BC-16-k4", "CliqueNet-T6-k4"]
    assert marked[0].marker.symbol == "square"
    front_trace = next(t for t in fig.data if t.name.startswith("Pareto front"))
    assert len(front_trace.x) == len(front(s).members)
    csv = pd.read_csv(io.StringIO(trials_csv(s)))
    assert list(csv.loc[csv["kind"] == "baseline", "number"]) == [0, 1]
    assert csv.loc[csv["kind"] == "baseline", "choices"].iloc[0] == "k=4 blocks=2/2/2"


def test_export_takes_a_baseline_only_by_number(study_dir: Path, tmp_path: Path) -> None:
    chosen = export(study_dir, tmp_path / "b.yaml", "baseline:1")
    assert "a baseline (CliqueNet-T6-k4)" in chosen.reason and chosen.what == "baseline 1"
    assert load_any_spec(tmp_path / "b.yaml") == load_study(study_dir).spec(1, "baseline")
    assert "baseline 1 (complete)" in (tmp_path / "b.yaml").read_text()
    assert export(study_dir, tmp_path / "t.yaml", "trial:1").row["kind"] == "search"  # trial:N: searched trials
    with pytest.raises(RKSearchError, match="no baseline 7 \\(baselines are numbered 0..1\\)"):
        export(study_dir, tmp_path / "c.yaml", "baseline:7")
    assert export(study_dir, tmp_path / "best.json", "best-accuracy").row["kind"] == "search"


# -- training a baseline -------------------------------------------------------------------------


def test_scaled_baseline_narrows_growth_and_stem() -> None:
    spec = baseline_spec("densenet-bc-100")
    half = spec.scaled(0.5)
    assert isinstance(half, DenseNetSpec) and (half.growth_rate, half.init_channels) == (6, 12)
    assert half.block_config == spec.block_config and spec.scaled(1) is spec
    assert baseline_spec("cliquenet").scaled(0.25).init_channels == 16


def test_proxy_trains_a_narrower_baseline_and_reports_the_full_costs() -> None:
    spec = baseline_spec("densenet-bc-16-k8")
    cfg = ProxyConfig(train_subset=64, val_size=32, epochs=1, batch_size=32, width=0.5, device="cpu")
    r = proxy_evaluate(spec, cfg)
    assert (r["flops"], r["params"]) == (count(spec).flops, count(spec).params)
    assert (r["trained_flops"], r["trained_params"]) == (count(spec.scaled(0.5)).flops, count(spec.scaled(0.5)).params)
    assert 0.0 <= r["accuracy"] <= 1.0


SMALL = ["--dataset", "demo", "--epochs", "1", "--train-subset", "64", "--val-size", "32", "--batch-size", "32",
         "--device", "cpu"]


def test_train_a_baseline_by_name_and_by_file(tmp_path: Path, capsys) -> None:
    code, out, err = cli(["train", "densenet-bc-16-k4", *SMALL, "--out", str(tmp_path / "by_name")], capsys)
    assert code == 0, err
    assert "DenseNet-BC-16-k4 on demo: test accuracy" in out
    assert load_any_spec(tmp_path / "by_name" / "spec.yaml") == baseline_spec("densenet-bc-16-k4")
    path = tmp_path / "clique.yaml"
    path.write_text("baseline: cliquenet\nT: 6\ngrowth_rate: 4\ninit_channels: 8\n")
    code, out, err = cli(["train", str(path), *SMALL, "--out", str(tmp_path / "by_file")], capsys)
    assert code == 0, err
    assert "CliqueNet-T6-k4 on demo" in out and (tmp_path / "by_file" / "result.json").is_file()


def test_train_an_rknet_by_name(tmp_path: Path, capsys) -> None:
    """As describe takes it: an RKNet name, with the name grammar's defaults."""
    code, out, err = cli(["train", "IRKNet-2x1_2x1", *SMALL, "--out", str(tmp_path / "by_name")], capsys)
    assert code == 0 and "IRKNet-2x1_2x1 on demo" in out, err


@pytest.mark.parametrize("arg, needle", [
    ("resnet-9000", "resnet-9000: no such spec file, not an RKNet name (ERKNet-3x1_3x1_3x1, RKNet-E2x1_I3x1) and "
                    "not a baseline name (densenet121|"),
    ("densenet-bc-99", "densenet-bc-99: depth 99: a three-block DenseNet-BC has L = 6n + 4"),
    ("missing.yaml", "missing.yaml: no such file"),
])
def test_train_neither_file_nor_name(tmp_path: Path, capsys, arg: str, needle: str, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(["train", arg, "--dataset", "demo"], capsys)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not any(tmp_path.iterdir())


def test_a_study_written_before_the_split_is_read_but_not_continued(tmp_path: Path) -> None:
    """Baselines inside the searched study (studies written before <name>/baselines): pareto and
    export read them; a run refuses to continue the study (its sampler would learn from them)."""
    from rksearch.storage.open import open_storage
    from rksearch.search.preflight import check_continuable

    space = space_with(["densenet-bc-16-k4"])
    spec = space.baselines[0].spec
    rdb = open_storage(f"sqlite:///{tmp_path / 'demo' / 'optuna.db'}")
    study = optuna.create_study(study_name="demo", storage=rdb, directions=["maximize", "minimize"])
    for k, v in {"objectives": ["accuracy", "flops"], "proxy": space.proxy.model_dump()}.items():
        study.set_user_attr(k, v)
    study.add_trial(optuna.trial.create_trial(values=[0.5, count(spec).flops], user_attrs={
        "kind": "baseline", "baseline": spec.name, "spec": spec.to_yaml(), "name": spec.name, "outcome": "trained"}))
    with pytest.raises(RKSearchError, match="holds its baselines among the searched trials"):
        check_continuable(rdb, space)
    s = load_study(tmp_path / "demo")
    assert list(s.baselines["name"]) == [spec.name] and s.spec(0, "baseline") == spec
    assert export(tmp_path / "demo", tmp_path / "b.yaml", "baseline:0").spec == spec


def test_of_two_drivers_claiming_a_baseline_at_once_the_lower_claim_trains(tmp_path: Path, monkeypatch) -> None:
    """Both claim before either looks (the race a shared PostgreSQL study showed: both backed off
    and the baseline never trained): the claim with the lower trial number trains, the other backs off."""
    import rksearch.search.searcher as search
    from rksearch.search.liveness import driver_id
    from rksearch.storage.baseline_study import start_baseline_trial as claim

    space = space_with(["densenet-bc-16-k4"])
    a = search.RKSearcher(space, storage(tmp_path / "optuna.db"), driver_id())
    b = search.RKSearcher(space, storage(tmp_path / "optuna.db"), "another-host:1")  # alive: not ours to judge
    key = search.spec_key(space.baselines[0].spec)

    def both_claim(study, attrs):  # A's claim, then B's at the same moment, before A looks
        mine = claim(study, attrs)
        claim(b.baselines_study, {**attrs, "driver": b.driver})
        return mine

    monkeypatch.setattr(search, "start_baseline_trial", both_claim)
    config = a.suggest("t0")
    assert config is not None and config["baseline"] == "DenseNet-BC-16-k4"  # A's claim (0) is the lower
    b._sync(besides=("baseline", 1))
    assert b._baselines_taken[key] == 0 < 1  # B, looking now, sees the lower claim and backs off
