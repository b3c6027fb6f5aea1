"""Issue 6's throughput table in one run, printed last: every goal model eager (the default
implementation and its alternatives) against ResNet-18, torch.compile, a kernel profile, proxy
trials, CUDA graphs and levers.

    bash benchmarks/gpu.sh [--budget-s 350] [--json PATH] [--cifar PATH]   # CUDA: batch 512, bf16
    python benchmarks/throughput.py --device cpu                           # CPU: batch 32, fp32
    python benchmarks/throughput.py --check                                # tiny models: the plumbing

Every row is a training step (forward, backward, SGD) on random inputs, timed by
``rksearch.training.bench``, channels_last. Each group of rows runs in its own worker process and is timed
interleaved, so ratios inside a group hold on a loaded machine; a fresh process per group keeps
peak memory and compile state from leaking between groups, and a stuck compile dies with its
timeout. Groups run in priority order (see :func:`groups`) against one time budget; what no
longer fits is listed as skipped (``--only`` runs chosen groups, e.g. on a second call). With
``--json`` the rows are written after every group, so a run cut short keeps what it measured.

Imports: torch and rksearch (whose spec needs pydantic and PyYAML; ``gpu.sh`` installs carried
wheels where they are missing), never typer or rich.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

MODELS = {  # label: (name, growth rate, goal in images/s on one H100)
    "IRKNet-3x1_3x1_3x1 k=36": ("IRKNet-3x1_3x1_3x1", 36, 40_000),
    "ERKNet-6x1_6x1_6x1 k=36": ("ERKNet-6x1_6x1_6x1", 36, 40_000),
    "IRKNet-5x1_5x1_5x1-AB k=80": ("IRKNet-5x1_5x1_5x1-AB", 80, 15_000),
    "ResNet-18": ("resnet18", None, None),
}
IRK3, ERK6, IRK5, R18 = MODELS
CHECK_MODELS = {  # --check: the same labels on tiny models
    IRK3: ("IRKNet-2x1_2x1", 4, None), ERK6: ("ERKNet-2x1_2x1", 4, None),
    IRK5: ("IRKNet-2x1_2x1-AB", 4, None), R18: ("resnet18", None, None),
}
SETTINGS = {
    "cuda": {"device": "cuda", "batch_size": 512, "amp": "bf16", "channels_last": True},
    "cpu": {"device": "cpu", "batch_size": 32, "amp": "off", "channels_last": True},
    "check": {"device": "cpu", "batch_size": 2, "amp": "off", "channels_last": True, "warmup": 1, "repeats": 1, "steps": 1},
}
PROXY, PROXY_BUDGET_S = "proxy trials", 240


@dataclass
class Row:
    """One candidate of a group: a model, its implementation and what differs from SETTINGS."""

    model: str
    variant: str
    impl: str = "concat"
    tweaks: dict[str, Any] = field(default_factory=dict)


@dataclass
class Group:
    name: str
    rows: list[Row]
    timeout_s: float  # at most; the remaining budget cuts it further
    compiled: bool = False
    kind: str = "bench"  # bench: timed rows; profile: kernel time per category; proxy: proxy trials


def groups(device: str) -> list[Group]:
    """Priority order. CUDA: every model eager (its peak memory too), the proxy trials, ERKNet
    compiled with CUDA graphs, the kernel profile, the other goal models compiled, then what an
    earlier run measured already (CUDA graphs of the eager step, IRKNet-3 and ResNet-18
    compiled, the layout and precision levers). CPU: eager and levers, then compiled."""
    cuda = device == "cuda"
    impls = {IRK3: ("concat", "unaligned", "align-in", "align-dense", "concat-copy", "per-connection"),
             ERK6: ("concat", "unaligned", "align-in", "align-dense", "concat-copy", "per-connection"),
             IRK5: ("concat", "concat-copy", "per-connection")}  # k = 80: nothing to align
    if not cuda:  # a CPU aligns nothing, and the BN's copy is measured in benchmarks/README.md
        impls = {m: ("concat", "per-connection") for m in impls}
    eager = [Row(m, "eager, " + impl, impl) for m, names in impls.items() for impl in names]
    amp = {"amp": "off"} if cuda else {"amp": "bf16"}
    levers = [
        Row(IRK3, "eager, concat", tweaks={}),
        Row(IRK3, f"eager, concat, amp {amp['amp']}", tweaks=amp),
        Row(IRK3, "eager, concat, NCHW", tweaks={"channels_last": False}),
        Row(IRK3, "eager, concat, half batch", tweaks={"batch_size": SETTINGS[device]["batch_size"] // 2}),
    ]
    default, overhead = {"compile": True}, {"compile": True, "compile_mode": "reduce-overhead"}

    def compiled(m: str, tweaks: dict[str, Any]) -> Group:
        mode = "compile reduce-overhead" if tweaks is overhead else "compile"
        return Group(f"{mode}: {m}", [Row(m, mode, tweaks=tweaks)], 200 if cuda else 900, compiled=True)

    proxy = Group(PROXY, [], PROXY_BUDGET_S, kind="proxy")
    profile = Group("profile", [Row(m, "eager, concat") for m in (ERK6, IRK5, IRK3)], 90, kind="profile")
    if not cuda:
        return [Group("eager", [Row(R18, "eager"), *eager, *levers[1:]], 1800), profile, proxy,
                *(compiled(m, default) for m in (IRK3, ERK6, R18, IRK5))]
    return [
        Group("eager", [Row(R18, "eager"), *eager], 240), proxy,
        compiled(ERK6, overhead), profile, compiled(ERK6, default), compiled(IRK5, default),
        compiled(IRK5, overhead), compiled(IRK3, overhead),
        Group("cuda-graph", [Row(m, "eager + CUDA graph", tweaks={"cuda_graph": True}) for m in MODELS], 120),
        compiled(IRK3, default), compiled(R18, default), compiled(R18, overhead),
        Group("levers", levers, 120),
    ]


# -- the worker: one group in this process -------------------------------------------------------


def _candidates(job: dict[str, Any]) -> list[Any]:
    from rksearch.training.bench import candidate

    models = CHECK_MODELS if job["check"] else MODELS
    cands = []
    for r in job["rows"]:
        name, k, _ = models[r["model"]]
        c = candidate(name, k, r["impl"])
        c.label, c.tweaks = r["model"], r["tweaks"]
        cands.append(c)
    return cands


def run_profile(job: dict[str, Any]) -> dict[str, Any]:
    """Kernel time per category for the group's rows, then the 3x3 convolution probe."""
    from profile_step import conv_rows, profile_rows

    from rksearch.training.bench import BenchOptions

    opts = BenchOptions(**job["options"])
    shapes = {"shapes": ((4, 4), (8, 8)), "size": 8, "repeats": 2} if job["check"] else {}
    return {"rows": profile_rows(_candidates(job), opts, steps=1 if job["check"] else 3),
            "conv": conv_rows(opts.resolved().device, opts.resolved().batch_size, **shapes)}


def run_group(job: dict[str, Any]) -> list[dict[str, Any]]:
    """Measure one group's rows interleaved; if that fails, each row alone, so a row fails alone."""
    from rksearch.training.bench import BenchOptions, measure, paired_ratio

    cands = _candidates(job)
    try:
        ms = measure(cands, BenchOptions(**job["options"]))
    except Exception as e:  # noqa: BLE001  (reported in the table; the other rows still run)
        if len(job["rows"]) == 1:
            return [{**job["rows"][0], "error": f"{type(e).__name__}: {e}"[:300]}]
        return [row for r in job["rows"] for row in run_group({**job, "rows": [r]})]
    return [{**r, **m.to_dict(), "paired": paired_ratio(m, ms[0])} for r, m in zip(job["rows"], ms)]


# -- the driver -----------------------------------------------------------------------------------


def spawn(args: list[str], timeout_s: float) -> tuple[Optional[Any], str]:
    """Run this script with ``args``: its last ``RESULT`` line, or None and why not."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    try:
        p = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout_s:.0f} s"
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    if p.returncode or not lines:
        return None, (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1][:300]
    return json.loads(lines[-1][len("RESULT "):]), ""


def run_groups(gs: list[Group], options: dict[str, Any], deadline: float, check: bool) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for g in gs:
        left = deadline - time.monotonic()
        todo = [{"group": g.name, "model": r.model, "variant": r.variant, "impl": r.impl, "tweaks": r.tweaks} for r in g.rows]
        if left < 20:
            rows += [{**r, "error": "skipped: time budget spent"} for r in todo]
            continue
        print(f"[{time.strftime('%H:%M:%S')}] {g.name}: {len(todo)} rows, at most {min(g.timeout_s, left):.0f} s", flush=True)
        got, why = spawn(["--worker", json.dumps({"rows": todo, "options": options, "check": check})], min(g.timeout_s, left))
        done = got if got is not None else [{**r, "error": why} for r in todo]
        for r in done:
            print(f"    {r['model']}, {r['variant']}: "
                  + (f"{r['images_per_s']:,.0f} img/s" if "images_per_s" in r else r["error"]), flush=True)
        rows += done
    return rows


def run_profile_group(g: Group, options: dict[str, Any], deadline: float, check: bool, mode: str) -> dict[str, Any]:
    """The kernel profile and convolution probe in a worker, rendered; or why not."""
    from profile_step import render, render_conv

    left = min(g.timeout_s, deadline - time.monotonic())
    if left < 20:
        return {"text": "Kernel profile: skipped, time budget spent."}
    print(f"[{time.strftime('%H:%M:%S')}] {g.name}: {len(g.rows)} models, at most {left:.0f} s", flush=True)
    job = {"kind": "profile", "rows": [{"model": r.model, "impl": r.impl, "tweaks": r.tweaks} for r in g.rows],
           "options": options, "check": check}
    got, why = spawn(["--worker", json.dumps(job)], left)
    if got is None:
        return {"text": f"Kernel profile: {why}"}
    what = "GPU kernel time" if mode == "cuda" else "CPU operator time"
    text = (f"Kernel profile (eager, concatenated, training step):\n\n{render(got['rows'], what)}\n"
            f"3x3 convolution, forward + backward, batch {options['batch_size']}:\n\n{render_conv(got['conv'])}")
    print(text, flush=True)
    return {**got, "text": text}


def table(rows: list[dict[str, Any]], models: dict[str, tuple], goals: bool) -> str:
    """Markdown: images/s against the goal (H100 goals, shown for CUDA only), the ratio to eager
    ResNet-18 of the same run, and the paired ratio to the first row of the row's group (timed
    interleaved with it)."""
    base = next((r["images_per_s"] for r in rows if r["model"] == R18 and r["variant"] == "eager" and "images_per_s" in r), None)
    lines = ["| model | variant | images/s | goal | x ResNet-18 | x group's first | step ms | peak GiB | TFLOP/s | warm-up s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        goal = models[r["model"]][2] if goals else None
        goal_text = f"{goal:,}" if goal else ""
        if "error" in r:
            lines.append(f"| {r['model']} | {r['variant']} | {r['error']} | {goal_text} | | | | | | |")
            continue
        met = " (met)" if goal and r["images_per_s"] >= goal else ""
        ratio = f"{r['images_per_s'] / base:.2f}" if base else ""
        peak = r["peak_memory_bytes"]  # negative for CUDA graphs: their pool predates the probe's reset
        mem = "" if peak is None or peak < 0 else f"{peak / 2**30:.2f}"
        lines.append(
            f"| {r['model']} | {r['variant']} | {r['images_per_s']:,.0f}{met} | {goal_text} | {ratio} | {r['paired']:.2f} | "
            f"{r['step_ms']:.2f} | {mem} | {r['effective_tflops']:.2f} | {r['warmup_s']:.0f} |"
        )
    return "\n".join(lines)


def selected(args: argparse.Namespace) -> list[Group]:
    """The groups a run measures, in priority order: ``--check``, ``--no-compile`` and ``--only`` applied."""
    gs = groups("cpu" if args.check else args.device)
    if args.no_compile or args.check:
        gs = [g for g in gs if not g.compiled]
    if args.only:
        gs = [g for g in gs if any(word in g.name for word in args.only.split(","))]
    return gs


def listing(args: argparse.Namespace) -> str:
    """What a run would measure: one line per row (``group | model | variant``), in the order it runs."""
    mode = "check" if args.check else args.device
    options = SETTINGS[mode]
    budget = args.budget_s or (350 if mode == "cuda" else None)
    lines = [f"would run on {options['device']}: batch {options['batch_size']}, amp {options['amp']}, "
             + (f"budget {budget:.0f} s (groups past it are skipped)" if budget else "no time budget")]
    for g in selected(args):
        if g.kind == "proxy":
            lines.append(f"  {g.name} | proxy trials of a new model (section 3) | at most {g.timeout_s:.0f} s")
        lines += [f"  {g.name} | {r.model} | {r.variant}" + (" (kernel profile)" if g.kind == "profile" else "")
                  for r in g.rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--check", action="store_true", help="tiny models, batch 2, on CPU: checks the plumbing, not speed")
    ap.add_argument("--budget-s", type=float, help="wall-clock budget for everything (default: 350 on CUDA, none on CPU)")
    ap.add_argument("--no-compile", action="store_true", help="leave out the torch.compile rows")
    ap.add_argument("--only", help="comma-separated words: run only the groups whose names hold one "
                                   "(eager, cuda-graph, compile, reduce-overhead, proxy, ResNet-18, ...)")
    ap.add_argument("--thread-clock", action="store_true",
                    help="CPU: one thread, timed by its CPU time, which other jobs on a shared machine hardly disturb")
    ap.add_argument("--json", type=Path, help="also write every row to this file")
    ap.add_argument("--cifar", help="CIFAR-10 for the proxy trials (default .device_data/cifar10-jpeg.zip, if there)")
    ap.add_argument("--list", action="store_true", help="print the groups and rows a run would measure, and stop")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--proxy-worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.list:  # before the CUDA check: gpu.sh --dry-run lists a GPU run on any machine
        print(listing(args))
        return
    from proxy_trials import proxy_section, proxy_worker

    if args.worker:
        job = json.loads(args.worker)
        print("RESULT " + json.dumps(run_profile(job) if job.get("kind") == "profile" else run_group(job)), flush=True)
        return

    if args.proxy_worker:
        proxy_worker(json.loads(args.proxy_worker))
        return
    start = time.monotonic()
    mode = "check" if args.check else args.device
    if mode == "cuda" and not torch.cuda.is_available():
        print("error: the GPU table needs CUDA, and torch sees no GPU here "
              "(`python benchmarks/throughput.py --check` checks the script on CPU)", file=sys.stderr)
        sys.exit(2)
    options, models = SETTINGS[mode], CHECK_MODELS if args.check else MODELS
    if args.thread_clock and mode != "cuda":
        os.environ["OMP_NUM_THREADS"] = "1"  # the workers inherit it
        torch.set_num_threads(1)
        options = {**options, "clock": "thread"}
    budget = args.budget_s or (350 if mode == "cuda" else 1e9)
    deadline = start + budget
    gs = selected(args)
    device = torch.cuda.get_device_name() if mode == "cuda" else f"CPU, {torch.get_num_threads()} thread(s)"
    if options.get("clock") == "thread":
        device += ", thread CPU time"
    print(f"{device}, torch {torch.__version__}, budget {budget:.0f} s", flush=True)
    rows: list[dict[str, Any]] = []
    proxy = {"rows": [], "text": "Proxy trials (section 3): not run (--only)."}
    profile: dict[str, Any] = {"text": "Kernel profile: not run."}
    for g in gs:
        if g.kind == "proxy":
            print(f"[{time.strftime('%H:%M:%S')}] {PROXY}", flush=True)
            proxy = proxy_section(args.cifar, min(deadline, time.monotonic() + g.timeout_s), mode, __file__)
            print(proxy["text"], flush=True)
        elif g.kind == "profile":
            profile = run_profile_group(g, options, deadline, args.check, mode)
        else:
            rows += run_groups([g], options, deadline, args.check)
        if args.json:  # after every group: a run cut short keeps what it measured
            args.json.write_text(json.dumps({"device": device, "options": options, "rows": rows, "proxy": proxy,
                                             "profile": profile}, indent=1) + "\n")
    print(f"\n## Issue 6 throughput: {device}{' (--check: tiny models, plumbing only)' if args.check else ''}, "
          f"torch {torch.__version__}, {time.strftime('%Y-%m-%d')}, batch {options['batch_size']}, amp {options['amp']}, "
          f"channels_last, {time.monotonic() - start:.0f} s\n")
    print(table(rows, models, goals=mode == "cuda"))
    print("\n" + proxy["text"])
    print("\n" + profile["text"])


if __name__ == "__main__":
    main()
