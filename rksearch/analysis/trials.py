"""A study's trials as a table: one row per trial, its spec's per-period choices spelled out."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from rksearch.arch.resolve import AnySpec, any_spec_from_dict
from rksearch.arch.rknet import GLOBAL_FIELDS, PERIOD_FIELDS, RKNetSpec
from rksearch.core.errors import RKSearchError
from rksearch.core.objectives import DEFAULT_OBJECTIVES, OBJECTIVES
from rksearch.core.yamlio import parse_yaml
from rksearch.storage.baseline_study import BASELINE, KIND, SEARCH, is_baseline

TRIAL_ATTRS = (
    "name", "accuracy", "flops", "params", "trained_flops", "trained_params", "epochs",
    "images_per_s", "seconds", "ray_trial_id", "node", "fail_reason", "outcome", "reason",
)
NUMERIC_ATTRS = ("trained_flops", "trained_params", "epochs", "images_per_s", "seconds")


def trials_frame(study, objectives: Sequence[str] | None = None, *, trials: list | None = None,
                 specs: dict[int, AnySpec] | None = None, source: str | Path | None = None,
                 baselines: Sequence = (), baseline_specs: dict[int, AnySpec] | None = None) -> pd.DataFrame:
    """One row per trial of an ``optuna.Study`` (what a loaded study's ``trials`` holds), then one
    per trial of its baselines' study, ``baselines`` (``kind`` tells them apart; each is numbered
    in its own study).

    ``objectives`` default to the study's ``objectives`` attr; ``specs`` and ``baseline_specs``,
    when given, receive each trial's parsed spec by number.
    """
    objectives = tuple(objectives or study.user_attrs.get("objectives", DEFAULT_OBJECTIVES))
    trials = study.get_trials(deepcopy=False) if trials is None else trials
    specs = {} if specs is None else specs
    baseline_specs = {} if baseline_specs is None else baseline_specs
    where = source or study.study_name
    rows = [_row(t, objectives, baseline_specs if is_baseline(t.user_attrs) else specs, where) for t in trials]
    rows += [_row(t, objectives, baseline_specs, where, kind=BASELINE) for t in baselines]
    frame = pd.DataFrame(rows, columns=_columns(rows, objectives))
    for c in (*OBJECTIVES, *NUMERIC_ATTRS):
        frame[c] = pd.to_numeric(frame[c], errors="coerce")
    return frame


def _row(trial, objectives: Sequence[str], specs: dict[int, AnySpec], db: str | Path,
         kind: str | None = None) -> dict[str, Any]:
    ua = trial.user_attrs
    row: dict[str, Any] = {"number": trial.number, "state": trial.state.name,
                           KIND: kind or (BASELINE if is_baseline(ua) else SEARCH)}
    row.update({a: ua.get(a) for a in TRIAL_ATTRS})
    text = ua.get("spec")
    spec = None
    if isinstance(text, str):
        try:
            where = f"{db}: trial {trial.number} user_attrs.spec"
            spec = any_spec_from_dict(parse_yaml(text, where), source=where)
        except RKSearchError:
            if trial.state.name != "FAIL":  # a failed trial may fail precisely on its spec
                raise
    elif trial.state.name in ("COMPLETE", "PRUNED"):
        raise RKSearchError(f"trial {trial.number} ({trial.state.name}) has no spec", source=db, field="user_attrs.spec")
    if spec is not None:
        specs[trial.number] = spec
        row.update(spec_columns(spec))
        row["name"] = row["name"] or spec.name
        row["spec"] = text
    for o in OBJECTIVES.values():  # objectives not optimised still get a column when measured
        row.setdefault(o.name, ua.get(o.name, ua.get(o.attr)))
    if trial.values is not None:
        row.update(zip(objectives, trial.values))
    return row


def spec_columns(spec: AnySpec) -> dict[str, Any]:
    """The choices a search makes, flattened: ``p{i}_method``, ``p{i}_stages``, ..., globals;
    a baseline has none of them, only its ``choices`` line."""
    if not isinstance(spec, RKNetSpec):
        return {"choices": spec.choices()}
    cols: dict[str, Any] = {"periods": len(spec.periods)}
    for i, p in enumerate(spec.periods):
        cols.update({f"p{i}_{f}": getattr(p, f) for f in PERIOD_FIELDS})
    cols.update({f: getattr(spec, f) for f in GLOBAL_FIELDS})
    cols["choices"] = choices_text(spec)
    return cols


def choices_text(spec: RKNetSpec) -> str:
    """One line of what the name does not say: growth rate and m per period."""
    ks = "/".join(str(p.growth_rate) for p in spec.periods)
    text = f"k={ks}"
    if any(p.m != 1 for p in spec.periods):
        text += " m=" + "/".join(str(p.m) if p.method == "erk" else "-" for p in spec.periods)  # IRK: no m
    if spec.dropout:
        text += f" dropout={spec.dropout:g}"
    return text


def _columns(rows: list[dict[str, Any]], objectives: Sequence[str]) -> list[str]:
    head = ["number", "state", "name", *objectives, KIND]
    seen = dict.fromkeys(head)
    for r in rows:
        seen.update(dict.fromkeys(r))
    for c in (*OBJECTIVES, *TRIAL_ATTRS):
        seen.setdefault(c)
    return list(seen)
