"""Issue 9 section 3: does zero-cost pre-screening find a better front for the same compute?

    python benchmarks/bench_prescreen.py [--trials 10] [--seeds 0,1,2] [--candidates 8] [--score synflow]
                                         [--data ../shared/data/cifar10-jpeg.zip]

A CIFAR-10 subset space (the demo space's tiny RKNets, FLOPs <= 12M; 2,000 training and 1,000
validation images, 1 epoch on CPU, 2 trials at a time). Per seed, two searches with the random
sampler, so any difference is the pre-screening's: ``random`` (T trials) and ``prescreen``
(every one of the T trials is the best of M feasible candidates by the score). Hypervolume of
(accuracy, FLOPs / max_flops) above the reference (0.1, 1) after T trials, and at equal
compute: the baseline keeps searching until it has spent the pre-screened arm's compute
(training FLOPs ~ 3 x the trained net's FLOPs per training image and epoch, plus one forward
pass per validation image; scoring ~ 3 x FLOPs per scored image, 1 x for naswot), since a
score that prefers big networks makes every trial cost more. Temporary folders only; run from
the repository root.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import yaml

from rksearch.models.registry import count
from rksearch.analysis.pareto import hypervolume
from rksearch.proxies.prescreen import enqueue_prescreened, param_key
from rksearch.search.driver import run_search
from rksearch.storage.folder import default_storage
from rksearch.storage.open import open_storage
from rksearch.space.search_space import SearchSpace, load_space

ROOT = Path(__file__).resolve().parents[1]
DATA = Path("..") / "shared" / "data" / "cifar10-jpeg.zip"  # relative to the repository root
REFERENCE = (0.1, 1.0)

SPACE = """
network: {stem: cifar, in_channels: 3, num_classes: 10, input_size: 32, bottleneck: [false, true], multiscale: true}
periods:
  count: [2, 3]
  method: [erk, irk]
  stages: {min: 2, max: 4}
  steps: 1
  growth_rate: {values: [4, 6, 8], tie: true}
  m: [1, 2]
  overrides: {0: {method: erk}}
constraints: {max_flops: 12M}
objectives: [accuracy, flops]
proxy: {dataset: imagefolder, train_subset: 2000, val_size: 1000, epochs: 1, batch_size: 64, device: cpu, seed: 0}
search: {sampler: random, concurrency: 2, scheduler: none, resources: {cpu: 1, gpu: 0}}
reference_point: {accuracy: 0.1, flops: 12M}
"""


def write_space(folder: Path, name: str, seed: int, trials: int, data: Path, prescreen: dict | None) -> SearchSpace:
    spec = yaml.safe_load(SPACE)
    spec["name"] = name
    spec["proxy"]["root"] = str(data)
    spec["search"].update({"seed": seed, "trials": trials})
    if prescreen:
        spec["search"]["prescreen"] = prescreen
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return load_space(path)


@dataclass
class Arm:
    hv: list[float]  # after each trial, in trial order
    compute: list[float]  # cumulative GFLOPs after each trial, scoring included from the start
    seconds: float  # summed training seconds
    score_seconds: float
    flops: list[float]  # the full specs' FLOPs

    def hv_within(self, budget: float) -> float:
        """The hypervolume of the trials done within ``budget`` GFLOPs of compute."""
        done = [h for h, c in zip(self.hv, self.compute) if c <= budget * (1 + 1e-9)]
        return done[-1] if done else 0.0


def trial_gflops(trained_flops: float, proxy) -> float:
    return (3 * proxy.train_subset * proxy.epochs + proxy.val_size) * trained_flops / 1e9


def measure(space: SearchSpace, out: Path, trials: int, score_gflops: float = 0.0, score_seconds: float = 0.0) -> Arm:
    result = run_search(space, trials=trials, out=out)
    study = optuna.load_study(study_name=space.name, storage=result.storage)
    done = [t for t in sorted(study.trials, key=lambda t: t.number) if t.state == optuna.trial.TrialState.COMPLETE]
    hv, compute, points, total = [], [], [], score_gflops
    for t in done:
        points.append([t.values[0], t.values[1] / space.constraints.max_flops])
        hv.append(hypervolume(np.array(points), REFERENCE, ["maximize", "minimize"]))
        total += trial_gflops(t.user_attrs["trained_flops"], space.proxy)
        compute.append(total)
    return Arm(hv, compute, sum(t.user_attrs["seconds"] for t in done), score_seconds, [t.values[1] for t in done])


def prescreened(folder: Path, name: str, seed: int, trials: int, data: Path, score: str, m: int) -> Arm:
    space = write_space(folder, name, seed, trials, data, {"score": score, "candidates": m})
    study_dir = folder / "studies" / name
    study_dir.mkdir(parents=True)
    study = optuna.create_study(storage=open_storage(default_storage(study_dir)), study_name=name,
                                directions=space.directions)
    t0 = time.perf_counter()
    points = enqueue_prescreened(study, space, trials)  # what run_search does for a space with search.prescreen
    seconds = time.perf_counter() - t0
    images = 1 if score == "synflow" else space.search.prescreen.batch_size
    passes = 1 if score == "naswot" else 3  # naswot runs forward only; the others backward too
    scored = {param_key(c): c for p in points for c in p.candidates}.values()  # a candidate is scored once
    gflops = sum(passes * images * count(space.spec_from_params(c).scaled(space.proxy.width)).flops
                 for c in scored) / 1e9
    return measure(space, folder / "studies", trials, gflops, seconds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--candidates", type=int, default=8)
    ap.add_argument("--score", default="synflow")
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    rows = []
    started = time.perf_counter()
    for seed in (int(s) for s in args.seeds.split(",")):
        with tempfile.TemporaryDirectory(prefix="bench-prescreen-") as tmp:
            folder = Path(tmp)
            pre = prescreened(folder, f"pre{seed}", seed, args.trials, args.data.resolve(), args.score, args.candidates)
            base_space = write_space(folder, f"rand{seed}", seed, args.trials, args.data.resolve(), None)
            base = measure(base_space, folder / "studies", args.trials)
            budget, n = pre.compute[-1], args.trials
            while base.compute[-1] < budget and n < 3 * args.trials:  # equal compute: keep the baseline searching
                n += max(1, int(np.ceil((budget - base.compute[-1]) / (base.compute[-1] / len(base.compute)))))
                base = measure(base_space, folder / "studies", n)
        rows.append((seed, base, pre, budget))
        print(f"seed {seed}: HV after {args.trials} trials random {base.hv[min(args.trials, len(base.hv)) - 1]:.4f} prescreen "
              f"{pre.hv[-1]:.4f}; at equal compute ({budget:.1f} GFLOP) random {base.hv_within(budget):.4f} "
              f"({sum(c <= budget for c in base.compute)} trials); median MFLOPs random "
              f"{statistics.median(base.flops[:args.trials]) / 1e6:.2f} prescreen {statistics.median(pre.flops) / 1e6:.2f}; "
              f"scoring {pre.score_seconds:.1f} s vs training {pre.seconds:.0f} s", flush=True)
    at_t = [(b.hv[min(args.trials, len(b.hv)) - 1], p.hv[-1]) for _, b, p, _ in rows]
    equal = [(b.hv_within(c), p.hv[-1]) for _, b, p, c in rows]
    for label, pairs in (("after T trials", at_t), ("at equal compute", equal)):
        base_hv, pre_hv = zip(*pairs)
        wins = sum(p > b for b, p in pairs)
        print(f"{label}: mean HV random {statistics.mean(base_hv):.4f} prescreen {statistics.mean(pre_hv):.4f} "
              f"(prescreen better in {wins} of {len(pairs)} seeds)")
    print(f"wall {time.perf_counter() - started:.0f} s; {args.score}, M = {args.candidates}, T = {args.trials}")


if __name__ == "__main__":
    main()
