"""torchvision's ImageFolder layout, in a folder or a .zip: ``train/<class>/<image>`` and
``test/<class>/<image>`` (or ``val/``), optionally below one wrapping folder.

Small images (CIFAR-sized) are decoded once into uint8 tensors and cached; large ones
(ImageNet) stay files that DataLoader workers decode per sample.

Hostile data fails with one line naming the file: a zip member that would expand beyond
MAX_MEMBER_BYTES or more than MAX_RATIO times its compressed size (a zip bomb), an image of more
than MAX_PIXELS pixels (an image bomb: a few kilobytes of PNG can declare gigapixels; checked from
the header, before decoding), a symbolic link in a data folder that points outside it (the limits
live in :mod:`rksearch.data.store` and :mod:`rksearch.data.layout`, which read a folder without torch).
"""
from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch import Tensor

from rksearch.core.errors import RKSearchError
from rksearch.data.cache import cached
from rksearch.data.layout import CACHE_KIND, check_pixels, read_layout
from rksearch.data.splits import Dataset, FileSplit, TensorSplit
from rksearch.data.store import ImageStore

DECODE_CHUNK = 1024
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def decode(data: bytes, where: str) -> Tensor:
    """(3, H, W) uint8 RGB; torchvision's decoder first, PIL for the formats it lacks."""
    from torchvision.io import ImageReadMode, decode_image

    check_pixels(data, where)
    try:
        return decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
    except RuntimeError:
        pass
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            rgb = im.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise RKSearchError(f"cannot decode image: {e}", source=where) from None
    return torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8).view(rgb.height, rgb.width, 3).permute(2, 0, 1)


def _decode_chunk(store: ImageStore, blobs: list[tuple[str, bytes]]) -> list[Tensor]:
    """JPEGs in one batched call (the common case, several times faster), anything else one by one."""
    from torchvision.io import ImageReadMode, decode_jpeg

    if all(b[:3] == b"\xff\xd8\xff" for _, b in blobs):
        for m, b in blobs:
            check_pixels(b, store.where(m))
        try:
            return decode_jpeg([torch.frombuffer(bytearray(b), dtype=torch.uint8) for _, b in blobs], mode=ImageReadMode.RGB)
        except RuntimeError:
            pass  # one of them is corrupt: decoding one by one names it
    return [decode(b, store.where(m)) for m, b in blobs]


def decode_all(store: ImageStore, pairs: list[tuple[str, int]], size: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """uint8 (N, 3, H, W) images and int64 labels; files are read in order, decoded in threads."""
    blobs = [(m, store.read(m)) for m, _ in pairs]
    chunks = [blobs[i:i + DECODE_CHUNK] for i in range(0, len(blobs), DECODE_CHUNK)]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        images = [img for chunk in pool.map(lambda c: _decode_chunk(store, c), chunks) for img in chunk]
    for (m, _), img in zip(blobs, images):
        if tuple(img.shape[1:]) != size:
            raise RKSearchError(
                f"image is {img.shape[2]}x{img.shape[1]} but the others are {size[1]}x{size[0]}; "
                "images decoded into memory must share one size", source=store.where(m))
    return torch.stack(images), torch.tensor([y for _, y in pairs], dtype=torch.int64)


def _stats(images: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0, 1], exact, from each channel's 256-bin histogram."""
    hist = torch.stack([torch.bincount(images[:, c].flatten(), minlength=256) for c in range(images.shape[1])]).double()
    value = torch.arange(256, dtype=torch.float64) / 255
    n = hist.sum(1)
    mean = (hist * value).sum(1) / n
    std = ((hist * value.square()).sum(1) / n - mean.square()).clamp_min(0).sqrt()
    return tuple(round(v, 4) for v in mean.tolist()), tuple(round(v, 4) for v in std.tolist())


def load_imagefolder(root: Path) -> Dataset:
    """The dataset in ``root`` (a folder or a .zip); small images come decoded (from cache after the first time)."""
    # the layout and the first image's size from its header: a worker that finds the decoded set
    # cached never imports torchvision (1-2 s of CPU per process, mostly torch._dynamo through torchvision.ops)
    layout = read_layout(root)
    store, classes, pairs, size = layout.store, layout.classes, layout.pairs, layout.size
    if not layout.small:
        train, test = (FileSplit(store, tuple(m for m, _ in p), torch.tensor([y for _, y in p])) for p in pairs.values())
        return Dataset("imagefolder", str(root), classes, train, test, "imagenet", IMAGENET_MEAN, IMAGENET_STD)

    def build() -> dict:
        data: dict = {"classes": list(classes)}
        for split in ("train", "test"):
            data[f"{split}_images"], data[f"{split}_labels"] = decode_all(store, pairs[split], size)
        data["mean"], data["std"] = _stats(data["train_images"])
        return data

    data = cached(CACHE_KIND, layout.signature(), build)
    train, test = (TensorSplit(data[f"{s}_images"], data[f"{s}_labels"]) for s in ("train", "test"))
    return Dataset("imagefolder", str(root), tuple(data["classes"]), train, test, "cifar",
                   tuple(data["mean"]), tuple(data["std"]))
