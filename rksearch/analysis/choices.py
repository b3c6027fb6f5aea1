"""What each choice of a search did: trial columns read as choices, and mean metrics per choice."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pandas as pd

from rksearch.arch.rknet import GLOBAL_FIELDS, PERIOD_FIELDS
from rksearch.core.errors import RKSearchError

if TYPE_CHECKING:
    from rksearch.analysis.study import Study


def choice_values(trials: pd.DataFrame, choice: str) -> pd.Series:
    """Column ``choice`` of ``trials`` as the choice it was: an IRK period's m (always 1, never
    chosen) missing, and whole numbers that trials without the period made floats whole again."""
    values = trials[choice]
    if choice.endswith("_m") and choice[:-1] + "method" in trials:
        values = values.where(trials[choice[:-1] + "method"] == "erk")
    return whole_numbers(values)


def whole_numbers(values: pd.Series) -> pd.Series:
    """A float column that trials lacking a value made of whole numbers, whole again (3, not 3.0)."""
    return values.astype("Int64") if values.dtype.kind == "f" and (values.dropna() % 1 == 0).all() else values


def choice_effects(study: Study, metrics: Sequence[str] | str = ("accuracy", "flops")) -> pd.DataFrame:
    """Mean of each metric over completed trials, grouped by every per-period and global choice.

    Long format, one row per (choice, value): ``choice`` (``p0_stages``, ``bottleneck``...),
    ``value``, ``trials`` and one ``mean_<metric>`` column per metric.
    """
    metrics = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    done = study.completed
    numeric = [c for c in done.columns if pd.api.types.is_numeric_dtype(done[c]) and not pd.api.types.is_bool_dtype(done[c])]
    for m in metrics:
        if m not in numeric:
            raise RKSearchError(f"no measured column {m!r}; one of {', '.join(numeric)}", source=study.source,
                                field="metrics")
    choices = [c for c in done.columns if c.split("_", 1)[-1] in PERIOD_FIELDS and c[0] == "p" and c[1].isdigit()]
    choices += [c for c in GLOBAL_FIELDS if c in done and done[c].nunique(dropna=True) > 1]
    parts = []
    for c in choices:
        g = done[list(metrics)].groupby(choice_values(done, c), dropna=True).agg(["mean", "count"])
        part = pd.DataFrame({"choice": c, "value": g.index.astype(str), "trials": g[(metrics[0], "count")].to_numpy()})
        for m in metrics:
            part[f"mean_{m}"] = g[(m, "mean")].to_numpy()
        parts.append(part)
    cols = ["choice", "value", "trials", *(f"mean_{m}" for m in metrics)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)
