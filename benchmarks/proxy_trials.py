"""Issue 6 section 3: 1-epoch proxies of IRKNet-3x1_3x1_3x1 (k=36) on CIFAR-10, with 1, 2 and 4
concurrent trials on one GPU. Their aggregate images/s says how many trials a search should run
per GPU.

HOOK into the trainer: this drives ``rksearch.training.proxy.proxy_evaluate`` with the fields of PROXY
that its ``ProxyConfig`` has; keep PROXY in step with it. Each trial is its own process, as in a
search: it decodes the data and runs one small proxy untimed (CUDA context, cuDNN autotuning,
decoding), waits at a barrier with the other trials, then runs the timed 1-epoch proxy. First
come single trials of a "new model" (the warm-up trained another spec, so the timed proxy pays cuDNN's
autotuning of every shape, as each candidate of a search does), with ``cuda_graph`` (the training
step replayed as one CUDA graph: whether proxies should default to it; its accuracy column checks
that it trains as the eager step does), without ``cudnn_benchmark`` (whether short proxies should
switch the autotuning off) and without ``static_shapes`` (the partial last batch and the
evaluation batch: two more shapes to tune); then 1, 2 and 4 concurrent trials.

Without the CIFAR-10 zip (62 MB does not fit beside the wheels in what travels to a GPU
machine), the trials train on the bundled demo images tiled to CIFAR-10's 50,000 (as
``bench_train.py`` does): the same tensors and the same work per epoch, so the time holds though
the accuracy means nothing.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

DEFAULT_CIFAR = Path(".device_data/cifar10-jpeg.zip")
SPEC = ("IRKNet-3x1_3x1_3x1", 36)
CHECK_SPEC = ("IRKNet-2x1_2x1", 4)
OTHER = ("ERKNet-2x1_2x1_2x1", 24)  # the warm-up of a "new model" row: other convolution shapes throughout
CHECK_OTHER = ("ERKNet-2x1_2x1", 6)
TILED = "demo tiled to 50,000"
PROXY = {"dataset": "imagefolder", "epochs": 1, "batch_size": 512, "val_size": 1000, "device": "cuda", "amp": "bf16"}
CHECK_PROXY = {"dataset": "demo", "epochs": 1, "batch_size": 32, "val_size": 100, "train_subset": 256,
               "device": "cpu", "amp": "off"}
CONCURRENCY = (1, 2, 4)
GOAL_S = 3.0


def _config(fields: dict[str, Any]):
    from rksearch.training.proxy import ProxyConfig

    return ProxyConfig(**{k: v for k, v in fields.items() if k in ProxyConfig.model_fields})


def proxy_worker(job: dict[str, Any]) -> None:
    """One trial: an untimed small proxy, the barrier, the timed proxy; prints ``RESULT {...}``."""
    import rksearch.training.proxy as proxy_module
    from rksearch import parse_name

    if job["source"] == TILED:
        from bench_train import cifar_sized

        big = cifar_sized(None).dataset
        proxy_module._dataset = lambda name, root: big  # the proxy's one way to its data
    proxy_evaluate = proxy_module.proxy_evaluate
    spec = parse_name(job["name"], growth_rate=job["k"])
    warm = parse_name(job["warm"][0], growth_rate=job["warm"][1]) if job.get("warm") else spec
    t0 = time.perf_counter()
    proxy = job["proxy"]
    small = {"train_subset": min(1024, proxy.get("train_subset") or 1024), "val_subset": min(256, proxy["val_size"])}
    proxy_evaluate(warm, _config({**proxy, **small}))
    cold_s = time.perf_counter() - t0
    Path(job["ready"]).touch()
    while not Path(job["go"]).exists():
        time.sleep(0.005)
    start = time.time()  # the wall clock: comparable between the trials' processes
    result = proxy_evaluate(spec, _config(proxy))
    print("RESULT " + json.dumps({**result, "cold_s": cold_s, "start": start, "end": time.time()}), flush=True)


def _trials(n: int, model: tuple[str, int], proxy: dict[str, Any], source: str, deadline: float,
            script: str, warm: Optional[tuple[str, int]] = None) -> dict[str, Any]:
    """``n`` trials at once; aggregate images/s over the wall time from the first timed proxy's
    start to the last one's end.
    Each trial's output goes to a file: a full pipe would stall it before the barrier."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        go = folder / "go"
        jobs = [{"name": model[0], "k": model[1], "proxy": proxy, "source": source, "warm": warm,
                 "ready": str(folder / f"ready{i}"), "go": str(go)} for i in range(n)]
        procs = []
        for i, j in enumerate(jobs):
            with open(folder / f"out{i}", "w") as out, open(folder / f"err{i}", "w") as err:
                procs.append(subprocess.Popen([sys.executable, script, "--proxy-worker", json.dumps(j)], stdout=out,
                                              stderr=err))
        try:
            while not all(Path(j["ready"]).exists() for j in jobs):
                if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                    raise RuntimeError("a trial failed or the budget ran out before the barrier")
                time.sleep(0.01)
            go.touch()
            for p in procs:
                p.wait(timeout=max(1.0, deadline - time.monotonic()))
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            for p in procs:
                p.kill()
                p.wait()
            last = [ln for i in range(n) for ln in (folder / f"err{i}").read_text().strip().splitlines()[-1:]]
            return {"trials": n, "error": f"{e}" + (f": {last[0][:200]}" if last else "")}
        results = []
        for i, p in enumerate(procs):
            lines = [ln for ln in (folder / f"out{i}").read_text().splitlines() if ln.startswith("RESULT ")]
            if p.returncode or not lines:
                err = (folder / f"err{i}").read_text().strip().splitlines() or ["no result"]
                return {"trials": n, "error": err[-1][:300]}
            results.append(json.loads(lines[-1][len("RESULT "):]))
    images = sum(r["images_per_s"] * r["train_seconds"] for r in results)
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)  # first start to last end
    return {"trials": n, "wall_s": wall, "aggregate_images_per_s": images / wall,
            "proxy_seconds": [r["seconds"] for r in results], "cold_s": [r["cold_s"] for r in results],
            "accuracy": [r["accuracy"] for r in results]}


def proxy_section(cifar: Optional[str], deadline: float, mode: str, script: str) -> dict[str, Any]:
    """Rows for 1, 2 and 4 concurrent trials on CUDA (2 on demo data in ``check`` mode, where the
    single trials are the variants' rows), or why there are none."""
    title = "Proxy trials (section 3): skipped"
    if mode == "cpu":
        return {"rows": [], "text": f"{title} on CPU: a CIFAR-10 epoch per trial is a GPU measurement."}
    try:
        import rksearch.training.proxy as proxy_module
    except ImportError as e:
        return {"rows": [], "text": f"{title}: rksearch.training.proxy does not import ({e})."}
    if not hasattr(proxy_module, "proxy_evaluate"):
        return {"rows": [], "text": f"{title}: rksearch.training.proxy has no proxy_evaluate yet."}
    path = Path(cifar) if cifar else DEFAULT_CIFAR
    if mode == "check":  # the plumbing: one row per path (a new model, each lever, concurrent trials)
        model, proxy, counts, source = CHECK_SPEC, CHECK_PROXY, CONCURRENCY[1:2], "demo"
    elif path.exists():
        model, proxy, counts, source = SPEC, {**PROXY, "root": str(path)}, CONCURRENCY, str(path)
    elif cifar:
        return {"rows": [], "text": f"{title}: no CIFAR-10 at {path}."}
    else:
        model, proxy, counts, source = SPEC, {**PROXY, "dataset": "demo"}, CONCURRENCY, TILED
    rows = []
    for n, variant, changes, warm in variants(mode) + [(n, "", {}, None) for n in counts]:  # the open questions first
        if time.monotonic() > deadline - 20:
            rows.append({"trials": n, "variant": variant, "error": "skipped: time budget spent"})
            continue
        rows.append({**_trials(n, model, {**proxy, **changes}, source, deadline, script, warm), "variant": variant})
    return {"rows": rows, "proxy": proxy, "source": source, "text": render(rows, model, proxy, source)}


def variants(mode: str) -> list[tuple[int, str, dict[str, Any], Optional[tuple[str, int]]]]:
    """Single trials that say what a search's trial pays: a new model (its warm-up proxy trained
    another spec, so every convolution shape is new to cuDNN, as for each candidate of a search),
    with CUDA graphs (CUDA only), with and without cuDNN's autotuning, and the same spec without it
    (not in ``check`` mode: a trial warmed on its own spec is what the concurrent rows run)."""
    other = CHECK_OTHER if mode == "check" else OTHER
    off = {"cudnn_benchmark": False}
    graphs = [] if mode == "check" else [(1, "new model, cuda_graph", {"cuda_graph": True}, other)]
    same = [] if mode == "check" else [(1, "cudnn_benchmark off", off, None)]
    return [(1, "new model", {}, other), *graphs, (1, "new model, cudnn_benchmark off", off, other),
            (1, "new model, static_shapes off", {"static_shapes": False}, other), *same]


def render(rows: list[dict[str, Any]], model: tuple[str, int], proxy: dict[str, Any], source: str) -> str:
    head = (f"Proxy trials (section 3): {model[0]} k={model[1]}, 1 epoch, batch {proxy['batch_size']}, "
            f"data: {source}, goal < {GOAL_S:.0f} s for one trial\n\n"
            "| concurrent trials | variant | aggregate images/s | wall s | proxy s (each) | cold start s (each) "
            "| accuracy (each) |\n|---:|---|---:|---:|---|---|---|")
    lines = [head]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['trials']} | {r.get('variant', '')} | {r['error']} | | | | |")
            continue
        each = ", ".join(f"{s:.2f}" for s in r["proxy_seconds"])
        cold = ", ".join(f"{s:.1f}" for s in r["cold_s"])
        accuracy = ", ".join(f"{a:.3f}" for a in r["accuracy"])
        lines.append(f"| {r['trials']} | {r.get('variant', '')} | {r['aggregate_images_per_s']:,.0f} | {r['wall_s']:.2f} "
                     f"| {each} | {cold} | {accuracy} |")
    ok = [r for r in rows if "error" not in r]
    new_model = next((r for r in ok if r.get("variant") == "new model"), None)
    if new_model:  # what each open question's answer buys a search's trial
        lines.append("")
        for r in ok:
            if r.get("variant", "").startswith("new model, "):
                base, this = new_model["proxy_seconds"][0], r["proxy_seconds"][0]
                lines.append(f"{r['variant'][len('new model, '):]}: {this:.2f} s a proxy against {base:.2f} s "
                             f"({base / this:.2f}x)")
    same = [r for r in ok if not r.get("variant")]
    best = max(same, key=lambda r: r["aggregate_images_per_s"], default=None)
    if best:
        lines.append(f"\nMost aggregate throughput: {best['trials']} concurrent trial(s) per GPU.")
    return "\n".join(lines)

