"""Choosing one trial of a study and writing its full spec for ``rksearch train``."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from rksearch.storage.baseline_study import BASELINE, SEARCH
from rksearch.arch.resolve import AnySpec
from rksearch.core.errors import RKSearchError
from rksearch.analysis.pareto import front
from rksearch.arch.resolve import save_spec
from rksearch.analysis.study import Study, load_study

PICKS = ("knee", "best-accuracy", "min-flops", "trial:N", "baseline:N")
_AMOUNT = re.compile(r"^\s*((?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)\s*([kKmMgGtT]?)\s*$")
_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}


def parse_amount(text: str | float | None, what: str) -> float | None:
    """``2e8``, ``200M``, ``0.2G`` -> 2e8 (suffixes k, M, G, T)."""
    if text is None or isinstance(text, (int, float)):
        return text
    m = _AMOUNT.match(text.strip().removeprefix("-"))
    if not m:
        raise RKSearchError(f"expected a number such as 2e8, 200M or 0.2G, got {text!r}", field=what)
    if text.strip().startswith("-"):
        raise RKSearchError(f"must be positive, got {text}", field=what)
    return float(m[1]) * _SUFFIX[m[2].lower()]


@dataclass(frozen=True)
class Pick:
    """One trial chosen from a study, and why."""

    study: Study
    number: int  # in the search's study, or for a baseline (``row["kind"]``) in the baselines' study
    spec: AnySpec
    row: pd.Series
    reason: str

    def header(self) -> str:
        """The comment block an exported spec starts with."""
        r, s = self.row, self.study
        proxy = ", ".join(f"{k} {s.proxy[k]}" for k in ("dataset", "epochs", "width") if k in s.proxy)
        n = int(r["epochs"]) if pd.notna(r.get("epochs")) else None
        epochs = f" after {n} epoch{'s' * (n != 1)}" if n is not None else ""
        return (
            f"exported by rksearch export from study {s.name} ({s.path}), {self.what} ({r['state'].lower()})\n"
            f"picked: {self.reason}\n"
            f"proxy accuracy {_fmt(r['accuracy'], '.4f')}{epochs}" + (f" (proxy: {proxy})" if proxy else "") + "\n"
            f"full spec: {_fmt(r['flops'] / 1e9, '.4f')} GFLOPs, {_fmt(r['params'] / 1e6, '.4f')} M params\n"
            f"name: {self.spec.name}"
        )


    @property
    def what(self) -> str:
        """``trial N`` or ``baseline N``."""
        return f"{'baseline' if self.row['kind'] == BASELINE else 'trial'} {self.number}"


def _fmt(v: float, f: str) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, f)


def _trial_number(how: str) -> tuple[str, int] | None:
    """(kind, N) of ``trial:N`` (a searched trial) or ``baseline:N``; None for the other picks."""
    kind, sep, n = how.partition(":")
    if not sep or kind not in ("trial", BASELINE):
        if how not in PICKS[:3]:
            raise RKSearchError(f"unknown pick {how!r}; expected one of {', '.join(PICKS)}", field="--pick")
        return None
    try:
        return (SEARCH if kind == "trial" else BASELINE), int(n)
    except ValueError:
        raise RKSearchError(f"expected {kind}:N with an integer N, got {how!r}", field="--pick") from None


def _limits(max_flops: float | str | None, max_params: float | str | None) -> list[tuple[str, float, str]]:
    out = []
    for col, lim, flag in (("flops", max_flops, "--max-flops"), ("params", max_params, "--max-params")):
        lim = parse_amount(lim, flag)
        if lim is not None:
            if not lim > 0:
                raise RKSearchError(f"must be positive, got {lim:g}", field=flag)
            out.append((col, lim, flag))
    return out


def pick(study: Study, how: str = "knee", *, max_flops: float | str | None = None,
         max_params: float | str | None = None) -> Pick:
    """The trial ``how`` names: ``knee``, ``best-accuracy``, ``min-flops``, ``trial:N`` or ``baseline:N``.

    ``max_flops`` / ``max_params`` bound the full spec's counts. Only COMPLETE searched trials are
    candidates for the first three (a baseline is not what the search found); ``trial:N`` may name
    a pruned trial (its accuracy is partial), ``baseline:N`` a baseline (numbered in its own study).
    """
    number = _trial_number(how)
    limits = _limits(max_flops, max_params)
    if number is not None:
        return _explicit(study, *number, limits)
    done = study.completed
    pool = done
    for col, lim, _ in limits:
        pool = pool[pool[col] <= lim]
    bound = " and ".join(f"{col} <= {lim:.4g}" for col, lim, _ in limits)
    among = (f"{len(pool)} of {len(done)} completed trials with {bound}" if bound else
             f"the {len(done)} completed trial{'s' * (len(done) != 1)}")
    if len(done) == 0:
        raise RKSearchError("no completed trial yet; wait for the search to complete some", source=study.path,
                            field="--pick")
    if len(pool) == 0:
        flags = ", ".join(f for _, _, f in limits)
        raise RKSearchError(f"no feasible trial: {among}; loosen {flags}", source=study.path, field="--pick")
    if how == "knee":
        f = front(study, candidates=pool)
        if f.members.empty:
            raise RKSearchError(f"no feasible trial measured {', '.join(study.objectives)}", source=study.path, field="--pick")
        objs, n = "/".join(study.objectives), len(f.members)
        if f.knee is None:  # members sorted best first objective first
            reason = (f"the {objs} front of {among} has {n} member{'s' * (n > 1)}, too few for a knee: "
                      f"its best {study.objectives[0]}")
            return _make(study, int(f.members["number"].iloc[0]), reason)
        reason = (f"knee of the {objs} front ({n} members) of {among}: "
                  "largest distance to the line joining the front's extremes, objectives normalised")
        return _make(study, f.knee, reason)
    key, other = ("accuracy", "flops") if how == "best-accuracy" else ("flops", "accuracy")
    pool = pool.dropna(subset=[key])
    if len(pool) == 0:
        raise RKSearchError(f"no completed trial measured {key}", source=study.path, field="--pick")
    ranked = pool.sort_values([key, other, "number"], ascending=[key == "flops", key != "flops", True])
    word = "highest accuracy" if key == "accuracy" else "fewest FLOPs"
    return _make(study, int(ranked["number"].iloc[0]), f"{word} of {among}")


def _explicit(study: Study, kind: str, number: int, limits: list[tuple[str, float, str]]) -> Pick:
    of_kind = study.trials[study.trials["kind"] == kind]
    what = "trial" if kind == SEARCH else BASELINE
    rows = of_kind[of_kind["number"] == number]
    if rows.empty:
        known = f"{what}s are numbered 0..{int(of_kind['number'].max())}" if len(of_kind) else f"the study has no {what}s"
        raise RKSearchError(f"no {what} {number} ({known})", source=study.path, field="--pick")
    row = rows.iloc[0]
    if row["state"] not in ("COMPLETE", "PRUNED"):
        raise RKSearchError(f"{what} {number} is {row['state']}: it has no measured accuracy", source=study.path, field="--pick")
    for col, lim, flag in limits:
        if not row[col] <= lim:
            raise RKSearchError(f"{what} {number} has {col} {row[col]:.4g} > {lim:.4g}", source=study.path, field=flag)
    reason = "asked for by number"
    if kind == BASELINE:
        reason += f"; a baseline ({row['name']}), trained beside the search, not found by it"
    if row["state"] == "PRUNED":
        reason += "; it was PRUNED, so its accuracy comes from a shortened proxy"
    return _make(study, number, reason, kind)


def _make(study: Study, number: int, reason: str, kind: str = SEARCH) -> Pick:
    trials = study.trials[study.trials["kind"] == kind]
    row = trials[trials["number"] == number].iloc[0]
    return Pick(study, number, study.spec(number, kind), row, reason)


def export(study_dir: str | Path, out: str | Path, how: str = "knee", *, max_flops: float | None = None,
           max_params: float | None = None, storage: str | None = None) -> Pick:
    """Pick a trial and write its full spec to ``out`` (atomically, with a provenance header);
    ``storage`` as for :func:`~rksearch.analysis.study.load_study`."""
    out = Path(out)
    if out.is_dir():
        raise RKSearchError("is a directory; give a file name such as best.yaml", source=out, field="-o")
    if not out.parent.is_dir():
        raise RKSearchError("its folder does not exist", source=out, field="-o")
    if out.suffix not in (".yaml", ".yml", ".json"):
        raise RKSearchError("expected a .yaml, .yml or .json file name", source=out, field="-o")
    chosen = pick(load_study(study_dir, storage=storage), how, max_flops=max_flops, max_params=max_params)
    try:
        save_spec(chosen.spec, out, header=chosen.header())
    except OSError as e:
        raise RKSearchError(f"cannot write: {e.strerror or e}", source=out, field="-o") from None
    return chosen
