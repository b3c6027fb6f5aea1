"""Building blocks shared by every RKNet period, transition and postprocessor."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rksearch.models.concat_bn import bn_momentum, concat_batch_norm

WIDE_CHUNK = 64


def per_connection_is_faster(xs: list[Tensor], weight: Tensor) -> bool:
    """On a CPU: a 1x1 convolution to no more channels than each of its inputs has, every input
    at least WIDE_CHUNK channels wide (IRKNet-AB's connections, k >= 64).

    Concatenating buys such a convolution nothing (each part is already a full-width matrix
    product) and costs a copy of every input, while the per-connection sum adds only outputs no
    wider than one input; and the per-part BN and ReLU passes stay in cache where those over the
    concatenation do not. Measured (one thread, batch 32): IRKNet-5x1_5x1_5x1-AB, k = 80, trains
    1.17x faster one conv per connection; ERKNet-B (1x1 to 4k channels) 0.9x and 3x3 kernels
    0.9-1.0x, so they stay concatenated, as does every GPU, where kernel launches dominate.
    """
    if weight.shape[-1] != 1 or xs[0].device.type != "cpu":
        return False
    narrowest = min(x.shape[1] for x in xs)
    return narrowest >= WIDE_CHUNK and weight.shape[0] <= narrowest


@dataclass(frozen=True)
class Impl:
    """How :func:`bn_relu_conv` computes its (always identical) function.

    ``per_connection``: one BN-ReLU-conv per input, the reference implementation.
    ``align``: pad the convolution's input and output channels to a multiple of this; ``None``
    is 8 on a GPU (cuDNN's bf16 tensor-core kernels want channels in multiples of 8: on an H200
    a 3x3 conv 180 -> 36 channels takes 1.7x as long as 184 -> 40, since cuDNN pads a copy
    itself) and none on a CPU. ``align_output``: what becomes of the padded output channels:
    ``view`` slices them off, leaving a strided view that every later ``torch.cat`` copies
    through a slow generic kernel (ERKNet-6 on an H200: 5.2 ms a step); ``dense`` copies the
    slice once into a dense tensor; ``off`` pads the input only. ``keep_parts``: a training BN
    over a concatenation saves its inputs, not a concatenated copy (:mod:`.concat_bn`).
    """

    per_connection: bool = False
    align: Optional[int] = None
    align_output: Literal["view", "dense", "off"] = "view"  # dense and off: not yet measured on a GPU
    keep_parts: bool = True

    def __post_init__(self) -> None:
        if self.align_output not in ("view", "dense", "off"):
            raise ValueError(f"align_output is view, dense or off, not {self.align_output!r}")

    def alignment(self, device: torch.device) -> int:
        return (8 if device.type == "cuda" else 1) if self.align is None else self.align


def set_impl(module: nn.Module, **changes: Any) -> nn.Module:
    """Change how every BN-ReLU-conv in ``module`` computes (:class:`Impl` fields); never what.
    RKNets, DenseNets and CliqueNets share these layers."""
    for m in module.modules():
        if isinstance(getattr(m, "impl", None), Impl):
            m.impl = replace(m.impl, **changes)
    return module


def _pad_to(n: int, multiple: int) -> int:
    return -n % multiple


def bn_relu_conv(xs: list[Tensor], bn: nn.BatchNorm2d, weight: Tensor, padding: int, impl: Impl = Impl()) -> Tensor:
    """BN-ReLU-conv over the concatenation of ``xs`` with ``weight`` (out, sum(C_j), K, K).

    The concatenated form is one BN, one ReLU and one convolution: the same function as a
    sum of one BN-ReLU-conv per connection (BN is per channel), with far fewer kernel
    launches, and in training no more saved activations (:mod:`.concat_bn`). The per-connection
    form is the reference that tests and benchmarks compare against, and what a CPU runs where
    it is faster (:func:`per_connection_is_faster`). Channels padded for alignment are zeros
    in, zero weights, and sliced off the output: only the kernels see them.
    """
    if impl.per_connection or per_connection_is_faster(xs, weight):
        return _per_connection(xs, bn, weight, padding)
    align = impl.alignment(xs[0].device)
    pad_in = _pad_to(weight.shape[1], align)
    pad_out = _pad_to(weight.shape[0], align) if impl.align_output != "off" else 0
    h = F.relu(concat_batch_norm(xs, bn, pad_in, impl.keep_parts))
    if pad_in or pad_out:
        weight = F.pad(weight, (0, 0, 0, 0, 0, pad_in, 0, pad_out))
    out = F.conv2d(h, weight, padding=padding)
    if not pad_out:
        return out
    out = out[:, : out.shape[1] - pad_out]
    return out.contiguous(memory_format=_layout(h)) if impl.align_output == "dense" else out


def _layout(x: Tensor) -> torch.memory_format:
    return torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format


def _per_connection(xs: list[Tensor], bn: nn.BatchNorm2d, weight: Tensor, padding: int) -> Tensor:
    out: Tensor | None = None
    lo = 0
    momentum = bn_momentum(bn) if bn.training and bn.num_batches_tracked is not None else 0.0
    for x in xs:
        hi = lo + x.shape[1]
        h = F.batch_norm(
            x, bn.running_mean[lo:hi], bn.running_var[lo:hi], bn.weight[lo:hi], bn.bias[lo:hi],
            bn.training, momentum, bn.eps,
        )
        y = F.conv2d(F.relu(h), weight[:, lo:hi], padding=padding)
        out = y if out is None else out + y
        lo = hi
    assert out is not None
    return out


class Unit(nn.Module):
    """BN-ReLU-conv (+ dropout) on a list of inputs, owning its conv weight.

    ``bottleneck`` puts a BN-ReLU-1x1 conv to ``bottleneck_width`` before the 3x3 conv, as in
    DenseNet-BC.
    """

    def __init__(self, in_channels: int, out_channels: int, bottleneck_width: int = 0, dropout: float = 0.0):
        super().__init__()
        first_out = bottleneck_width or out_channels
        k = 1 if bottleneck_width else 3
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.weight1 = nn.Parameter(torch.empty(first_out, in_channels, k, k))
        self.bn2 = nn.BatchNorm2d(first_out) if bottleneck_width else None
        self.weight2 = nn.Parameter(torch.empty(out_channels, first_out, 3, 3)) if bottleneck_width else None
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.impl = Impl()

    def forward(self, xs: list[Tensor]) -> Tensor:
        pad = self.weight1.shape[-1] // 2
        h = self.drop(bn_relu_conv(xs, self.bn1, self.weight1, pad, self.impl))
        if self.weight2 is not None:
            h = self.drop(bn_relu_conv([h], self.bn2, self.weight2, 1, self.impl))
        return h


class Attention(nn.Module):
    """Channel-wise attention of the attentional transition (Appendix B; CliqueNet)."""

    def __init__(self, channels: int):
        super().__init__()
        hidden = max(1, channels // 2)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: Tensor) -> Tensor:
        w = x.mean(dim=(2, 3))  # (N, C)
        w = torch.sigmoid(self.fc2(F.relu(self.fc1(w))))
        return x * w[:, :, None, None]


class Transition(nn.Module):
    """BN-ReLU-1x1 conv to the next period's width, optional attention, 2x2 average pooling."""

    def __init__(self, in_channels: int, out_channels: int, attention: bool, dropout: float = 0.0):
        super().__init__()
        self.bn = nn.BatchNorm2d(in_channels)
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.attention = Attention(out_channels) if attention else nn.Identity()
        self.pool = nn.AvgPool2d(2)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.attention(self.drop(self.conv(F.relu(self.bn(x))))))


def make_stem(kind: str, in_channels: int, width: int) -> nn.Module:
    """cifar: 3x3 conv; imagenet: 7x7/2 conv, BN, ReLU, 3x3/2 max-pool."""
    if kind == "cifar":
        return nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, stride=2, padding=1),
    )


class Postprocessor(nn.Module):
    """BN-ReLU-global average pool of each collected period output, concatenated."""

    def __init__(self, widths: list[int]):
        super().__init__()
        self.bns = nn.ModuleList(nn.BatchNorm2d(w) for w in widths)

    def forward(self, feats: list[Tensor]) -> Tensor:
        # feats[-len(bns):] are the collected period outputs, each (N, C_p, H_p, W_p)
        pooled = [F.relu(bn(f)).mean(dim=(2, 3)) for bn, f in zip(self.bns, feats[-len(self.bns):])]
        return pooled[0] if len(pooled) == 1 else torch.cat(pooled, dim=1)  # (N, sum C_p)


def init_weights(module: nn.Module) -> None:
    """He init for convolutions, Xavier for fully connected layers, BN at identity."""
    for name, p in module.named_parameters():
        if p.dim() == 4:
            nn.init.kaiming_normal_(p, mode="fan_out", nonlinearity="relu")
        elif p.dim() == 2:
            nn.init.xavier_uniform_(p)
        elif name.endswith("bias"):
            nn.init.zeros_(p)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
