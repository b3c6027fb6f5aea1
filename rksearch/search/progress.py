"""A running search's progress: the live-display callback, and its one-line summary."""
from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Sequence

from optuna.trial import TrialState
from ray.tune import Callback

from rksearch.core.objectives import OBJECTIVES
from rksearch.search.searcher import RKSearcher
from rksearch.storage.baseline_study import is_baseline


class ProgressCallback(Callback):
    """Calls ``on_update(searcher)`` whenever a trial starts or ends, and every ``TICK`` seconds
    between (elapsed time moves; a log file gets its periodic status line)."""

    TICK = 5.0

    def __init__(self, searcher: RKSearcher, on_update: Callable[[RKSearcher], None] | None):
        self.searcher, self.on_update = searcher, on_update
        self._last = time.monotonic()

    def __getstate__(self) -> dict:  # Tune pickles its state; the live display stays here
        return {"searcher": None, "on_update": None, "_last": 0.0}

    def _update(self, *args: Any, **info: Any) -> None:
        self._last = time.monotonic()
        if self.on_update:
            try:
                self.on_update(self.searcher)
            except Exception:  # noqa: BLE001  (a display that fails, a closed pipe: never the search's end)
                self.on_update = None

    def on_step_end(self, *args: Any, **info: Any) -> None:
        if time.monotonic() - self._last >= self.TICK:
            self._update()

    on_trial_start = on_trial_complete = on_trial_error = _update


def summarise(searcher: RKSearcher, elapsed: float) -> str:
    """One line of live progress: counts, the epoch of each running trial, elapsed time and ETA, front
    size, best accuracy, hypervolume."""
    import numpy as np

    from rksearch.analysis.pareto import hypervolume, pareto_mask
    from rksearch.search.records import count_done

    t, space = searcher.tally, searcher.space
    complete = [tr for tr in searcher.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if not is_baseline(tr.user_attrs)]
    epochs = space.proxy.epochs
    line = (f"[bold]{space.name}[/] {duration(elapsed)}  done {t.trained + t.pruned} (trained {t.trained}, "
            f"pruned {t.pruned})  running {t.running}{at_epochs(t.epochs.values(), epochs)}  failed {t.failed}"
            f"  skipped {t.skipped}")
    if t.baselines:
        line += f"  baselines {t.baselines}"
    if searcher.target is not None:
        searched = t.running - t.running_baselines
        to_start = max(0, searcher.target - count_done(searcher.study) - searched) + len(searcher.pending_baselines)
        left = eta(to_start, [e / epochs for e in t.epochs.values()], t.wall_seconds / t.timed if t.timed else None,
                   t.peak_running)
        line += f"  ETA {'?' if left is None else duration(left)}"
    if not complete:
        return line
    values = np.array([tr.values for tr in complete], dtype=float)
    directions = space.directions
    mask = pareto_mask(values, directions)
    line += f"  front {int(mask.sum())}"
    if "accuracy" in space.objectives:
        line += f"  best accuracy {values[:, space.objectives.index('accuracy')].max():.3f}"
    ref = space.reference_point
    if ref:
        scale = np.array([OBJECTIVES[o].scale for o in space.objectives])
        hv = hypervolume(values[mask] * scale, np.array([ref[o] for o in space.objectives]) * scale, directions)
        line += f"  hypervolume {hv:.4g}"
    return line


def eta(to_start: int, running: Sequence[float], mean_trial_s: float | None, slots: int) -> float | None:
    """Seconds until the search ends, from the measured cost so far: the trials still to start and
    the unfinished share of the running ones (``running``: the share of its epochs each has done),
    each at ``mean_trial_s`` (the mean wall time of the finished trials), spread over ``slots`` trials
    at once, and never less than the longest single trial left. None before a trial has finished:
    no measured cost, no estimate. Trials that fail or are pruned on the way are not foreseen."""
    if mean_trial_s is None:
        return None
    left = [max(0.0, 1.0 - min(r, 1.0)) for r in running]
    work = to_start + sum(left)
    longest = 1.0 if to_start else max(left, default=0.0)
    return mean_trial_s * max(work / max(1, slots), longest)


def at_epochs(epochs: Iterable[int], total: int) -> str:
    """The epoch each running trial is at: ' (epochs 1, 3, 3 of 10)'; '' with none running. An epoch
    counts once reported: a trial still in its first epoch is at 0."""
    seen = sorted(epochs)
    if not seen:
        return ""
    shown = ", ".join(map(str, seen[:8])) + (f", ... ({len(seen) - 8} more)" if len(seen) > 8 else "")
    return f" (epoch{'s' * (len(seen) > 1)} {shown} of {total})"


def duration(seconds: float) -> str:
    """'42 s', '12 min 05 s', '3 h 07 min'."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"
