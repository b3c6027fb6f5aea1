"""The builder: shapes, gradients, the paper's structure, concatenated == per-connection."""
from __future__ import annotations

import copy

import pytest
import torch

from rksearch import RKSearchError, build_model, count, create_model, load_spec, parse_name, save_spec
from rksearch.arch.baselines import baseline_spec
from rksearch.models.layers import init_weights
from rksearch.models.steps import ERKStep, IRKStep

torch.set_num_threads(1)

CASES = [
    ("ERKNet-2x1_2x1", {}),
    ("IRKNet-3x1_2x1", {}),
    ("RKNet-E2x2_I3x1_E1x2", {"m": 2}),
    ("IRKNet-2x2_2x1-AB", {}),
    ("ERKNet-2x1_1x1-B", {"m": [1, 2]}),
    ("IRKNet-2x1_2x1-A", {"multiscale": False}),
    ("ERKNet-2x1_2x1", {"dropout": 0.2}),
]


@pytest.mark.parametrize("name, fields", CASES)
def test_forward_backward(name: str, fields: dict) -> None:
    spec = parse_name(name, growth_rate=4, **fields)
    model = build_model(spec)
    x = torch.randn(3, 3, 16, 16, requires_grad=True)
    out = model(x)
    assert out.shape == (3, 10)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in model.parameters())
    feats = model.forward_features(x)
    assert [f.shape[1:] for f in feats] == [(p.width, 16 >> i, 16 >> i) for i, p in enumerate(spec.periods)]


def test_imagenet_stem() -> None:
    spec = parse_name("ERKNet-1x1_1x1-B", growth_rate=4, m=[2, 4], stem="imagenet", input_size=64, num_classes=7)
    model = build_model(spec)
    feats = model.forward_features(torch.randn(2, 3, 64, 64))
    assert [tuple(f.shape) for f in feats] == [(2, 8, 16, 16), (2, 16, 8, 8)]
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 7)


def test_step_is_residual_update() -> None:
    """y_{n+1} = y_n + sum of stage increments: zeroing every conv leaves y unchanged."""
    for step in (ERKStep(3, 4, 2, False, 0.0), IRKStep(3, 4, True, 0.0)):
        for p in step.parameters():
            if p.dim() == 4:
                torch.nn.init.zeros_(p)
        y = torch.randn(2, 8 if isinstance(step, ERKStep) else 4, 5, 5)
        assert torch.equal(step(y), y)


def test_irk_structure() -> None:
    """One weight per connection (y->i and j->i, j != i), shared by Stage-I and Stage-II."""
    s, k = 4, 6
    step = IRKStep(s, k, bottleneck=False, dropout=0.0)
    init_weights(step)
    assert len(step.weights) == s and all(w.shape == (k, s * k, 3, 3) for w in step.weights)
    assert [bn.num_features for bn in step.bn_init] == [k * (i + 1) for i in range(s)]
    assert [bn.num_features for bn in step.bn_update] == [k * (s - 1)] * s


def _irk_by_the_equations(step: IRKStep, y: torch.Tensor) -> torch.Tensor:
    """Section 3.3.2 written out connection by connection (eval-mode BN)."""
    s, k = step.stages, step.k
    F = torch.nn.functional

    def conn(i: int, j: int) -> torch.Tensor:  # weight of source j (0 = y, 1..s = stage) into stage i
        slot = j if j < i else j - 1  # stored over the inputs y, 1..i-1, i+1..s
        return step.weights[i - 1][:, slot * k:(slot + 1) * k]

    def bn_slice(bn, slot: int, x):
        sl = slice(slot * k, (slot + 1) * k)
        return F.batch_norm(x, bn.running_mean[sl], bn.running_var[sl], bn.weight[sl], bn.bias[sl], False, 0.0, bn.eps)

    v = {}
    for i in range(1, s + 1):  # Stage-I: v_i = J_i(y, v_1..v_{i-1})
        srcs = [(0, y)] + [(j, v[j]) for j in range(1, i)]
        v[i] = sum(F.conv2d(F.relu(bn_slice(step.bn_init[i - 1], n, x)), conn(i, j), padding=1)
                   for n, (j, x) in enumerate(srcs))
    for i in range(1, s + 1):  # Stage-II: z_i = I_i(z_1..z_{i-1}, v_{i+1}..v_s), never y
        srcs = [(j, v[j]) for j in range(1, s + 1) if j != i]
        v[i] = sum(F.conv2d(F.relu(bn_slice(step.bn_update[i - 1], n, x)), conn(i, j), padding=1)
                   for n, (j, x) in enumerate(srcs))
    return y + sum(v.values())


def test_irk_follows_the_equations() -> None:
    torch.manual_seed(0)
    step = IRKStep(4, 3, bottleneck=False, dropout=0.0).double().eval()
    init_weights(step)
    for bn in [*step.bn_init, *step.bn_update]:
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    y = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(step(y), _irk_by_the_equations(step, y))


def test_erk_structure() -> None:
    s, k, m = 3, 4, 2
    step = ERKStep(s, k, m, bottleneck=True, dropout=0.0)
    assert len(step.units) == m * s
    assert [u.bn1.num_features for u in step.units] == [m * k + j * k for j in range(m * s)]
    assert all(u.weight1.shape[0] == 4 * k and u.weight2.shape == (k, 4 * k, 3, 3) for u in step.units)


@pytest.mark.parametrize("name, fields", CASES[:5])
@pytest.mark.parametrize("train", [True, False])
def test_concatenated_equals_per_connection(name: str, fields: dict, train: bool) -> None:
    torch.manual_seed(0)
    spec = parse_name(name, growth_rate=5, **fields)
    fused = build_model(spec).double()
    for mod in fused.modules():  # non-trivial BN statistics and affines
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-1, 1)
            mod.running_var.uniform_(0.5, 2)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.5, 0.5)
    ref = copy.deepcopy(fused).set_per_connection()
    fused.train(train)
    ref.train(train)
    x = torch.randn(4, 3, 16, 16, dtype=torch.float64)
    a, b = fused(x), ref(x)
    torch.testing.assert_close(a, b)
    a.square().sum().backward()
    b.square().sum().backward()
    for (n, p), q in zip(fused.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=n)
    for (n, buf), other in zip(fused.named_buffers(), ref.buffers()):
        torch.testing.assert_close(buf, other, msg=n)


def test_init() -> None:
    model = build_model(parse_name("IRKNet-2x1", growth_rate=8))
    assert torch.all(model.post.bns[0].weight == 1)
    assert model.classifier.bias.abs().sum() == 0
    w = model.periods[0][0].weights[0]
    assert 0.5 < w.std().item() / (2 / (8 * 9)) ** 0.5 < 1.5  # He (fan_out) scale


def test_create_model() -> None:
    m = create_model("IRKNet-2x1_2x1", growth_rate=6, num_classes=3)
    assert m(torch.randn(1, 3, 8, 8)).shape == (1, 3)
    assert create_model(m.spec) is not m
    r = create_model("resnet18")
    assert r(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert create_model(m.spec, num_classes=5)(torch.randn(1, 3, 8, 8)).shape == (1, 5)  # fields apply to a spec too
    assert [p.growth_rate for p in create_model(m.spec, growth_rate=[4, 8]).spec.periods] == [4, 8]
    with pytest.raises(RKSearchError, match="resnet18 takes num_classes and in_channels only"):
        create_model("resnet18", growth_rate=36)


def test_the_api_takes_baselines(tmp_path) -> None:
    """What the CLI trains by name or file, the Python API builds and counts."""
    spec = baseline_spec("densenet-bc-100")
    model = build_model(spec)
    assert count(spec).params == sum(p.numel() for p in model.parameters()) == count(spec).params
    assert type(create_model("densenet-bc-100")) is type(model) is type(create_model(spec))
    assert create_model("densenet-bc-100", num_classes=3)(torch.randn(1, 3, 32, 32)).shape == (1, 3)
    save_spec(baseline_spec("cliquenet-t12-k36"), tmp_path / "base.yaml")
    assert create_model(tmp_path / "base.yaml").__class__.__name__ == "CliqueNet"
    with pytest.raises(RKSearchError, match="a baseline spec, not an RKNet spec: read it with rksearch.arch.resolve.load_any_spec"):
        load_spec(tmp_path / "base.yaml")
    with pytest.raises(RKSearchError, match="applies to RKNets only"):
        create_model("densenet-bc-100", m=2)


def test_export_and_compile_friendly() -> None:
    model = build_model(parse_name("RKNet-E2x1_I2x1-AB", growth_rate=4)).eval()
    x = torch.randn(2, 3, 16, 16)
    ep = torch.export.export(model, (x,))
    torch.testing.assert_close(ep.module()(x), model(x))
