"""Baseline trials in a search's study, kept out of what the sampler learns from.

A space's ``baselines:`` are trained as trials of the search's own Optuna study (user attrs
``kind: baseline`` and ``baseline: <label>``), so one study holds everything measured under one
proxy. They have values but none of the search's params, and a sampler that saw them would go
wrong quietly: TPE would count them among its good trials, and the intersection search space of
NSGA-II and GP would become empty, which turns both into random search. :class:`SearchedOnly`
hands the wrapped sampler a view of the study without them; baseline trials are created directly
in the storage, so no sampler (and no enqueued grid point) is involved in them either.
"""
from __future__ import annotations

from collections.abc import Container, Mapping, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

KIND, BASELINE, SEARCH = "kind", "baseline", "search"


def is_baseline(user_attrs: Mapping[str, Any]) -> bool:
    return user_attrs.get(KIND) == BASELINE


class _Searched:
    """A study seen without its baseline trials; everything else is the study itself."""

    def __init__(self, study: optuna.Study):
        self._study = study

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None,
                    use_cache: bool = False) -> list[FrozenTrial]:
        trials = self._study._get_trials(deepcopy=deepcopy, states=states, use_cache=use_cache)
        return [t for t in trials if not is_baseline(t.user_attrs)]

    def get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        return self._get_trials(deepcopy=deepcopy, states=states)

    @property
    def trials(self) -> list[FrozenTrial]:
        return self.get_trials()


class SearchedOnly(optuna.samplers.BaseSampler):
    """``sampler`` as if the study held only searched trials; baseline trials never reach it."""

    def __init__(self, sampler: optuna.samplers.BaseSampler):
        self.sampler = sampler

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        if is_baseline(trial.user_attrs):
            return {}
        return self.sampler.infer_relative_search_space(_Searched(study), trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if is_baseline(trial.user_attrs):
            return {}
        return self.sampler.sample_relative(_Searched(study), trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self.sampler.sample_independent(_Searched(study), trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if not is_baseline(trial.user_attrs):
            self.sampler.before_trial(_Searched(study), trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        if not is_baseline(trial.user_attrs):
            self.sampler.after_trial(_Searched(study), trial, state, values)

    def reseed_rng(self) -> None:
        self.sampler.reseed_rng()


def start_baseline_trial(study: optuna.Study, user_attrs: Mapping[str, Any]) -> optuna.Trial:
    """A RUNNING trial created with its attrs in one step (``kind: baseline`` added), never by
    ``study.ask()``: that would consult the sampler and pop an enqueued trial."""
    template = optuna.trial.create_trial(state=TrialState.RUNNING, user_attrs={**user_attrs, KIND: BASELINE})
    trial_id = study._storage.create_new_trial(study._study_id, template_trial=template)
    return optuna.Trial(study, trial_id)


def trained_baselines(trials: Sequence[FrozenTrial], done: Container[str]) -> set[str]:
    """Spec keys of the baseline trials whose outcome is in ``done``: a rerun does not train them again."""
    return {t.user_attrs.get("spec_key") for t in trials
            if is_baseline(t.user_attrs) and t.user_attrs.get("outcome") in done}
