"""The Ray Tune searcher over an Optuna study: Optuna proposes the architectures, Ray Tune trains them.

Optuna's study is the single source of truth. :class:`RKSearcher` asks it for trials through the
space's define-by-run function and adds what a NAS needs on top: candidates that break a
constraint or repeat a trained spec are settled at sampling time, before any training, and every
trial lands with its outcome, spec and measurements as user attributes (trials stopped early by
ASHA become PRUNED, never COMPLETE).
"""
from __future__ import annotations

import math
import random
import time
from pathlib import Path
from typing import Any, Optional

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from rksearch.arch.resolve import AnySpec
from rksearch.core.objectives import OBJECTIVES
from rksearch.core.secrets import masked
from rksearch.models.registry import count
from rksearch.search.latency import SearchLatency, search_latency
from rksearch.search.liveness import holds
from rksearch.search.records import DONE, DUPLICATE, FAILED, PRUNED, REJECTED, TRAINED, SearchAborted, Tally, spec_key
from rksearch.search.samplers import make_sampler
from rksearch.search.trial import injected_fault
from rksearch.space.parse import Baseline
from rksearch.space.search_space import SearchSpace
from rksearch.storage.baseline_study import (BASELINE, SEARCH, baselines_name, baselines_study, is_baseline,
                                             start_baseline_trial, trained_baselines)

MAX_PROPOSALS = 200  # consecutive rejected proposals before a space counts as exhausted
REPEATS_BEFORE_RANDOM = 2  # the sampler's repeats of trained specs in a row before a random untrained spec is asked
RANDOM_DRAWS = 1000  # draws for an untrained feasible spec before the space counts as exhausted
DRAWS_KEPT = 100_000  # drawn params whose spec key (None: infeasible) a searcher remembers


def _trials_in(storage: optuna.storages.BaseStorage, name: str) -> int:
    try:
        return len(storage.get_all_trials(storage.get_study_id_from_name(name), deepcopy=False))
    except KeyError:  # a new study
        return 0


class RKSearcher(Searcher):
    """Ray Tune's searcher over an Optuna study, through Optuna's ask-and-tell API.

    Each Tune trial is an Optuna trial asked from the study and filled by the space's
    define-by-run program. Candidates that break a constraint or repeat a trained spec are settled
    at sampling time (FAIL, outcome rejected/duplicate), never trained, and every trial lands with
    its outcome, spec and measurements as user attributes. The space's baselines not yet trained
    come first, each a trial of the baselines' own study (:mod:`rksearch.storage.baseline_study`), which
    no sampler sees.
    """

    def __init__(self, space: SearchSpace, storage: optuna.storages.BaseStorage, driver: str,
                 target: int | None = None, latency: SearchLatency | None = None):
        super().__init__(metric=list(space.objectives),
                         mode=[OBJECTIVES[o].sense for o in space.objectives])
        self.space = space
        self.driver = driver
        self.target = target  # searched trials the study should have done: other drivers' count too
        self.tally = Tally()
        self._trained: dict[str, int] = {}  # spec key -> trial number, of trials trained or training
        self._baselines_taken: dict[str, int] = {}  # spec key -> -1 if a baseline is trained, else the lowest
        # number of its trials in training by a live driver (of two drivers claiming it at once, the lower trains)
        self._live: dict[str, optuna.Trial] = {}  # Tune trial id -> the Optuna trial it runs
        self._drawn: dict[tuple, str | None] = {}  # _enqueue_untrained's draws: params -> spec key, None if infeasible
        self.replay: str | None = None  # a table's path: trials replay it instead of training (rksearch.search.replay)
        # where latencies come from (rksearch.search.latency): measured or looked up here, at sampling time
        self.latency = latency if latency is not None or not space.needs_latency else search_latency(space)
        root = space.proxy.root  # trials run in their own folders: hand them an absolute path
        self.proxy = space.proxy.model_copy(update={"root": str(Path(root).resolve()) if root else None}).model_dump()
        directions = space.directions
        self.study = optuna.create_study(study_name=space.name, storage=storage, directions=directions,
                                         sampler=make_sampler(space, _trials_in(storage, space.name)),
                                         load_if_exists=True)
        self.baselines_study: optuna.Study | None = None
        if space.baselines or _trials_in(storage, baselines_name(space.name)):
            self.baselines_study = baselines_study(storage, space.name, directions)
        done = trained_baselines(self._baseline_trials(), DONE)
        # the baselines this run trains, in the space's order, each tried once per run
        self.pending_baselines = [b for b in space.baselines if spec_key(b.spec) not in done]

    def set_search_properties(self, metric: Any, mode: Any, config: dict, **spec: Any) -> bool:
        """The space is the define-by-run program given at construction; Tune's config stays empty."""
        return True

    def __getstate__(self) -> dict:
        """What Tune pickles of the searcher (its ``tuner.pkl``, never read back here): not the
        studies, whose storage may hold a password and whose sampler may not pickle (Optuna 5.1's
        NSGA-II holds a lock); the study in the storage is the searcher's state."""
        import dataclasses

        # the file's storage URL may hold a password, and so may a --set storage=URL
        space = dataclasses.replace(self.space, storage=None, overrides=masked(self.space.overrides))
        return {**self.__dict__, "study": None, "baselines_study": None, "_live": {}, "_drawn": {}, "space": space}

    def save(self, checkpoint_path: str) -> None:
        """Nothing to save: the study in the storage is the searcher's whole state (and no storage
        URL, which may hold a password, is written into Tune's checkpoint folder)."""

    def restore(self, checkpoint_path: str) -> None:
        """See :meth:`save`."""

    @property
    def studies(self) -> list[optuna.Study]:
        """The search's study, and the baselines' study where there is one."""
        return [self.study] + ([self.baselines_study] if self.baselines_study is not None else [])

    def _baseline_trials(self) -> list[optuna.trial.FrozenTrial]:
        return self.baselines_study.get_trials(deepcopy=False) if self.baselines_study is not None else []

    def _sync(self, besides: tuple[str, int] | None = None) -> int:
        """Re-read the studies, which other drivers may share, so that no driver trains a spec twice:
        the specs done or in training by a live driver (searched ones in ``_trained``, baselines in
        ``_baselines_taken``; ``besides``, a (kind, trial number), left out). Returns the searched
        trials done or in training here, which the target counts."""
        self._trained, self._baselines_taken, counted = {}, {}, 0
        for kind, trials in ((SEARCH, self.study.get_trials(deepcopy=False)), (BASELINE, self._baseline_trials())):
            for t in trials:
                a = t.user_attrs
                if not a.get("spec_key") or (kind, t.number) == besides:
                    continue
                done = a.get("outcome") in DONE
                training = t.state == TrialState.RUNNING and "outcome" not in a and holds(t)
                if kind == BASELINE:
                    if done or training:
                        was = self._baselines_taken.get(a["spec_key"], t.number)
                        self._baselines_taken[a["spec_key"]] = -1 if done else min(was, t.number)
                    continue
                if done or training:
                    self._trained.setdefault(a["spec_key"], t.number)
                counted += done or (training and a.get("driver") == self.driver)
        return counted

    def suggest(self, trial_id: str) -> Optional[dict]:
        """The next trial's config (a baseline first, then a proposal the space accepts), timed as the sampler's."""
        start = time.perf_counter()
        config = self._suggest(trial_id)
        self.tally.account.proposed(trial_id if isinstance(config, dict) else None, time.perf_counter() - start)
        return config

    def _suggest(self, trial_id: str) -> Optional[dict]:
        counted = self._sync()
        while self.pending_baselines:
            config = self._suggest_baseline(trial_id, self.pending_baselines.pop(0))
            if config is not None:
                return config
        if counted >= (self.target if self.target is not None else math.inf):
            return Searcher.FINISHED
        repeats = 0
        for _ in range(MAX_PROPOSALS):
            if repeats >= REPEATS_BEFORE_RANDOM:
                self._enqueue_untrained(repeats)
            ot_trial = self.study.ask()
            ot_trial.set_user_attr("driver", self.driver)  # at once: another driver starting fails unclaimed trials
            spec = self.space.suggest(ot_trial)
            c = count(spec)
            key = spec_key(spec)
            for k, v in {"spec": spec.to_yaml(), "spec_key": key, "name": spec.name, "flops": c.flops,
                         "params": c.params}.items():
                ot_trial.set_user_attr(k, v)
            violations = self.space.violations(spec)
            for name, v in zip(_bounded(self.space), violations):
                ot_trial.set_constraint(name, v)
            reason = None
            if any(v > 0 for v in violations):
                reason, outcome = f"breaks a constraint ({_describe_violation(self.space, c)})", REJECTED
            elif self.latency is not None:  # counted constraints first: a breach of one is never measured
                reason = self._latency(ot_trial, spec)
                outcome = REJECTED
            if reason is None:
                if key not in self._trained:  # look again, now that this trial claims the spec: of two
                    self._sync(besides=(SEARCH, ot_trial.number))  # drivers proposing it at once, one sees the other
                if key in self._trained:
                    reason, outcome = f"same spec as trial {self._trained[key]}", DUPLICATE
                    ot_trial.set_user_attr("duplicate_of", self._trained[key])
                    repeats += 1
            if reason is None:
                self._live[trial_id] = ot_trial
                self.tally.started(trial_id)
                config = self._config(spec, ot_trial.number, **_measured(ot_trial))
                if self.replay is not None:  # the spec's table seed is drawn from the search's seed and the trial
                    config.update(replay=self.replay, spec_name=spec.name, counts=(c.flops, c.params),
                                  replay_draw=f"{self.space.search.seed}:{ot_trial.number}")
                return config
            ot_trial.set_user_attr("outcome", outcome)
            ot_trial.set_user_attr("reason", reason)
            self.study.tell(ot_trial, state=TrialState.FAIL)
            self.tally.skipped += 1
        raise SearchAborted(
            f"{MAX_PROPOSALS} proposals in a row broke a constraint or repeated a trained spec: the space is "
            "exhausted or its constraints leave (almost) nothing; loosen constraints or enlarge the space",
            source=self.space.source, field="constraints",
        )

    def _latency(self, ot_trial: optuna.Trial, spec: AnySpec) -> str | None:
        """Record the candidate's latency on the target device (looked up, or measured under the
        device's lock), and its constraint; why it is rejected, or None."""
        lat = self.latency
        ms = lat.latency_ms(spec)
        if ms is None:
            return lat.lacking()
        ot_trial.set_user_attr("latency", ms)
        v = lat.violation(ms)
        if v is None:
            return None
        ot_trial.set_constraint("latency", v)
        return f"breaks a constraint ({ms:.3g} ms > max_latency_ms {lat.max_ms:.3g} ms)" if v > 0 else None

    def _enqueue_untrained(self, repeats: int) -> None:
        """Queue a uniformly drawn feasible spec no trial has trained: a model-based sampler on a small
        space, told nothing by the duplicates it proposes (they end FAIL), would propose the same
        trained spec again and again until the search gave up. The sampler learns from the result
        like from its own proposals (Optuna's enqueued trials)."""
        if self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            return  # a queue (grid, pre-screened, another driver's) comes first; ask() pops the oldest
        seed = self.space.search.seed
        rng = random.Random(f"{seed}:{len(self._trained)}:{repeats}" if seed is not None else None)
        for _ in range(RANDOM_DRAWS):
            params = self.space.sample_params(rng)
            drawn = tuple(params.items())
            if drawn in self._drawn:  # a nearly exhausted small space is drawn again and again
                key = self._drawn[drawn]
            else:
                spec = self.space.spec_from_params(params)
                key = spec_key(spec) if self.space.feasible(spec) else None
                if len(self._drawn) < DRAWS_KEPT:
                    self._drawn[drawn] = key
            if key is not None and key not in self._trained:
                self.study.enqueue_trial(params, skip_if_exists=True, user_attrs={
                    "proposed_by": f"random: the sampler repeated trained specs {repeats} times"})
                return

    def _suggest_baseline(self, trial_id: str, baseline: Baseline) -> dict | None:
        """The baseline's trial; None where another driver sharing the study trains it or has."""
        spec, key = baseline.spec, spec_key(baseline.spec)
        if key in self._baselines_taken:
            return None
        c = count(spec)
        ot_trial = start_baseline_trial(self.baselines_study, {
            "driver": self.driver, BASELINE: baseline.label, "spec": spec.to_yaml(), "spec_key": key,
            "name": baseline.label, "flops": c.flops, "params": c.params})
        self._sync(besides=(BASELINE, ot_trial.number))  # claimed, then looked: as for a searched spec, but
        if self._baselines_taken.get(key, ot_trial.number) < ot_trial.number:  # of two claims the lower one trains
            for k, v in {"outcome": DUPLICATE, "reason": "another driver trains this baseline"}.items():
                ot_trial.set_user_attr(k, v)
            self.baselines_study.tell(ot_trial, state=TrialState.FAIL)
            return None
        ms = self.latency.latency_ms(spec) if self.latency is not None else None
        if self.latency is not None and ms is None:  # measured like a candidate, never bounded by max_latency_ms
            for k, v in {"outcome": REJECTED, "reason": self.latency.lacking()}.items():
                ot_trial.set_user_attr(k, v)
            self.baselines_study.tell(ot_trial, state=TrialState.FAIL)
            return None
        if ms is not None:
            ot_trial.set_user_attr("latency", ms)
        self._live[trial_id] = ot_trial
        self.tally.started(trial_id, baseline=True)
        return self._config(spec, f"b{ot_trial.number}", **{BASELINE: baseline.label}, **_measured(ot_trial))

    def _config(self, spec: AnySpec, trial_number: int | str, **extra: Any) -> dict:
        """A Tune trial's config: what :func:`rksearch.search.trial.run_trial` trains, and the fault
        a drill injects into it (read here, where the environment is the user's)."""
        return {"spec": spec.to_dict(), "trial_number": trial_number, "proxy": self.proxy,
                "objectives": list(self.space.objectives), "fault": injected_fault(trial_number), **extra}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Multi-objective Optuna takes no intermediate values; the live display shows the epoch."""
        epoch = result.get("epoch")
        if trial_id in self.tally.epochs and isinstance(epoch, (int, float)):
            self.tally.epochs[trial_id] = int(epoch)

    def on_trial_complete(self, trial_id: str, result: Optional[dict] = None, error: bool = False) -> None:
        ot_trial = self._live.pop(trial_id, None)
        if ot_trial is None:
            return
        result = result or {}
        baseline = is_baseline(ot_trial.user_attrs)
        self.tally.ended(trial_id, baseline, result)
        attrs = {k: result[k] for k in _RESULT_ATTRS if k in result and result[k] is not None}
        attrs["ray_trial_id"] = trial_id
        values = [result.get(o) for o in self.space.objectives]
        if error or result.get("failed") or not result:
            reason = result.get("fail_reason") or "the trial's worker crashed (see the Ray logs)"
            state, outcome = TrialState.FAIL, FAILED
            attrs["fail_reason"] = reason
            self.tally.failed += 1
            self.tally.reasons.append(f"trial {ot_trial.number}: {reason}")
        elif not result.get("final"):
            state, outcome = TrialState.PRUNED, PRUNED
            self.tally.pruned += 1
        elif any(v is None or not math.isfinite(v) for v in values):
            state, outcome = TrialState.FAIL, FAILED
            attrs["fail_reason"] = f"non-finite objective values {values}"
            self.tally.failed += 1
        else:
            state, outcome = TrialState.COMPLETE, TRAINED
            if baseline:
                self.tally.baselines += 1
            else:
                self.tally.trained += 1
        for k, v in {**attrs, "outcome": outcome}.items():
            ot_trial.set_user_attr(k, v)
        ot_trial.study.tell(ot_trial, values if state == TrialState.COMPLETE else None, state=state)


_RESULT_ATTRS = ("accuracy", "epochs", "epoch", "seconds", "train_seconds", "images_per_s", "trained_flops",
                 "trained_params", "node", "hostname", "throughput", "loss", "table_seed")


def _measured(ot_trial: optuna.Trial) -> dict[str, float]:
    """What the trial reports with every result besides its training: the latency measured at
    sampling time (Tune wants every objective in every result)."""
    return {"latency": ot_trial.user_attrs["latency"]} if "latency" in ot_trial.user_attrs else {}


def _bounded(space: SearchSpace) -> list[str]:
    """The counted constraints the space sets, in the order of :meth:`SearchSpace.violations`."""
    return [n for n, limit in (("flops", space.constraints.max_flops), ("params", space.constraints.max_params))
            if limit is not None]


def _describe_violation(space: SearchSpace, c) -> str:
    parts = []
    if space.constraints.max_flops is not None and c.flops > space.constraints.max_flops:
        parts.append(f"{c.flops / 1e9:.3g} GFLOPs > max_flops {space.constraints.max_flops / 1e9:.3g} G")
    if space.constraints.max_params is not None and c.params > space.constraints.max_params:
        parts.append(f"{c.params / 1e6:.3g} M params > max_params {space.constraints.max_params / 1e6:.3g} M")
    return ", ".join(parts)
