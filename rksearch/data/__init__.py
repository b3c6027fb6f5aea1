"""Datasets, splits and loaders: one small interface, datasets chosen by name.

``load_splits(DataOptions(dataset="cifar10", val_size=5000))`` gives train, a
seeded validation split carved out of train, and test; ``make_loader`` turns a split into
normalised (and, for training, augmented) batches on a device.
"""
from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ConfigDict, Field

from rksearch.data.augment import Pipeline
from rksearch.data.cache import cache_dir
from rksearch.data.loaders import Loader, LoaderMode, default_workers, make_loader, pad_batch
from rksearch.data.sources import DATASETS, data_home, default_root, describe_data, load_dataset, locate
from rksearch.data.splits import Dataset, FileSplit, Split, Splits, TensorSplit, balanced_order, split_dataset


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


def load_splits(opts: DataOptions) -> Splits:
    ds = load_dataset(opts.dataset, opts.root, download=opts.download)
    return split_dataset(ds, val_size=opts.val_size, train_subset=opts.train_subset, val_subset=opts.val_subset,
                         test_subset=opts.test_subset, seed=opts.seed)


def pipeline(ds: Dataset, *, train: bool, augment: bool, size: int) -> Pipeline:
    """The transform of a training (``train``) or evaluation split of ``ds`` at side ``size``;
    SVHN ("plain") is never augmented, as in the paper."""
    return Pipeline(ds.style, ds.mean, ds.std, augment=train and augment and ds.style != "plain", size=size)


__all__ = [
    "DATASETS", "DataOptions", "Dataset", "FileSplit", "Loader", "LoaderMode", "Pipeline", "Split", "Splits",
    "TensorSplit", "balanced_order", "cache_dir", "data_home", "default_root", "default_workers", "describe_data",
    "load_dataset", "load_splits", "locate", "make_loader", "pad_batch", "pipeline", "split_dataset",
]
