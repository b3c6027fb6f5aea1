"""CliqueNet (Yang et al., 2018) from the same layers as the RKNet.

Follows the authors' CIFAR code (the "II+II" network of their paper): a 3x3 stem to 64
channels; per block, Stage-I (a dense block from the block input x0) then Stage-II (each layer
updated in turn from the current values of all the others, reusing the Stage-I weights); the
Stage-II features, concatenated, go through the transition to the next block; the block feature
{x0, Stage-II} (optionally compressed by a BN-ReLU-1x1 conv) is what the multiscale postprocessor
pools. A clique block with x0 of k channels holds the very parameters of an ``IRKStep``
(Section 3.3.2); the IRK step sums where the clique block concatenates.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from rksearch.models.layers import Postprocessor, Transition, bn_relu_conv, init_weights, make_stem
from rksearch.models.steps import CliqueBlock

if TYPE_CHECKING:
    from rksearch.arch.baselines import CliqueNetSpec


class Compress(nn.Module):
    """BN-ReLU-1x1 conv (+ dropout) of a block feature before pooling (CliqueNet's "C")."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float):
        super().__init__()
        self.bn = nn.BatchNorm2d(in_channels)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 1, 1))
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(bn_relu_conv([x], self.bn, self.weight, 0))


class CliqueNet(nn.Module):
    def __init__(self, spec: "CliqueNetSpec"):
        super().__init__()
        self.spec = spec
        s, k, width = spec.layers_per_block, spec.growth_rate, spec.layers_per_block * spec.growth_rate
        ins = spec.block_inputs()
        self.stem = make_stem(spec.stem, spec.in_channels, spec.init_channels)
        self.blocks = nn.ModuleList(CliqueBlock(c, s, k, spec.bottleneck, spec.dropout) for c in ins)
        self.transitions = nn.ModuleList(
            Transition(width, width, spec.attention, spec.dropout) for _ in range(spec.blocks - 1)
        )
        pooled = spec.pooled()  # (block feature, pooled) widths of the blocks the postprocessor pools
        self.compress = nn.ModuleList(Compress(c, p, spec.dropout) if p != c else nn.Identity() for c, p in pooled)
        self.post = Postprocessor([p for _, p in pooled])
        self.classifier = nn.Linear(sum(p for _, p in pooled), spec.num_classes)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:  # (N, C, H, W) -> (N, num_classes)
        x = self.stem(x)
        first_pooled = len(self.blocks) - len(self.compress)
        feats = []
        for i, block in enumerate(self.blocks):
            if i:
                x = self.transitions[i - 1](x)
            x0, x = x, torch.cat(block(x), dim=1)  # the Stage-II features go on to the next block
            if i >= first_pooled:
                feats.append(self.compress[i - first_pooled](torch.cat([x0, x], dim=1)))
        return self.classifier(self.post(feats))
