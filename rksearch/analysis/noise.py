"""How far apart two front accuracies must be before the validation set's size can tell them apart."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from rksearch.analysis.pareto import Front

CLOSE_MARK = "~"  # beside a front member's accuracy: within noise of a neighbour on the front


def validation_images(proxy: Mapping[str, Any]) -> int | None:
    """The validation images each trial's accuracy was measured on, from a study's recorded proxy:
    ``val_subset`` of ``val_size``; None where the study did not record them."""
    size, subset = proxy.get("val_size"), proxy.get("val_subset")
    if not isinstance(size, int) or size < 1:
        return None
    return min(size, subset) if isinstance(subset, int) and subset >= 1 else size


def standard_error(accuracy: float, images: int) -> float:
    """One binomial standard error of an accuracy measured on ``images`` images (a fraction)."""
    p = min(max(accuracy, 0.0), 1.0)
    return math.sqrt(p * (1 - p) / images)


@dataclass(frozen=True)
class Noise:
    """The noise of a front's accuracies, and the neighbouring members it cannot tell apart."""

    images: int
    accuracy: float  # the front's median accuracy, where :attr:`error` is taken
    error: float  # one binomial standard error there (a fraction)
    close: tuple[tuple[int, int, float], ...]  # (trial, trial, accuracy gap) of neighbours within noise

    @property
    def marked(self) -> set[int]:
        """The trial numbers in a close pair."""
        return {n for a, b, _ in self.close for n in (a, b)}

    def lines(self) -> list[str]:
        """What ``rksearch pareto`` and ``rksearch run`` print under the front."""
        out = [f"accuracy measured on {self.images} validation images: ±{100 * self.error:.1f} points (one binomial "
               f"standard error at the front's median accuracy, {100 * self.accuracy:.1f} %)"]
        if self.close:
            pairs = ", ".join(f"{a} and {b} ({100 * gap:.1f} points)" for a, b, gap in self.close)
            out.append(f"within noise (neighbours on the front whose accuracies differ by less than one standard "
                       f"error of the difference, marked {CLOSE_MARK}): trials {pairs}")
        return out


def front_noise(f: Front, proxy: Mapping[str, Any]) -> Noise | None:
    """The noise of ``f``'s accuracies; None without an accuracy objective, members, or a recorded
    number of validation images. Neighbours are members next to each other by accuracy; a pair is
    within noise when its gap is under sqrt(se_a^2 + se_b^2), each at its own accuracy."""
    images = validation_images(proxy)
    if images is None or "accuracy" not in f.objectives or f.members.empty:
        return None
    ranked = f.members.dropna(subset=["accuracy"]).sort_values(["accuracy", "number"], ascending=[False, True])
    acc, numbers = ranked["accuracy"].tolist(), [int(n) for n in ranked["number"]]
    close = []
    for i in range(len(acc) - 1):
        gap = acc[i] - acc[i + 1]
        if gap < math.hypot(standard_error(acc[i], images), standard_error(acc[i + 1], images)):
            close.append((numbers[i], numbers[i + 1], gap))
    median = float(ranked["accuracy"].median())
    return Noise(images, median, standard_error(median, images), tuple(close))
