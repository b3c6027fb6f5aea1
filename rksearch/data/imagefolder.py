"""torchvision's ImageFolder layout, in a folder or a .zip: ``train/<class>/<image>`` and
``test/<class>/<image>`` (or ``val/``), optionally below one wrapping folder.

Small images (CIFAR-sized) are decoded once into uint8 tensors and cached; large ones
(ImageNet) stay files that DataLoader workers decode per sample.

Hostile data fails with one line naming the file: a zip member that would expand beyond
MAX_MEMBER_BYTES or more than MAX_RATIO times its compressed size (a zip bomb), an image of more
than MAX_PIXELS pixels (an image bomb: a few kilobytes of PNG can declare gigapixels; checked from
the header, before decoding), a symbolic link in a data folder that points outside it.
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
from rksearch.data.splits import Dataset, FileSplit, TensorSplit
from rksearch.data.store import ImageStore

SMALL_MAX = 64
"""Images up to this side are decoded into memory; larger ones are read per sample."""
DECODE_CHUNK = 1024
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
MAX_PIXELS = 8192 * 8192
"""Pixels of one image; more is refused before it is decoded."""


def check_pixels(data: bytes, where: str) -> tuple[int, int]:
    """Refuse an image of more than MAX_PIXELS pixels from its header, before anything decodes it;
    returns its (height, width)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
    except Image.DecompressionBombError as e:  # PIL's own limit (above ours) stops it opening
        raise RKSearchError(f"image too large to decode ({e})", source=where) from None
    except (OSError, ValueError) as e:
        raise RKSearchError(f"cannot decode image: {e}", source=where) from None
    if width * height > MAX_PIXELS:
        raise RKSearchError(f"image is {width}x{height}, more than the {MAX_PIXELS:,} pixels allowed "
                            "(an image bomb?)", source=where)
    return height, width


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


def find_layout(store: ImageStore, members: list[str]) -> tuple[tuple[str, ...], dict[str, list[tuple[str, int]]]]:
    """Classes and the (member, label) pairs of the train and test (or val) splits."""
    layout = f"expected {store.path}/train/<class>/<image> and test/<class>/<image> (or val/), possibly below one folder"
    prefixes = set()
    for m in members:
        parts = m.split("/")
        if "train" in parts[:-2]:  # train/<class>/<file>, at any depth
            prefixes.add("".join(p + "/" for p in parts[: parts.index("train")]))
    if not prefixes:
        what = "no images" if not members else "no train/ folder of class subfolders"
        raise RKSearchError(f"{what}: {layout}", source=store.path, field="root")
    root = min(prefixes, key=len)
    splits: dict[str, dict[str, list[str]]] = {"train": {}, "test": {}, "val": {}}
    for m in members:
        parts = m[len(root):].split("/") if m.startswith(root) else []
        if len(parts) >= 3 and parts[0] in splits:
            splits[parts[0]].setdefault(parts[1], []).append(m)
    test_name = "test" if splits["test"] else "val"
    if not splits[test_name]:
        raise RKSearchError(f"no test/ or val/ folder of class subfolders: {layout}", source=store.path, field="root")
    classes = tuple(sorted(splits["train"]))
    extra = sorted(set(splits[test_name]) - set(classes))
    if extra:
        raise RKSearchError(f"{test_name}/ has classes that train/ lacks: {', '.join(extra[:5])}", source=store.path)
    label = {c: i for i, c in enumerate(classes)}
    pairs = {
        "train": [(m, label[c]) for c in classes for m in splits["train"][c]],
        "test": [(m, label[c]) for c in sorted(splits[test_name]) for m in splits[test_name][c]],
    }
    return classes, pairs


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
    if not root.exists():
        raise RKSearchError("no such folder or zip file", source=root, field="root")
    store = ImageStore(root)
    members = store.members()
    classes, pairs = find_layout(store, members)
    # the first image's size from its header: a worker that finds the decoded set cached never
    # imports torchvision (1-2 s of CPU per process, mostly torch._dynamo through torchvision.ops)
    size = check_pixels(store.read(pairs["train"][0][0]), store.where(pairs["train"][0][0]))
    if max(size) > SMALL_MAX:
        train, test = (FileSplit(store, tuple(m for m, _ in p), torch.tensor([y for _, y in p])) for p in pairs.values())
        return Dataset("imagefolder", str(root), classes, train, test, "imagenet", IMAGENET_MEAN, IMAGENET_STD)

    def build() -> dict:
        data: dict = {"classes": list(classes)}
        for split in ("train", "test"):
            data[f"{split}_images"], data[f"{split}_labels"] = decode_all(store, pairs[split], size)
        data["mean"], data["std"] = _stats(data["train_images"])
        return data

    data = cached("imagefolder", store.signature(members), build)
    train, test = (TensorSplit(data[f"{s}_images"], data[f"{s}_labels"]) for s in ("train", "test"))
    return Dataset("imagefolder", str(root), tuple(data["classes"]), train, test, "cifar",
                   tuple(data["mean"]), tuple(data["std"]))
