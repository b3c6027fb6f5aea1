"""Build RK-Bench: train every spec of an enumerable space x seeds through Ray into a resumable per-epoch table."""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import random
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script from a checkout: the package beside it
    sys.path.insert(0, str(ROOT))

from rksearch.models.registry import count
from rksearch.core.errors import RKSearchError  # noqa: E402
from rksearch.core.files import write_text  # noqa: E402

MAX_SPECS = 20_000
"""A table larger than this is not what this command is for (the default of --max-specs)."""
ORDER_SEED = 0
"""Seeds the fixed order in which a build trains the specs (the table itself is sorted by spec_id)."""
HOW_FIELDS = ("device", "amp", "compile", "cudnn_benchmark", "cuda_graph", "root")
"""Proxy fields a resumed build may change: where and how it runs (and where the data lies), not what it measures."""
BASE_COLUMNS = ["spec_id", "name", "seed", "epoch", "val_acc", "val_loss", "train_loss", "seconds", "train_seconds",
                "cpu_seconds", "images_per_s", "flops", "params", "trained_flops", "trained_params", "growth_rate"]


@dataclass(frozen=True)
class Job:
    """One training: spec ``spec_id`` of the space at training seed ``seed``."""

    spec_id: int
    seed: int
    name: str
    params: dict
    spec: dict
    flops: int
    params_count: int


# -- the table -----------------------------------------------------------------------------

def meta_path(out: Path) -> Path:
    return out.with_name(out.stem + ".meta.json")


def read_table(out: Path) -> tuple[list[str], list[dict[str, str]]]:
    """The columns and rows of an existing table ([] and [] when there is none)."""
    if not out.exists():
        return [], []
    try:
        with open(out, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            columns = list(reader.fieldnames or [])
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise RKSearchError(f"cannot read the table: {e}", source=out) from None
    missing = [c for c in ("name", "seed", "epoch", "val_acc", "seconds", "flops", "params") if c not in columns]
    if missing:
        raise RKSearchError(f"not an RK-Bench table: no column {', '.join(missing)}; choose another --out", source=out)
    return columns, rows


def render(columns: list[str], rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, columns, lineterminator="\n", extrasaction="raise")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def sort_key(row: dict[str, Any]) -> tuple[int, int, int]:
    return int(row["spec_id"]), int(row["seed"]), int(row["epoch"])


def fmt(x: Optional[float], digits: int) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


# -- the space -----------------------------------------------------------------------------

def load_jobs(space_path: Path, seeds: int, max_specs: int) -> tuple[Any, list[Job], int]:
    """Every feasible spec of the space x ``seeds`` training seeds, seed-major (the whole space at
    seed 0 first, so a partial table already covers it once) and within a seed in one fixed shuffled
    order (a partial table is a uniform sample of the space, and the ETA of the first trainings is
    unbiased); also the number of infeasible specs."""
    from rksearch.space.search_space import load_space

    space = load_space(space_path)
    if space.baselines:
        raise RKSearchError("a table holds the space's own specs; remove the baselines (train them with "
                            "rksearch run)", source=space_path, field="baselines")
    size = space.size()
    if size > max_specs:
        field = "candidates" if space.candidates is not None else "periods"
        raise RKSearchError(f"{size:,} specs is not enumerable as a table (at most {max_specs:,}, --max-specs); "
                            "narrow the choices", source=space_path, field=field)
    specs, infeasible = [], 0
    for params in space.enumerate_params():
        spec = space.spec_from_params(params)
        if not space.feasible(spec):
            infeasible += 1
            continue
        specs.append((params, spec))
    names = [s.name for _, s in specs]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise RKSearchError(f"two specs share the name {dup} (a name does not carry growth_rate or m): tie "
                            "growth_rate and m to one value", source=space_path, field="periods.growth_rate")
    order = list(range(len(specs)))
    random.Random(ORDER_SEED).shuffle(order)
    counts = [count(spec) for _, spec in specs]
    jobs = []
    for seed in range(seeds):
        for i in order:
            params, spec = specs[i]
            jobs.append(Job(i, seed, spec.name, params, spec.to_dict(), counts[i].flops, counts[i].params))
    return space, jobs, infeasible


def growth_rate(spec: dict) -> str:
    ks = sorted({p["growth_rate"] for p in spec["periods"]})
    return str(ks[0]) if len(ks) == 1 else "/".join(str(p["growth_rate"]) for p in spec["periods"])


def proxy_identity(proxy: Any) -> dict:
    return {k: v for k, v in proxy.model_dump(mode="json").items() if k not in HOW_FIELDS}


def check_resume(out: Path, space: Any, space_path: Path, jobs: list[Job], rows: list[dict[str, str]]) -> dict:
    """The metadata to continue, after checking that the table was built with the same proxy and the
    same specs under these names."""
    meta_file = meta_path(out)
    meta: dict[str, Any] = {}
    if meta_file.exists():
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise RKSearchError(f"damaged build metadata ({e}); delete it together with the table to start over",
                                source=meta_file) from None
    elif rows:
        raise RKSearchError(f"the table has no {meta_file.name} beside it, so what built it is unknown; choose "
                            "another --out", source=out)
    then = meta.get("proxy")
    now = proxy_identity(space.proxy)
    if then is not None and then != now:
        k = next(k for k in sorted(set(then) | set(now)) if then.get(k) != now.get(k))
        raise RKSearchError(f"the table was built with proxy.{k}={then.get(k)!r}, now {now.get(k)!r}; build with "
                            "the same proxy or choose another --out", source=space_path, field=f"proxy.{k}")
    by_name = {j.name: j for j in jobs}
    for row in rows:
        job = by_name.get(row["name"])
        if job is not None and (int(row["flops"]), int(row["params"])) != (job.flops, job.params_count):
            raise RKSearchError(f"the table's {row['name']} has {row['flops']} FLOPs and {row['params']} params, "
                                f"this space's {job.flops} and {job.params_count}: another spec under the same name "
                                "(growth_rate, m or a network field changed); choose another --out",
                                source=space_path)
    meta.update({"space": space.name, "space_file": str(space_path), "proxy": now,
                 "proxy_how": {k: v for k, v in space.proxy.model_dump(mode="json").items() if k in HOW_FIELDS}})
    meta.setdefault("build_seconds", 0.0)
    meta.setdefault("runs", [])
    return meta


# -- the training, as a Ray task -----------------------------------------------------------

def train_one(spec_dict: dict, proxy_dict: dict, seed: int, threads: int) -> dict:
    """Train one spec at one training seed with the project's proxy; its per-epoch curve and costs."""
    import torch

    from rksearch.training.proxy import ProxyConfig, proxy_evaluate
    from rksearch.arch.rknet import RKNetSpec

    torch.set_num_threads(max(1, threads))
    spec = RKNetSpec.from_dict(spec_dict)
    curve: list[dict] = []
    cpu0 = time.process_time()

    def report(m: dict) -> None:  # CPU seconds: the cost without the other processes sharing the machine
        curve.append({**m, "cpu_seconds": time.process_time() - cpu0})

    result = proxy_evaluate(spec, ProxyConfig.model_validate(proxy_dict), report=report, train_seed=seed)
    return {"curve": curve, "result": result, "node": socket.gethostname(), "threads": torch.get_num_threads()}


def rows_of(job: Job, out: dict, param_columns: list[str]) -> list[dict[str, Any]]:
    r = out["result"]
    rows, train_total = [], 0.0
    for m in out["curve"]:
        train_total += m["train_seconds"]
        row = {"spec_id": job.spec_id, "name": job.name, "seed": job.seed, "epoch": m["epoch"],
               "val_acc": fmt(m["accuracy"], 4), "val_loss": fmt(m["val_loss"], 4), "train_loss": fmt(m["loss"], 4),
               "seconds": fmt(m["elapsed"], 2), "train_seconds": fmt(train_total, 2),
               "cpu_seconds": fmt(m["cpu_seconds"], 2),
               "images_per_s": fmt(m["images_per_s"], 1), "flops": job.flops, "params": job.params_count,
               "trained_flops": r["trained_flops"], "trained_params": r["trained_params"],
               "growth_rate": growth_rate(job.spec)}
        row.update({c: job.params.get(c, "") for c in param_columns})
        rows.append(row)
    return rows


def hms(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def build(args: argparse.Namespace) -> int:
    space_path, out = Path(args.space), Path(args.out)
    if args.seeds < 1:
        raise RKSearchError(f"must be at least 1, got {args.seeds}", field="--seeds")
    for flag, value in (("--limit", args.limit), ("--workers", args.workers)):
        if value is not None and value < (0 if flag == "--limit" else 1):
            raise RKSearchError(f"must be at least {0 if flag == '--limit' else 1}, got {value}", field=flag)
    if args.cpus_per_training <= 0:
        raise RKSearchError(f"must be above 0, got {args.cpus_per_training}", field="--cpus-per-training")
    if args.gpus_per_training < 0:
        raise RKSearchError(f"must be at least 0, got {args.gpus_per_training}", field="--gpus-per-training")
    if not out.parent.is_dir():
        raise RKSearchError("its folder does not exist", source=out, field="--out")
    space, jobs, infeasible = load_jobs(space_path, args.seeds, args.max_specs)
    columns, rows = read_table(out)
    meta = check_resume(out, space, space_path, jobs, rows)
    param_columns = list(space.parameters())
    want = BASE_COLUMNS + param_columns
    if columns and columns != want:
        missing = ", ".join(c for c in want if c not in columns) or "their order"
        raise RKSearchError(f"the table's columns differ from this space's ({missing}); choose another --out",
                            source=out)
    epochs = space.proxy.epochs
    done_epochs: dict[tuple[str, int], int] = {}
    for row in rows:
        key = (row["name"], int(row["seed"]))
        done_epochs[key] = done_epochs.get(key, 0) + 1
    finished = {k for k, n in done_epochs.items() if n >= epochs}
    rows = [r for r in rows if (r["name"], int(r["seed"])) in finished]  # never half a curve
    todo = [j for j in jobs if (j.name, j.seed) not in finished]
    total = len(jobs)
    first_done = total - len(todo)
    n_specs = len(jobs) // args.seeds
    print(f"rkbench: space {space.name}: {n_specs} specs x {args.seeds} seeds = {total} trainings of {epochs} epochs"
          + (f" ({infeasible} infeasible specs left out)" if infeasible else "")
          + f"; {first_done} already in {out}, {len(todo)} to train", flush=True)
    if args.limit is not None:
        todo = todo[:args.limit]
    if not todo:
        write_text(out, render(want, sorted(rows, key=sort_key)))
        print("rkbench: nothing to train; the table is complete" if first_done == total else
              "rkbench: nothing to train (--limit 0)", flush=True)
        return 0

    import ray

    proxy = space.proxy
    if proxy.root is not None and Path(proxy.root).exists():  # Ray workers may start elsewhere
        proxy = proxy.model_copy(update={"root": str(Path(proxy.root).resolve())})
    proxy_dict = proxy.model_dump(mode="json")
    started_ray = False
    if not ray.is_initialized():
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")
        kwargs: dict[str, Any] = {"log_to_driver": True, "logging_level": "ERROR", "configure_logging": True}
        address = args.address or space.search.address
        if address:
            kwargs["address"] = address
        else:
            kwargs["include_dashboard"] = False
            if args.num_cpus is not None:
                kwargs["num_cpus"] = args.num_cpus
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise RKSearchError(f"cannot start or join Ray: {str(e).splitlines()[0]}", field="--address") from None
        started_ray = True
    cpus = int(ray.cluster_resources().get("CPU", 1))
    slots = args.workers or max(1, int(cpus // args.cpus_per_training))
    if __name__ != "__main__":  # imported (a test, a notebook): Ray workers cannot import this file by name
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    task = ray.remote(num_cpus=args.cpus_per_training, num_gpus=args.gpus_per_training, max_retries=0)(train_one)
    print(f"rkbench: Ray with {cpus} CPUs: {slots} trainings at a time, {args.cpus_per_training} CPU "
          f"({max(1, int(args.cpus_per_training))} threads) and {args.gpus_per_training} GPU each", flush=True)

    start = time.time()
    meta["runs"].append({"started": time.strftime("%Y-%m-%d %H:%M:%S"), "host": socket.gethostname(),
                         "slots": slots, "cpus": cpus})
    base_seconds = float(meta["build_seconds"])
    pending: dict[Any, Job] = {}
    queue = list(todo)
    failures: list[str] = []
    trained = 0
    train_seconds_sum = cpu_seconds_sum = 0.0

    def save() -> None:
        meta["build_seconds"] = round(base_seconds + time.time() - start, 1)
        meta["runs"][-1]["trained"] = trained
        write_text(out, render(want, sorted(rows, key=sort_key)))
        write_text(meta_path(out), json.dumps(meta, indent=2) + "\n")

    stopped_by = [signal.SIGINT]

    def stop(signum: int, frame: Any) -> None:
        stopped_by[0] = signum
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        while queue or pending:
            while queue and len(pending) < slots:
                job = queue.pop(0)
                pending[task.remote(job.spec, proxy_dict, job.seed, max(1, int(args.cpus_per_training)))] = job
            ready, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(ready[0])
            try:
                result = ray.get(ready[0])
            except Exception as e:  # a training that raised (diverged, out of memory): retried next run
                reason = str(getattr(e, "cause", None) or e).strip().splitlines()[-1][:200]
                failures.append(f"{job.name} seed {job.seed}")
                print(f"rkbench: FAILED {job.name} seed {job.seed}: {reason}", flush=True)
                continue
            rows.extend(rows_of(job, result, param_columns))
            trained += 1
            train_seconds_sum += result["curve"][-1]["elapsed"]
            cpu_seconds_sum += result["curve"][-1]["cpu_seconds"]
            save()
            done = first_done + trained
            elapsed = time.time() - start
            left = total - done - len(failures)
            eta = elapsed / trained * left
            last = result["curve"][-1]
            print(f"[{done:>{len(str(total))}}/{total}] {job.name} seed {job.seed}: val_acc {last['accuracy']:.3f}, "
                  f"{last['elapsed']:.1f} s ({last['images_per_s']:.0f} img/s) | this run: {trained} in "
                  f"{hms(elapsed)}, mean {train_seconds_sum / trained:.1f} s "
                  f"({cpu_seconds_sum / trained:.1f} CPU s)/training, "
                  f"ETA {hms(eta)} "
                  f"({time.strftime('%H:%M', time.localtime(time.time() + eta))})", flush=True)
    except KeyboardInterrupt:
        print(f"rkbench: interrupted; {first_done + trained}/{total} in {out}; run the same command to continue",
              flush=True)
        return 128 + int(stopped_by[0])  # 130 for Ctrl-C, 143 for SIGTERM
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        if started_ray:
            ray.shutdown()
    left = total - first_done - trained
    print(f"rkbench: {first_done + trained}/{total} trainings in {out} ({trained} this run, "
          f"{hms(time.time() - start)}); "
          f"build time so far {hms(meta['build_seconds'])}", flush=True)
    if failures:
        more = " ..." if len(failures) > 5 else ""
        print(f"rkbench: {len(failures)} trainings failed ({', '.join(failures[:5])}{more}); "
              "run the same command to try them again", flush=True)
        return 1
    if left and args.limit is None:
        return 1
    return 0


# -- the report ----------------------------------------------------------------------------

def report(out: Path) -> int:
    """Seed-to-seed rank agreement of the final epoch, and the build's cost, from a table."""
    from scipy.stats import kendalltau, spearmanr

    if not out.exists():
        raise RKSearchError("no such table", source=out)
    _, rows = read_table(out)
    if not rows:
        raise RKSearchError("the table has no rows yet", source=out)
    last: dict[str, int] = {}
    for r in rows:
        last[r["name"]] = max(last.get(r["name"], 0), int(r["epoch"]))
    final_epoch = max(last.values())
    final: dict[int, dict[str, float]] = {}
    curves = 0
    seconds, cpu = [], []
    for r in rows:
        if int(r["epoch"]) == final_epoch:
            final.setdefault(int(r["seed"]), {})[r["name"]] = float(r["val_acc"])
            seconds.append(float(r["seconds"]))
            if r.get("cpu_seconds"):
                cpu.append(float(r["cpu_seconds"]))
            curves += 1
    seeds = sorted(final)
    specs = {n for s in seeds for n in final[s]}
    print(f"{out}: {len(specs)} specs, seeds {seeds}, {curves} trainings of {final_epoch} epochs, {len(rows)} rows")
    accs = [a for s in seeds for a in final[s].values()]
    print(f"final val_acc: min {min(accs):.3f}, mean {sum(accs) / len(accs):.3f}, max {max(accs):.3f}")
    seconds.sort()
    print(f"seconds per training: min {seconds[0]:.1f}, median {seconds[len(seconds) // 2]:.1f}, "
          f"max {seconds[-1]:.1f}, mean {sum(seconds) / len(seconds):.1f}, sum {hms(sum(seconds))}")
    if cpu:
        print(f"CPU seconds per training: mean {sum(cpu) / len(cpu):.1f}, sum {hms(sum(cpu))}")
    meta_file = meta_path(out)
    if meta_file.exists():
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        print(f"build wall time: {hms(meta.get('build_seconds', 0.0))} over {len(meta.get('runs', []))} runs")
    if len(seeds) < 2:
        print("seed-to-seed rank agreement: needs a second seed of the same specs (not in the table yet)")
    for i, a in enumerate(seeds):
        for b in seeds[i + 1:]:
            common = sorted(set(final[a]) & set(final[b]))
            if len(common) < 3:
                print(f"seeds {a} and {b}: {len(common)} specs in common, too few to rank")
                continue
            x, y = [final[a][n] for n in common], [final[b][n] for n in common]
            tau, rho = kendalltau(x, y).statistic, spearmanr(x, y).statistic
            print(f"seeds {a} vs {b}, final epoch, {len(common)} specs: Kendall tau {tau:.3f}, Spearman {rho:.3f}")
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(
        prog="build.py", description="Build (or continue) an RK-Bench table: every spec of SPACE x --seeds training "
        "seeds, trained by rksearch's proxy through Ray, one row per spec x seed x epoch. Run it again after an "
        "interruption: finished spec x seed pairs are never trained again.")
    p.add_argument("space", nargs="?", help="an enumerable space YAML (search_spaces/rkbench.yaml); its proxy: "
                   "section is the training recipe")
    p.add_argument("--seeds", type=int, default=2, help="training seeds 0..N-1 per spec (the data split stays "
                   "proxy.seed's); raising it later adds the new seeds (default 2)")
    p.add_argument("--out", default="benchmarks/rkbench/table.csv", help="the table; NAME.meta.json beside it "
                   "(table.meta.json for table.csv) records the proxy and the build time (default %(default)s)")
    p.add_argument("--address", default=None, help="a Ray cluster to join (auto, host:port, ray://host:10001); "
                   "default: the space's search.address, else a local Ray. Every node needs the data at the "
                   "proxy's root (made absolute where it exists here)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    p.add_argument("--cpus-per-training", type=float, default=1.0, help="Ray CPUs (and torch threads) per "
                   "training (default 1)")
    p.add_argument("--gpus-per-training", type=float, default=0.0, help="Ray GPUs per training, a fraction "
                   "shares one (default 0)")
    p.add_argument("--workers", type=int, default=None, help="trainings at once (default: the cluster's CPUs / "
                   "--cpus-per-training)")
    p.add_argument("--limit", type=int, default=None, help="stop after this many trainings (the rest: next run)")
    p.add_argument("--max-specs", type=int, default=MAX_SPECS, help="refuse larger spaces (default %(default)s)")
    p.add_argument("--report", action="store_true", help="print the seed-to-seed rank agreement (Kendall tau, "
                   "Spearman) of the final epoch and the build's cost from --out, train nothing")
    args = p.parse_args(argv)
    if args.space is None and not args.report:
        p.error("the space YAML is required (unless --report)")
    try:
        if args.report:
            return report(Path(args.out))
        return build(args)
    except RKSearchError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print("rkbench: interrupted", file=sys.stderr, flush=True)
        return 130


if __name__ == "__main__":
    sys.exit(main())
