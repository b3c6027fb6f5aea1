"""Analytic parameter and FLOP counts of an RKNet spec and of the DenseNet and CliqueNet baselines.

FLOPs are 2 x multiply-accumulates of convolutions and fully connected layers for one image
at the spec's input size: the convention of the paper's tables and of
``torch.utils.flop_counter.FlopCounterMode``. A search calls this thousands of times, so it is
arithmetic on the spec, never a model build; tests hold it equal to the counter on built models.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from rksearch.arch.baselines import CliqueNetSpec, DenseNetSpec
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


def _dense_block(cin: int, layers: int, k: int, bottleneck_width: int) -> tuple[int, int]:
    """(params, MACs per pixel) of ``layers`` BN-ReLU-conv growths of k from ``cin`` channels
    (bottleneck: a BN-ReLU-1x1 conv to ``bottleneck_width`` first): a dense block, an ERK step."""
    params = macs = 0
    bw = bottleneck_width
    for c in range(cin, cin + layers * k, k):
        convs = _conv(c, bw, 1) + _conv(bw, k, 3) if bw else _conv(c, k, 3)
        params += convs + 2 * c + 2 * bw
        macs += convs
    return params, macs


def _clique_block(c0: int, s: int, k: int, bottleneck: bool) -> tuple[int, int]:
    """(params, MACs per pixel) of a clique block from ``c0`` channels, s layers of k: one weight
    per connection used by Stage-I and Stage-II, a BN per use (bottleneck: 1x1 connections and
    one 3x3 k -> k conv per layer, used by both stages). An IRK step is one with c0 = k."""
    ksize = 1 if bottleneck else 3
    params = s * _conv(c0 + (s - 1) * k, k, ksize)
    params += sum(2 * (c0 + j * k) for j in range(s)) + s * 2 * (s - 1) * k  # Stage-I and Stage-II BNs
    macs = sum(_conv(c0 + j * k, k, ksize) for j in range(s)) + s * _conv((s - 1) * k, k, ksize)
    if bottleneck:
        params += s * _conv(k, k, 3) + 2 * 2 * s * k
        macs += 2 * s * _conv(k, k, 3)
    return params, macs


def _step_cost(p: PeriodSpec, bottleneck: bool) -> tuple[int, int]:
    """(params, MACs per pixel) of one time-step."""
    if p.method == "erk":
        return _dense_block(p.width, p.m * p.stages, p.growth_rate, 4 * p.growth_rate if bottleneck else 0)
    return _clique_block(p.growth_rate, p.stages, p.growth_rate, bottleneck)


def _stem(kind: str, in_channels: int, width: int, input_size: int) -> tuple[int, int]:
    """(params, MACs) of the stem: a 3x3 conv (cifar), or a 7x7/2 conv and its BN (imagenet)."""
    if kind == "cifar":
        c = _conv(in_channels, width, 3)
        return c, c * input_size**2
    c = _conv(in_channels, width, 7)
    return c + 2 * width, c * ((input_size - 1) // 2 + 1) ** 2


def _transition(cin: int, cout: int, n: int, attention: bool) -> tuple[int, int]:
    """(params, MACs) of a BN-ReLU-1x1 conv at side ``n`` (then optional attention, then pooling)."""
    params, macs = 2 * cin + cin * cout, cin * cout * n * n
    if attention:
        h = max(1, cout // 2)
        params, macs = params + 2 * cout * h + h + cout, macs + 2 * cout * h
    return params, macs


def _head(pooled: list[int], num_classes: int) -> tuple[int, int]:
    """(params, MACs) of the postprocessor's BNs over the pooled features and the classifier."""
    feats = sum(pooled)
    return 2 * feats + feats * num_classes + num_classes, feats * num_classes


@lru_cache(maxsize=65536)
def rknet_count(spec: RKNetSpec) -> Counts:
    """Trainable parameters and FLOPs of ``build_model(spec)``, from the formulas above."""
    widths = [p.width for p in spec.periods]
    sizes = spec.resolutions()
    params, macs = _stem(spec.stem, spec.in_channels, widths[0], spec.input_size)
    periods = []
    for i, (p, n) in enumerate(zip(spec.periods, sizes)):
        sp, sm = _step_cost(p, spec.bottleneck)
        pp, pf = sp * p.steps, sm * p.steps * n * n
        if i + 1 < len(spec.periods):  # the transition after this period, at this resolution
            tp, tm = _transition(widths[i], widths[i + 1], n, spec.attention)
            pp, pf = pp + tp, pf + tm
        periods.append(PeriodCount(p.method, p.stages, p.steps, p.growth_rate, p.m, p.width, n, pp, 2 * pf))
        params += pp
        macs += pf
    hp, hm = _head(widths if spec.multiscale else widths[-1:], spec.num_classes)
    return Counts(params=params + hp, flops=2 * (macs + hm), periods=tuple(periods))


@lru_cache(maxsize=1024)
def densenet_count(spec: DenseNetSpec) -> Counts:
    """Trainable parameters and FLOPs of the DenseNet ``spec`` builds (bottleneck width bn_size x k)."""
    k, widths = spec.growth_rate, spec.block_widths()
    sizes = spec.resolutions()
    params, macs = _stem(spec.stem, spec.in_channels, spec.init_channels, spec.input_size)
    bw = spec.bn_size * k if spec.bottleneck else 0
    for i, ((cin, _), layers, n) in enumerate(zip(widths, spec.block_config, sizes)):
        if i:  # the transition into this block, at the side of the block before
            tp, tm = _transition(widths[i - 1][1], cin, sizes[i - 1], attention=False)
            params, macs = params + tp, macs + tm
        bp, bm = _dense_block(cin, layers, k, bw)
        params, macs = params + bp, macs + bm * n * n
    hp, hm = _head([widths[-1][1]], spec.num_classes)
    return Counts(params=params + hp, flops=2 * (macs + hm))


@lru_cache(maxsize=1024)
def cliquenet_count(spec: CliqueNetSpec) -> Counts:
    """Trainable parameters and FLOPs of the CliqueNet ``spec`` builds (its block features pooled,
    compressed by a BN-ReLU-1x1 conv where ``compression`` < 1)."""
    s, k = spec.layers_per_block, spec.growth_rate
    ins, pooled = spec.block_inputs(), spec.pooled()
    sizes = spec.resolutions()
    params, macs = _stem(spec.stem, spec.in_channels, spec.init_channels, spec.input_size)
    for i, (c0, n) in enumerate(zip(ins, sizes)):
        if i:
            tp, tm = _transition(s * k, s * k, sizes[i - 1], spec.attention)
            params, macs = params + tp, macs + tm
        bp, bm = _clique_block(c0, s, k, spec.bottleneck)
        params, macs = params + bp, macs + bm * n * n
    for (c, p), n in zip(pooled, sizes[len(sizes) - len(pooled):]):  # the block features pooled, compressed
        if p != c:
            params, macs = params + 2 * c + c * p, macs + c * p * n * n
    hp, hm = _head([p for _, p in pooled], spec.num_classes)
    return Counts(params=params + hp, flops=2 * (macs + hm))
