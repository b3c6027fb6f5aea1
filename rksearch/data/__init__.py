"""Datasets, splits and loaders: one small interface, datasets chosen by name.

``load_splits(DataOptions(dataset="cifar10", val_size=5000))`` gives train, a
seeded validation split carved out of train, and test; ``make_loader`` turns a split into
normalised (and, for training, augmented) batches on a device.

Importing the package imports no torch: each name below loads its module on first use, so a
driver that only checks the data (:mod:`rksearch.data.facts`) or says where it lies stays light.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Optional

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from rksearch.data.augment import Pipeline
    from rksearch.data.splits import Dataset, Splits

_HOMES = {
    "augment": ("Pipeline",),
    "cache": ("cache_dir",),
    "facts": ("DataFacts", "check_fits", "known_facts"),
    "loaders": ("Loader", "LoaderMode", "default_workers", "make_loader", "pad_batch"),
    "sources": ("DATASETS", "data_home", "default_root", "describe_data", "load_dataset", "locate"),
    "splits": ("Dataset", "FileSplit", "Split", "Splits", "TensorSplit", "balanced_order", "split_dataset",
               "split_sizes"),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str) -> Any:
    """``rksearch.data.X``: imported from its module the first time it is asked for (PEP 562)."""
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_MODULE_OF])


class DataOptions(BaseModel):
    """Which data a run reads and how it splits it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dataset: str = "demo"
    root: Optional[str] = None
    val_size: Optional[int] = Field(default=None, ge=0, description="carved out of train; None: a tenth, 0: none")
    train_subset: Optional[int] = Field(default=None, ge=1)
    val_subset: Optional[int] = Field(default=None, ge=1)
    test_subset: Optional[int] = Field(default=None, ge=1)
    seed: int = 0
    download: Optional[bool] = None  # None: torchvision datasets download into the cache folder when no root is given


def load_splits(opts: DataOptions) -> "Splits":
    from rksearch.data.sources import load_dataset
    from rksearch.data.splits import split_dataset

    ds = load_dataset(opts.dataset, opts.root, download=opts.download)
    return split_dataset(ds, val_size=opts.val_size, train_subset=opts.train_subset, val_subset=opts.val_subset,
                         test_subset=opts.test_subset, seed=opts.seed)


def pipeline(ds: "Dataset", *, train: bool, augment: bool, size: int) -> "Pipeline":
    """The transform of a training (``train``) or evaluation split of ``ds`` at side ``size``;
    SVHN ("plain") is never augmented, as in the paper."""
    from rksearch.data.augment import Pipeline

    return Pipeline(ds.style, ds.mean, ds.std, augment=train and augment and ds.style != "plain", size=size)


__all__ = ["DataOptions", "load_splits", "pipeline", *_MODULE_OF]
