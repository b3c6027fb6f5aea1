"""How repeatable the latency protocol is, and how well FLOPs and params rank latency on this machine.

    nice python benchmarks/latency_protocol.py                              # CPU, 1 thread, the defaults below
    nice python benchmarks/latency_protocol.py --spec ERKNet-6x1_6x1_6x1 --repeats 5 --sample 8

1. ``rksearch latency SPEC --json`` ``--repeats`` times, each in a process of its own with an empty
   table folder (so each measures anew, with the protocol users get): the medians, and their
   coefficient of variation (standard deviation over mean) across processes; ``--rounds 1 5``
   compares protocols (one round of timed runs against five), taking turns process by process.
2. For each space, ``--sample`` feasible specs (seeded) measured through the Python API into a
   temporary table with shorter caps (``QUICK``: a full-size CIFAR net takes up to a second a run
   on a busy CPU), then Spearman's rho of FLOPs and of params against the median latency.

Prints one JSON object; nothing is written outside a temporary folder.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPACES = ("search_spaces/cifar_irk.yaml", "search_spaces/cifar_erk.yaml")


def repeatability(spec: str, repeats: int, device: str, threads: int, rounds: tuple[int, ...] = (5,)) -> dict:
    """Per protocol (its ``--rounds``), the medians of ``repeats`` processes and their coefficient of
    variation; the protocols take turns process by process, so they meet the same machine."""
    medians: dict[int, list[float]] = {n: [] for n in rounds}
    rows: dict[int, list[dict]] = {n: [] for n in rounds}
    for _ in range(repeats):
        for n in rounds:
            with tempfile.TemporaryDirectory(prefix="rksearch-latency-") as folder:
                r = subprocess.run([sys.executable, "-m", "rksearch", "latency", spec, "--device", device,
                                    "--threads", str(threads), "--table-dir", folder, "--json", "--rounds", str(n)],
                                   capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
            if r.returncode != 0:
                sys.exit(f"rksearch latency failed: {r.stderr.strip()}")
            row = json.loads(r.stdout)["specs"][0]
            medians[n].append(row["median_ms"])
            rows[n].append({k: row[k] for k in ("median_ms", "p90_ms", "spread", "runs", "warmup_runs", "settled",
                                                "stable", "round_medians")})
    return {"spec": spec, "key": row["key"], **{
        f"rounds={n}": {"medians_ms": medians[n], "cv": statistics.stdev(medians[n]) / statistics.mean(medians[n]),
                        "runs": rows[n]} for n in rounds}}


def report(space_file: str, sample: int, seed: int, device: str, threads: int, folder: Path) -> dict:
    from rksearch.search.latency_space import latency_report, measure_specs, space_specs
    from rksearch.space.search_space import load_space
    from rksearch.training.latency import Protocol, Settings, device_key
    from rksearch.training.latency_table import LatencyTable

    quick = Protocol(max_warmup=50, max_warmup_s=8.0, min_runs=10, max_runs=100, max_seconds=8.0)
    space = load_space(ROOT / space_file)
    specs = space_specs(space, sample=sample, seed=seed)
    table = LatencyTable.for_key(device_key(Settings(device=device, threads=threads)), folder)
    t0 = time.perf_counter()
    measured = measure_specs(specs, table, quick)
    rep = latency_report(measured, table.key)
    return {"space": space.name, "specs": len(measured), "rho_flops": rep.rho_flops, "rho_params": rep.rho_params,
            "latency_ms": sorted(round(r["latency_ms"], 2) for r in rep.rows), "seconds": time.perf_counter() - t0,
            "rows": [{k: r[k] for k in ("name", "flops", "params", "latency_ms", "family")} for r in rep.rows]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default="IRKNet-3x1_3x1_3x1")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--sample", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--spaces", nargs="*", default=list(SPACES))
    ap.add_argument("--rounds", type=int, nargs="+", default=[5],
                    help="protocols to compare (rksearch latency --rounds), taking turns process by process")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    load = os.getloadavg()[0]
    out = {"date": time.strftime("%Y-%m-%d"), "load_average": load,
           "repeatability": repeatability(args.spec, args.repeats, args.device, args.threads, tuple(args.rounds))}
    with tempfile.TemporaryDirectory(prefix="rksearch-latency-") as folder:
        out["reports"] = [report(s, args.sample, args.seed, args.device, args.threads, Path(folder))
                          for s in args.spaces]
    out["load_average_after"] = os.getloadavg()[0]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
