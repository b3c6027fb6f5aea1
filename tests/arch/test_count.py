"""Analytic counts: the paper's tables and exact agreement with PyTorch's own counter."""
from __future__ import annotations

import random

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from rksearch import RKNetSpec, build_model, count, parse_name

# Table 1 (CIFAR-10, k=36, m=1, multiscale): GFLOPs, M params
TABLE1 = {
    "ERKNet-6x1_6x1_6x1": (0.66, 0.74), "ERKNet-7x1_6x1_6x1": (0.83, 0.83),
    "ERKNet-7x1_7x1_6x1": (0.87, 0.91), "ERKNet-7x1_7x1_7x1": (0.88, 0.99),
    "IRKNet-3x1_3x1_3x1": (0.38, 0.32), "IRKNet-4x1_3x1_3x1": (0.62, 0.40),
    "IRKNet-4x1_4x1_3x1": (0.68, 0.49), "IRKNet-4x1_4x1_4x1": (0.69, 0.57),
}
# Table 2 (CIFAR-10, multiscale): name, k, GFLOPs, M params
TABLE2 = [
    ("IRKNet-5x1_5x1_5x1-AB", 80, 2.17, 1.40), ("IRKNet-5x1_5x1_5x1-A", 80, 5.44, 4.37),
    ("IRKNet-5x1_5x1_5x1-AB", 150, 7.62, 4.87), ("IRKNet-6x1_6x1_6x1-A", 80, 7.92, 6.28),
    ("IRKNet-5x1_5x1_5x1-AB", 180, 10.98, 6.99), ("IRKNet-5x1_5x1_5x1-AB", 200, 13.55, 8.63),
    ("IRKNet-5x1_5x1_5x1-AB", 240, 19.51, 12.41),
]
# Table 3 (ImageNet 224, k=32, m = 2, 4, 8, m3, bottleneck, single-scale): name, m3, GFLOPs, M params
TABLE3 = [
    ("ERKNet-3x1_3x1_3x1_1x1-B", 16, 5.20, 6.95), ("ERKNet-3x1_3x1_4x1_2x1-B", 20, 6.35, 14.49),
    ("ERKNet-3x1_3x1_6x1_2x1-B", 28, 8.50, 25.51),
]


def _close(ours: float, paper: float) -> bool:
    """Within 2 % of the paper, its two-decimal rounding aside."""
    return abs(ours - paper) <= 0.02 * paper + 0.005


@pytest.mark.parametrize("name", TABLE1)
def test_table1(name: str) -> None:
    c = count(parse_name(name, growth_rate=36))
    gflops, mparams = TABLE1[name]
    assert _close(c.gflops, gflops) and _close(c.mparams, mparams), (c.gflops, c.mparams)


@pytest.mark.parametrize("name, k, gflops, mparams", TABLE2)
def test_table2(name: str, k: int, gflops: float, mparams: float) -> None:
    c = count(parse_name(name, growth_rate=k))
    assert _close(c.gflops, gflops) and _close(c.mparams, mparams), (c.gflops, c.mparams)


@pytest.mark.parametrize("name, m3, gflops, mparams", TABLE3)
def test_table3(name: str, m3: int, gflops: float, mparams: float) -> None:
    spec = parse_name(name, growth_rate=32, m=[2, 4, 8, m3], stem="imagenet", input_size=224,
                      num_classes=1000, multiscale=False)
    c = count(spec)
    assert _close(c.gflops, gflops) and _close(c.mparams, mparams), (c.gflops, c.mparams)


def _random_spec(rng: random.Random) -> RKNetSpec:
    periods = []
    for _ in range(rng.randint(1, 4)):
        method = rng.choice(["erk", "irk"])
        periods.append({"method": method, "stages": rng.randint(2, 4), "steps": rng.randint(1, 2),
                        "growth_rate": rng.randint(1, 6), "m": rng.randint(1, 3) if method == "erk" else 1})
    stem = rng.choice(["cifar", "imagenet"])
    return RKNetSpec.from_dict({
        "stem": stem, "input_size": rng.choice([16, 32, 33]) if stem == "cifar" else rng.choice([64, 65]),
        "in_channels": rng.choice([1, 3]), "num_classes": rng.randint(2, 12),
        "bottleneck": rng.random() < 0.5, "attention": rng.random() < 0.5, "multiscale": rng.random() < 0.5,
        "periods": periods,
    })


def test_matches_pytorch_counter_on_random_specs() -> None:
    """40 random specs, a build and a counted forward each: 1-2 s on torch's one thread (conftest.py),
    the 25 s once measured were two threads contending on 2 busy cores."""
    rng = random.Random(0)
    for _ in range(40):
        spec = _random_spec(rng)
        model = build_model(spec).eval()
        x = torch.zeros(1, spec.in_channels, spec.input_size, spec.input_size)
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            model(x)
        c = count(spec)
        assert c.flops == fc.get_total_flops(), spec.name
        assert c.params == sum(p.numel() for p in model.parameters()), spec.name
        assert sum(p.flops for p in c.periods) < c.flops


def test_count_is_cheap_and_cached() -> None:
    spec = parse_name("IRKNet-5x1_5x1_5x1-AB", growth_rate=80)
    assert count(spec) is count(parse_name("IRKNet-5x1_5x1_5x1-AB", growth_rate=80))
