"""The proxy evaluation every search trial runs: a short training of a (possibly shrunken) spec."""
from __future__ import annotations

import time
from functools import lru_cache
from typing import Callable, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .baselines import AnySpec
from .data import DATASETS, Dataset, load_dataset, split_dataset
from .train import EpochMetrics, TrainConfig, check_graphable, fit


class ProxyConfig(BaseModel):
    """How a candidate is trained during a search (the ``proxy:`` section of a space).

    The proxy may shrink the candidate (fewer epochs, data subsets, ``width`` multiplying every
    growth rate) but always reports the FLOPs and params of the full spec beside those of what
    it trained.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    dataset: str = "demo"
    root: Optional[str] = None
    train_subset: Optional[int] = Field(default=None, ge=1, description="training images used (after the val split)")
    val_size: int = Field(default=500, ge=1, description="images carved out of the training set for validation")
    val_subset: Optional[int] = Field(default=None, ge=1)
    epochs: int = Field(default=1, ge=1)
    batch_size: int = Field(default=128, ge=1)
    lr: float = Field(default=0.1, gt=0)
    width: float = Field(default=1.0, gt=0, description="multiplier on every growth rate (and a baseline's stem width)")
    augment: bool = True
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["auto", "bf16", "off"] = "auto"
    compile: bool = False
    cudnn_benchmark: bool = Field(default=True, description="see TrainConfig.cudnn_benchmark")
    static_shapes: bool = Field(default=True, description="see TrainConfig.static_shapes")
    cuda_graph: bool = Field(default=False, description="see TrainConfig.cuda_graph")
    seed: int = 0

    @field_validator("dataset")
    @classmethod
    def _known(cls, name: str) -> str:
        """Refused with the space (``rksearch space``), not when a search loads the data."""
        if name not in DATASETS:
            raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
        return name

    @model_validator(mode="after")
    def _graphable(self) -> "ProxyConfig":
        check_graphable(self)
        return self


@lru_cache(maxsize=2)
def _dataset(name: str, root: Optional[str]) -> Dataset:
    """Decoded once per process: a search runs many trials in each worker."""
    return load_dataset(name, root)


def proxy_evaluate(spec: AnySpec, cfg: ProxyConfig, report: Callable[[dict], None] | None = None, *,
                   train_seed: Optional[int] = None) -> dict:
    """Train ``spec.scaled(cfg.width)`` briefly and return its validation accuracy and costs.

    ``report`` gets {epoch, accuracy, loss, images_per_s, seconds} after every epoch (plus
    val_loss, train_seconds and elapsed: that epoch's training seconds, and the trainer's wall
    seconds so far without the set-up); an exception it raises (a scheduler stopping the trial)
    propagates, as does :class:`TrainingDiverged`. ``cfg.seed`` draws the data split and, unless
    ``train_seed`` is given, the training (initial weights, batch order, augmentation): a
    tabulated benchmark keeps one split and varies only ``train_seed``.
    """
    start = time.perf_counter()
    trained = spec.scaled(cfg.width)
    splits = split_dataset(_dataset(cfg.dataset, cfg.root), val_size=cfg.val_size, train_subset=cfg.train_subset,
                           val_subset=cfg.val_subset, test_subset=None, seed=cfg.seed)
    train_cfg = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, augment=cfg.augment,
                            device=cfg.device, amp=cfg.amp, compile=cfg.compile, cudnn_benchmark=cfg.cudnn_benchmark,
                            static_shapes=cfg.static_shapes, cuda_graph=cfg.cuda_graph,
                            seed=cfg.seed if train_seed is None else train_seed)

    def on_epoch(m: EpochMetrics) -> None:
        report({"epoch": m.epoch, "accuracy": m.val_accuracy, "loss": m.train_loss, "images_per_s": m.images_per_s,
                "seconds": time.perf_counter() - start, "val_loss": m.val_loss, "train_seconds": m.train_seconds,
                "elapsed": m.seconds})

    result = fit(trained, splits, train_cfg, on_epoch=on_epoch if report else None)
    full, small = spec.count(), trained.count()
    last = result.history[-1]
    return {
        "accuracy": last.val_accuracy, "val_loss": last.val_loss, "train_loss": last.train_loss,
        "params": full.params, "flops": full.flops, "trained_params": small.params, "trained_flops": small.flops,
        "epochs": last.epoch, "seconds": time.perf_counter() - start, "train_seconds": result.train_seconds,
        "images_per_s": result.images_per_s,
    }
