"""The proxy evaluation every search trial runs: a short training of a (possibly shrunken) spec."""
from __future__ import annotations

import math
import os
import sys
import time
import warnings
from functools import lru_cache
from typing import TYPE_CHECKING, Callable, Optional

from pydantic import Field, field_validator

from rksearch.data.sources import DATASETS
from rksearch.models.registry import count
from rksearch.training.config import TrainConfig, TrainOptions

if TYPE_CHECKING:  # the config loads with a space, without torch; the training imports it
    from rksearch.arch.resolve import AnySpec
    from rksearch.data import Dataset
    from rksearch.training.trainer import EpochMetrics


class ProxyConfig(TrainOptions):
    """How a candidate is trained during a search (the ``proxy:`` section of a space).

    The proxy may shrink the candidate (fewer epochs, data subsets, ``width`` multiplying every
    growth rate) but always reports the FLOPs and params of the full spec beside those of what
    it trained. Flat on purpose (no nested training config): the ``proxy:`` YAML and a study's
    recorded ``proxy``, which a continued study compares key by key, keep one shape.
    """

    epochs: int = Field(default=1, ge=1)
    batch_size: int = Field(default=128, ge=1)
    dataset: str = "demo"
    root: Optional[str] = None
    train_subset: Optional[int] = Field(default=None, ge=1, description="training images used (after the val split)")
    val_size: int = Field(default=500, ge=1, description="images carved out of the training set for validation")
    val_subset: Optional[int] = Field(default=None, ge=1)
    width: float = Field(default=1.0, gt=0, description="multiplier on every growth rate (and a baseline's stem width)")

    @field_validator("dataset")
    @classmethod
    def _known(cls, name: str) -> str:
        """Refused with the space (``rksearch space``), not when a search loads the data."""
        if name not in DATASETS:
            raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
        return name

    def train_config(self, seed: Optional[int] = None) -> TrainConfig:
        """The training this proxy runs: the paper's recipe with the options a proxy shares
        (``seed``, where given, replaces the proxy's own for the training only)."""
        shared = self.model_dump(include=set(TrainOptions.model_fields))
        return TrainConfig(**{**shared, **({} if seed is None else {"seed": seed})})


@lru_cache(maxsize=2)
def _dataset(name: str, root: Optional[str]) -> Dataset:
    """Decoded once per process: a search runs many trials in each worker."""
    from rksearch.data import load_dataset

    return load_dataset(name, root)


def threads_warning(cpus: float, environ: Optional[dict[str, str]] = None) -> Optional[str]:
    """What to tell a user whose ``OMP_NUM_THREADS`` asks for more threads than a trial's ``cpus``
    (None where it does not): each trial runs :func:`use_assigned_cpus` threads regardless. A
    search driver prints it once (its workers' output does not reach the terminal)."""
    asked = (os.environ if environ is None else environ).get("OMP_NUM_THREADS", "").strip()
    threads = max(1, math.floor(cpus))
    if not asked.isdigit() or int(asked) <= threads:
        return None
    return (f"OMP_NUM_THREADS={asked} in the environment, but each trial gets {cpus:g} CPU(s) from Ray: "
            f"torch runs {threads} thread(s) per trial (more threads than CPUs slow concurrent trials down)")


_warned_threads = False


def use_assigned_cpus() -> Optional[int]:
    """In a Ray worker, torch's intra-op threads = the CPUs Ray assigned to it; returns that number.

    Ray sets ``OMP_NUM_THREADS`` to a task's CPUs only where the user has not exported it, so an
    exported ``OMP_NUM_THREADS=4`` made two one-CPU trials on two cores run four threads each
    (5-6x slower). Warns (:func:`threads_warning`) once per process where the environment asked
    for more. Outside Ray (no ``ray`` imported, or not a worker), or for a worker without CPUs
    assigned, changes nothing and returns None.
    """
    global _warned_threads
    ray = sys.modules.get("ray")  # a Ray worker has imported ray; elsewhere do not pay for it
    if ray is None or not ray.is_initialized():
        return None
    try:
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    except AssertionError:  # the driver, not a worker: Ray assigned it nothing
        return None
    if not cpus:
        return None
    import torch

    threads = max(1, math.floor(cpus))
    message = threads_warning(cpus)
    if message and not _warned_threads:
        _warned_threads = True
        warnings.warn(message, RuntimeWarning, stacklevel=2)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def proxy_evaluate(spec: AnySpec, cfg: ProxyConfig, report: Callable[[dict], None] | None = None, *,
                   train_seed: Optional[int] = None) -> dict:
    """Train ``spec.scaled(cfg.width)`` briefly and return its validation accuracy and costs.

    ``report`` gets {epoch, accuracy, loss, images_per_s, seconds} after every epoch (plus
    val_loss, train_seconds and elapsed: that epoch's training seconds, and the trainer's wall
    seconds so far without the set-up; and, as the result does, started_at (wall clock) and the
    seconds so far in data, build (model, loaders) and val); an exception it raises (a scheduler
    stopping the trial) propagates, as does :class:`TrainingDiverged`. ``cfg.seed`` draws the data split and, unless
    ``train_seed`` is given, the training (initial weights, batch order, augmentation): a
    tabulated benchmark keeps one split and varies only ``train_seed``.
    """
    from rksearch.data import default_workers, split_dataset
    from rksearch.training.run import fit

    start, started_at = time.perf_counter(), time.time()
    cpus = use_assigned_cpus()
    trained = spec.scaled(cfg.width)
    splits = split_dataset(_dataset(cfg.dataset, cfg.root), val_size=cfg.val_size, train_subset=cfg.train_subset,
                           val_subset=cfg.val_subset, test_subset=None, seed=cfg.seed)
    # where the trial's seconds go (rksearch.search.overhead): set-up, validation, training steps
    times = {"started_at": started_at, "data_seconds": time.perf_counter() - start, "build_seconds": 0.0,
             "val_seconds": 0.0}
    stepped = 0.0  # training-step seconds so far

    def on_epoch(m: EpochMetrics) -> None:
        nonlocal stepped
        stepped += m.train_seconds
        times["val_seconds"] = m.seconds - stepped  # an epoch's seconds are its steps and its validation
        if m.epoch == 1:  # before the first epoch, the trainer only set up (model, optimiser, loaders)
            times["build_seconds"] = time.perf_counter() - fit_start - m.seconds
        if report:
            report({"epoch": m.epoch, "accuracy": m.val_accuracy, "loss": m.train_loss, "images_per_s": m.images_per_s,
                    "seconds": time.perf_counter() - start, "val_loss": m.val_loss, "train_seconds": m.train_seconds,
                    "elapsed": m.seconds, **times})

    config = cfg.train_config(train_seed)
    if cpus is not None:  # a DataLoader's workers: the trial's CPUs, not the machine's (make_loader's default)
        config = config.model_copy(update={"workers": default_workers(cpus)})
    fit_start = time.perf_counter()
    result = fit(trained, splits, config, on_epoch=on_epoch)
    full, small = count(spec), count(trained)
    last = result.history[-1]
    return {
        "accuracy": last.val_accuracy, "val_loss": last.val_loss, "train_loss": last.train_loss,
        "params": full.params, "flops": full.flops, "trained_params": small.params, "trained_flops": small.flops,
        "epochs": last.epoch, "seconds": time.perf_counter() - start, "train_seconds": result.train_seconds,
        "images_per_s": result.images_per_s, **times,
    }
