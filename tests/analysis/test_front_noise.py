"""The front's accuracies with their noise (the validation set's size), and one knee rule for
``rksearch pareto`` and ``rksearch export``, on real Optuna studies."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
from study_factory import make_study

from rksearch.analysis.noise import front_noise, standard_error, validation_images
from rksearch.analysis.pareto import front
from rksearch.analysis.plots import pareto_figure
from rksearch.analysis.study import load_study

DEMO_PROXY = {"dataset": "demo", "epochs": 3, "val_size": 500, "val_subset": None}
# (accuracy, FLOPs): trials 62 % and 64 % are 2 points apart, within noise on 500 images; 70 % and 80 % are not
NEAR = [(0.62, 2e6), (0.64, 3e6), (0.70, 5e6), (0.80, 9e6), (0.5, 8e6)]


@pytest.fixture(scope="module")
def studies(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("studies")
    make_study(root, "near", points=NEAR, proxy=DEMO_PROXY, reference_point={"accuracy": 0.0, "flops": 1.2e7})
    make_study(root, "unrecorded", points=NEAR)  # a proxy without val_size: nothing to say
    make_study(root, "two", points=[(0.62, 2e6), (0.80, 9e6)], proxy=DEMO_PROXY)
    return root


@pytest.fixture
def rk(rksearch_cli):
    def run(*args) -> tuple[int, str, str]:
        r = rksearch_cli(*args)
        return r.returncode, r.stdout, r.stderr
    return run


def test_validation_images_from_the_recorded_proxy():
    assert validation_images({"val_size": 500}) == 500
    assert validation_images({"val_size": 1000, "val_subset": 200}) == 200
    assert validation_images({"val_size": 500, "val_subset": None}) == 500
    assert validation_images({}) is None and validation_images({"val_size": "500"}) is None


def test_standard_error_is_binomial():
    assert standard_error(0.5, 500) == pytest.approx(math.sqrt(0.25 / 500))  # 2.24 points
    assert standard_error(0.9, 10_000) == pytest.approx(0.003)
    assert standard_error(1.0, 500) == 0.0


def test_the_noise_of_a_real_front(studies):
    s = load_study(studies / "near")
    f = front(s)
    noise = front_noise(f, s.proxy)
    assert noise.images == 500
    assert noise.accuracy == pytest.approx(0.67)  # the median of 62, 64, 70, 80
    assert noise.error == pytest.approx(math.sqrt(0.67 * 0.33 / 500))
    number = {round(a, 2): int(n) for a, n in zip(f.members["accuracy"], f.members["number"])}
    assert [(a, b) for a, b, _ in noise.close] == [(number[0.64], number[0.62])]
    assert noise.close[0][2] == pytest.approx(0.02)
    assert front_noise(front(load_study(studies / "unrecorded")), {}) is None


def test_pareto_says_the_noise_and_marks_the_close_pair(studies, rk):
    code, out, err = rk("pareto", studies / "near")
    assert code == 0, err
    members = front(load_study(studies / "near")).members
    number = {round(a, 2): int(n) for a, n in zip(members["accuracy"], members["number"])}
    close = {number[0.62], number[0.64]}
    assert "accuracy measured on 500 validation images: ±2.1 points (one binomial standard error" in out
    assert f"marked ~): trials {number[0.64]} and {number[0.62]} (2.0 points)" in out
    marked = {int(line.split("│")[1].strip().rstrip(" *")) for line in out.splitlines()
              if line.startswith("│") and " ~ " in line}
    assert marked == close and "~ within noise of a neighbour" in out


def test_pareto_says_nothing_of_noise_it_cannot_know(studies, rk):
    code, out, _ = rk("pareto", studies / "unrecorded")
    assert code == 0 and "validation images" not in out and " ~ " not in out


def test_pareto_and_export_share_the_knee_rule_on_a_front_too_small(studies, rk, tmp_path):
    f = front(load_study(studies / "two"))
    assert len(f.members) == 2 and f.knee is None and not f.has_knee
    code, out, _ = rk("pareto", studies / "two")
    assert code == 0 and "no knee: a front of 2 is too few (3 needed)" in out
    assert "* knee" not in out and not any(line.startswith("│") and " * │" in line for line in out.splitlines())
    assert not any(t.name.startswith("knee") for t in pareto_figure(load_study(studies / "two")).data)
    code, out, _ = rk("export", studies / "two", "-o", tmp_path / "x.yaml")
    best = int(f.members.loc[f.members["accuracy"].idxmax(), "number"])
    assert code == 0 and f"trial {best} " in out and "too few for a knee" in out


def test_pareto_and_export_name_the_same_knee(studies, rk, tmp_path):
    knee = front(load_study(studies / "near")).knee
    assert knee is not None
    _, out, _ = rk("pareto", studies / "near")
    assert f"* knee (trial {knee})" in out
    _, out, _ = rk("export", studies / "near", "-o", tmp_path / "x.yaml")
    assert out.startswith(f"trial {knee} ") and "knee of the accuracy/flops front" in out
