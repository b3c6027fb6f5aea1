"""A running search's progress: the live-display callback, and its one-line summary."""
from __future__ import annotations

import time
from typing import Any, Callable

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
    """One line of live progress: counts, front size, best accuracy, hypervolume."""
    import numpy as np

    from rksearch.analysis.pareto import hypervolume, pareto_mask

    t, space = searcher.tally, searcher.space
    complete = [tr for tr in searcher.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if not is_baseline(tr.user_attrs)]
    line = (f"[bold]{space.name}[/] {elapsed:5.0f}s  done {t.trained + t.pruned} (trained {t.trained}, "
            f"pruned {t.pruned})  running {t.running}  failed {t.failed}  skipped {t.skipped}")
    if t.baselines:
        line += f"  baselines {t.baselines}"
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
