"""Early stopping over epochs: ASHA on the proxy accuracy of the searched trials, baselines left out."""
from __future__ import annotations

from typing import Any

from ray.tune.schedulers import ASHAScheduler

from rksearch.space.search_space import SearchSpace
from rksearch.storage.baseline_study import BASELINE


def make_scheduler(space: SearchSpace) -> ASHAScheduler | None:
    """The space's early stopping over epochs: ASHA on the proxy accuracy, or None."""
    if space.search.scheduler.kind != "asha" or space.proxy.epochs <= 1:
        return None
    return _SearchedASHA(time_attr="epoch", metric="accuracy", mode="max", max_t=space.proxy.epochs,
                         grace_period=min(space.search.scheduler.grace_epochs, space.proxy.epochs),
                         reduction_factor=space.search.scheduler.reduction_factor)


class _SearchedASHA(ASHAScheduler):
    """ASHA over the searched trials only: a baseline never enters a bracket, gets the whole
    proxy, and its accuracy never moves a rung's cut-off for the candidates."""

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        if not trial.config.get(BASELINE):
            super().on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if trial.config.get(BASELINE):
            return self.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        if not trial.config.get(BASELINE):
            super().on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        if not trial.config.get(BASELINE):
            super().on_trial_remove(tune_controller, trial)
