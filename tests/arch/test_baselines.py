"""DenseNet and CliqueNet baselines: published counts, torchvision's densenet121, shared blocks, specs."""
from __future__ import annotations

import json
import random
import re

import pytest
import torch
import torchvision

from rksearch import RKSearchError, build_model, count, parse_name, save_spec
from rksearch.arch.baselines import BaselineSpec, CliqueNetSpec, DenseNetSpec, baseline_spec
from rksearch.arch.resolve import load_any_spec
from rksearch.models.cliquenet import CliqueBlock
from rksearch.models.counter import count_built, count_module
from rksearch.models.densenet import DenseBlock
from rksearch.models.layers import init_weights
from rksearch.models.steps import ERKStep, IRKStep

torch.set_num_threads(1)

# name, M params, GFLOPs (None: not published) as printed, CIFAR-10 (32 px, 10 classes)
PUBLISHED = [
    ("densenet-bc-100", "0.8", None),  # Huang et al. 2017, Table 2 (L=100, k=12)
    ("densenet-40", "1.0", "0.53"),  # Huang et al. (L=40, k=12); FLOPs: Yang et al.'s code README, Tab. 3
    ("densenet-100-k24", "27.2", "13.78"),  # Huang et al. (L=100, k=24); FLOPs as above
    ("cliquenet-t12-k36", "0.94", "0.91"),  # Yang et al. 2018, Table 3
    ("cliquenet-t15-k64", "4.49", "4.21"),  # Yang et al. code README, Tab. 3
    ("cliquenet-t15-k80", "6.94", "6.45"),
    ("cliquenet-t18-k80", "10.14", "9.45"),  # Yang et al.; also the paper's Table 2
    ("cliquenet-t36-k12", "1.05", None),  # Yang et al. code README, Tab. 4
    ("cliquenet-t18-k24", "0.99", None),
    ("cliquenet-t15-k150-abc", "10.48", "10.56"),  # the paper's Table 2, second CliqueNet row
]


def _matches(ours: float, printed: str) -> bool:
    """``ours`` rounds to the printed value at its own precision."""
    decimals = len(printed.partition(".")[2])
    return abs(ours - float(printed)) <= 0.5 * 10**-decimals + 1e-9


@pytest.mark.parametrize("name, mparams, gflops", PUBLISHED)
def test_published_counts(name: str, mparams: str, gflops: str | None) -> None:
    c = count(baseline_spec(name))
    assert _matches(c.params / 1e6, mparams), (name, c.params)
    assert gflops is None or _matches(c.flops / 1e9, gflops), (name, c.flops)


def _tv_key(key: str) -> str:
    """A torchvision DenseNet state-dict key as the same tensor's key in ours."""
    rules = [
        (r"^features\.conv0\.", "features.0.0."),
        (r"^features\.norm0\.", "features.0.1."),
        (r"^features\.denseblock(\d+)\.denselayer(\d+)\.", lambda m: f"features.{2 * int(m[1]) - 1}.units.{int(m[2]) - 1}."),
        (r"^features\.transition(\d+)\.norm\.", lambda m: f"features.{2 * int(m[1])}.bn."),
        (r"^features\.transition(\d+)\.", lambda m: f"features.{2 * int(m[1])}."),
        (r"^features\.norm5\.", "post.bns.0."),
        (r"norm(\d)\.", r"bn\1."),
        (r"conv(\d)\.weight$", r"weight\1"),
    ]
    for pattern, replacement in rules:
        key = re.sub(pattern, replacement, key)
    return key


def test_torchvision_densenet121() -> None:
    """Same parameter count, same FLOPs and, with torchvision's weights, the same function."""
    spec = baseline_spec("densenet121")
    theirs = torchvision.models.densenet121(weights=None)
    assert count(spec).params == sum(p.numel() for p in theirs.parameters()) == 7_978_856
    assert count(spec) == count_built(lambda: torchvision.models.densenet121(weights=None), 224)

    for m in theirs.modules():  # BN at identity would hide a swapped statistic
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_()
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 1.5)
    ours = build_model(spec)
    ours.load_state_dict({_tv_key(k): v for k, v in theirs.state_dict().items()})
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), theirs.eval()(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bottleneck", [False, True])
def test_dense_block_is_erk_step_with_concatenation(bottleneck: bool) -> None:
    """An ERK step's parameters run as a dense block: y + the s groups of m growths = its output."""
    s, m, k = 3, 2, 4
    step = ERKStep(s, k, m, bottleneck, 0.0).eval()
    init_weights(step)
    block = DenseBlock(m * k, m * s, k, 4 * k if bottleneck else 0, 0.0).eval()
    block.load_state_dict(step.state_dict())
    y = torch.randn(2, m * k, 6, 6)
    with torch.no_grad():
        groups = block(y).split(m * k, dim=1)
        torch.testing.assert_close(torch.stack(groups).sum(0), step(y))


@pytest.mark.parametrize("bottleneck", [False, True])
def test_clique_block_is_irk_step_with_concatenation(bottleneck: bool) -> None:
    """An IRK step's parameters run as a clique block with x0 of k channels: y + its Stage-II = its output."""
    s, k = 4, 5
    step = IRKStep(s, k, bottleneck, 0.0)
    for p in step.parameters():
        torch.nn.init.normal_(p, std=0.2)
    block = CliqueBlock(k, s, k, bottleneck, 0.0)
    block.load_state_dict(step.state_dict())
    y = torch.randn(2, k, 6, 6)
    torch.testing.assert_close(y + sum(block(y)), step(y))


def test_clique_block_weights_are_shared_between_stages() -> None:
    """One weight per connection (x0->i and j->i, j != i): Stage-II adds BatchNorms, no convolutions."""
    c0, s, k = 7, 3, 4
    block = CliqueBlock(c0, s, k, False, 0.0)
    convs = sum(p.numel() for p in block.parameters() if p.dim() == 4)
    assert convs == 9 * k * (s * c0 + s * (s - 1) * k)


SMALL = [
    {"baseline": "densenet", "block_config": [2, 3], "growth_rate": 4},
    {"baseline": "densenet", "block_config": [2, 2, 2], "growth_rate": 3, "bottleneck": False, "compression": 1.0,
     "dropout": 0.2},
    {"baseline": "densenet", "block_config": [1, 2], "growth_rate": 4, "stem": "imagenet", "input_size": 32,
     "num_classes": 7},
    {"baseline": "cliquenet", "T": 6, "growth_rate": 4},
    {"baseline": "cliquenet", "T": 6, "growth_rate": 4, "attention": True, "bottleneck": True, "compression": 0.5},
    {"baseline": "cliquenet", "T": 8, "growth_rate": 3, "blocks": 2, "multiscale": False, "init_channels": 5,
     "dropout": 0.2},
]


@pytest.mark.parametrize("data", SMALL, ids=lambda d: BaselineSpec.from_dict(d).name)
def test_forward_backward(data: dict) -> None:
    spec = BaselineSpec.from_dict(data)
    model = build_model(spec)
    x = torch.randn(3, 3, spec.input_size, spec.input_size, requires_grad=True)
    out = model(x)
    assert out.shape == (3, spec.num_classes)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in model.parameters())
    assert count_module(model, spec.input_size) == count(spec)  # real tensors and meta agree


def test_cliquenet_structure() -> None:
    """The published CIFAR layout: 64-channel stem, x0 of T/3*k after it, {x0, Stage-II} pooled."""
    spec = baseline_spec("cliquenet-t12-k36")
    assert spec.block_inputs() == [64, 144, 144]
    assert spec.pooled() == [(208, 208), (288, 288), (288, 288)]
    model = build_model(spec)
    assert [b.weights[0].shape[1] for b in model.blocks] == [64 + 3 * 36, 144 + 3 * 36, 144 + 3 * 36]
    assert model.classifier.in_features == 784
    assert baseline_spec("cliquenet-t12-k36-c").pooled() == [(208, 104), (288, 144), (288, 144)]


@pytest.mark.parametrize("name, fields", [
    ("ERKNet-2x1_2x1", {}), ("IRKNet-3x1_2x1-AB", {}), ("RKNet-E2x2_I3x1", {"m": 2, "multiscale": False}),
    ("ERKNet-1x1_1x1-B", {"m": [2, 4], "stem": "imagenet", "input_size": 64, "num_classes": 7}),
])
def test_rknets_through_the_same_counter(name: str, fields: dict) -> None:
    spec = parse_name(name, growth_rate=4, **fields)
    measured, analytic = count_built(lambda: build_model(spec), spec.input_size, spec.in_channels), count(spec)
    assert (measured.params, measured.flops) == (analytic.params, analytic.flops)


def _random_baseline(r: random.Random) -> BaselineSpec:
    """A DenseNet or CliqueNet drawn over every field that changes the count."""
    stem = r.choice(["cifar", "imagenet"])
    common = {"growth_rate": r.randint(2, 12), "bottleneck": r.random() < 0.5, "stem": stem,
              "input_size": r.choice([32, 40, 64] if stem == "cifar" else [64, 96, 224]),
              "num_classes": r.randint(2, 20), "init_channels": r.randint(4, 24), "in_channels": r.choice([1, 3])}
    if r.random() < 0.5:
        return DenseNetSpec(block_config=tuple(r.randint(1, 4) for _ in range(r.randint(1, 4))),
                            bn_size=r.randint(1, 4), compression=r.choice([1.0, 0.5, 0.7]), **common)
    blocks = r.randint(1, 3)
    return CliqueNetSpec(T=blocks * r.randint(2, 4), blocks=blocks, attention=r.random() < 0.5,
                         compression=r.choice([1.0, 0.5]), multiscale=r.random() < 0.5, **common)


@pytest.mark.parametrize("seed", range(40))
def test_baseline_counts_are_the_counters(seed: int) -> None:
    """The analytic count (no torch, no model) equals PyTorch's counter on the built model."""
    spec = _random_baseline(random.Random(seed))
    measured = count_built(lambda: build_model(spec), spec.input_size, spec.in_channels)
    assert (count(spec).params, count(spec).flops) == (measured.params, measured.flops), spec


def test_names_and_defaults() -> None:
    d121 = baseline_spec("densenet121")
    assert (d121.name, d121.init_channels, d121.depth, d121.stem, d121.input_size) == (
        "DenseNet-BC-121-k32", 64, 121, "imagenet", 224)
    assert baseline_spec("densenet121", growth_rate=48).init_channels == 96  # the stem is 2k unless given
    assert baseline_spec("DenseNet-BC-100").block_config == (16, 16, 16)
    assert baseline_spec("densenet-40").init_channels == 16
    assert baseline_spec("cliquenet") == baseline_spec("cliquenet-t12-k36") == CliqueNetSpec(T=12, growth_rate=36)
    for name in ("densenet-bc-100", "densenet-40", "densenet-100-k24", "cliquenet-t15-k150-abc", "cliquenet-t18-k80"):
        spec = baseline_spec(name)
        assert baseline_spec(spec.name) == spec, name


@pytest.mark.parametrize("spec", [baseline_spec("densenet121"), baseline_spec("cliquenet-t15-k150-abc"),
                                  BaselineSpec.from_dict(SMALL[-1])], ids=lambda s: s.name)
def test_yaml_round_trip(spec: BaselineSpec, tmp_path) -> None:
    text = spec.to_yaml(header="a header")
    assert text.startswith("# a header\nbaseline: ")
    assert BaselineSpec.from_yaml(text) == spec
    (tmp_path / "b.yaml").write_text(text)
    (tmp_path / "b.json").write_text(json.dumps(spec.to_dict()))
    assert load_any_spec(tmp_path / "b.yaml") == load_any_spec(tmp_path / "b.json") == spec


def test_load_any_spec_reads_rknet_specs(tmp_path) -> None:
    spec = parse_name("IRKNet-3x1_3x1_3x1", growth_rate=36)
    save_spec(spec, tmp_path / "r.yaml")
    assert load_any_spec(tmp_path / "r.yaml") == spec
    (tmp_path / "x.yaml").write_text("stem: cifar\n")
    with pytest.raises(RKSearchError, match="not an RKNet spec"):
        load_any_spec(tmp_path / "x.yaml")


@pytest.mark.parametrize("data, field, text", [
    ({"baseline": "resnet", "growth_rate": 4}, "baseline", "unknown baseline 'resnet'"),
    ({"baseline": "densenet", "block_config": [2], "growth_rate": 0}, "growth_rate", "greater than or equal to 1"),
    ({"baseline": "densenet", "block_config": [], "growth_rate": 4}, "block_config", "at least 1 item"),
    ({"baseline": "densenet", "block_config": [2], "growth_rate": 4, "compression": 0}, "compression", "greater than 0"),
    ({"baseline": "densenet", "block_config": [2], "growth_rate": 4, "depth": 3}, "depth", "unknown key"),
    ({"baseline": "densenet", "block_config": [2] * 7, "growth_rate": 4}, "input_size", "shrinks to nothing"),
    ({"baseline": "cliquenet", "T": 13, "growth_rate": 4}, "T", "do not split evenly over 3 blocks"),
    ({"baseline": "cliquenet", "T": 3, "growth_rate": 4}, "T", "Stage-II needs at least 2"),
    ({"baseline": "cliquenet", "T": 6, "growth_rate": 4, "bottleneck": "yes"}, "bottleneck", "valid boolean"),
])
def test_errors_name_the_field(data: dict, field: str, text: str) -> None:
    with pytest.raises(RKSearchError) as e:
        BaselineSpec.from_dict(data, source="b.yaml")
    assert str(e.value).startswith(f"b.yaml: {field}: ") and text in str(e.value)


def test_bad_names() -> None:
    with pytest.raises(RKSearchError, match="^name: unknown baseline 'resnet50'"):
        baseline_spec("resnet50")
    with pytest.raises(RKSearchError, match="^name: depth 101: .* L = 6n \\+ 4"):
        baseline_spec("densenet-bc-101")
    with pytest.raises(RKSearchError, match="^T: "):
        baseline_spec("cliquenet", T=10)


def test_subclass_from_dict_defaults_its_kind() -> None:
    assert DenseNetSpec.from_dict({"block_config": [2], "growth_rate": 4}).baseline == "densenet"
    with pytest.raises(RKSearchError, match="baseline"):
        DenseNetSpec.from_dict({"baseline": "cliquenet", "block_config": [2], "growth_rate": 4})
