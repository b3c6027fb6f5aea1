"""The speed-ups of rksearch.models.steps compute the same function as the straightforward code."""
from __future__ import annotations

import copy

import pytest
import torch

from rksearch import build_model, parse_name
from rksearch.models import layers
from rksearch.models.layers import WIDE_CHUNK, per_connection_is_faster
from rksearch.models.steps import ERKStep, _sum

torch.set_num_threads(1)
CL = torch.channels_last


def test_sum_equals_stack_sum_and_keeps_channels_last() -> None:
    xs = [torch.randn(2, 5, 4, 4, dtype=torch.float64).contiguous(memory_format=CL) for _ in range(4)]
    out = _sum(xs)
    torch.testing.assert_close(out, torch.stack(xs).sum(0))
    assert out.is_contiguous(memory_format=CL)
    assert all(x.is_contiguous(memory_format=CL) for x in xs)  # inputs untouched


def _reference_erk(step: ERKStep, y: torch.Tensor) -> torch.Tensor:
    """The straightforward ERK step: stage groups concatenated, then stacked and summed."""
    feats = [y]
    for unit in step.units:
        feats.append(unit(feats))
    groups = [torch.cat(feats[1 + i * step.m: 1 + (i + 1) * step.m], dim=1) for i in range(step.stages)]
    return torch.stack([y, *groups]).sum(0)


@pytest.mark.parametrize("m", [1, 2, 3])
def test_erk_group_sum(m: int) -> None:
    torch.manual_seed(0)
    step = ERKStep(3, 4, m, bottleneck=False, dropout=0.0).double().eval()
    for p in step.parameters():
        torch.nn.init.normal_(p, std=0.3)
    y = torch.randn(2, 4 * m, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(step(y), _reference_erk(step, y))


SPECS = [("IRKNet-3x1_2x1", {}), ("ERKNet-3x1_2x1", {}), ("RKNet-E2x2_I3x1", {"m": 2}), ("IRKNet-2x1_2x1-AB", {})]


BN_RANGES = ((-1, 1), (0.5, 2), (0.5, 1.5), (-0.5, 0.5))  # running mean, running var, weight, bias


def _model(name: str, fields: dict) -> torch.nn.Module:
    """In float64, with non-trivial BN statistics and affines."""
    torch.manual_seed(0)
    model = build_model(parse_name(name, growth_rate=4, **fields)).double()
    for bn in (mod for mod in model.modules() if isinstance(mod, torch.nn.BatchNorm2d)):
        for t, (lo, hi) in zip((bn.running_mean, bn.running_var, bn.weight.data, bn.bias.data), BN_RANGES):
            t.uniform_(lo, hi)
    return model


def _after_step(model: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Output, every gradient and every buffer (BN running statistics) after one forward-backward."""
    out = model(x)
    out.square().sum().backward()
    return {"out": out, **{n: p.grad for n, p in model.named_parameters()}, **dict(model.named_buffers())}


@pytest.mark.parametrize("name, fields", SPECS)
def test_channels_last_end_to_end(name: str, fields: dict) -> None:
    """No layer hands a channels_last network an NCHW tensor (each would cost conversions)."""
    model = _model(name, fields).to(memory_format=CL)
    bad: list[str] = []
    for mod in model.modules():
        mod.register_forward_hook(lambda mod, _, out: bad.append(type(mod).__name__)
                                  if isinstance(out, torch.Tensor) and out.dim() == 4
                                  and not out.is_contiguous(memory_format=CL) else None)
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64).contiguous(memory_format=CL)
    for f in model.forward_features(x):
        assert f.is_contiguous(memory_format=CL)
    assert bad == []


@pytest.mark.parametrize("name, fields", SPECS)
@pytest.mark.parametrize("train", [True, False])
def test_channels_last_concat_equals_per_connection(name: str, fields: dict, train: bool) -> None:
    """The fast layout (concatenated, channels_last) against the reference (per connection, NCHW):
    outputs, every gradient and every BN running statistic, in train and eval mode."""
    fast = _model(name, fields).to(memory_format=CL).train(train)
    ref = copy.deepcopy(fast).to(memory_format=torch.contiguous_format).set_per_connection().train(train)
    x = torch.randn(3, 3, 16, 16, dtype=torch.float64)
    torch.testing.assert_close(_after_step(fast, x.contiguous(memory_format=CL)), _after_step(ref, x))


IMPLS = [{"align": 8}, {"align": 3}, {"align": 8, "align_output": "off"}, {"align": 8, "align_output": "dense"},
         {"keep_parts": False}, {"align": 8, "keep_parts": False}]


@pytest.mark.parametrize("output, dense", [("view", False), ("dense", True), ("off", True)])
def test_aligned_outputs_are_dense_where_asked(output: str, dense: bool) -> None:
    """36 output channels padded to 40: the sliced view is strided unless copied or never padded."""
    bn, weight = torch.nn.BatchNorm2d(20), torch.randn(36, 20, 3, 3)
    x = torch.randn(2, 20, 8, 8).contiguous(memory_format=CL)
    out = layers.bn_relu_conv([x], bn, weight, 1, layers.Impl(align=8, align_output=output))
    assert out.shape == (2, 36, 8, 8) and out.is_contiguous(memory_format=CL) == dense


@pytest.mark.parametrize("name, fields", SPECS)
@pytest.mark.parametrize("impl", IMPLS, ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()))
@pytest.mark.parametrize("train", [True, False])
def test_every_impl_equals_per_connection(name: str, fields: dict, impl: dict, train: bool) -> None:
    """Channels padded to a multiple (the GPU's default, forced here on a CPU) and the BN that
    saves a concatenated copy compute the reference's function: outputs, gradients, running
    statistics."""
    fast = _model(name, fields).to(memory_format=CL).set_impl(**impl).train(train)
    ref = copy.deepcopy(fast).to(memory_format=torch.contiguous_format).set_impl(per_connection=True).train(train)
    x = torch.randn(3, 3, 16, 16, dtype=torch.float64)
    for _ in range(2):  # the second step sees the first one's running statistics
        torch.testing.assert_close(_after_step(fast, x.contiguous(memory_format=CL)), _after_step(ref, x))
        fast.zero_grad(set_to_none=True)
        ref.zero_grad(set_to_none=True)


@pytest.mark.parametrize("name", ["densenet-bc-10-k4", "cliquenet-t6-k4-abc"])
@pytest.mark.parametrize("impl", [{"align": 8}, {"keep_parts": False}], ids=["align=8", "keep_parts=False"])
def test_baselines_share_the_impls(name: str, impl: dict) -> None:
    """DenseNet and CliqueNet are built from the same layers: ``set_impl`` reaches them, exactly."""
    from rksearch.arch.baselines import baseline_spec
    from rksearch.models.layers import set_impl

    torch.manual_seed(0)
    fast = set_impl(build_model(baseline_spec(name)).double().to(memory_format=CL), **impl)
    ref = set_impl(copy.deepcopy(fast).to(memory_format=torch.contiguous_format), per_connection=True)
    assert any(getattr(getattr(m, "impl", None), "per_connection", False) for m in ref.modules())
    x = torch.randn(3, 3, 16, 16, dtype=torch.float64)
    torch.testing.assert_close(_after_step(fast, x.contiguous(memory_format=CL)), _after_step(ref, x))


def test_alignment_default_by_device() -> None:
    assert layers.Impl().alignment(torch.device("cuda")) == 8
    assert layers.Impl().alignment(torch.device("cpu")) == 1
    assert layers.Impl(align=4).alignment(torch.device("cuda")) == 4


def test_cpu_dispatch_rule() -> None:
    """One conv per connection on a CPU only for 1x1 kernels to at most the narrowest input's
    width, every input at least WIDE_CHUNK channels (IRKNet-AB with k >= 64)."""
    def xs(*widths: int) -> list[torch.Tensor]:
        return [torch.empty(1, w, 2, 2) for w in widths]

    w = WIDE_CHUNK
    assert per_connection_is_faster(xs(w, w), torch.empty(w, 2 * w, 1, 1))
    assert not per_connection_is_faster(xs(w, w), torch.empty(w, 2 * w, 3, 3))  # 3x3
    assert not per_connection_is_faster(xs(w, w), torch.empty(4 * w, 2 * w, 1, 1))  # ERKNet-B: 1x1 to 4k
    assert not per_connection_is_faster(xs(w, w - 1), torch.empty(w - 1, 2 * w - 1, 1, 1))  # a narrow input
    assert not per_connection_is_faster([t.to("meta") for t in xs(w, w)], torch.empty(w, 2 * w, 1, 1))  # not a CPU


@pytest.mark.parametrize("train", [True, False])
def test_cpu_dispatch_is_the_same_function(train: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    model = build_model(parse_name("IRKNet-2x1-AB", growth_rate=WIDE_CHUNK, input_size=4)).double().train(train)
    concatenated = copy.deepcopy(model)
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    dispatched = _after_step(model, x)
    monkeypatch.setattr(layers, "per_connection_is_faster", lambda xs, weight: False)
    torch.testing.assert_close(dispatched, _after_step(concatenated, x))


def test_per_connection_bn_without_momentum() -> None:
    """BN with ``momentum=None`` keeps a cumulative average; one conv per connection matches it."""
    model = _model("IRKNet-2x1", {})
    for bn in (mod for mod in model.modules() if isinstance(mod, torch.nn.BatchNorm2d)):
        bn.momentum = None
    ref = copy.deepcopy(model).set_per_connection()
    x = torch.randn(3, 3, 16, 16, dtype=torch.float64)
    for _ in range(2):
        torch.testing.assert_close(_after_step(model, x), _after_step(ref, x))


def _saved_bytes(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes of the distinct storages a forward pass keeps for its backward."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    return sum(storages.values())


@pytest.mark.parametrize("name, fields", SPECS)
def test_concatenated_keeps_no_more_than_per_connection(name: str, fields: dict) -> None:
    """Training, the concatenated form saves the inputs of each BN, not a concatenated copy per stage."""
    fast = _model(name, fields).to(memory_format=CL).float()
    ref = copy.deepcopy(fast).set_per_connection()
    x = torch.randn(4, 3, 16, 16).contiguous(memory_format=CL)
    assert _saved_bytes(fast, x) <= _saved_bytes(ref, x)
