"""RK-Bench's build (benchmarks/rkbench/build.py): a tiny real build, its table, resume, and user errors."""
from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rksearch.models.registry import count
from rksearch.space.search_space import load_space
from rksearch.arch.names import parse_name

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "benchmarks" / "rkbench" / "build.py"
ZIP = ROOT.parent / "shared" / "data" / "cifar10-jpeg.zip"
REQUIRED = ["name", "seed", "epoch", "val_acc", "seconds", "flops", "params"]


def _load_build():
    spec = importlib.util.spec_from_file_location("rkbench_build", BUILD)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


build = _load_build()


def tiny_space(tmp_path: Path, **proxy) -> Path:
    """rkbench.yaml cut to 4 specs (period 1 ERK/IRK, period 2 two stage counts), a few real
    CIFAR-10 images (the bundled demo data where the JPEG zip is missing), 2 epochs."""
    data = yaml.safe_load((ROOT / "search_spaces" / "rkbench.yaml").read_text())
    data["name"] = "rkbench-tiny"
    data["periods"].update({"method": "erk", "stages": 2, "growth_rate": 4,
                            "overrides": {1: {"method": ["erk", "irk"]}, 2: {"stages": [2, 3]}}})
    data["proxy"].update({"train_subset": 128, "val_size": 64, "epochs": 2, "batch_size": 32, "device": "cpu"})
    if ZIP.exists():
        data["proxy"]["root"] = str(ZIP)
    else:
        data["proxy"].update({"dataset": "demo", "root": None})
    data["proxy"].update(proxy)
    data["search"]["trials"] = 4
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def ray_cluster(ray_session):
    """The session's Ray (conftest.py): a build joins a Ray that is already up."""
    return ray_session


@pytest.mark.slow  # 8 real trainings on Ray, then the resume's 5
def test_tiny_build_then_resume_retrains_nothing_finished(tmp_path, ray_cluster, capsys):
    space_file = tiny_space(tmp_path)
    out = tmp_path / "table.csv"
    args = [str(space_file), "--seeds", "2", "--out", str(out)]

    # the first run stops after 3 of the 8 trainings, as a killed build would have
    assert build.main(args + ["--limit", "3"]) == 0
    first = out.read_text()
    rows = read(out)
    assert len(rows) == 3 * 2  # 3 spec x seed pairs x 2 epochs, nothing else
    assert "4 specs x 2 seeds = 8 trainings of 2 epochs; 0 already in" in capsys.readouterr().out
    meta = json.loads(build.meta_path(out).read_text())
    assert meta["runs"][-1]["trained"] == 3 and meta["proxy"]["epochs"] == 2

    assert build.main(args) == 0
    printed = capsys.readouterr().out
    assert "3 already in" in printed and "5 to train" in printed
    assert json.loads(build.meta_path(out).read_text())["runs"][-1]["trained"] == 5
    final = out.read_text()
    old_lines = first.splitlines()
    assert set(old_lines) <= set(final.splitlines())  # the finished rows, byte for byte

    # the schema and the value ranges
    rows = read(out)
    assert list(rows[0])[:len(build.BASE_COLUMNS)] == build.BASE_COLUMNS
    assert set(REQUIRED) <= set(rows[0]) and {"p1.method", "p2.stages"} <= set(rows[0])
    space = load_space(space_file)
    specs = {s.name: s for s in (space.spec_from_params(p) for p in space.enumerate_params())}
    assert {r["name"] for r in rows} == set(specs) and len(specs) == 4
    assert len(rows) == 4 * 2 * 2
    pairs: dict[tuple[str, int], list[dict[str, str]]] = {}
    for r in rows:
        pairs.setdefault((r["name"], int(r["seed"])), []).append(r)
    assert set(pairs) == {(n, s) for n in specs for s in (0, 1)}
    for (name, seed), curve in pairs.items():
        assert [int(r["epoch"]) for r in curve] == [1, 2]
        assert all(0.0 <= float(r["val_acc"]) <= 1.0 for r in curve)
        secs = [float(r["seconds"]) for r in curve]
        assert 0 < secs[0] < secs[1]  # cumulative
        spec = specs[name]
        assert parse_name(name, growth_rate=int(curve[0]["growth_rate"])) == spec  # the name is the spec
        c = count(spec)
        assert {(int(r["flops"]), int(r["params"])) for r in curve} == {(c.flops, c.params)}
    assert out.stat().st_size < 5_000_000
    assert not list(tmp_path.glob("*.tmp"))

    # complete: a third run trains nothing and leaves the table as it was
    assert build.main(args) == 0
    assert "nothing to train; the table is complete" in capsys.readouterr().out
    assert out.read_text() == final

    # the report: seed-to-seed rank agreement of the final epoch
    assert build.main(["--report", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "seeds 0 vs 1, final epoch, 4 specs: Kendall tau" in printed and "Spearman" in printed


@pytest.mark.slow  # real trainings on Ray
def test_a_half_written_curve_is_trained_again_and_a_changed_proxy_is_refused(tmp_path, ray_cluster, capsys):
    space_file = tiny_space(tmp_path)
    out = tmp_path / "table.csv"
    args = [str(space_file), "--seeds", "1", "--out", str(out)]
    assert build.main(args + ["--limit", "1"]) == 0
    rows = read(out)
    assert len(rows) == 2
    with open(out, "w", newline="") as f:  # only epoch 1 of the pair: not finished
        writer = csv.DictWriter(f, list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerow(rows[0])
    assert build.main(args + ["--limit", "1"]) == 0
    assert "0 already in" in capsys.readouterr().out
    assert len(read(out)) == 2

    changed = tiny_space(tmp_path, epochs=3)
    assert build.main([str(changed), "--seeds", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {changed}: proxy.epochs: the table was built with")


def test_the_training_seed_leaves_the_split_alone():
    from rksearch.training.proxy import ProxyConfig, proxy_evaluate

    spec = parse_name("ERKNet-2x1_2x1_2x1", growth_rate=4)
    cfg = ProxyConfig(dataset="demo", train_subset=64, val_size=64, epochs=1, batch_size=32, device="cpu", seed=3)
    losses = []
    for train_seed in (None, 3, 4):
        curve: list[dict] = []
        proxy_evaluate(spec, cfg, report=curve.append, train_seed=train_seed)
        losses.append((curve[0]["loss"], curve[0]["val_loss"]))
    assert losses[0] == losses[1]  # no train_seed: the proxy's seed trains, as before
    assert losses[2] != losses[1]


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    missing = tmp_path / "nope.yaml"
    r = subprocess.run([sys.executable, str(BUILD), str(missing), "--out", str(tmp_path / "t.csv")],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip() == f"error: {missing}: no such file" and "Traceback" not in r.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written

    huge = ROOT / "search_spaces" / "cifar_mixed.yaml"
    assert build.main([str(huge), "--out", str(tmp_path / "t.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {huge}: periods: 10,054,800 specs is not enumerable")

    baselines = ROOT / "search_spaces" / "baselines_cifar.yaml"
    assert build.main([str(baselines), "--out", str(tmp_path / "t.csv")]) == 2
    assert capsys.readouterr().err.startswith(f"error: {baselines}: baselines: ")

    bad = tmp_path / "bad.yaml"
    bad.write_text("periods: {count: 3, method: [erk, irk], stages: [1, 2], growth_rate: 4}\n")
    assert build.main([str(bad), "--out", str(tmp_path / "t.csv")]) == 2
    assert capsys.readouterr().err.startswith(f"error: {bad}: periods.stages: ")

    assert build.main([str(tiny_space(tmp_path)), "--out", str(tmp_path / "no" / "t.csv")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'no' / 't.csv'}: --out: its folder does not exist"
    assert not (tmp_path / "t.csv").exists()
