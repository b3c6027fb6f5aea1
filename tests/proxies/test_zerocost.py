"""Zero-cost scores: closed forms on tiny nets, documented properties on RKNets."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from rksearch.cli import main
from rksearch.cli.zc import _DEFAULT_SCORES
from rksearch.models.registry import count
from rksearch.core.errors import RKSearchError
from rksearch.models import build_model
from rksearch.training.proxy import ProxyConfig
from rksearch.arch.rknet import RKNetSpec
from rksearch.arch.names import parse_name
from rksearch.proxies.zerocost import DATA_FREE, SCORES, naswot_kernel, proxy_batch, score, score_spec

DEMO_SPACE = Path(__file__).resolve().parents[2] / "search_spaces" / "demo.yaml"

SPECS = {
    "erk": parse_name("ERKNet-2x1_2x1", growth_rate=8),
    "irk": parse_name("IRKNet-2x2_3x1", growth_rate=8),
    "bottleneck": parse_name("RKNet-E2x1_I2x1-B", growth_rate=8),
    "attention": parse_name("IRKNet-2x1_2x1-A", growth_rate=8, dropout=0.2),
}


def batch(seed: int, n: int = 16, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g), torch.randint(0, 10, (n,), generator=g)


def linear(weight: list[list[float]]) -> nn.Linear:
    layer = nn.Linear(len(weight[0]), len(weight), bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
    return layer


# -- closed forms on tiny nets ---------------------------------------------------------------

def test_synflow_of_a_two_layer_linear_net():
    # R = 1^T |W2| |W1| 1 is linear in each layer's weights, so sum |w dR/dw| over one layer is R
    # itself, and synflow over two layers is 2R, whatever the signs of the weights.
    w1, w2 = [[1.0, -2.0], [0.5, 3.0], [-1.0, 0.0]], [[2.0, -1.0, 1.0]]
    net = nn.Sequential(linear(w1), linear(w2))
    r = (torch.tensor(w2).abs() @ torch.tensor(w1).abs() @ torch.ones(2)).item()  # 2*3 + 1*3.5 + 1*1 = 10.5
    assert r == 10.5
    assert score(net, "synflow", (torch.randn(4, 2), torch.zeros(4, dtype=torch.long))) == pytest.approx(2 * r)
    assert net[0].weight[0, 1].item() == -2.0  # the caller's model is left as it was


def test_naswot_of_a_relu_layer_by_hand():
    net = nn.Sequential(linear([[1.0, 0.0], [0.0, 1.0]]), nn.ReLU())
    x = torch.tensor([[1.0, -1.0], [1.0, 1.0], [-1.0, -1.0]])  # codes 10, 11, 00
    expected = torch.tensor([[2.0, 1.0, 1.0], [1.0, 2.0, 0.0], [1.0, 0.0, 2.0]], dtype=torch.float64)
    assert torch.equal(naswot_kernel(net, x), expected)
    assert score(net, "naswot", (x, torch.zeros(3, dtype=torch.long))) == pytest.approx(math.log(4.0))  # det = 4


def test_grad_norm_and_snip_by_hand():
    # logits (1, 2) for x = (1, 2); p1 = softmax_1 = e / (1 + e); dL/dW = (p - e_0) x^T
    # = [[-p1, -2 p1], [p1, 2 p1]]: ||g|| = p1 sqrt(10), sum |g * W| (W = I) = p1 + 2 p1
    net = linear([[1.0, 0.0], [0.0, 1.0]])
    data = (torch.tensor([[1.0, 2.0]]), torch.tensor([0]))
    p1 = math.e / (1 + math.e)
    assert score(net, "grad_norm", data) == pytest.approx(p1 * math.sqrt(10))
    assert score(net, "snip", data) == pytest.approx(3 * p1)


def test_size_baselines():
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    data = (torch.randn(5, 4), torch.zeros(5, dtype=torch.long))
    assert score(net, "params", data) == 4 * 3 + 3 + 3 * 2 + 2
    assert score(net, "flops", data) == 2 * (4 * 3 + 3 * 2)  # one example, 2 x MACs
    spec = SPECS["irk"]
    c = count(spec)
    assert (score(spec, "flops"), score(spec, "params")) == (c.flops, c.params)
    assert score(build_model(spec), "params") == c.params


# -- documented properties on RKNets ---------------------------------------------------------

def test_synflow_does_not_read_the_data():
    spec = SPECS["erk"]
    zeros = (torch.zeros(4, 3, 32, 32), torch.zeros(4, dtype=torch.long))
    values = {score(spec, "synflow", batch(1)), score(spec, "synflow", zeros), score(spec, "synflow")}
    assert len(values) == 1
    assert score(spec, "synflow", seed=1) != score(spec, "synflow", seed=2)


@pytest.mark.parametrize("kind", ["erk", "irk", "bottleneck"])
def test_naswot_kernel_is_symmetric_with_the_relu_count_on_its_diagonal(kind):
    # Without attention every ReLU of an RKNet follows a BatchNorm: count the units at the BNs.
    spec = SPECS[kind]
    model = build_model(spec)
    units = []
    hooks = [m.register_forward_hook(lambda m, i, o: units.append(o[0].numel()))
             for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    x, _ = batch(0, n=8)
    kernel = naswot_kernel(model, x)
    for h in hooks:
        h.remove()
    assert torch.equal(kernel, kernel.T)
    assert torch.all(kernel.diagonal() == sum(units))
    assert torch.all(kernel <= sum(units)) and torch.all(kernel >= 0)


def test_naswot_sees_the_relu_inside_attention():
    spec = SPECS["attention"]
    model = build_model(spec)
    x, _ = batch(0, n=4)
    plain = naswot_kernel(build_model(spec.replace(attention=False)), x)[0, 0]
    hidden = sum(max(1, p.width // 2) for p in spec.periods[1:])
    assert naswot_kernel(model, x)[0, 0] == plain + hidden


@pytest.mark.parametrize("kind", list(SPECS))
def test_every_score_is_finite_and_deterministic(kind):
    spec, data = SPECS[kind], batch(0, n=8)
    before = torch.get_rng_state()
    first = score_spec(spec, SCORES, data, seed=3).values
    assert torch.equal(torch.get_rng_state(), before)  # the caller's RNG is left alone
    assert all(math.isfinite(v) and v > 0 for v in first.values()), first
    assert score_spec(spec, SCORES, data, seed=3).values == first
    other = score_spec(spec, SCORES, data, seed=4).values
    assert all(other[n] != first[n] for n in ("synflow", "naswot", "grad_norm", "snip"))


def test_a_model_is_scored_without_being_changed():
    model = build_model(SPECS["bottleneck"])
    state = {k: v.clone() for k, v in model.state_dict().items()}
    data = batch(0)
    for name in SCORES:
        score(model, name, data)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert model.training


def test_score_spec_scales_the_network_but_not_the_baselines():
    spec = SPECS["erk"]
    half = score_spec(spec, ["synflow", "flops"], width=0.5)
    assert half.values["flops"] == count(spec).flops
    assert half.values["synflow"] == score(spec.scaled(0.5), "synflow")
    assert set(half.seconds) == {"synflow", "flops"}


def test_user_errors():
    spec = SPECS["erk"]
    with pytest.raises(RKSearchError, match="unknown score 'zen'"):
        score(spec, "zen", batch(0))
    with pytest.raises(RKSearchError, match="needs a batch"):
        score(spec, "naswot")
    with pytest.raises(RKSearchError, match="10 classes"):
        score(spec, "snip", (batch(0)[0], torch.full((16,), 10)))
    with pytest.raises(RKSearchError, match="3-channel"):
        score(spec, "grad_norm", (torch.randn(2, 1, 32, 32), torch.zeros(2, dtype=torch.long)))
    assert set(DATA_FREE) < set(SCORES) and _DEFAULT_SCORES.split(",") == list(SCORES)


# -- real data and the command ---------------------------------------------------------------

def test_proxy_batch_is_seeded_normalised_demo_data():
    x, y = proxy_batch(ProxyConfig(dataset="demo"), 32, seed=1)
    assert x.shape == (32, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.long
    assert abs(x.mean().item()) < 0.3 and 0.7 < x.std().item() < 1.3
    assert len(set(y.tolist())) > 5
    again, _ = proxy_batch(ProxyConfig(dataset="demo"), 32, seed=1)
    other, _ = proxy_batch(ProxyConfig(dataset="demo"), 32, seed=2)
    assert torch.equal(again, x) and not torch.equal(other, x)


def test_zc_command_scores_sampled_specs(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["zc", str(DEMO_SPACE), "--sample", "2", "--scores", "naswot,synflow,flops", "--batch-size", "16", "--json"])
    assert exit_.value.code == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["specs"]) == 2
    for row in result["specs"]:
        spec = RKNetSpec.from_dict(row["spec"])
        assert row["name"] == spec.name and set(row["scores"]) == {"naswot", "synflow", "flops"}
        assert row["scores"]["flops"] == count(spec).flops
        assert row["scores"]["synflow"] == score(spec, "synflow", seed=0)
        assert 0 < row["scores"]["naswot"] < math.inf


def test_zc_command_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["zc", str(DEMO_SPACE), "--sample", "2", "--scores", "synflow,zen"])
    assert exit_.value.code == 2
    assert "unknown score 'zen'" in capsys.readouterr().err
