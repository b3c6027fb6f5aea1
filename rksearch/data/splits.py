"""Splits of a dataset: decoded images in memory, or image files left on disk.

The validation split is carved out of the training split in a seeded, class-interleaved
order, so any prefix of it (a subset) is balanced and the same seed always gives the same
images; the test split is only for final reports.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Union

from rksearch.core.errors import RKSearchError

if TYPE_CHECKING:  # torch is imported where tensors are made: checking sizes (split_sizes) needs none
    from torch import Tensor

    from rksearch.data.store import ImageStore

Style = Literal["cifar", "plain", "imagenet"]
"""cifar: pad-4 random crop + flip; plain: no augmentation (SVHN); imagenet: random-resized crop."""


@dataclass(frozen=True, eq=False)
class TensorSplit:
    """Decoded images held in memory: uint8 (N, C, H, W) and int64 labels (N,)."""

    images: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index: Tensor) -> "TensorSplit":
        return TensorSplit(self.images[index], self.labels[index])


@dataclass(frozen=True, eq=False)
class FileSplit:
    """Images left in their folder or zip (too large or too many to hold decoded)."""

    store: "ImageStore"
    files: tuple[str, ...]
    labels: Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index: Tensor) -> "FileSplit":
        return FileSplit(self.store, tuple(self.files[i] for i in index.tolist()), self.labels[index])


Split = Union[TensorSplit, FileSplit]


@dataclass(frozen=True, eq=False)
class Dataset:
    """A dataset as its source provides it: a training and a test split plus how to read them."""

    name: str
    source: str
    classes: tuple[str, ...]
    train: Split
    test: Split
    style: Style
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> int | None:
        """Side of the decoded images; None for files decoded (and cropped) per sample."""
        return self.train.images.shape[-1] if isinstance(self.train, TensorSplit) else None


@dataclass(frozen=True, eq=False)
class Splits:
    """What training reads: train, validation (carved from train; None when empty) and test."""

    dataset: Dataset
    train: Split
    val: Split | None
    test: Split


def balanced_order(labels: Tensor, seed: int) -> Tensor:
    """A seeded permutation that deals the classes round-robin, so every prefix is balanced."""
    import torch

    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    shuffled = labels[perm]
    by_class = torch.argsort(shuffled, stable=True)
    counts = torch.bincount(shuffled)
    starts = counts.cumsum(0) - counts
    rank = torch.empty_like(shuffled)
    rank[by_class] = torch.arange(len(labels)) - starts[shuffled[by_class]]  # rank within its class
    return perm[torch.argsort(rank, stable=True)]


def split_sizes(n_train: int, n_test: int, *, val_size: int | None = None, train_subset: int | None = None,
                val_subset: int | None = None, test_subset: int | None = None) -> tuple[int, int, int, int]:
    """How many images validation carves out of ``n_train`` and how many train, validation and test
    then hold: what :func:`split_dataset` takes, and the errors it raises, from the counts alone."""
    val_size = n_train // 10 if val_size is None else val_size
    if not 0 <= val_size < n_train:
        raise RKSearchError(f"{val_size} leaves no training images out of {n_train}", field="val_size")

    def prefix(size: int | None, available: int, what: str) -> int:
        if size is not None and size > available:
            raise RKSearchError(f"asks for {size} images but only {available} are available", field=what)
        return available if size is None else size

    return (val_size, prefix(train_subset, n_train - val_size, "train_subset"),
            prefix(val_subset, val_size, "val_subset"), prefix(test_subset, n_test, "test_subset"))


def split_dataset(
    ds: Dataset,
    *,
    val_size: int | None = None,
    train_subset: int | None = None,
    val_subset: int | None = None,
    test_subset: int | None = None,
    seed: int = 0,
) -> Splits:
    """Carve ``val_size`` images (default: a tenth) out of the training split, then take subsets."""
    val_size, n_train, n_val, n_test = split_sizes(len(ds.train), len(ds.test), val_size=val_size,
                                                   train_subset=train_subset, val_subset=val_subset,
                                                   test_subset=test_subset)
    order = balanced_order(ds.train.labels, seed)
    val_idx, train_idx = order[:val_size][:n_val], order[val_size:][:n_train]
    return Splits(
        dataset=ds,
        train=ds.train.take(train_idx),
        val=ds.train.take(val_idx) if len(val_idx) else None,
        test=ds.test.take(balanced_order(ds.test.labels, seed)[:n_test]) if test_subset is not None else ds.test,
    )
