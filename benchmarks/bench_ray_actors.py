"""What a Tune trial's worker costs to start on a new local Ray, with and without a runtime_env.

    python benchmarks/bench_ray_actors.py [--rounds 3]

Ray Tune gives every trainable a runtime_env (``env_vars``, Ray 2.60's ray/tune/execution/class_cache.py),
and Ray starts an actor with a runtime_env in a new process (``setup_worker.py``, then the worker), never
in one of the workers it pre-started. This times both on a fresh local Ray each, the two taking turns:
seconds from ``ray.init`` returning to two actors of 1 CPU answering, and whether they ran in the
pre-started workers. Each variant runs in its own interpreter (one Ray per process).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

TUNE_LIKE_ENV = {"env_vars": {"PL_DISABLE_FORK": "1"}}  # what Tune 2.60 sets on every trainable


def one(variant: str) -> dict:
    """In this interpreter: a new local Ray, two actors, the seconds until both answer."""
    import ray

    ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    time.sleep(2)  # the pre-started workers are up
    idle = set(subprocess.run(["pgrep", "-f", "ray::IDLE"], capture_output=True, text=True).stdout.split())

    @ray.remote(num_cpus=1)
    class Probe:
        def pid(self) -> str:
            return str(os.getpid())

    t0 = time.perf_counter()
    opts = {"runtime_env": TUNE_LIKE_ENV} if variant == "runtime_env" else {}
    actors = [Probe.options(**opts).remote() for _ in range(2)]
    pids = ray.get([a.pid.remote() for a in actors])
    seconds = time.perf_counter() - t0
    ray.shutdown()
    return {"variant": variant, "seconds": seconds, "in_prestarted": sum(p in idle for p in pids)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one)))
        return
    rows = []
    for r in range(args.rounds):
        for variant in ("none", "runtime_env"):
            out = subprocess.run([sys.executable, __file__, "--one", variant], capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"round {r + 1}: {variant:12s} two actors answer {rows[-1]['seconds']:.2f} s after the call, "
                  f"{rows[-1]['in_prestarted']} of 2 in pre-started workers")
    for variant in ("none", "runtime_env"):
        s = sorted(x["seconds"] for x in rows if x["variant"] == variant)
        print(f"{variant:12s} median {s[len(s) // 2]:.2f} s (min {s[0]:.2f}, max {s[-1]:.2f})")


if __name__ == "__main__":
    main()
