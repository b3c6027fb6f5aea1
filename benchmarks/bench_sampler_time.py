"""Sampler time per proposal as a study grows: a replayed search of RK-Bench's space, timed per trial.

The table is synthetic (every spec of the space, accuracy a fixed function of FLOPs plus seed
noise), because only the sampler's own time is measured here: the in-process simulator
(rksearch.search.simulate) spends nothing else per trial but the table lookup. Usage:

    python benchmarks/bench_sampler_time.py search_spaces/rkbench.yaml --trials 200 --samplers random tpe nsga2
"""
from __future__ import annotations

import argparse
import csv
import math
import random
import sys
import tempfile
import time
from pathlib import Path
from rksearch.models.registry import count

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def synthetic_table(space, path: Path, epochs: int) -> None:
    rng = random.Random(0)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "seed", "epoch", "val_acc", "seconds", "flops", "params"])
        for params in space.enumerate_params():
            spec = space.spec_from_params(params)
            c = count(spec)
            for seed in (0, 1):
                noise = rng.gauss(0, 0.02)
                for e in range(1, epochs + 1):
                    acc = min(1.0, max(0.0, (0.2 + 0.2 * (1 - math.exp(-c.flops / 1e7))) * e / epochs + noise))
                    w.writerow([spec.name, seed, e, round(acc, 4), round(c.flops / 1e6 * e, 2), c.flops, c.params])


def main() -> int:
    import dataclasses

    from rksearch.search.replay import load_table
    from rksearch.search.simulate import simulate
    from rksearch.space.search_space import load_space

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("space", type=Path)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--samplers", nargs="+", default=["random", "tpe", "nsga2"])
    args = parser.parse_args()
    space = load_space(args.space)
    with tempfile.TemporaryDirectory() as tmp:
        table_path = Path(tmp) / "table.csv"
        synthetic_table(space, table_path, space.proxy.epochs)
        table = load_table(table_path)
        for sampler in args.samplers:
            s = dataclasses.replace(space, search=space.search.model_copy(update={"sampler": sampler}))
            t0 = time.perf_counter()
            sim = simulate(s, table, seed=0, trials=args.trials)
            total = time.perf_counter() - t0
            asked = len(sim.study.trials)
            print(f"{sampler:>7}: {args.trials} searched trials ({asked} asked) in {total:.1f} s, "
                  f"{1000 * total / asked:.0f} ms per asked trial", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
