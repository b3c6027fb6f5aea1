"""Where a search's time went: the overhead share (concurrency counted) and its parts, from the
driver's clocks and what each trial reports of its own set-up (data, model build, validation)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Optional

IN_TRIAL = {"data_seconds": "data", "build_seconds": "model build", "val_seconds": "validation"}
"""What a trained trial reports (cumulative, with every epoch) of its ``seconds`` that is not training steps."""


def overhead_share(trial_seconds: float, wall_seconds: float, concurrency: int) -> float:
    """1 - (sum of trial seconds) / (wall seconds x concurrency): of the time the search held its
    ``concurrency`` trial slots, the share no trial used (start-up, idle slots, bookkeeping). The
    old formula left concurrency out and read 0 % for a search that wasted a quarter of the machine."""
    capacity = wall_seconds * max(1, concurrency)
    return min(1.0, max(0.0, 1 - trial_seconds / capacity)) if capacity > 0 else 0.0


@dataclass
class TimeAccount:
    """The driver's account of its trials' time, kept by the searcher as trials start and end."""

    trial_seconds: float = 0.0  # the trials' own seconds (from the proxy's start to its end), summed
    in_trial: dict[str, float] = field(default_factory=lambda: dict.fromkeys(IN_TRIAL, 0.0))
    worker_wait: float = 0.0  # proposed -> the trial's proxy started (a worker starting, imports), summed
    sampler: float = 0.0  # the driver's seconds in proposing trials (rejected proposals included)
    first_step_at: Optional[float] = None  # wall clock (time.time) of the earliest first training step
    _proposed_at: dict[str, float] = field(default_factory=dict)

    def proposed(self, trial_id: Optional[str], sampler_seconds: float) -> None:
        """The driver spent ``sampler_seconds`` proposing; ``trial_id`` (None: no trial) starts now."""
        self.sampler += sampler_seconds
        if trial_id is not None:
            self._proposed_at[trial_id] = time.time()

    def ended(self, trial_id: str, result: dict[str, Any]) -> None:
        """A trial's last result: its seconds, set-up and, where it says when it started, its wait."""
        self.trial_seconds += float(result.get("seconds") or result.get("time_total_s") or 0.0)
        for key in IN_TRIAL:
            self.in_trial[key] += float(result.get(key) or 0.0)
        proposed, started = self._proposed_at.pop(trial_id, None), result.get("started_at")
        if proposed is not None and isinstance(started, (int, float)):
            self.worker_wait += max(0.0, started - proposed)  # another node's clock may run a little apart
            if "build_seconds" in result:
                first = started + float(result.get("data_seconds") or 0) + float(result["build_seconds"])
                self.first_step_at = first if self.first_step_at is None else min(self.first_step_at, first)


@dataclass(frozen=True)
class Breakdown:
    """A finished search's slot time (wall x concurrency) in parts, each in slot-seconds."""

    wall: float
    concurrency: int
    account: TimeAccount
    ray_start: float = 0.0  # every slot waits for these three
    checks: float = 0.0  # the driver's checks and set-up before Ray starts
    outputs: float = 0.0  # trials.csv and pareto.html at the end
    first_step: Optional[float] = None  # seconds from the driver's start to the first training step

    @property
    def capacity(self) -> float:
        return self.wall * max(1, self.concurrency)

    @property
    def share(self) -> float:
        return overhead_share(self.account.trial_seconds, self.wall, self.concurrency)

    def outside(self) -> list[tuple[str, float]]:
        """The overhead's parts; "other" is what no clock saw (Tune's bookkeeping, slots left idle)."""
        n = max(1, self.concurrency)
        parts = [("Ray start", self.ray_start * n), ("checks", self.checks * n),
                 ("workers starting", self.account.worker_wait), ("sampler", self.account.sampler),
                 ("outputs", self.outputs * n)]
        seen = sum(v for _, v in parts)
        other = self.capacity - self.account.trial_seconds - seen
        return parts + [("other", max(0.0, other))]

    def inside(self) -> list[tuple[str, float]]:
        """The trials' own seconds in parts: set-up, validation and the training steps."""
        parts = [(label, self.account.in_trial[key]) for key, label in IN_TRIAL.items()]
        return parts + [("training", max(0.0, self.account.trial_seconds - sum(v for _, v in parts)))]

    def line(self) -> str:
        """``overhead 27 % of 2 slots x 100 s: Ray start 9 %, ...; in trials: data 2 %, ...``"""
        def pct(parts: list[tuple[str, float]]) -> str:
            return ", ".join(f"{label} {100 * v / self.capacity:.0f} %" for label, v in parts
                             if round(100 * v / self.capacity) > 0 or label == "training")

        if self.capacity <= 0:
            return "overhead 0 %"
        first = f"; first training step after {self.first_step:.1f} s" if self.first_step is not None else ""
        outside = pct(self.outside())
        return (f"overhead {100 * self.share:.0f} % of {self.concurrency} trial slot{'s' * (self.concurrency != 1)} "
                f"x {self.wall:.0f} s" + (f" ({outside})" if outside else "")
                + f"; in trials: {pct(self.inside())}{first}")
