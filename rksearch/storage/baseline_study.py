"""Baseline trials in a study of their own, ``<name>/baselines``, beside the search's study.

A space's ``baselines:`` are trained under the search's proxy and recorded in the same storage,
but in a second Optuna study: the search's study then holds only what its sampler proposed, so
every sampler (TPE, NSGA-II/III, GP, QMC, random) works on it unchanged through Optuna's public
API. Had they been trials of the search's study, TPE would count them among its good trials,
and the intersection search space of NSGA-II and GP would become empty (they have none of the
search's params). The analysis reads both studies together (:func:`rksearch.analysis.study.load_study`).
Baseline trials also carry the user attr ``kind: baseline``; studies written before the split
held them in the search's own study and are still read that way.
"""
from __future__ import annotations

from collections.abc import Container, Mapping, Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial

KIND, BASELINE, SEARCH = "kind", "baseline", "search"
SUFFIX = "/baselines"


def baselines_name(study_name: str) -> str:
    """The name of the study that holds the baselines of study ``study_name``."""
    return study_name + SUFFIX


def is_baselines_name(study_name: str) -> bool:
    return study_name.endswith(SUFFIX)


def is_baseline(user_attrs: Mapping[str, Any]) -> bool:
    return user_attrs.get(KIND) == BASELINE


def baselines_study(storage: optuna.storages.BaseStorage, study_name: str,
                    directions: Sequence[str]) -> optuna.Study:
    """The baselines' study of ``study_name`` in ``storage``, created when missing. Its sampler
    never proposes anything: a baseline trial has no params."""
    return optuna.create_study(study_name=baselines_name(study_name), storage=storage, directions=list(directions),
                               sampler=optuna.samplers.RandomSampler(), load_if_exists=True)


def start_baseline_trial(study: optuna.Study, user_attrs: Mapping[str, Any]) -> optuna.Trial:
    """A RUNNING trial of the baselines' ``study`` with ``user_attrs`` (``kind: baseline`` added)."""
    trial = study.ask()
    for k, v in {**user_attrs, KIND: BASELINE}.items():
        trial.set_user_attr(k, v)
    return trial


def trained_baselines(trials: Sequence[FrozenTrial], done: Container[str]) -> set[str]:
    """Spec keys of the baseline trials whose outcome is in ``done``: a rerun does not train them again."""
    return {t.user_attrs.get("spec_key") for t in trials
            if is_baseline(t.user_attrs) and t.user_attrs.get("outcome") in done}
