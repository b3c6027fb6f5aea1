"""The latency protocol: a full-size network's forward pass timed on one device under a lock, warmed up until it settles.

One measurement: the network built by :func:`~rksearch.models.registry.build_model` (the full
spec, never the proxy's narrower copy), in eval mode under ``torch.inference_mode``, one forward
pass of ``batch`` random images per run. Warm-up runs go in windows of ``window`` runs until the
median of a window is within ``settle`` (2 %) of the one before (or a cap); then ``rounds`` rounds
of timed runs, each until the 95 % interval of its median (distribution-free, from order
statistics) is within ``precision`` (1 %) of it, at least ``min_runs`` and at most ``max_runs`` /
``rounds`` runs or ``max_seconds`` / ``rounds``. The number is the fastest round's median: what
else runs on a shared machine only ever adds time, and it comes and goes between rounds (one
round's median: a coefficient of variation of 11-21 % across processes on the 2-core development
machine; see benchmarks/README.md for the rounds' own).
Every measurement holds an exclusive lock on its device (a ``flock`` on a per-device file in
the cache folder), so two measurements on one machine, in any processes, never share a device.

A :class:`DeviceKey` says what a number is valid for: the device's name (CPU model or GPU),
torch's version, threads, batch, precision and memory format. Torch loads only to measure.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import math
import platform
import re
import statistics
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator

from rksearch.arch.resolve import AnySpec
from rksearch.core.errors import RKSearchError
from rksearch.models.registry import build_model

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class Settings:
    """What a measurement is asked for; ``threads`` None is torch's default in the measuring process."""

    device: str = "auto"
    batch: int = 1
    precision: str = "fp32"
    threads: int | None = None
    channels_last: bool = True

    def checked(self, *, source: str | Path | None = None, prefix: str = "--") -> "Settings":
        """These settings, or a user error naming the option (``--batch``) or field (``latency.batch``)."""
        def fail(name: str, message: str) -> RKSearchError:
            return RKSearchError(message, source=source, field=f"{prefix}{name}")

        if self.device not in DEVICES:
            raise fail("device", f"expected one of {', '.join(DEVICES)}, got {self.device!r}")
        if isinstance(self.batch, bool) or not isinstance(self.batch, int) or self.batch < 1:
            raise fail("batch", f"expected a positive number of images, got {self.batch!r}")
        if self.precision not in PRECISIONS:
            raise fail("precision", f"expected one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise fail("threads", f"expected a positive number of threads, got {self.threads!r}")
        return self


@dataclass(frozen=True)
class DeviceKey:
    """What a latency is valid for: one table per key (:mod:`rksearch.training.latency_table`)."""

    device: str  # cpu | cuda
    name: str  # the CPU model or the GPU's name
    torch: str
    threads: int
    batch: int
    precision: str
    channels_last: bool
    unit: str = "cpu"  # the physical device a lock guards: cpu, or cuda-<uuid>

    def text(self) -> str:
        layout = "channels_last" if self.channels_last else "contiguous"
        return (f"{self.name} ({self.device}), torch {self.torch}, {self.threads} thread{'s' * (self.threads != 1)}, "
                f"batch {self.batch}, {self.precision}, {layout}")

    @property
    def slug(self) -> str:
        """A file name for the key: readable, and a digest of the whole key."""
        digest = hashlib.sha256(repr(self.compared()).encode()).hexdigest()[:10]
        name = re.sub(r"[^A-Za-z0-9]+", "-", self.name).strip("-").lower()[:40] or self.device
        return f"{name}-{self.device}-b{self.batch}-{self.precision}-t{self.threads}-{digest}"

    def compared(self) -> tuple:
        """What two keys must share to share latencies (not ``unit``: a GPU's twin measures alike)."""
        return tuple(getattr(self, f.name) for f in fields(self) if f.name != "unit")

    def differences(self, other: "DeviceKey") -> list[str]:
        """``["batch 32 (not 1)", ...]``: the fields where ``self`` differs from ``other``."""
        return [f"{f.name} {getattr(self, f.name)!r} (not {getattr(other, f.name)!r})"
                for f in fields(self) if f.name != "unit" and getattr(self, f.name) != getattr(other, f.name)]

    def settings(self) -> Settings:
        return Settings(self.device, self.batch, self.precision, self.threads, self.channels_last)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DeviceKey":
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


def cpu_model() -> str:
    """The CPU's model name as /proc/cpuinfo gives it (``platform`` elsewhere)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def device_key(settings: Settings, *, field: str = "--device") -> DeviceKey:
    """The key of ``settings`` on this machine (``auto`` is CUDA where there is one)."""
    import torch

    from rksearch.training.trainer import resolve_device

    settings.checked()
    dev = resolve_device(settings.device, field=field)
    threads = settings.threads or torch.get_num_threads()
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        name, unit = props.name, f"cuda-{getattr(props, 'uuid', '') or torch.cuda.current_device()}"
    else:
        name, unit = cpu_model(), "cpu"
    return DeviceKey(dev.type, name, torch.__version__, threads, settings.batch, settings.precision,
                     settings.channels_last, unit)


def lock_dir() -> Path:
    from rksearch.data.cache import cache_dir  # data loads torch: only when a default folder is wanted

    return cache_dir() / "latency" / "locks"


@contextlib.contextmanager
def device_lock(key: DeviceKey, folder: Path | None = None) -> Iterator[None]:
    """Hold the device's lock: one measurement at a time on it, across processes (and threads:
    each call opens the file anew, and ``flock`` locks belong to an open file)."""
    folder = folder or lock_dir()
    folder.mkdir(parents=True, exist_ok=True)
    unit = re.sub(r"[^A-Za-z0-9_.-]+", "-", key.unit)
    with open(folder / f"{unit}.lock", "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


@dataclass(frozen=True)
class Protocol:
    """When warm-up ends and when timing ends (see the module's docstring)."""

    window: int = 5  # warm-up runs per window
    settle: float = 0.02  # warm-up ends when a window's median is within this share of the one before
    max_warmup: int = 200  # ... or after this many runs
    max_warmup_s: float = 30.0  # ... or seconds
    min_runs: int = 10  # timed runs, at least
    max_runs: int = 300  # timed runs, at most
    max_seconds: float = 20.0  # timing ends after this long (once min_runs are done)
    precision: float = 0.01  # ... or when the median's 95 % interval is within this share of it
    rounds: int = 5  # timed rounds; max_runs and max_seconds are shared among them


@dataclass(frozen=True)
class Latency:
    """One spec's latency on one key: ms per forward pass of the key's batch."""

    median_ms: float
    p90_ms: float
    spread: float  # the interquartile range over the median
    runs: int
    warmup_runs: int
    settled: bool  # warm-up ended by settling, not by its cap
    stable: bool  # the fastest round's timing ended by the median's interval, not by a cap
    round_medians: tuple[float, ...] = field(default=(), compare=False)  # ms; not in a table

    def line(self) -> str:
        notes = ([] if self.settled else ["warm-up never settled"]) + ([] if self.stable else ["median not stable"])
        rounds = ""
        if len(self.round_medians) > 1:
            slowest = max(self.round_medians) / min(self.round_medians) - 1
            rounds = f" in {len(self.round_medians)} rounds, the slowest round's median {100 * slowest:.0f} % above"
        return (f"median {self.median_ms:.3f} ms, p90 {self.p90_ms:.3f} ms, spread {100 * self.spread:.1f} % "
                f"({self.runs} runs{rounds} after {self.warmup_runs} warm-up{'; ' + ', '.join(notes) if notes else ''})")


def median_interval(sorted_times: list[float]) -> tuple[float, float]:
    """A distribution-free 95 % interval of the median: order statistics n/2 -+ 1.96 sqrt(n)/2."""
    n = len(sorted_times)
    half = 1.96 * math.sqrt(n) / 2
    lo, hi = max(0, math.floor(n / 2 - half)), min(n - 1, math.ceil(n / 2 + half) - 1)
    return sorted_times[lo], sorted_times[hi]


def time_runs(run: Callable[[], None], protocol: Protocol = Protocol(),
              clock: Callable[[], float] = time.perf_counter) -> Latency:
    """The protocol around ``run`` (one forward pass, synchronised): warm-up, then timed runs."""
    def once() -> float:
        t0 = clock()
        run()
        return clock() - t0

    start, warm, before, settled = clock(), 0, None, False
    while True:
        window = statistics.median(once() for _ in range(protocol.window))
        warm += protocol.window
        if before is not None and abs(window - before) <= protocol.settle * before:
            settled = True
            break
        if warm >= protocol.max_warmup or clock() - start >= protocol.max_warmup_s:
            break
        before = window
    rounds = [_timed_round(once, protocol, clock) for _ in range(max(1, protocol.rounds))]
    medians = [statistics.median(ordered) for ordered, _ in rounds]
    fastest = medians.index(min(medians))
    (ordered, stable), median = rounds[fastest], medians[fastest]
    q = statistics.quantiles(ordered, n=20, method="inclusive")  # q[4]: p25, q[14]: p75, q[17]: p90
    return Latency(1000 * median, 1000 * q[17], (q[14] - q[4]) / median if median > 0 else 0.0,
                   sum(len(r) for r, _ in rounds), warm, settled, stable, tuple(1000 * m for m in medians))


def _timed_round(once: Callable[[], float], protocol: Protocol, clock: Callable[[], float]) -> tuple[list[float], bool]:
    """One round of timed runs, sorted, and whether its median's interval met the precision."""
    share = max(1, protocol.rounds)
    max_runs, max_seconds = max(protocol.min_runs, protocol.max_runs // share), protocol.max_seconds / share
    times: list[float] = []
    start = clock()
    while True:
        times.append(once())
        if len(times) < protocol.min_runs:
            continue
        ordered = sorted(times)
        median = statistics.median(ordered)
        lo, hi = median_interval(ordered)
        stable = hi - lo <= 2 * protocol.precision * median
        if stable or len(times) >= max_runs or clock() - start >= max_seconds:
            return ordered, stable


def measure_unlocked(spec: AnySpec, key: DeviceKey, protocol: Protocol = Protocol()) -> Latency:
    """The protocol for ``spec`` on this machine's device of ``key``; the caller holds the lock."""
    import torch

    dev = torch.device(key.device)
    threads = torch.get_num_threads()
    torch.set_num_threads(key.threads)
    benchmark = torch.backends.cudnn.benchmark
    try:
        torch.backends.cudnn.benchmark = True  # as a trainer runs it: cuDNN picks its kernels in the warm-up
        torch.manual_seed(0)
        model = build_model(spec).to(dev).eval()
        x = torch.randn(key.batch, spec.in_channels, spec.input_size, spec.input_size, device=dev)
        if key.channels_last:
            model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
        autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=key.precision == "bf16")
        sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

        def run() -> None:
            model(x)
            sync()

        with torch.inference_mode(), autocast:
            return time_runs(run, protocol)
    finally:
        torch.set_num_threads(threads)
        torch.backends.cudnn.benchmark = benchmark


def measure_latency(spec: AnySpec, settings: Settings = Settings(), protocol: Protocol = Protocol(), *,
                    lock: Path | None = None) -> tuple[Latency, DeviceKey]:
    """Measure ``spec`` under ``settings`` on this machine, holding the device's lock (in ``lock``,
    default the cache folder's): the latency and the key it is valid for. No table: see
    :func:`rksearch.training.latency_table.latency_of` for a spec measured once per key."""
    key = device_key(settings)
    with device_lock(key, lock):
        return measure_unlocked(spec, key, protocol), key
