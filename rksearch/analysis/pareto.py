"""Pareto fronts, exact hypervolume and the knee, for any objectives and directions.

The array functions take values in their natural sense plus one direction per column
("maximize" / "minimize") and turn everything into minimisation internally. The study-level
functions use COMPLETE trials only: a pruned trial's accuracy is a partial-training number and a
failed trial has none, so neither may sit on a front or count towards a hypervolume.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from rksearch.core.errors import RKSearchError
from rksearch.analysis.study import Study
from rksearch.core.objectives import OBJECTIVES, parse_objectives

# -- arrays ----------------------------------------------------------------------------------


def minimization(values: np.ndarray | Sequence, directions: Sequence[str]) -> np.ndarray:
    """``values`` (n, d) or (d,) with every maximised column negated."""
    v = np.asarray(values, dtype=float)
    if v.shape[-1] != len(directions):
        raise ValueError(f"{v.shape[-1]} objective columns but {len(directions)} directions")
    sign = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    return v * sign


def _dominated_min(p: np.ndarray) -> np.ndarray:
    """Row i is dominated: another row is <= everywhere and < somewhere (minimisation)."""
    out = np.zeros(len(p), dtype=bool)
    for i in range(len(p)):
        le = np.all(p <= p[i], axis=1)
        lt = np.any(p < p[i], axis=1)
        out[i] = bool(np.any(le & lt))
    return out


def pareto_mask(values: np.ndarray | Sequence, directions: Sequence[str]) -> np.ndarray:
    """Boolean mask of the non-dominated rows; equal rows are all kept."""
    v = minimization(values, directions)
    if v.ndim != 2:
        raise ValueError("values must be a 2-D array (trials x objectives)")
    return ~_dominated_min(v)


def _hv_min(p: np.ndarray, r: np.ndarray) -> float:
    """Exact hypervolume of points (all strictly better than ``r``) by slicing the last axis.

    Two dimensions: a sweep over x. More: sort by the last coordinate; between consecutive
    values the dominated region is the (d-1)-dimensional hypervolume of the points seen so
    far, times the slab's thickness.
    """
    d = p.shape[1]
    if d == 1:
        return float(r[0] - p[:, 0].min())
    if d == 2:
        order = np.lexsort((p[:, 1], p[:, 0]))
        area, best_y = 0.0, r[1]
        xs = p[order, 0]
        for j, i in enumerate(order):
            y = p[i, 1]
            if y < best_y:
                best_y = y
            nxt = xs[j + 1] if j + 1 < len(order) else r[0]
            area += (nxt - xs[j]) * (r[1] - best_y)
        return float(area)
    order = np.argsort(p[:, -1], kind="stable")
    p = p[order]
    total = 0.0
    for i in range(len(p)):
        top = p[i + 1, -1] if i + 1 < len(p) else r[-1]
        if top > p[i, -1]:
            seen = p[: i + 1, :-1]
            seen = seen[~_dominated_min(seen)]
            total += (top - p[i, -1]) * _hv_min(seen, r[:-1])
    return total


def hypervolume(values: np.ndarray | Sequence, reference: Sequence[float], directions: Sequence[str]) -> float:
    """Volume dominated by ``values`` and bounded by ``reference`` (exact, any dimension).

    Points not strictly better than the reference in every objective add nothing.
    """
    v = minimization(np.asarray(values, dtype=float).reshape(-1, len(directions)), directions)
    r = minimization(reference, directions)
    v = v[np.all(v < r, axis=1)]
    if len(v) == 0:
        return 0.0
    return _hv_min(v[~_dominated_min(v)], r)


KNEE_POINTS = 3
"""A front of fewer points has no knee: every point is an extreme."""


def knee_index(values: np.ndarray | Sequence, directions: Sequence[str]) -> int:
    """Index of the knee of a front: the point farthest from the hyperplane through its extremes.

    Each objective is normalised to [0, 1] over the front (0 = best). With two objectives the
    extremes are (0, 1) and (1, 0) and the plane is the line joining them; the knee is the point
    that bulges farthest towards the ideal corner, i.e. where trading one objective for the other
    stops paying off. When the extremes do not span a plane (fewer distinct points than
    objectives) the plane x1 + ... + xd = 1 is used. Ties, and fronts of one or two points, go to
    the better first objective.
    """
    v = minimization(values, directions)
    if len(v) == 0:
        raise ValueError("empty front")
    if len(v) < KNEE_POINTS:  # no knee: the better first objective
        return int(np.argmin(v[:, 0]))
    lo, hi = v.min(axis=0), v.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    x = (v - lo) / span
    extremes = np.array([x[np.lexsort((x.sum(axis=1), x[:, j]))[0]] for j in range(x.shape[1])])
    try:
        w = np.linalg.solve(extremes, np.ones(x.shape[1]))
    except np.linalg.LinAlgError:
        w = np.ones(x.shape[1])
    if not np.all(np.isfinite(w)) or np.any(w <= 0):
        w = np.ones(x.shape[1])
    dist = (1.0 - x @ w) / np.linalg.norm(w)
    order = np.lexsort((x[:, 0], -np.round(dist, 12)))
    return int(order[0])


# -- studies ---------------------------------------------------------------------------------


@dataclass
class Front:
    """The Pareto front of a study's completed trials for some objectives."""

    objectives: tuple[str, ...]
    directions: tuple[str, ...]
    reference: dict[str, float]  # raw units (FLOPs, params, accuracy fraction)
    derived: tuple[str, ...]  # objectives whose reference value was derived, not stored
    members: pd.DataFrame  # front rows, sorted by the first objective (best first)
    candidates: int  # completed trials it was chosen from
    hypervolume: float  # in display units, see ``hv_unit``
    knee: int | None  # trial number; None for a front of fewer than KNEE_POINTS members, which has none
    notes: list[str] = field(default_factory=list)

    @property
    def has_knee(self) -> bool:
        """Whether the front is large enough to have a knee (:attr:`knee` is not None)."""
        return self.knee is not None

    @property
    def hv_unit(self) -> str:
        return " x ".join(OBJECTIVES[o].unit or o for o in self.objectives)


def _values(frame: pd.DataFrame, objectives: Sequence[str]) -> np.ndarray:
    return frame[list(objectives)].to_numpy(dtype=float)


def _scale(objectives: Sequence[str]) -> np.ndarray:
    return np.array([OBJECTIVES[o].scale for o in objectives])


def _measured(study: Study, objectives: Sequence[str]) -> pd.DataFrame:
    """Completed trials with every objective measured; an objective nobody measured is an error."""
    done = study.completed
    for o in objectives:
        if len(done) and done[o].isna().all():
            raise RKSearchError(f"no completed trial measured {o!r}", source=study.source, field="--objectives")
    return done.dropna(subset=list(objectives))


def reference_point(study: Study, objectives: Sequence[str] | None = None) -> tuple[dict[str, float], tuple[str, ...]]:
    """The study's stored reference point, completed where it lacks an objective.

    A derived value is 0 for a maximised objective (accuracy and throughput are never
    negative) and 1.1 x the worst completed value for a minimised one. Returns the point and
    the objectives that were derived.
    """
    objectives = tuple(objectives or study.objectives)
    ref, derived = {}, []
    done = _measured(study, objectives)
    for o in objectives:
        if o in study.reference_point:
            ref[o] = study.reference_point[o]
            continue
        derived.append(o)
        if OBJECTIVES[o].direction == "maximize":
            ref[o] = 0.0
        else:
            ref[o] = 1.1 * float(done[o].max()) if len(done) else float("nan")
    return ref, tuple(derived)


def common_reference(studies: Sequence[Study], objectives: Sequence[str]) -> dict[str, float]:
    """One reference point for comparing studies: the worst of their own, per objective."""
    refs = [reference_point(s, objectives)[0] for s in studies]
    worst = {}
    for o in objectives:
        vals = [r[o] for r in refs if not np.isnan(r[o])]
        pick = min if OBJECTIVES[o].direction == "maximize" else max
        worst[o] = pick(vals) if vals else float("nan")
    return worst


def _hv(frame: pd.DataFrame, objectives: Sequence[str], ref: dict[str, float]) -> float:
    r = np.array([ref[o] for o in objectives])
    if len(frame) == 0 or np.isnan(r).any():
        return 0.0
    s = _scale(objectives)
    directions = [OBJECTIVES[o].direction for o in objectives]
    return hypervolume(_values(frame, objectives) * s, r * s, directions)


def _given_reference(study: Study, objectives: Sequence[str], reference: dict[str, float]) -> dict[str, float]:
    missing = [o for o in objectives if o not in reference]
    if missing:
        raise RKSearchError(f"no value for {', '.join(missing)}: give one per objective ({', '.join(objectives)})",
                            source=study.source, field="reference")
    return {o: reference[o] for o in objectives}


def front(
    study: Study,
    objectives: Sequence[str] | str | None = None,
    *,
    candidates: pd.DataFrame | None = None,
    reference: dict[str, float] | None = None,
) -> Front:
    """Pareto front, hypervolume and knee of ``candidates`` (default: all completed trials)."""
    objectives = parse_objectives(objectives) if objectives is not None else study.objectives
    directions = tuple(OBJECTIVES[o].direction for o in objectives)
    ref, derived = reference_point(study, objectives)
    if reference is not None:
        ref, derived = _given_reference(study, objectives, reference), ()
    pool = _measured(study, objectives) if candidates is None else candidates.dropna(subset=list(objectives))
    members = pool[pareto_mask(_values(pool, objectives), directions)] if len(pool) else pool
    first = OBJECTIVES[objectives[0]]
    members = members.sort_values([objectives[0], "number"], ascending=[first.direction == "minimize", True])
    knee = None
    if len(members) >= KNEE_POINTS:  # the one rule: rksearch pareto stars it, export --pick knee takes it
        knee = int(members["number"].iloc[knee_index(_values(members, objectives), directions)])
    notes = []
    if derived:
        notes.append(
            "reference point derived for " + ", ".join(derived)
            + " (the study stores none): 0 for a maximised objective, 1.1 x the worst completed value for a minimised one"
        )
    return Front(objectives, directions, ref, derived, members, len(pool), _hv(members, objectives, ref), knee, notes)


def hypervolume_history(study: Study, objectives: Sequence[str] | str | None = None,
                        reference: dict[str, float] | None = None) -> pd.DataFrame:
    """Hypervolume of the completed searched trials numbered <= n, for every searched trial number n.

    Columns ``number``, ``state``, ``hypervolume`` (display units, as :attr:`Front.hv_unit`) and
    ``cost``: the training seconds of trials 0..n (a replayed search's simulated seconds, the clock
    a tabulated benchmark compares searches by).
    """
    objectives = parse_objectives(objectives) if objectives is not None else study.objectives
    directions = [OBJECTIVES[o].direction for o in objectives]
    ref = _given_reference(study, objectives, reference) if reference is not None else reference_point(study, objectives)[0]
    r = np.array([ref[o] for o in objectives]) * _scale(objectives)
    usable = ~np.isnan(r).any()
    done = set(_measured(study, objectives)["number"])
    trials = study.trials[study.trials["kind"] == "search"].sort_values("number")  # baselines: never on the front
    pts = np.empty((0, len(objectives)))
    hv, cost, out = 0.0, 0.0, []
    for _, row in trials.iterrows():
        cost += float(row["seconds"]) if pd.notna(row["seconds"]) else 0.0
        if usable and row["number"] in done:
            p = row[list(objectives)].to_numpy(dtype=float) * _scale(objectives)
            pm, cur = minimization(p, directions), minimization(pts, directions)
            if not np.any(np.all(cur <= pm, axis=1)):  # a point already covered changes nothing
                pts = np.vstack([pts, p])
                pts = pts[pareto_mask(pts, directions)]
                hv = hypervolume(pts, r, directions)
        out.append((int(row["number"]), row["state"], hv, cost))
    return pd.DataFrame(out, columns=["number", "state", "hypervolume", "cost"])


def compare(studies: Sequence[Study], objectives: Sequence[str] | str | None = None,
            reference: dict[str, float] | None = None) -> pd.DataFrame:
    """One row a study: trials, front size, hypervolume against one shared reference point, best values."""
    objectives = parse_objectives(objectives) if objectives is not None else studies[0].objectives
    ref = reference or common_reference(studies, objectives)
    rows = []
    for s in studies:
        f = front(s, objectives, reference=ref)
        row = {"study": s.name, "trials": len(s.trials), "completed": f.candidates, "front": len(f.members),
               "hypervolume": f.hypervolume, "knee": f.knee}
        for o in objectives:
            best = f.members[o].max() if OBJECTIVES[o].direction == "maximize" else f.members[o].min()
            row[f"best_{o}"] = best
        rows.append(row)
    return pd.DataFrame(rows)
