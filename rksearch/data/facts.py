"""What a dataset holds (classes, split sizes, image side) for the checks before anything trains,
read from its files without decoding them or importing torch where a decoded copy is cached."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from rksearch.core.errors import RKSearchError
from rksearch.data.layout import Layout, read_layout
from rksearch.data.sources import check_cifar10, demo_path, locate

if TYPE_CHECKING:
    from rksearch.data.splits import Dataset


@dataclass(frozen=True)
class DataFacts:
    """A dataset's name, classes, training and test images, and image side (None: large images,
    decoded per sample); what :func:`check_fits` and :func:`rksearch.data.splits.split_sizes` read."""

    name: str
    num_classes: int
    train: int
    test: int
    image_size: Optional[int]

    @classmethod
    def of(cls, ds: "Dataset") -> "DataFacts":
        return cls(ds.name, ds.num_classes, len(ds.train), len(ds.test), ds.image_size)


def known_facts(name: str, root: str | Path | None = None) -> DataFacts | None:
    """``name``'s facts from its layout (the demo, an image folder or zip, CIFAR-10 as images) where
    loading it would decode nothing (its decoded copy is cached, or its images are large); None
    where only loading tells (torchvision's formats) or would first decode and cache it."""
    where = locate(name, root)
    if where.kind == "bundled":
        with demo_path() as path:  # a temporary copy where rksearch is installed zipped: read it inside
            return _from_layout(name, read_layout(path))
    if where.kind not in ("zip", "folder"):
        return None
    facts = _from_layout(name, read_layout(where.path))
    if facts is not None and name == "cifar10":
        check_cifar10(facts.num_classes, facts.image_size, where.path)
    return facts


def _from_layout(name: str, layout: Layout) -> DataFacts | None:
    if layout.small and not layout.is_cached():
        return None
    side = layout.size[1] if layout.small else None  # a decoded split's side is its images' width
    return DataFacts(name, len(layout.classes), len(layout.pairs["train"]), len(layout.pairs["test"]), side)


def check_fits(spec: Any, ds: "Dataset | DataFacts") -> None:
    """The spec (or a space's fixed network fields) must match the data it trains on; errors name the field."""
    if spec.num_classes != ds.num_classes:
        raise RKSearchError(f"is {spec.num_classes} but {ds.name} has {ds.num_classes} classes", field="num_classes")
    if spec.in_channels != 3:
        raise RKSearchError(f"is {spec.in_channels} but {ds.name} images are RGB (3 channels)", field="in_channels")
    if ds.image_size is not None and spec.input_size != ds.image_size:
        raise RKSearchError(f"is {spec.input_size} but {ds.name} images are {ds.image_size}x{ds.image_size}",
                            field="input_size")
