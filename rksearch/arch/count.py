"""Analytic parameter and FLOP counts of an RKNet spec.

FLOPs are 2 x multiply-accumulates of convolutions and fully connected layers for one image
at the spec's input size: the convention of the paper's tables and of
``torch.utils.flop_counter.FlopCounterMode``. A search calls this thousands of times, so it is
arithmetic on the spec, never a model build; a test holds it equal to the counter.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from rksearch.arch.rknet import PeriodSpec, RKNetSpec


@dataclass(frozen=True)
class PeriodCount:
    method: str
    stages: int
    steps: int
    growth_rate: int
    m: int
    width: int
    resolution: int
    params: int
    flops: int


@dataclass(frozen=True)
class Counts:
    params: int
    flops: int
    periods: tuple[PeriodCount, ...] = field(default=())

    @property
    def gflops(self) -> float:
        return self.flops / 1e9

    @property
    def mparams(self) -> float:
        return self.params / 1e6


def _conv(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k


def _step_cost(p: PeriodSpec, bottleneck: bool) -> tuple[int, int]:
    """(params, MACs per pixel) of one time-step."""
    k, s = p.growth_rate, p.stages
    params = macs = 0
    if p.method == "erk":
        for j in range(p.m * s):
            cin = p.width + j * k
            if bottleneck:
                c = _conv(cin, 4 * k, 1) + _conv(4 * k, k, 3)
                params += c + 2 * cin + 2 * 4 * k
            else:
                c = _conv(cin, k, 3)
                params += c + 2 * cin
            macs += c
        return params, macs
    ksize = 1 if bottleneck else 3
    params += s * _conv(s * k, k, ksize)  # one weight per connection, shared by Stage-I and II
    params += 2 * k * sum(range(1, s + 1)) + 2 * s * (s - 1) * k  # a BN per use
    macs += _conv(k, k, ksize) * (sum(range(1, s + 1)) + s * (s - 1))
    if bottleneck:
        params += s * _conv(k, k, 3) + 2 * 2 * s * k
        macs += 2 * s * _conv(k, k, 3)
    return params, macs


@lru_cache(maxsize=65536)
def rknet_count(spec: RKNetSpec) -> Counts:
    """Trainable parameters and FLOPs of ``build_model(spec)``, from the formulas above."""
    widths = [p.width for p in spec.periods]
    sizes = spec.resolutions()
    if spec.stem == "cifar":
        params = _conv(spec.in_channels, widths[0], 3)
        macs = params * spec.input_size**2
    else:
        c = _conv(spec.in_channels, widths[0], 7)
        stem_out = (spec.input_size - 1) // 2 + 1
        params = c + 2 * widths[0]
        macs = c * stem_out**2
    periods = []
    for i, (p, n) in enumerate(zip(spec.periods, sizes)):
        sp, sm = _step_cost(p, spec.bottleneck)
        pp, pf = sp * p.steps, sm * p.steps * n * n
        if i + 1 < len(spec.periods):  # the transition after this period, at this resolution
            cin, cout = widths[i], widths[i + 1]
            tp = 2 * cin + cin * cout
            tm = cin * cout * n * n
            if spec.attention:
                h = max(1, cout // 2)
                tp += 2 * cout * h + h + cout
                tm += 2 * cout * h
            pp, pf = pp + tp, pf + tm
        periods.append(PeriodCount(p.method, p.stages, p.steps, p.growth_rate, p.m, p.width, n, pp, 2 * pf))
        params += pp
        macs += pf
    post = widths if spec.multiscale else widths[-1:]
    feats = sum(post)
    params += 2 * feats + feats * spec.num_classes + spec.num_classes
    macs += feats * spec.num_classes
    return Counts(params=params, flops=2 * macs, periods=tuple(periods))
