"""``rksearch calibrate``: which proxy budget ranks a space's architectures like a long training.

N distinct feasible specs of the space are trained at every budget (epochs, or epochs x data
fraction) and seed, through Ray Tune exactly as ``rksearch run`` trains (the same trainable
:func:`rksearch.search.trial.run_trial`, the space's proxy, resources, concurrency and Ray address),
into an Optuna study ``<out>/<name>-calibrate/optuna.db``: one trial per (spec, budget, seed).
Running it again continues: runs already done with the same spec, proxy settings (those that
change what is measured, see :func:`~rksearch.search.calibrate_plan.job_identity`), budget and seed are reused, failed and
missing ones are trained. Each budget is then compared with the
largest one (:mod:`rksearch.proxies.fidelity`), the zero-cost scores beside them.

Design choice: a separate run per budget, not one long run per spec read at intermediate
epochs. The proxy divides the learning rate by 10 at 50 % and 75 % of its epochs (the paper's
schedule), so epoch 4 of a 16-epoch run is still at the full learning rate while a 4-epoch run
has annealed: they are different measurements, and a search with ``proxy.epochs: 4`` runs the
second. Separate runs cost the sum of the budgets instead of the largest one. The intermediate
epochs of the largest budget's runs come for free, so the report shows their fidelity beside
(``nested``): what ASHA's rungs see, and how the two compare per second on the user's own space.
``docs/calibrate.md`` has the measurement on the demo space.
"""
from __future__ import annotations

import dataclasses
import json
import math
import random
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import optuna
import yaml
from optuna.trial import TrialState
from ray.tune import Callback

from rksearch.arch.rknet import RKNetSpec
from rksearch.core.errors import RKSearchError
from rksearch.core.files import write_text
from rksearch.core.stopping import shielded, terminated
from rksearch.core.yamlio import parse_yaml, read_text
from rksearch.proxies.fidelity import (BudgetFidelity, Grid, budget_fidelity, column_means, fidelity_figure, recommend,
                                        score_fidelity)
from rksearch.proxies.prescreen import Scorer, draw_feasible
from rksearch.proxies.zerocost import SCORES, check_names
from rksearch.search.calibrate_plan import (DEFAULT_BUDGETS, FIGURE, REPORT, Budget, Calibration, CalibrationFailed, Job,
                                            check_options, done_runs, parse_budgets, plan)
from rksearch.search.cluster import choose_concurrency, init_ray
from rksearch.search.liveness import driver_id, fail_stale_trials, fail_trial
from rksearch.search.study_dir import prepare_study_dir
from rksearch.search.trial import injected_fault, run_trial
from rksearch.space.search_space import SearchSpace, parse_space
from rksearch.storage.folder import default_storage
from rksearch.storage.open import open_storage

# -- running -----------------------------------------------------------------------------------

def _calibration_trial(config: dict[str, Any], configs: list[dict[str, Any]]) -> None:
    run_trial(configs[config["index"]])


@dataclass
class Progress:
    total: int
    done: int = 0
    failed: int = 0
    reasons: list[str] = field(default_factory=list)


class _Recorder(Callback):
    """Tells each run's Optuna trial its result as soon as Ray reports it, with the accuracy
    after every epoch (``curve``: [accuracy, seconds] per epoch)."""

    def __init__(self, study: optuna.Study, runs: int, on_update: Callable[[Progress], None] | None):
        self.study, self.on_update = study, on_update
        self.trials: dict[int, optuna.Trial] = {}  # asked (RUNNING), not told yet: a stop fails them
        self.curves: dict[int, list[list[float]]] = {}
        self.progress = Progress(runs)

    def __getstate__(self) -> dict:  # Tune pickles its callbacks; the study stays here
        return {}

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        i = trial.config["index"]
        if result.get("failed"):
            self.tell(i, None, result.get("fail_reason") or "failed")
        elif result.get("accuracy") is not None and result.get("epoch"):
            self.curves.setdefault(i, []).append([result["accuracy"], result.get("seconds")])
            if result.get("final"):
                self.tell(i, result)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.tell(trial.config["index"], None, "the trial's worker crashed (see the Ray logs)")

    def tell(self, i: int, result: Optional[dict], reason: str = "") -> None:
        """Record run ``i``'s result (or why it has none); it leaves :attr:`trials` only once told, so
        a stop that interrupts the telling leaves it for the cleanup, never RUNNING."""
        trial = self.trials.get(i)
        if trial is None:
            return
        if result is not None:
            attrs = {k: result[k] for k in ("accuracy", "seconds", "train_seconds", "epochs", "images_per_s",
                                            "trained_flops", "trained_params", "node", "hostname") if k in result}
            for k, v in {**attrs, "curve": self.curves.get(i, [])}.items():
                trial.set_user_attr(k, v)
            self.study.tell(trial, result["accuracy"])
            self.progress.done += 1
        else:
            trial.set_user_attr("fail_reason", reason)
            self.study.tell(trial, state=TrialState.FAIL)
            self.progress.failed += 1
            self.progress.reasons.append(f"trial {trial.number}: {reason}")
        self.trials.pop(i, None)
        if self.on_update:
            self.on_update(self.progress)


def _ask(study: optuna.Study, space: SearchSpace, job: Job, params: dict[str, Any], spec: RKNetSpec,
         scores: dict[str, float], asked: dict[int, optuna.Trial], n: int) -> optuna.Trial:
    """A RUNNING trial with the spec's params (distributions included) and what identifies the run,
    in ``asked[n]`` as soon as it exists (a stop fails what is there)."""
    study.enqueue_trial(params)
    trial = asked[n] = study.ask()
    space.suggest(trial)
    attrs = {"job": job.key, "spec": spec.to_yaml(), "name": spec.name, "budget": job.budget.label,
             "epochs_budget": job.budget.epochs, "fraction": job.budget.fraction, "seed": job.seed,
             "train_subset": job.proxy.train_subset, "driver": driver_id(), "zero_cost": scores}
    for k, v in attrs.items():
        trial.set_user_attr(k, v)
    return trial


def _train(space: SearchSpace, study: optuna.Study, storage: optuna.storages.BaseStorage, jobs: list[Job],
           params: list[dict[str, Any]], specs: list[RKNetSpec], scores: list[dict[str, float]],
           address: str | None, on_update: Callable[[Progress], None] | None) -> None:
    from ray import tune

    recorder = _Recorder(study, len(jobs), on_update)
    first = len(study.get_trials(deepcopy=False))  # the trials this run asks are numbered from here
    reason = "the run ended before this trial reported"
    try:  # from the first ask: a stop while the runs are asked or Ray starts leaves no trial RUNNING
        trials = {n: _ask(study, space, job, params[job.index], specs[job.index], scores[job.index], recorder.trials, n)
                  for n, job in enumerate(jobs)}
        configs = [{"spec": specs[job.index].to_dict(), "proxy": job.proxy.model_dump(), "objectives": ["accuracy"],
                    "trial_number": trials[n].number, "fault": injected_fault(trials[n].number)}
                   for n, job in enumerate(jobs)]
        init_ray(address or space.search.address, space)
        space, _ = choose_concurrency(space)  # auto: as many runs at once as the cluster holds
        resources = {"cpu": space.search.resources.cpu, "gpu": space.search.resources.gpu}
        with tempfile.TemporaryDirectory(prefix="rksearch-calibrate-") as tune_dir:
            tune.Tuner(
                tune.with_resources(tune.with_parameters(_calibration_trial, configs=configs), resources),
                param_space={"index": tune.grid_search(list(range(len(configs))))},
                tune_config=tune.TuneConfig(max_concurrent_trials=space.search.concurrency, reuse_actors=True),
                run_config=tune.RunConfig(storage_path=tune_dir, name=f"{space.name}-calibrate", verbose=0,
                                          callbacks=[recorder]),
            ).fit()
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM: the runs not done end FAIL now, not at the next start
        reason = "the calibration was terminated (SIGTERM)" if terminated(e) else "the calibration was interrupted"
        raise
    finally:
        with shielded():
            for i in list(recorder.trials):
                try:
                    recorder.tell(i, None, reason)
                except (RuntimeError, ValueError):  # told already: the stop came after its tell, before the pop
                    recorder.trials.pop(i, None)
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                if t.number >= first:  # the stop came inside study.ask(), before the trial was handed back
                    fail_trial(study, storage, t.number, reason)


# -- assessing ---------------------------------------------------------------------------------

def _assess(space: SearchSpace, study: optuna.Study, jobs: list[Job], specs: list[RKNetSpec], budgets: list[Budget],
            seeds: list[int], scores: list[dict[str, float]], score_seconds: list[dict[str, float]],
            threshold: float, k: int, study_dir: Path) -> Calibration:
    """The report, read back from the study: only specs with a result at every budget and seed."""
    done = done_runs(study)
    run = {(j.index, j.budget, j.seed): done.get(j.key) for j in jobs}
    keep = [i for i in range(len(specs)) if all(t is not None for (idx, _, _), t in run.items() if idx == i)]
    dropped = [specs[i].name for i in range(len(specs)) if i not in keep]
    if len(keep) < 3:
        raise CalibrationFailed(f"only {len(keep)} of {len(specs)} specs have a result at every budget and seed; "
                                "see fail_reason on the failed trials of the study", source=study_dir / "optuna.db")

    def grid(budget: Budget, value: Callable[[optuna.trial.FrozenTrial], float]) -> Grid:
        return [[value(run[(i, budget, s)]) for i in keep] for s in seeds]

    ref = budgets[-1]
    reference = column_means(grid(ref, lambda t: t.value))
    k = min(k, len(keep))
    curves_ok = all(len(run[(i, ref, s)].user_attrs.get("curve", [])) == ref.epochs for i in keep for s in seeds)
    fidelity = []
    for b in budgets:
        nested = None
        if curves_ok and b.fraction == ref.fraction and b.epochs < ref.epochs:
            nested = (grid(ref, lambda t: t.user_attrs["curve"][b.epochs - 1][0]),
                      grid(ref, lambda t: t.user_attrs["curve"][b.epochs - 1][1]))
        fidelity.append(budget_fidelity(b.label, b.epochs, b.fraction, grid(b, lambda t: t.value),
                                        grid(b, lambda t: t.user_attrs["seconds"]), reference, k, nested))
    score_fid = [score_fidelity(n, [scores[i][n] for i in keep], [score_seconds[i][n] for i in keep], reference)
                 for n in (scores[0] if scores else {})]
    best = recommend(fidelity, threshold)
    return Calibration(
        space=space.name, study_dir=study_dir, specs=[specs[i].name for i in keep], dropped=dropped, seeds=seeds,
        threshold=threshold, top_k=k, reference=ref.label, budgets=fidelity, scores=score_fid,
        recommended=best.budget if best else None, warnings=_warnings(fidelity, threshold),
    )


def _warnings(fidelity: list[BudgetFidelity], threshold: float) -> list[str]:
    ref = fidelity[-1]
    out = []
    if math.isnan(ref.tau):
        out.append(f"every spec reached the same accuracy at {ref.budget} epochs: the reference ranks nothing; "
                   "train longer or on more data")
    elif ref.noise_tau is not None and ref.noise_tau < threshold:
        out.append(f"at the largest budget ({ref.budget}) two seeds agree only to tau {ref.noise_tau:.2f} < "
                   f"{threshold:g}: the reference is noisy, so every tau here is too; train longer or on more data")
    if all(not b.tau >= threshold for b in fidelity[:-1]):
        out.append(f"no budget below {ref.budget} reaches tau {threshold:g}; the recommendation is the reference "
                   "itself (tau 1 by definition): try larger budgets")
    return out


# -- writing the calibrated space --------------------------------------------------------------

def write_calibrated_space(space: SearchSpace, job: Job, calibration: Calibration, path: Path) -> Path:
    """A copy of the space file with the recommended budget as its proxy; validated, then
    written in one step. Comments are not kept (the copy says where it came from)."""
    assert space.source is not None
    data = parse_yaml(read_text(space.source), space.source)
    proxy = dict(data.get("proxy") or {})
    proxy["epochs"] = job.budget.epochs
    if job.budget.fraction < 1:
        proxy["train_subset"] = job.proxy.train_subset
    data["proxy"] = proxy
    data["name"] = f"{space.name}-calibrated"  # its own study: the space's own holds trials of another proxy
    scheduler = (data.get("search") or {}).get("scheduler")
    if isinstance(scheduler, dict) and scheduler.get("grace_epochs", 1) > job.budget.epochs:
        data["search"] = {**data["search"], "scheduler": {**scheduler, "grace_epochs": job.budget.epochs}}
    parse_space(data, source=path)
    b = calibration.budget(job.budget.label)
    why = ("no smaller budget reached the threshold" if b.budget == calibration.reference else
           f"Kendall tau {b.tau:.2f} against {calibration.reference} epochs")
    header = (f"# {path.name}: {space.source.name} with the proxy budget rksearch calibrate recommends:\n"
              f"# {job.budget.label} epochs on {len(calibration.specs)} specs: {why} (threshold {calibration.threshold:g}).\n")
    write_text(path, header + yaml.safe_dump(data, sort_keys=False))
    return path


# -- the entry point ---------------------------------------------------------------------------

def calibrate(
    space: SearchSpace,
    *,
    sample: int = 20,
    budgets: str | list[Budget] = DEFAULT_BUDGETS,
    seeds: int = 2,
    threshold: float = 0.6,
    top_k: Optional[int] = None,
    scores: tuple[str, ...] | list[str] = SCORES,
    seed: Optional[int] = None,
    out: str | Path = "studies",
    fresh: bool = False,
    address: Optional[str] = None,
    write_space: Optional[str | Path] = None,
    on_update: Callable[[Progress], None] | None = None,
) -> Calibration:
    """Train ``sample`` specs at every budget and seed, compare the rankings, write the study
    folder's ``calibration.html`` and ``calibration.json`` (and ``write_space`` when given)."""
    if isinstance(budgets, str):
        budgets = parse_budgets(budgets, space.source)
    write_space = Path(write_space) if write_space is not None else None
    k = check_options(space, sample, seeds, threshold, top_k, write_space)
    try:
        names = check_names(scores)
    except RKSearchError as e:
        raise RKSearchError(e.message, source=space.source, field="--scores") from None
    params = draw_feasible(space, random.Random(seed if seed is not None else space.search.seed or 0), sample)
    specs = [space.spec_from_params(p) for p in params]
    jobs = plan(space, specs, budgets, seeds)
    scorer = Scorer(space, names, seed=space.proxy.seed)
    scored = [scorer(spec) for spec in specs]

    calib = dataclasses.replace(space, name=f"{space.name}-calibrate")
    study_dir, _ = prepare_study_dir(calib, Path(out), fresh, None)  # a calibration is its folder's own database
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(default_storage(study_dir))
    study = optuna.create_study(storage=storage, study_name=calib.name, direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0), load_if_exists=True)
    fail_stale_trials(study, storage)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["accuracy"])
    done = done_runs(study)
    pending = [j for j in jobs if j.key not in done]
    if pending:
        _train(space, study, storage, pending, params, specs, [s.values for s in scored], address, on_update)
    seed_list = [space.proxy.seed + s for s in range(seeds)]
    result = _assess(space, study, jobs, specs, budgets, seed_list, [s.values for s in scored],
                     [s.seconds for s in scored], threshold, k, study_dir)
    result.runs, result.reused = len(jobs), len(jobs) - len(pending)
    title = f"{space.name}: rank fidelity of proxy budgets against {result.reference} epochs ({len(result.specs)} specs)"
    write_text(study_dir / FIGURE, fidelity_figure(result.budgets, result.scores, threshold, title)
               .to_html(include_plotlyjs="cdn"))
    if write_space is not None and result.recommended is not None:
        job = next(j for j in jobs if j.budget.label == result.recommended)
        result.wrote = write_calibrated_space(space, job, result, write_space)
    write_text(study_dir / REPORT, json.dumps(result.to_dict(), indent=2, allow_nan=False) + "\n")
    return result
