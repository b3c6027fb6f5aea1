"""One RK time-step each: y_{n+1} = y_n + sum_i h b_i z_i, with h, b_i, a_ij implicit in the weights."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from rksearch.models.layers import Impl, Unit, bn_relu_conv


def _sum(xs: list[Tensor]) -> Tensor:
    """Sum by chained adds into the first sum: unlike ``torch.stack(xs).sum(0)`` no stacked copy,
    and the result keeps the inputs' memory format (stack-sum turns channels_last into NCHW,
    which costs a layout conversion before every following convolution)."""
    out = xs[0] + xs[1]
    for x in xs[2:]:
        out = out.add_(x)  # ``out`` is fresh and saved by no backward: adding in place is safe
    return out


class ERKStep(nn.Module):
    """An explicit RK time-step: a restricted dense block (Section 3.3.1, Rules 1-3).

    y has m*k channels; the block makes m*s growths of k channels, each from y and every
    earlier growth; each run of m growths is one stage's group h b_i z_i of m*k channels.
    """

    def __init__(self, stages: int, growth_rate: int, m: int, bottleneck: bool, dropout: float):
        super().__init__()
        k, width = growth_rate, m * growth_rate
        self.stages, self.m = stages, m
        self.units = nn.ModuleList(
            Unit(width + j * k, k, bottleneck_width=4 * k if bottleneck else 0, dropout=dropout)
            for j in range(m * stages)
        )

    def forward(self, y: Tensor) -> Tensor:  # (N, m*k, H, W) -> (N, m*k, H, W)
        feats = [y]
        for unit in self.units:
            feats.append(unit(feats))
        if self.m == 1:
            return _sum(feats)
        # stage i's group is the channel concatenation of growths 1+i*m .. (i+1)*m, so the sum of
        # the groups is the concatenation over b of the sum over stages of growth 1+i*m+b
        per_slot = [feats[1 + b::self.m] for b in range(self.m)]
        return y + torch.cat([xs[0] if len(xs) == 1 else _sum(xs) for xs in per_slot], dim=1)


class CliqueBlock(nn.Module):
    """Stage-I and Stage-II of one clique block; returns the s Stage-II features of k channels.

    Laid out as ``IRKStep``: the weights into layer i are one tensor over the inputs
    [x0, v_1..v_{i-1}, v_{i+1}..v_s]; Stage-I reads its first in_channels + i*k input channels,
    Stage-II its last (s-1)*k; every use has its own BatchNorm. With ``bottleneck`` the
    connections are 1x1 and each layer adds one 3x3 k->k conv shared by both stages.
    """

    def __init__(self, in_channels: int, layers: int, growth_rate: int, bottleneck: bool, dropout: float):
        super().__init__()
        c0, s, k = in_channels, layers, growth_rate
        ksize = 1 if bottleneck else 3
        self.c0, self.stages, self.k = c0, s, k
        self.weights = nn.ParameterList(nn.Parameter(torch.empty(k, c0 + (s - 1) * k, ksize, ksize)) for _ in range(s))
        self.bn_init = nn.ModuleList(nn.BatchNorm2d(c0 + i * k) for i in range(s))
        self.bn_update = nn.ModuleList(nn.BatchNorm2d((s - 1) * k) for _ in range(s))
        if bottleneck:
            self.weights3 = nn.ParameterList(nn.Parameter(torch.empty(k, k, 3, 3)) for _ in range(s))
            self.bn3_init = nn.ModuleList(nn.BatchNorm2d(k) for _ in range(s))
            self.bn3_update = nn.ModuleList(nn.BatchNorm2d(k) for _ in range(s))
        else:
            self.weights3 = None
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.impl = Impl()

    def _layer(self, i: int, xs: list[Tensor], update: bool) -> Tensor:
        w = self.weights[i]
        w = w[:, self.c0:] if update else w[:, : self.c0 + i * self.k]
        bn = self.bn_update[i] if update else self.bn_init[i]
        h = self.drop(bn_relu_conv(xs, bn, w, w.shape[-1] // 2, self.impl))
        if self.weights3 is not None:
            bn3 = self.bn3_update[i] if update else self.bn3_init[i]
            h = self.drop(bn_relu_conv([h], bn3, self.weights3[i], 1, self.impl))
        return h

    def forward(self, x0: Tensor) -> list[Tensor]:  # (N, C0, H, W) -> s x (N, k, H, W)
        v: list[Tensor] = []
        for i in range(self.stages):  # Stage-I
            v.append(self._layer(i, [x0, *v], update=False))
        for i in range(self.stages):  # Stage-II
            v[i] = self._layer(i, v[:i] + v[i + 1:], update=True)
        return v


class IRKStep(CliqueBlock):
    """An implicit RK time-step: a restricted clique block (Section 3.3.2, Rules 1-3).

    y has k channels; Stage-I is a dense block of s growths from y (the initial values v_i);
    Stage-II updates each stage in turn from the current values of all the other stages (not
    y). Connection j->i has one weight used by both stages; each use has its own BatchNorm. The
    clique block concatenates its Stage-II outputs; the RK step sums them onto y.
    """

    def __init__(self, stages: int, growth_rate: int, bottleneck: bool, dropout: float):
        super().__init__(growth_rate, stages, growth_rate, bottleneck, dropout)

    def forward(self, y: Tensor) -> Tensor:  # (N, k, H, W) -> (N, k, H, W)
        return _sum([y, *super().forward(y)])
