"""Datasets by name: the bundled demo subset, torchvision's CIFAR-10/100 and SVHN, ImageFolder."""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import RKSearchError
from .imagefolder import load_imagefolder
from .splits import Dataset, Style, TensorSplit

CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
DEMO_FILE = "demo.zip"
TORONTO = "https://www.cs.toronto.edu/~kriz"


@dataclass(frozen=True)
class TorchvisionSource:
    """Where torchvision expects one of its datasets below ``root`` and how to normalise it."""

    title: str
    needs: tuple[str, ...]
    url: str
    style: Style
    mean: tuple[float, ...]
    std: tuple[float, ...]


TORCHVISION = {
    "cifar10": TorchvisionSource("CIFAR-10", ("cifar-10-batches-py",), f"{TORONTO}/cifar-10-python.tar.gz",
                                 "cifar", CIFAR10_MEAN, CIFAR10_STD),
    "cifar100": TorchvisionSource("CIFAR-100", ("cifar-100-python",), f"{TORONTO}/cifar-100-python.tar.gz",
                                  "cifar", CIFAR100_MEAN, CIFAR100_STD),
    # the paper divides SVHN by 255 and does not augment it
    "svhn": TorchvisionSource("SVHN", ("train_32x32.mat", "test_32x32.mat"), "http://ufldl.stanford.edu/housenumbers/",
                              "plain", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}


def default_root() -> Path:
    """``$RKSEARCH_DATA``, else ``./data`` (torchvision's usual root)."""
    return Path(os.environ.get("RKSEARCH_DATA") or "data")


def load_demo() -> Dataset:
    """The bundled balanced CIFAR-10 subset (see :mod:`rksearch.data.make_demo`)."""
    with resources.as_file(resources.files(__package__) / DEMO_FILE) as path:
        ds = load_imagefolder(path)
    return replace(ds, name="demo", source="bundled", mean=CIFAR10_MEAN, std=CIFAR10_STD)


def _torchvision_splits(name: str, root: Path, download: bool) -> tuple[object, object]:
    from torchvision import datasets

    if name == "svhn":  # torchvision reads SVHN's .mat files with scipy
        return tuple(datasets.SVHN(str(root), split=s, download=download) for s in ("train", "test"))
    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    return tuple(cls(str(root), train=t, download=download) for t in (True, False))


def load_torchvision(name: str, root: Path | None, download: bool) -> Dataset:
    """CIFAR-10/100 or SVHN through torchvision; missing files give an error saying where they go."""
    src = TORCHVISION[name]
    root = root or default_root()
    missing = [n for n in src.needs if not (root / n).exists()]
    if missing and not download:
        raise RKSearchError(
            f"{src.title} not found: expected {', '.join(str(root / n) for n in missing)}; get {src.url}, "
            f"put it there (extracted), or let rksearch train --download fetch it where the network allows",
            source=root, field="root")
    try:
        train, test = _torchvision_splits(name, root, download)
    except (RuntimeError, OSError, ValueError) as e:
        raise RKSearchError(f"cannot read {src.title}: {e}", source=root, field="root") from None

    def tensors(ds) -> TensorSplit:
        images = torch.from_numpy(np.ascontiguousarray(ds.data))
        images = images if name == "svhn" else images.permute(0, 3, 1, 2).contiguous()  # CIFAR is NHWC
        labels = torch.as_tensor(np.asarray(ds.labels if name == "svhn" else ds.targets), dtype=torch.int64)
        return TensorSplit(images, labels)

    classes = tuple(getattr(train, "classes", None) or (str(i) for i in range(10)))
    return Dataset(name, str(root), classes, tensors(train), tensors(test), src.style, src.mean, src.std)


LOADERS: dict[str, Callable[[Path | None, bool], Dataset]] = {
    "demo": lambda root, download: load_demo(),
    "imagefolder": lambda root, download: load_imagefolder(_required(root)),
    **{n: (lambda root, download, n=n: load_torchvision(n, root, download)) for n in TORCHVISION},
}
DATASETS = tuple(LOADERS)


def _required(root: Path | None) -> Path:
    if root is None:
        raise RKSearchError("imagefolder needs a root: a folder or .zip with train/ and test/ (or val/)", field="root")
    return root


def load_dataset(name: str, root: str | Path | None = None, *, download: bool = False) -> Dataset:
    """The dataset called ``name`` (one of :data:`DATASETS`), full train and test splits."""
    if name not in LOADERS:
        raise RKSearchError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}", field="dataset")
    return LOADERS[name](Path(root).expanduser() if root is not None else None, download)
