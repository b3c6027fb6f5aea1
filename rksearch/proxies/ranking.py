"""Rank statistics for asking whether a cheap measurement orders architectures like an expensive one.

Each function takes two equally long sequences of numbers (lists, tuples, 1-D tensors or
arrays); a larger value means a better architecture. A correlation is NaN when one side is
constant: there is no ranking to compare then, and 0 would claim there is one. The statistics
are scipy's (imported on first use, so that importing this module stays cheap).
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from typing import Union

from rksearch.core.errors import RKSearchError

Numbers = Union[Sequence[float], Iterable[float]]


def _pair(a: Numbers, b: Numbers) -> tuple[list[float], list[float]]:
    xs, ys = [float(v) for v in a], [float(v) for v in b]
    if len(xs) != len(ys):
        raise RKSearchError(f"cannot rank-correlate {len(xs)} values with {len(ys)}")
    if len(xs) < 2:
        raise RKSearchError(f"need at least 2 pairs to rank-correlate, got {len(xs)}")
    if any(math.isnan(v) for v in xs + ys):
        raise RKSearchError("cannot rank NaN values; drop the architectures whose measurement failed")
    return xs, ys


def average_ranks(values: Numbers) -> list[float]:
    """Ranks 1..n, tied values sharing the mean of the ranks they span ([5, 7, 5] -> [1.5, 3, 1.5])."""
    from scipy.stats import rankdata

    return rankdata([float(v) for v in values]).tolist()


def spearman_rho(a: Numbers, b: Numbers) -> float:
    """Spearman's rho: the Pearson correlation of the average ranks."""
    return _correlation("spearmanr", a, b)


def kendall_tau(a: Numbers, b: Numbers) -> float:
    """Kendall's tau-b: (concordant - discordant) / sqrt((n0 - ties_a) (n0 - ties_b)).

    tau-b rather than tau-a because scores tie (FLOPs of equal architectures, accuracies rounded
    to a validation set's resolution), and tau-a would then never reach 1 for equal rankings.
    """
    return _correlation("kendalltau", a, b)  # scipy's default variant is tau-b


def _correlation(name: str, a: Numbers, b: Numbers) -> float:
    """scipy.stats' ``name`` statistic; NaN for a constant side without scipy's warning (documented above)."""
    from scipy import stats

    xs, ys = _pair(a, b)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        r = float(getattr(stats, name)(xs, ys).statistic)
    # scipy's rounding makes an equal ranking of 5 tau 0.9999999999999999: a perfect ranking is
    # exactly +-1, as a threshold of 1 expects (an imperfect ranking of up to 10,000 architectures
    # is further than 1e-12 from it)
    return math.copysign(1.0, r) if abs(r) > 1 - 1e-12 else r


def top_k(values: Numbers, k: int) -> list[int]:
    """Indices of the k largest values; ties broken by position (the earlier wins)."""
    xs = [float(v) for v in values]
    return sorted(range(len(xs)), key=lambda i: (-xs[i], i))[:k]


def top_k_overlap(a: Numbers, b: Numbers, k: int) -> float:
    """The fraction of a's k best architectures that are also among b's k best (0..1).

    What a search that keeps the top k of a cheap ranking actually cares about, whatever the
    order further down.
    """
    xs, ys = _pair(a, b)
    if not 1 <= k <= len(xs):
        raise RKSearchError(f"k must be in 1..{len(xs)} (the number of architectures), got {k}", field="k")
    return len(set(top_k(xs, k)) & set(top_k(ys, k))) / k
