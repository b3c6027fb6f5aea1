"""Wall time of a whole search and the framework's share of it.

    python benchmarks/bench_search.py [SPACE.yaml] [--trials N] [--address HOST:PORT] [--cpu]

overhead share = 1 - (sum of trial seconds) / (wall time x concurrency), Ray's start included, and
where the slot time went (rksearch.search.overhead); start-up = this process's start (the command)
to the first training step of any trial. Each run starts a fresh study in a temporary folder.
``--cpu``: also where the machine's CPU went (benchmarks/cpu_account.py: the driver, the trial
workers, Ray's own processes, idle), up to the first training step and to the end.
"""
from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

from cpu_account import CpuAccount, process_start
from rksearch.search.driver import run_search
from rksearch.space.search_space import load_space

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("space", nargs="?", default=str(ROOT / "search_spaces" / "demo.yaml"))
    ap.add_argument("--trials", type=int, default=None)
    ap.add_argument("--address", help="join this Ray (started once with `ray start --head`) instead of starting one")
    ap.add_argument("--cpu", action="store_true", help="also where the machine's CPU went, by process")
    args = ap.parse_args()
    space = load_space(args.space)
    with tempfile.TemporaryDirectory() as out, \
            CpuAccount(since=process_start()) if args.cpu else contextlib.nullcontext() as account:
        t0 = time.perf_counter()
        r = run_search(space, trials=args.trials, out=out, address=args.address)
        wall = time.perf_counter() - t0
    t = r.tally
    print(f"space {space.name}: {r.done} trials done (trained {t.trained}, pruned {t.pruned}, failed {t.failed}, "
          f"skipped {t.skipped}), concurrency {space.search.concurrency}")
    print(f"wall {wall:.1f} s, Ray start {r.ray_start_seconds:.1f} s, sum of trial training times {t.train_seconds:.1f} s")
    print(f"overhead share {100 * r.framework_share:.1f} %  (goal on 2 cores: at most 15 %)")
    print(r.breakdown.line())
    first = r.tally.account.first_step_at
    if first is not None:
        print(f"start-up: command to the first training step {first - process_start():.1f} s (goal: under 8 s)")
    if account is not None:
        if args.address:
            print("(--cpu with --address: the cluster's processes and workers are not under this driver; they count as idle)")
        if first is not None:
            account.mark("the first step", first)
        print(account.table())
        print("CPUs busy per second from the command's start (%): "
              + " ".join(f"{100 * b:.0f}" for b in account.busy()[:20]) + " ...")


if __name__ == "__main__":
    main()
