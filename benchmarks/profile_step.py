"""Where a training step's time goes: kernel time per step by category (convolution, BatchNorm,
ReLU and other elementwise, cat/copy, optimizer, fused Triton) and the top kernels.

    python benchmarks/profile_step.py ERKNet-6x1_6x1_6x1 -k 36 --device cuda      # batch 512, bf16
    python benchmarks/profile_step.py IRKNet-2x1_2x1 -k 4 --device cpu --batch-size 2

On CUDA it sums the GPU kernels' own time, on a CPU the operators' self time. It runs the same
step as ``rksearch bench`` (channels_last, SGD), after warm-up, under ``torch.profiler``;
``throughput.py`` calls :func:`profile_rows` for its "profile" group. The table says which lever
is worth building next: time in BatchNorm and copies is memory traffic that fusing saves, time
in convolutions is what only other convolution algorithms or shapes change.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

CATEGORIES = (  # first match wins; kernel names (CUDA) or aten operator names (CPU), lower case
    ("optimizer", r"foreach|multi_tensor|_fused_sgd|sgd"),
    ("triton (fused)", r"triton"),
    ("batchnorm", r"batch_?norm|bn_(fw|bw)|welford"),
    ("convolution", r"conv|xmma|implicit_?gemm|fprop|dgrad|wgrad|cutlass|cudnn|gemm|mkldnn|sm\d+_"),
    ("cat / copy", r"\bcat\b|cat_|catarray|copy|contiguous|to_copy|clone"),
    ("relu / threshold", r"relu|threshold|clamp_min"),
    ("elementwise / reduce", r"elementwise|vectorized|reduce|add|mul|sum|mean|fill|zero"),
)


def category(name: str) -> str:
    low = name.lower()
    return next((c for c, pat in CATEGORIES if re.search(pat, low)), "other")


def kernel_times(trainer: Any, steps: int) -> dict[str, tuple[float, int]]:
    """{kernel or operator name: (microseconds per step, calls per step)} over ``steps`` steps."""
    cuda = trainer.device.type == "cuda"
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=acts) as prof:
        for _ in range(steps):
            trainer.step()
        if cuda:
            torch.cuda.synchronize()
    out: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for e in prof.key_averages():
        t = e.self_device_time_total if cuda else e.self_cpu_time_total
        if t <= 0 or (not cuda and not e.key.startswith("aten::")):
            continue
        out[e.key][0] += t / steps
        out[e.key][1] += e.count / steps
    return {k: (v[0], int(round(v[1]))) for k, v in out.items()}


def profile_rows(cands: list[Any], options: Any, steps: int = 3, top: int = 8) -> list[dict[str, Any]]:
    """One row per candidate: per-category ms per step and its top kernels."""
    from rksearch.training.bench import StepTimer, warm_runtime

    opts = options.resolved()
    device = torch.device(opts.device)
    torch.backends.cudnn.benchmark = device.type == "cuda"
    warm_runtime(cands, opts, device)
    rows = []
    for c in cands:
        t = StepTimer(c, replace(opts, **c.tweaks), device)
        for _ in range(max(3, opts.warmup)):
            t.step()
        times = kernel_times(t, steps)
        total = sum(us for us, _ in times.values())
        cats: dict[str, float] = defaultdict(float)
        for name, (us, _) in times.items():
            cats[category(name)] += us
        kernels = sorted(times.items(), key=lambda kv: -kv[1][0])[:top]
        rows.append({
            "label": c.label, "total_ms": total / 1e3,
            "categories": {k: v / 1e3 for k, v in sorted(cats.items(), key=lambda kv: -kv[1])},
            "top": [{"name": n[:90], "ms": us / 1e3, "calls": calls, "category": category(n)} for n, (us, calls) in kernels],
        })
        del t
    return rows


CONV_SHAPES = ((36, 36), (40, 40), (64, 64), (180, 36), (184, 40), (216, 36), (216, 40), (216, 64))


def conv_rows(device: str, batch: int, size: int = 32, shapes=CONV_SHAPES, repeats: int = 20) -> list[dict[str, Any]]:
    """Forward + backward of one bias-free 3x3 convolution per (in, out) channels, channels_last,
    bf16 on CUDA: does a growth rate that is no multiple of 8 (k = 36) cost the tensor cores?"""
    dev = torch.device(device)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    torch.backends.cudnn.benchmark = dev.type == "cuda"
    rows = []
    for cin, cout in shapes:
        x = torch.randn(batch, cin, size, size, device=dev, dtype=dtype).contiguous(memory_format=torch.channels_last)
        x.requires_grad_(True)
        w = torch.randn(cout, cin, 3, 3, device=dev, dtype=dtype, requires_grad=True)
        w.data = w.data.contiguous(memory_format=torch.channels_last)

        def step() -> None:
            torch.nn.functional.conv2d(x, w, padding=1).sum().backward()

        for _ in range(3):
            step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(repeats):
            step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        s = (time.perf_counter() - t0) / repeats
        flops = 3 * 2 * batch * size * size * cin * cout * 9
        rows.append({"in": cin, "out": cout, "ms": 1e3 * s, "tflops": flops / s / 1e12})
    return rows


def render_conv(rows: list[dict[str, Any]]) -> str:
    lines = ["| in -> out channels | fwd+bwd ms | TFLOP/s |", "|---|---:|---:|"]
    lines += [f"| {r['in']} -> {r['out']} | {r['ms']:.2f} | {r['tflops']:.1f} |" for r in rows]
    return "\n".join(lines)


def render(rows: list[dict[str, Any]], what: str) -> str:
    lines = []
    for r in rows:
        if "error" in r:
            lines.append(f"{r['label']}: {r['error']}")
            continue
        total = r["total_ms"] or 1.0
        cats = ", ".join(f"{k} {v:.2f} ({v / total:.0%})" for k, v in r["categories"].items())
        lines.append(f"**{r['label']}**: {r['total_ms']:.2f} ms of {what} per step: {cats}\n")
        lines.append("| kernel | category | ms/step | calls/step |\n|---|---|---:|---:|")
        lines += [f"| `{k['name']}` | {k['category']} | {k['ms']:.2f} | {k['calls']} |" for k in r["top"]]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    from rksearch.training.bench import BenchOptions, candidate

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name")
    ap.add_argument("-k", "--growth-rate", type=int)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--impl", default="concat")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    opts = BenchOptions(device=args.device, batch_size=args.batch_size)
    rows = profile_rows([candidate(args.name, args.growth_rate, args.impl)], opts)
    cuda = opts.resolved().device == "cuda"
    print(json.dumps(rows, indent=1) if args.json else render(rows, "GPU kernel time" if cuda else "CPU operator time"))


if __name__ == "__main__":
    main()
