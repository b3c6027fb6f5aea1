"""Training-step throughput on random inputs: what ``rksearch bench`` and ``benchmarks/throughput.py`` measure.

A search trains hundreds of candidates, so the number that matters is images per second of a
whole training step (forward, backward, SGD update). Every model of one run is warmed up first
and then timed in interleaved repeats, so a candidate and its ResNet-18 baseline see the same
machine state and their ratio survives a shared or throttled machine. Only torch and this
package's models are imported: the GPU script runs where typer and rich may be missing.
"""
from __future__ import annotations

import copy
import statistics
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn

from rksearch.core.errors import RKSearchError
from rksearch.models.registry import build_model, count
from rksearch.training.memory import MemoryProbe
from rksearch.training.step import TrainStep, sgd
from rksearch.training.trainer import resolve_device

AMPS = ("auto", "bf16", "off")
IMPLS = {  # --impl: how every BN-ReLU-conv computes (rksearch.models.layers.Impl), never what
    "concat": {},  # the default: concatenated, channels padded to multiples of 8 on a GPU
    "per-connection": {"per_connection": True},  # the straightforward reference
    "unaligned": {"align": 1},  # concatenated, no channel padding
    "align-in": {"align_output": "off"},  # input channels padded, outputs never padded
    "align-dense": {"align_output": "dense"},  # padded outputs sliced and copied dense once
    "concat-copy": {"keep_parts": False},  # BN's backward keeps a concatenated copy (faster, more memory)
}
BASELINES = ("resnet18", "none")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CLOCKS = ("wall", "thread")


def _check(value: Any, allowed: tuple, what: str) -> None:
    if value not in allowed:
        raise RKSearchError(f"expected one of {', '.join(map(str, allowed))}, got {value!r}", field=what)


@dataclass(frozen=True)
class BenchOptions:
    """How every model of one run is trained and timed. ``None`` fields depend on the device."""

    device: str = "auto"
    batch_size: Optional[int] = None  # 512 on CUDA, 32 on CPU
    amp: str = "auto"  # bf16 autocast on CUDA, as the trainer; off on CPU
    compile: bool = False
    compile_mode: str = "default"
    cuda_graph: bool = False  # capture the whole eager step (forward, backward, SGD) as one CUDA graph
    channels_last: Optional[bool] = None  # on: 1.25x on CPU (oneDNN), the usual layout for cuDNN
    warmup: Optional[int] = None  # steps before timing: 5 on CUDA (compile needs several), 2 on CPU
    repeats: int = 5
    steps: Optional[int] = None  # steps per timed repeat: 10 on CUDA, 1 on CPU
    clock: str = "wall"  # "thread": CPU time of this thread, for one-thread CPU runs on a shared machine

    def __post_init__(self) -> None:
        _check(self.amp, AMPS, "--amp")
        _check(self.clock, CLOCKS, "--clock")
        _check(self.compile_mode, COMPILE_MODES, "--compile-mode")
        for name in ("batch_size", "warmup", "repeats", "steps"):
            value = getattr(self, name)
            if value is not None and (value < (0 if name == "warmup" else 1)):
                raise RKSearchError(f"must be positive, got {value}", field=f"--{name.replace('_', '-')}")
        if self.cuda_graph and self.compile:
            raise RKSearchError("--cuda-graph captures the eager step; for CUDA graphs with --compile use "
                                "--compile-mode reduce-overhead", field="--cuda-graph")

    def resolved(self) -> "BenchOptions":
        """A copy with the device and every device-dependent default filled in."""
        dev = resolve_device(self.device, "--device")
        cuda = dev.type == "cuda"
        if self.cuda_graph and not cuda:
            raise RKSearchError("CUDA graphs need --device cuda", field="--cuda-graph")
        if self.clock == "thread" and (cuda or torch.get_num_threads() != 1):
            raise RKSearchError("the thread clock measures one-thread CPU runs only (set OMP_NUM_THREADS=1)",
                                field="--clock")
        return BenchOptions(
            device=dev.type,
            batch_size=self.batch_size or (512 if cuda else 32),
            amp=("bf16" if cuda else "off") if self.amp == "auto" else self.amp,
            compile=self.compile,
            compile_mode=self.compile_mode,
            cuda_graph=self.cuda_graph,
            channels_last=True if self.channels_last is None else self.channels_last,
            warmup=(5 if cuda else 2) if self.warmup is None else self.warmup,
            repeats=self.repeats,
            steps=self.steps or (10 if cuda else 1),
            clock=self.clock,
        )


@dataclass
class Candidate:
    """A model to time, with what its throughput is judged against."""

    label: str
    model: nn.Module
    input_shape: tuple[int, int, int]  # (C, H, W)
    num_classes: int
    forward_flops: int  # one image
    params: int
    tweaks: dict[str, Any] = field(default_factory=dict)  # BenchOptions fields for this candidate only


def forward_flops(model: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """FLOPs (2 x MACs) of one image's forward pass, by PyTorch's own counter."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *input_shape))
    model.train(was_training)
    return counter.get_total_flops()


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def candidate(name_or_spec: str, growth_rate: Any = None, impl: str = "concat", **fields: Any) -> Candidate:
    """An RKNet or a DenseNet/CliqueNet baseline from a name or spec file (``impl`` picks how its
    BN-ReLU-convs compute), or ``resnet18``."""
    _check(impl, tuple(IMPLS), "--impl")
    if name_or_spec == "resnet18":
        if impl != "concat":
            raise RKSearchError(f"{impl} applies to RKNets only, not to resnet18", field="--impl")
        return resnet18_candidate()
    from rksearch.arch.resolve import resolve_network
    from rksearch.models.layers import set_impl
    from rksearch.arch.rknet import RKNetSpec

    spec = resolve_network(name_or_spec, growth_rate=growth_rate, **fields)
    model = set_impl(build_model(spec), **IMPLS[impl])
    c = count(spec)
    label = spec.name  # a baseline's name says its growth rate
    if isinstance(spec, RKNetSpec):
        label += f" k={','.join(sorted({str(p.growth_rate) for p in spec.periods}))}"
    return Candidate(label, model, (spec.in_channels, spec.input_size, spec.input_size), spec.num_classes, c.flops, c.params)


def resnet18_candidate(input_shape: tuple[int, int, int] = (3, 32, 32), num_classes: int = 10) -> Candidate:
    """The CIFAR ResNet-18 (3x3 stem, no max-pool) at the candidate's input size and classes."""
    from rksearch.models.resnet import resnet18_cifar

    model = resnet18_cifar(num_classes=num_classes, in_channels=input_shape[0])
    return Candidate("ResNet-18", model, input_shape, num_classes, forward_flops(model, input_shape), _params(model))


@dataclass
class Measurement:
    label: str
    batch_size: int
    forward_flops: int
    params: int
    peak_memory_bytes: Optional[int]
    warmup_s: float  # building, compiling or capturing, and the warm-up steps
    step_s: list[float] = field(default_factory=list)  # seconds per step, one per repeat

    @property
    def median_step_s(self) -> float:
        return statistics.median(self.step_s)

    @property
    def images_per_s(self) -> float:
        return self.batch_size / self.median_step_s

    @property
    def effective_tflops(self) -> float:
        """Forward + backward counted as 3 forwards, as is usual for convolutions."""
        return 3 * self.forward_flops * self.images_per_s / 1e12

    def to_dict(self, prefix: str = "") -> dict[str, Any]:
        d = {
            "images_per_s": self.images_per_s, "step_ms": 1e3 * self.median_step_s,
            "step_ms_repeats": [1e3 * s for s in self.step_s], "peak_memory_bytes": self.peak_memory_bytes,
            "forward_flops": self.forward_flops, "params": self.params, "effective_tflops": self.effective_tflops,
            "warmup_s": self.warmup_s,
        }
        return {prefix + k: v for k, v in d.items()}


class StepTimer:
    """One candidate's :class:`~rksearch.training.step.TrainStep` on fixed random inputs on the device,
    and its timing."""

    def __init__(self, c: Candidate, opts: BenchOptions, device: torch.device):
        self.device, self.opts = device, opts
        fmt = torch.channels_last if opts.channels_last else torch.contiguous_format
        self.model = c.model.to(device=device, memory_format=fmt).train()
        self.x = torch.randn(opts.batch_size, *c.input_shape, device=device).contiguous(memory_format=fmt)
        self.y = torch.randint(0, c.num_classes, (opts.batch_size,), device=device)
        # the trainer's SGD, multi-tensor (fused under a CUDA graph); a small learning rate keeps
        # random-label training finite, as NaNs and denormals would skew CPU timings
        optimizer = sgd(self.model.parameters(), device, graphed=opts.cuda_graph, foreach=not opts.cuda_graph,
                        lr=1e-3, momentum=0.9, weight_decay=5e-4, nesterov=True)
        forward: Callable[[Tensor], Tensor] = self.model
        if opts.compile:
            forward = torch.compile(self.model, mode=None if opts.compile_mode == "default" else opts.compile_mode)
        # the step reads x and y in place: a captured step copies no batch in
        self.train_step = TrainStep(self.model, optimizer, amp=opts.amp == "bf16", graphed=opts.cuda_graph,
                                    forward=forward, inputs=(self.x, self.y),
                                    mark_step=opts.compile and opts.compile_mode in ("reduce-overhead", "max-autotune"))
        if opts.cuda_graph:
            self.train_step.capture()

    def step(self) -> None:
        self.train_step(self.x, self.y)

    def time(self, n: int) -> float:
        """Seconds per step over ``n`` steps, timed on the device (or on this thread's CPU clock,
        which other processes on the machine hardly disturb)."""
        if self.device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(n):
                self.step()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3 / n
        clock = time.thread_time if self.opts.clock == "thread" else time.perf_counter
        t0 = clock()
        for _ in range(n):
            self.step()
        return (clock() - t0) / n


def warm_runtime(candidates: list[Candidate], opts: BenchOptions, device: torch.device) -> None:
    """A batch-2 eager step of a copy of every candidate first, so that the first one's memory does
    not carry the runtime's one-off costs: library code paged in, thread pools, cuDNN and cuBLAS handles."""
    with torch.backends.cudnn.flags(enabled=True, benchmark=False):  # no autotuning for batch 2
        for c in candidates:
            tiny = replace(opts, **{**c.tweaks, "batch_size": 2, "compile": False, "cuda_graph": False})
            StepTimer(replace(c, model=copy.deepcopy(c.model)), tiny, device).step()


def measure(candidates: list[Candidate], options: BenchOptions) -> list[Measurement]:
    """Warm up every candidate (its peak memory read on its own, above what was allocated before it
    was built), then time all of them in interleaved repeats."""
    opts = options.resolved()
    device = torch.device(opts.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN time its algorithms once
    warm_runtime(candidates, opts, device)
    timers, results = [], []
    for c in candidates:
        probe = MemoryProbe(device)
        t0 = time.perf_counter()
        t = StepTimer(c, replace(opts, **c.tweaks), device)
        for _ in range(t.opts.warmup):
            t.step()
        t.time(1)
        warmup_s = time.perf_counter() - t0
        probe.reset_peak()
        t.time(1)
        timers.append(t)
        results.append(Measurement(c.label, t.opts.batch_size, c.forward_flops, c.params, probe.peak_bytes(), warmup_s))
    for _ in range(opts.repeats):
        for t, r in zip(timers, results):
            r.step_s.append(t.time(t.opts.steps))
    return results


def paired_ratio(a: Measurement, b: Measurement) -> float:
    """Images/s of ``a`` over ``b``: the median over repeats of the ratio of neighbouring timings,
    which a machine whose load changes during the run skews far less than a ratio of medians."""
    return statistics.median((a.batch_size / ta) / (b.batch_size / tb) for ta, tb in zip(a.step_s, b.step_s))


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def run_bench(
    name_or_spec: str, growth_rate: Any = None, *, impl: str = "concat", baseline: str = "resnet18",
    options: BenchOptions = BenchOptions(), **fields: Any,
) -> dict[str, Any]:
    """``rksearch bench`` as a dict: the candidate's numbers, ``baseline_``-prefixed ResNet-18
    numbers (``None`` without a baseline) and ``ratio`` = candidate / baseline images/s."""
    _check(baseline, BASELINES, "--baseline")
    opts = options.resolved()
    c = candidate(name_or_spec, growth_rate, impl, **fields)
    cands = [c]
    if baseline == "resnet18":
        cands.append(resnet18_candidate(c.input_shape, c.num_classes))
    ms = measure(cands, opts)
    out: dict[str, Any] = {
        "name": c.label, "device": opts.device, "device_name": device_name(torch.device(opts.device)),
        "torch": torch.__version__, "batch_size": opts.batch_size, "amp": opts.amp,
        "compile": opts.compile_mode if opts.compile else False, "cuda_graph": opts.cuda_graph,
        "channels_last": opts.channels_last,
        "impl": impl, "warmup": opts.warmup, "repeats": opts.repeats, "steps": opts.steps, "clock": opts.clock,
        "peak_memory_kind": MemoryProbe.kind(torch.device(opts.device)),
        **ms[0].to_dict(),
    }
    base = ms[1].to_dict("baseline_") if len(ms) > 1 else dict.fromkeys(ms[0].to_dict("baseline_"))
    out["baseline"] = None if baseline == "none" else baseline
    out.update(base)
    out["ratio"] = paired_ratio(ms[0], ms[1]) if len(ms) > 1 else None
    return out


def format_rows(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of ``run_bench``-style rows (label, images/s, step, memory, TFLOP/s)."""
    head = ("model", "images/s", "step ms", "peak MiB", "GFLOPs", "TFLOP/s", "ratio")
    lines = [head]
    for r in rows:
        mem = r.get("peak_memory_bytes")
        ratio = r.get("ratio")
        lines.append((
            str(r["name"]), f"{r['images_per_s']:,.0f}", f"{r['step_ms']:.1f}",
            "-" if mem is None else f"{mem / 2**20:,.0f}", f"{r['forward_flops'] / 1e9:.3f}",
            f"{r['effective_tflops']:.2f}", "" if ratio is None else f"{ratio:.2f}",
        ))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join(
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths))).rstrip()
        for line in lines
    )
