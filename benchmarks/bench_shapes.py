"""What ``static_shapes`` saves a short proxy: one batch shape instead of three.

    python benchmarks/bench_shapes.py                  # CPU, torch.compile: graphs compiled, seconds
    python benchmarks/bench_shapes.py --device cuda --no-compile   # GPU eager: cuDNN autotuning

Each proxy runs in a fresh process with its own inductor cache (a search trial of a new
candidate starts with nothing compiled and nothing tuned); static and dynamic runs alternate,
each pair in the other order, and the ratio is the median of each pair's ratio. The training split is chosen so that the last
batch is partial and the validation split is not a multiple of the batch, as in CIFAR-10 proxies
(49,000 = 95 x 512 + 360).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

SPEC = ("IRKNet-2x1_2x1", 6)
PROXY = {"dataset": "demo", "train_subset": 232, "val_size": 100, "batch_size": 48, "epochs": 2}


def worker(args: dict) -> None:
    import torch
    from torch._dynamo.utils import counters

    from rksearch import parse_name
    from rksearch.training.proxy import ProxyConfig, proxy_evaluate

    torch.set_num_threads(args["threads"])
    spec = parse_name(args["name"], growth_rate=args["k"])
    start = time.perf_counter()
    r = proxy_evaluate(spec, ProxyConfig(**args["proxy"]))
    print("RESULT " + json.dumps({"seconds": time.perf_counter() - start, "accuracy": r["accuracy"],
                                  "graphs": counters["stats"]["unique_graphs"]}), flush=True)


def one(static: bool, proxy: dict, name: str, k: int, threads: int) -> dict:
    job = {"name": name, "k": k, "threads": threads, "proxy": {**proxy, "static_shapes": static}}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
        try:
            r = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)], capture_output=True,
                               text=True, env=env, timeout=1800)
        except subprocess.TimeoutExpired:
            raise SystemExit("error: a proxy took over 30 minutes") from None
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    if r.returncode or not lines:
        last = r.stderr.strip().splitlines() or ["no result"]
        raise SystemExit(f"error: the proxy failed: {last[-1]}")
    return json.loads(lines[-1][len("RESULT "):])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--pairs", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    if a.worker:
        return worker(json.loads(a.worker))
    proxy = {**PROXY, "device": a.device, "compile": a.compile}
    rows: dict[bool, list[dict]] = {True: [], False: []}
    for i in range(a.pairs):
        for static in ((True, False) if i % 2 else (False, True)):  # alternate which goes first
            rows[static].append(one(static, proxy, *SPEC, a.threads))
    ratios = [d["seconds"] / s["seconds"] for s, d in zip(rows[True], rows[False])]
    print(f"{SPEC[0]} k={SPEC[1]}, proxy {proxy}")
    print("| static_shapes | graphs compiled | seconds (each) |\n|---|---:|---|")
    for static, rs in rows.items():
        each = ", ".join(f"{r['seconds']:.1f}" for r in rs)
        print(f"| {'on' if static else 'off'} | {rs[0]['graphs']} | {each} |")
    print(f"\noff / on: {statistics.median(ratios):.2f}x the time (median of {len(ratios)} pairs)")


if __name__ == "__main__":
    main()
