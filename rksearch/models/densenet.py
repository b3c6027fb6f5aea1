"""DenseNet (Huang et al., 2017) from the same Unit, Transition and stem as the RKNet.

A dense block is an ERK step that ends in a concatenation instead of a summation
(Section 3.3.1): with in_channels = m*k and m*s layers it holds the very parameters of an
``ERKStep``. The layers are registered in execution order, as torchvision's are, so a
torchvision state dict maps onto this model key by key.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from rksearch.models.layers import Postprocessor, Transition, Unit, init_weights, make_stem

if TYPE_CHECKING:
    from rksearch.arch.baselines import DenseNetSpec


class DenseBlock(nn.Module):
    """``layers`` growths of k channels, each from the input and every earlier growth."""

    def __init__(self, in_channels: int, layers: int, growth_rate: int, bottleneck_width: int, dropout: float):
        super().__init__()
        k = growth_rate
        self.units = nn.ModuleList(
            Unit(in_channels + j * k, k, bottleneck_width=bottleneck_width, dropout=dropout) for j in range(layers)
        )

    def forward(self, x: Tensor) -> Tensor:  # (N, C, H, W) -> (N, C + layers*k, H, W)
        feats = [x]
        for unit in self.units:
            feats.append(unit(feats))
        return torch.cat(feats, dim=1)


class DenseNet(nn.Module):
    """Stem, dense blocks separated by compressing transitions, BN-ReLU-pool, classifier."""

    def __init__(self, spec: "DenseNetSpec"):
        super().__init__()
        self.spec = spec
        widths = spec.block_widths()
        bottleneck_width = spec.bn_size * spec.growth_rate if spec.bottleneck else 0
        layers: list[nn.Module] = [make_stem(spec.stem, spec.in_channels, spec.init_channels)]
        for i, ((cin, cout), n) in enumerate(zip(widths, spec.block_config)):
            if i:
                layers.append(Transition(widths[i - 1][1], cin, attention=False, dropout=spec.dropout))
            layers.append(DenseBlock(cin, n, spec.growth_rate, bottleneck_width, spec.dropout))
        self.features = nn.Sequential(*layers)
        self.post = Postprocessor([widths[-1][1]])
        self.classifier = nn.Linear(widths[-1][1], spec.num_classes)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:  # (N, C, H, W) -> (N, num_classes)
        return self.classifier(self.post([self.features(x)]))
