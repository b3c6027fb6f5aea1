"""What a Ray-free local executor would buy on the demo (issue 22's option c), as a bound.

    python benchmarks/bench_local_pool.py [SPACE.yaml] [--trials 12]

Runs the space's proxy on ``--trials`` specs the space accepts (a random sampler, seed 0) in a
forkserver pool of ``search.concurrency`` processes that import torch, ``torch._dynamo`` and the
proxy once, before the first trial: no Ray, no Tune, no ASHA, no study written. It prints what
``bench_search.py`` prints for a search: overhead share = 1 - (sum of trial seconds) / (wall x
concurrency), and the command to the first training step. A bound, not a search: the real
executor would add the sampler, the study's writes and the scheduler.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from cpu_account import process_start  # the bench's own start; it imports no Ray

ROOT = Path(__file__).resolve().parents[1]
PRELOAD = ["torch", "torch._dynamo", "rksearch.training.proxy", "rksearch.arch.resolve"]


def run(spec: dict, proxy: dict) -> dict:
    """One trial in a pool process: the proxy on ``spec``, its result."""
    from rksearch.arch.resolve import any_spec_from_dict
    from rksearch.training.proxy import ProxyConfig, proxy_evaluate

    return proxy_evaluate(any_spec_from_dict(spec), ProxyConfig.model_validate(proxy))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("space", nargs="?", default=str(ROOT / "search_spaces" / "demo.yaml"))
    ap.add_argument("--trials", type=int, default=12)
    args = ap.parse_args()

    import optuna

    from rksearch.space.search_space import load_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space(args.space)
    study, specs = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)), []
    while len(specs) < args.trials:
        trial = study.ask()
        spec = space.suggest(trial)
        if not any(v > 0 for v in space.violations(spec)):
            specs.append(spec.to_dict())
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    n = space.search.concurrency or 1
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    os.environ["OMP_NUM_THREADS"] = str(int(space.search.resources.cpu))  # one trial's CPUs, as Ray would set
    with ProcessPoolExecutor(n, mp_context=ctx) as pool:
        results = list(pool.map(run, specs, [space.proxy.model_dump()] * len(specs)))
    start = process_start()
    wall = time.time() - start
    seconds = sum(r["seconds"] for r in results)
    first = min(r["started_at"] + r["data_seconds"] + r["build_seconds"] for r in results)
    print(f"{len(results)} trials trained to the end (no ASHA), {n} at a time, no Ray: wall {wall:.1f} s from the "
          f"command, trial seconds {seconds:.1f}")
    print(f"overhead share {100 * (1 - seconds / (wall * n)):.1f} %; command to the first training step "
          f"{first - start:.1f} s")


if __name__ == "__main__":
    main()
