"""Planning a calibration before anything is written: budgets, options, and every (spec, budget, seed) run."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import optuna
from optuna.trial import TrialState

from rksearch.arch.rknet import RKNetSpec
from rksearch.core.errors import RKSearchError
from rksearch.core.files import unwritable
from rksearch.proxies.fidelity import BudgetFidelity, ScoreFidelity, as_dict, finite
from rksearch.proxies.prescreen import proxy_errors
from rksearch.search.preflight import PROXY_HOW
from rksearch.space.search_space import SearchSpace
from rksearch.training.proxy import ProxyConfig

DEFAULT_BUDGETS = "1,2,4,8,16"
MIN_SAMPLE = 4  # below this a rank correlation takes a handful of values and says little
FIGURE, REPORT = "calibration.html", "calibration.json"


class CalibrationFailed(RKSearchError):
    """Too few runs succeeded to compare rankings."""

    exit_code = 1


@dataclass(frozen=True)
class Budget:
    epochs: int
    fraction: float = 1.0

    @property
    def label(self) -> str:
        return str(self.epochs) if self.fraction == 1 else f"{self.epochs}x{self.fraction:g}"

    @property
    def cost(self) -> float:
        return self.epochs * self.fraction


def parse_budgets(text: str, source: str | Path | None = None) -> list[Budget]:
    """``"1,2,4,8"`` or ``"4x0.25,4,16"`` (epochs x data fraction), sorted by cost; the largest unique."""

    def fail(message: str) -> RKSearchError:
        return RKSearchError(message, source=source, field="--budgets")

    budgets = []
    for token in (t.strip() for t in text.split(",")):
        epochs, _, fraction = token.partition("x")
        try:
            budget = Budget(int(epochs), float(fraction) if fraction else 1.0)
        except ValueError:
            raise fail(f"{token!r} is not a budget: epochs (4) or epochs x data fraction (4x0.5)") from None
        if budget.epochs < 1 or not 0 < budget.fraction <= 1:
            raise fail(f"{token!r}: epochs must be >= 1 and the data fraction in (0, 1]")
        if budget in budgets:
            raise fail(f"{budget.label} is listed twice")
        budgets.append(budget)
    if len(budgets) < 2:
        raise fail("give at least two budgets: every budget's ranking is compared with the largest one's")
    budgets.sort(key=lambda b: b.cost)
    if budgets[-1].cost == budgets[-2].cost:
        raise fail(f"{budgets[-2].label} and {budgets[-1].label} cost the same: the largest budget (the reference) must be unique")
    return budgets


@dataclass(frozen=True)
class Job:
    """One run: spec ``index`` at ``budget`` with ``proxy`` (its epochs, data and seed)."""

    index: int
    budget: Budget
    seed: int
    proxy: ProxyConfig
    key: str


@dataclass
class Calibration:
    """The report: every budget and score against the reference, and the recommendation."""

    space: str
    study_dir: Path
    specs: list[str]
    dropped: list[str]
    seeds: list[int]
    threshold: float
    top_k: int
    reference: str
    budgets: list[BudgetFidelity]
    scores: list[ScoreFidelity]
    recommended: Optional[str]
    warnings: list[str] = field(default_factory=list)
    wrote: Optional[Path] = None
    runs: int = 0  # runs the report rests on (specs x budgets x seeds)
    reused: int = 0  # of those, finished by an earlier calibration in the folder, not trained again

    def budget(self, label: str) -> BudgetFidelity:
        return next(b for b in self.budgets if b.budget == label)

    def to_dict(self) -> dict[str, Any]:
        return finite({
            "space": self.space, "study_dir": str(self.study_dir), "specs": self.specs, "dropped": self.dropped,
            "seeds": self.seeds, "threshold": self.threshold, "top_k": self.top_k, "reference": self.reference,
            "budgets": [as_dict(b) for b in self.budgets], "scores": [as_dict(s) for s in self.scores],
            "recommended": self.recommended, "warnings": self.warnings,
            "wrote": str(self.wrote) if self.wrote else None, "runs": self.runs, "reused": self.reused,
        })


# -- planning (every check before anything is written) ------------------------------------------

def check_options(space: SearchSpace, sample: int, seeds: int, threshold: float, top_k: Optional[int],
                   write_space: Optional[Path]) -> int:
    def fail(name: str, message: str) -> RKSearchError:
        return RKSearchError(message, source=space.source, field=name)

    if sample < MIN_SAMPLE:
        raise fail("--sample", f"{sample} specs are too few to compare rankings; sample at least {MIN_SAMPLE}")
    if seeds < 1:
        raise fail("--seeds", f"must be at least 1, got {seeds}")
    if not -1 <= threshold <= 1:
        raise fail("--threshold", f"a Kendall tau lies in [-1, 1], got {threshold:g}")
    k = top_k if top_k is not None else max(2, sample // 4)
    if not 1 <= k <= sample:
        raise fail("--top-k", f"must be in 1..{sample} (the sampled specs), got {k}")
    if write_space is not None:
        if space.source is None:
            raise fail("--write-space", "the space was not read from a file, so there is nothing to copy")
        if write_space.resolve() == space.source.resolve():
            raise fail("--write-space", f"{write_space} is the input space: write the calibrated copy elsewhere")
        why = unwritable(write_space)  # before the training, not after it
        if why:
            raise fail("--write-space", f"{write_space}: {why}")
    return k


def _train_images(space: SearchSpace, specs: list[RKNetSpec]) -> int:
    """Training images the proxy reads; checks the proxy's data and the specs' fit on it first."""
    from rksearch.data import load_dataset, split_dataset
    from rksearch.data.facts import check_fits

    p = space.proxy
    with proxy_errors(space):
        splits = split_dataset(load_dataset(p.dataset, p.root), val_size=p.val_size, train_subset=p.train_subset,
                               val_subset=p.val_subset, test_subset=None, seed=p.seed)
    try:
        check_fits(specs[0], splits.dataset)
    except RKSearchError as e:
        raise RKSearchError(e.message, source=space.source, field=f"network.{e.field}") from None
    return len(splits.train)


def plan(space: SearchSpace, specs: list[RKNetSpec], budgets: list[Budget], seeds: int) -> list[Job]:
    """Every (spec, budget, seed) run, the costliest first (concurrent slots finish together)."""
    images = _train_images(space, specs)
    jobs = []
    for budget in sorted(budgets, key=lambda b: -b.cost):
        for i, spec in enumerate(specs):
            for s in range(seeds):
                update: dict[str, Any] = {"epochs": budget.epochs, "seed": space.proxy.seed + s}
                if budget.fraction < 1:
                    update["train_subset"] = max(1, round(images * budget.fraction))
                proxy = space.proxy.model_copy(update=update)
                key = json.dumps({"spec": spec.to_json(), "proxy": proxy.model_dump()}, sort_keys=True)
                jobs.append(Job(i, budget, space.proxy.seed + s, proxy, job_identity(key)))
    return jobs


def job_identity(key: str) -> str:
    """What makes two runs the same measurement: the spec and the proxy fields that change what
    is computed. How a run trains (device, compile, CUDA graphs, ...) and fields left at their
    defaults are left out, so a run recorded before a proxy field existed, or on another machine,
    is still reused. Recorded keys are read through this too."""
    job = json.loads(key)
    proxy = {k: v for k, v in job.get("proxy", {}).items() if k not in PROXY_HOW
             and not (k in ProxyConfig.model_fields and v == ProxyConfig.model_fields[k].default)}
    return json.dumps({**job, "proxy": proxy}, sort_keys=True)


def done_runs(study: optuna.Study) -> dict[str, optuna.trial.FrozenTrial]:
    """The completed runs of the calibration study by their job identity."""
    return {job_identity(t.user_attrs["job"]): t
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if "job" in t.user_attrs}
