"""``rksearch describe``: output and errors."""
from __future__ import annotations

import json

import pytest

from rksearch import parse_name, save_spec


@pytest.fixture
def rk(rksearch_cli, tmp_path):
    """``rksearch ARGS`` through the same entry point, in this process (conftest.py; a cold start saved
    per call: test_errors.py runs the installed entry point in a process of its own)."""
    return lambda *args: rksearch_cli(*args, cwd=tmp_path)


def test_table(rk) -> None:
    r = rk("describe", "IRKNet-3x1_3x1_3x1", "--growth-rate", "36")
    assert r.returncode == 0, r.stderr
    assert "IRKNet-3x1_3x1_3x1" in r.stdout and "0.323 M params" in r.stdout and "0.382 GFLOPs" in r.stdout
    assert "32x32" in r.stdout and "8x8" in r.stdout


def test_json_and_file(tmp_path, rk) -> None:
    spec = parse_name("ERKNet-3x1_3x1_3x1_1x1-B", growth_rate=32, m=[2, 4, 8, 16], stem="imagenet",
                      input_size=224, num_classes=1000, multiscale=False)
    p = tmp_path / "t3.yaml"
    save_spec(spec, p)
    by_file = json.loads(rk("describe", str(p), "--json").stdout)
    by_name = json.loads(rk("describe", "ERKNet-3x1_3x1_3x1_1x1-B", "-k", "32", "--m", "2,4,8,16", "--stem", "imagenet",
                             "--num-classes", "1000", "--no-multiscale", "--json").stdout)
    assert by_file == by_name
    assert by_file["name"] == "ERKNet-3x1_3x1_3x1_1x1-B"
    assert isinstance(by_file["params"], int) and isinstance(by_file["flops"], int)
    assert [p["m"] for p in by_file["periods"]] == [2, 4, 8, 16]


@pytest.mark.parametrize("args, needle", [
    (["IRKNet-1x1"], "periods.0.stages"),
    (["NotANet"], "cannot parse"),
    (["missing.yaml"], "missing.yaml: no such file"),
    (["IRKNet-3x1", "-k", "x"], "--growth-rate"),
    (["IRKNet-3x1_3x1", "-k", "1,2,3"], "--growth-rate: got 3 values for 2 periods"),
    (["ERKNet-3x1_3x1", "-k", "0"], "error: --growth-rate: must be at least 1, got 0"),
    (["ERKNet-3x1_3x1", "--stem", "vgg"], "error: --stem: Input should be 'cifar' or 'imagenet'"),
    (["IRKNet-3x1_3x1", "--m", "2"], "--m: m=2, but IRKNet-3x1_3x1 has no ERK period"),
    (["densenet-bc-100", "--m", "2"], "--m: applies to RKNets only"),
    (["densenet-bc-100", "-k", "12,24"], "--growth-rate: a baseline has one growth rate"),
    (["cliquenet", "--no-multiscale"], "--no-multiscale: applies to RKNets only"),
    (["densenet-bc-99"], "L = 6n + 4"),
])
def test_errors(args: list[str], needle: str, rk) -> None:
    r = rk("describe", *args)
    assert r.returncode == 2
    assert needle in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_not_a_spec(tmp_path, rk) -> None:
    p = tmp_path / "other.yaml"
    p.write_text("name: cifar_irk\nsearch: {trials: 3}\n")
    r = rk("describe", str(p))
    assert r.returncode == 2 and "not an RKNet spec" in r.stderr and str(p) in r.stderr


@pytest.mark.parametrize("name, params, gflops", [
    ("densenet-bc-100", 769_162, 0.576), ("cliquenet-t18-k80", 10_135_594, 9.454),
])
def test_baselines(name: str, params: int, gflops: float, tmp_path, rk) -> None:
    """Baselines by name or by spec file, counted as the published networks (issue 8's figures)."""
    from rksearch.arch.baselines import baseline_spec

    info = json.loads(rk("describe", name, "--json").stdout)
    assert info["params"] == params and round(info["flops"] / 1e9, 3) == gflops
    assert [b["resolution"] for b in info["blocks"]] == [32, 16, 8]
    p = tmp_path / "b.yaml"
    p.write_text(baseline_spec(name).to_yaml())
    assert json.loads(rk("describe", str(p), "--json").stdout) == info
    r = rk("describe", name, "-k", "24")
    assert r.returncode == 0 and "k=24" in r.stdout, r.stdout
