"""Wall time of a whole search and the framework's share of it.

    python benchmarks/bench_search.py [SPACE.yaml] [--trials N]

framework share = (wall time - sum of trial training times) / wall time, Ray's start included.
Each run starts a fresh study in a temporary folder.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from rksearch.search.driver import run_search
from rksearch.space.search_space import load_space

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("space", nargs="?", default=str(ROOT / "search_spaces" / "demo.yaml"))
    ap.add_argument("--trials", type=int, default=None)
    args = ap.parse_args()
    space = load_space(args.space)
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        r = run_search(space, trials=args.trials, out=out)
        wall = time.perf_counter() - t0
    t = r.tally
    print(f"space {space.name}: {r.done} trials done (trained {t.trained}, pruned {t.pruned}, failed {t.failed}, "
          f"skipped {t.skipped}), concurrency {space.search.concurrency}")
    print(f"wall {wall:.1f} s, Ray start {r.ray_start_seconds:.1f} s, sum of trial training times {t.train_seconds:.1f} s")
    print(f"framework share {100 * r.framework_share:.1f} %  (goal on 2 cores: < 15 %)")
    per_slot = max(0.0, 1 - t.train_seconds / space.search.concurrency / wall)
    print(f"framework share per trial slot {100 * per_slot:.1f} %  "
          f"((wall - training time / concurrency) / wall: the stricter reading when trials run side by side)")


if __name__ == "__main__":
    main()
