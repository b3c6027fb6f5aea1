"""What a search records of its trials: their outcomes, the run's tally, and the count of trials done."""
from __future__ import annotations

from dataclasses import dataclass, field

import optuna

from rksearch.arch.resolve import AnySpec
from rksearch.core.errors import RKSearchError
from rksearch.search.overhead import TimeAccount
from rksearch.storage.baseline_study import is_baseline

# trial outcomes, recorded as the user attr "outcome"; trained and pruned trials count as done
TRAINED, PRUNED, FAILED, REJECTED, DUPLICATE = "trained", "pruned", "failed", "rejected", "duplicate"
DONE = (TRAINED, PRUNED)


class SearchAborted(RKSearchError):
    """The search stopped itself (too many failures, an exhausted space)."""

    exit_code = 1


def spec_key(spec: AnySpec) -> str:
    return spec.to_json()


@dataclass
class Tally:
    """What happened in this run, for the live display and the failure bound."""

    trained: int = 0
    pruned: int = 0
    baselines: int = 0
    failed: int = 0
    skipped: int = 0
    running: int = 0
    reasons: list[str] = field(default_factory=list)
    running_baselines: int = 0  # of ``running``
    peak_running: int = 0  # the most trials that ran at once: the slots the search gets
    epochs: dict[str, int] = field(default_factory=dict)  # running Tune trial id -> its last epoch reported
    wall_seconds: float = 0.0  # wall time of the finished trials that measured one (Tune's time_total_s)
    timed: int = 0  # how many did
    account: TimeAccount = field(default_factory=TimeAccount)  # where the time went (rksearch.search.overhead)

    @property
    def train_seconds(self) -> float:
        """The finished trials' own seconds, summed."""
        return self.account.trial_seconds

    def started(self, trial_id: str, baseline: bool = False) -> None:
        """A trial starts running."""
        self.running += 1
        self.running_baselines += baseline
        self.peak_running = max(self.peak_running, self.running)
        self.epochs[trial_id] = 0

    def ended(self, trial_id: str, baseline: bool, result: dict) -> None:
        """A trial stops running; its wall time, where Tune measured one, goes to the mean for the ETA."""
        self.running = max(0, self.running - 1)
        self.running_baselines = max(0, self.running_baselines - baseline)
        self.epochs.pop(trial_id, None)
        self.account.ended(trial_id, result)
        wall = result.get("time_total_s")
        if wall:
            self.wall_seconds += float(wall)
            self.timed += 1


def count_done(study: optuna.Study) -> int:
    """Searched trials done: what ``search.trials`` counts (baselines come on top)."""
    return sum(t.user_attrs.get("outcome") in DONE and not is_baseline(t.user_attrs)
               for t in study.get_trials(deepcopy=False))
