"""How long a search will take on this machine, before it starts: proxy trials timed from real training steps.

A small, a median and a large feasible spec of the space (by FLOPs, of a few hundred drawn) are
each timed for a few real training steps (:func:`rksearch.training.bench.measure`: forward, backward, SGD)
at the proxy's batch size, width and device, with the threads a trial gets. A trial's seconds are
its epochs of training and validation images at that rate; the search's are the mean trial times
the trials asked, over the trials run at once, times the share of epochs ASHA lets trials run
(promoting 1 in ``reduction_factor`` at each rung). Timings are cached per spec and machine
(``~/.cache/rksearch/estimates.json``, ``RKSEARCH_CACHE`` moves it).
"""
from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rksearch.models.registry import build_model, count
from rksearch.search.cluster import plan_concurrency
from rksearch.space.config import Resources
from rksearch.space.search_space import SearchSpace

SIZES = {"demo": 2000, "cifar10": 50_000, "cifar100": 50_000, "svhn": 73_257}  # training images before the split
QUANTILES = (("small", 0.1), ("median", 0.5), ("large", 0.9))
EVAL_COST = 1 / 3  # an image evaluated costs about a third of one trained (forward only)
STARTUP_S = 15.0  # Ray's start and the first workers (issue 22 measured about 15 s on 2 CPU cores)
TRIAL_START_S = 2.0  # per trial: Tune's bookkeeping, the data split and the model build (rough; issue 22 measured the parts)


@dataclass(frozen=True)
class Timed:
    """One timed spec: its name, FLOPs and the images per second one training step reaches."""

    role: str
    name: str
    flops: int
    images_per_s: float
    spec: Any = None  # the spec timed


@dataclass(frozen=True)
class Estimate:
    """Seconds per proxy trial of a small, median and large spec, and for the whole search."""

    timed: tuple[Timed, ...]
    trial_seconds: dict[str, float]  # role -> seconds of one full proxy trial
    epochs_share: float  # of the full proxy's epochs, what an average trial runs under ASHA (1 without)
    trials: int
    concurrency: int
    device: str
    cpus: int

    @property
    def total_seconds(self) -> float:
        mean = sum(self.trial_seconds.values()) / len(self.trial_seconds)
        return STARTUP_S + (mean * self.epochs_share + TRIAL_START_S) * self.trials / self.concurrency

    def line(self) -> str:
        total = self.total_seconds
        amount = f"{total / 3600:.1f} hours" if total >= 3600 else f"{total / 60:.0f} minutes" if total >= 120 \
            else f"{total:.0f} seconds"
        per = ", ".join(f"{r} {self.trial_seconds[r]:.0f} s" for r in self.trial_seconds)
        asha = f", ASHA runs {100 * self.epochs_share:.0f} % of the epochs" if self.epochs_share < 1 else ""
        where = f"{self.device.upper() if self.device == 'cpu' else self.device}, {self.cpus} cores"
        return (f"about {amount} on this machine ({where}): {self.trials} trials, {self.concurrency} at once{asha}; "
                f"seconds per full proxy trial: {per}")


def asha_share(grace: int, reduction: int, epochs: int) -> float:
    """The expected share of ``epochs`` a trial runs under ASHA: all trials reach the first rung
    (``grace``), 1 in ``reduction`` each next one (grace x reduction^k), the last share the end."""
    if epochs <= 1:
        return 1.0
    rungs = []
    r = min(grace, epochs)
    while r < epochs:
        rungs.append(r)
        r *= reduction
    expected, last, alive = 0.0, 0, 1.0
    for rung in rungs:
        expected += (rung - last) * alive
        last, alive = rung, alive / reduction
    expected += (epochs - last) * alive
    return expected / epochs


def _cache_path() -> Path:
    root = os.environ.get("RKSEARCH_CACHE") or Path.home() / ".cache" / "rksearch"
    return Path(root) / "estimates.json"


def _images(space: SearchSpace) -> tuple[int, int]:
    """Training and validation images per epoch of the proxy."""
    p = space.proxy
    total = SIZES.get(p.dataset)
    if total is None:  # an image folder: count what the split will hold
        from rksearch.data import load_dataset

        total = len(load_dataset(p.dataset, p.root).train)
    train = min(p.train_subset or total, total - p.val_size)
    return max(1, train), min(p.val_subset or p.val_size, p.val_size)


def estimate(space: SearchSpace, *, trials: int | None = None, samples: int = 300, seed: int = 0) -> Estimate:
    """Time a small, a median and a large spec of ``space`` and extrapolate (see the module)."""
    import torch

    from rksearch.training.bench import BenchOptions, Candidate, measure
    from rksearch.training.trainer import resolve_device

    rng = random.Random(seed)
    specs = sorted((s for s in (space.sample(rng) for _ in range(samples)) if space.feasible(s)),
                   key=lambda s: count(s).flops)
    if not specs:
        specs = [space.sample(rng)]
    device = resolve_device(space.proxy.device, "proxy.device").type
    need, concurrency = space.search.resources, space.search.concurrency
    if need.gpu > 0 and device == "cpu":  # as run_search's fit_to_machine on a local Ray
        need = Resources(cpu=1.0)
        concurrency = None if concurrency is None else max(1, min(concurrency, os.cpu_count() or 1))
    this_machine = {"CPU": os.cpu_count() or 1, "GPU": torch.cuda.device_count() if device == "cuda" else 0}
    concurrency, _ = plan_concurrency([this_machine], need, concurrency)  # auto: what this machine holds
    cpus = max(1, int(need.cpu))
    key = f"{device}|{cpus}|{space.proxy.batch_size}|{space.proxy.width}|{torch.__version__}"
    cache_file = _cache_path()
    try:
        cache: dict[str, Any] = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    timed = []
    before = torch.get_num_threads()
    torch.set_num_threads(cpus)  # what a trial gets (rksearch.training.proxy.use_assigned_cpus)
    try:
        for role, q in QUANTILES:
            spec = specs[min(len(specs) - 1, int(q * len(specs)))]
            entry = f"{key}|{spec.to_json()}"
            if entry not in cache:
                small = spec.scaled(space.proxy.width)
                c = count(small)
                candidate = Candidate(spec.name, build_model(small), (small.in_channels, small.input_size, small.input_size),
                                      small.num_classes, c.flops, c.params)
                [m] = measure([candidate], BenchOptions(device=device, batch_size=space.proxy.batch_size,
                                                        channels_last=device == "cuda", repeats=3, steps=2))
                cache[entry] = m.images_per_s
            timed.append(Timed(role, spec.name, count(spec).flops, float(cache[entry]), spec))
    finally:
        torch.set_num_threads(before)
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        cache_file.write_text(json.dumps(cache))
    except OSError:
        pass  # an estimate without a cache is still an estimate
    train, val = _images(space)
    epochs = space.proxy.epochs
    seconds = {t.role: epochs * (train + EVAL_COST * val) / t.images_per_s for t in timed}
    sched = space.search.scheduler
    share = asha_share(sched.grace_epochs, sched.reduction_factor, epochs) if sched.kind == "asha" else 1.0
    return Estimate(tuple(timed), seconds, share, trials or space.search.trials, concurrency, device,
                    os.cpu_count() or 1)
