"""The RKNet: preprocessor, periods of RK time-steps separated by transitions, postprocessor."""
from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from rksearch.arch.rknet import PeriodSpec, RKNetSpec
from rksearch.models.layers import Postprocessor, Transition, init_weights, make_stem, set_impl
from rksearch.models.steps import ERKStep, IRKStep


def make_step(p: PeriodSpec, bottleneck: bool, dropout: float) -> nn.Module:
    if p.method == "erk":
        return ERKStep(p.stages, p.growth_rate, p.m, bottleneck, dropout)
    return IRKStep(p.stages, p.growth_rate, bottleneck, dropout)


class Period(nn.Sequential):
    """r time-steps of one RK method, each with its own weights."""

    def __init__(self, p: PeriodSpec, bottleneck: bool, dropout: float):
        super().__init__(*(make_step(p, bottleneck, dropout) for _ in range(p.steps)))


class RKNet(nn.Module):
    def __init__(self, spec: RKNetSpec):
        super().__init__()
        self.spec = spec
        widths = [p.width for p in spec.periods]
        self.stem = make_stem(spec.stem, spec.in_channels, widths[0])
        self.periods = nn.ModuleList(Period(p, spec.bottleneck, spec.dropout) for p in spec.periods)
        self.transitions = nn.ModuleList(
            Transition(a, b, spec.attention, spec.dropout) for a, b in zip(widths[:-1], widths[1:])
        )
        self.post = Postprocessor(widths if spec.multiscale else widths[-1:])
        self.classifier = nn.Linear(sum(self.post_widths(widths)), spec.num_classes)
        init_weights(self)

    def post_widths(self, widths: list[int]) -> list[int]:
        return widths if self.spec.multiscale else widths[-1:]

    def forward_features(self, x: Tensor) -> list[Tensor]:
        """Every period's output, first to last."""
        feats = []
        x = self.stem(x)
        for i, period in enumerate(self.periods):
            if i:
                x = self.transitions[i - 1](x)
            x = period(x)
            feats.append(x)
        return feats

    def forward(self, x: Tensor) -> Tensor:  # (N, C, H, W) -> (N, num_classes)
        return self.classifier(self.post(self.forward_features(x)))

    def set_per_connection(self, enabled: bool = True) -> "RKNet":
        """Switch every step to the one-conv-per-connection reference computation."""
        return self.set_impl(per_connection=enabled)

    def set_impl(self, **changes: Any) -> "RKNet":
        """Change how every BN-ReLU-conv computes (:class:`~.layers.Impl` fields); never what."""
        return set_impl(self, **changes)
