"""Rank statistics for asking whether a cheap measurement orders architectures like an expensive one.

Pure Python on purpose: the samples are tens to a few thousand architectures, and the
definitions (tau-b, average ranks for ties) are easier to trust written out than to import.
Each function takes two equally long sequences of numbers (lists, tuples, 1-D tensors or
arrays); a larger value means a better architecture. A correlation is NaN when one side is
constant: there is no ranking to compare then, and 0 would claim there is one.
"""
from __future__ import annotations

import math
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
    xs = [float(v) for v in values]
    order = sorted(range(len(xs)), key=xs.__getitem__)
    ranks = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for t in range(i, j + 1):
            ranks[order[t]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def _pearson(xs: list[float], ys: list[float]) -> float:
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx == 0 or syy == 0:
        return math.nan
    return sxy / math.sqrt(sxx * syy)


def spearman_rho(a: Numbers, b: Numbers) -> float:
    """Spearman's rho: the Pearson correlation of the average ranks."""
    xs, ys = _pair(a, b)
    return _pearson(average_ranks(xs), average_ranks(ys))


def _sign(u: float, v: float) -> int:
    # comparisons, not u - v: infinite scores (a singular NASWOT kernel gives -inf) still order
    return (u > v) - (u < v)


def kendall_tau(a: Numbers, b: Numbers) -> float:
    """Kendall's tau-b: (concordant - discordant) / sqrt((n0 - ties_a) (n0 - ties_b)).

    tau-b rather than tau-a because scores tie (FLOPs of equal architectures, accuracies rounded
    to a validation set's resolution), and tau-a would then never reach 1 for equal rankings.
    O(n^2) pairs: a few thousand architectures take well under a second.
    """
    xs, ys = _pair(a, b)
    n = len(xs)
    concordant = discordant = ties_a = ties_b = 0
    for i in range(n):
        for j in range(i + 1, n):
            sx, sy = _sign(xs[i], xs[j]), _sign(ys[i], ys[j])
            ties_a += sx == 0
            ties_b += sy == 0
            concordant += sx * sy > 0
            discordant += sx * sy < 0
    pairs = n * (n - 1) // 2
    denom = math.sqrt((pairs - ties_a) * (pairs - ties_b))
    return (concordant - discordant) / denom if denom else math.nan


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
