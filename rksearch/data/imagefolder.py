"""torchvision's ImageFolder layout, in a folder or a .zip: ``train/<class>/<image>`` and
``test/<class>/<image>`` (or ``val/``), optionally below one wrapping folder.

Small images (CIFAR-sized) are decoded once into uint8 tensors and cached; large ones
(ImageNet) stay files that DataLoader workers decode per sample.
"""
from __future__ import annotations

import io
import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch import Tensor

from ..errors import RKSearchError
from .cache import cached
from .splits import Dataset, FileSplit, TensorSplit

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
SMALL_MAX = 64
"""Images up to this side are decoded into memory; larger ones are read per sample."""
DECODE_CHUNK = 1024
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class ImageStore:
    """Reads members of a folder or a zip; a zip is reopened in each process (DataLoader workers)."""

    def __init__(self, path: Path):
        self.path = path
        self.is_zip = path.is_file()
        self._zip: tuple[int, zipfile.ZipFile] | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_zip": None}

    def _archive(self) -> zipfile.ZipFile:
        if self._zip is None or self._zip[0] != os.getpid():
            try:
                self._zip = (os.getpid(), zipfile.ZipFile(self.path))
            except (zipfile.BadZipFile, OSError) as e:
                raise RKSearchError(f"not a readable zip file ({e})", source=self.path, field="root") from None
        return self._zip[1]

    def where(self, member: str) -> str:
        return f"{self.path}:{member}" if self.is_zip else str(self.path / member)

    def members(self) -> list[str]:
        """Every image file, as a '/'-separated path relative to the store."""
        if self.is_zip:
            names = [i.filename for i in self._archive().infolist() if not i.is_dir()]
        else:
            names = [
                os.path.relpath(os.path.join(d, f), self.path).replace(os.sep, "/")
                for d, _, files in os.walk(self.path) for f in files
            ]
        return sorted(n for n in names if n.lower().endswith(IMAGE_EXTENSIONS))

    def read(self, member: str) -> bytes:
        try:
            return self._archive().read(member) if self.is_zip else (self.path / member).read_bytes()
        except (OSError, zipfile.BadZipFile) as e:
            raise RKSearchError(f"cannot read: {e}", source=self.where(member)) from None

    def signature(self, members: list[str]) -> list:
        """What the cache key hashes: the zip's size and mtime, or every file's."""
        if self.is_zip:
            st = self.path.stat()
            return [str(self.path.resolve()), st.st_size, st.st_mtime_ns]
        stats = [(self.path / m).stat() for m in members]
        return [str(self.path.resolve()), [(m, s.st_size, s.st_mtime_ns) for m, s in zip(members, stats)]]


def decode(data: bytes, where: str) -> Tensor:
    """(3, H, W) uint8 RGB; torchvision's decoder first, PIL for the formats it lacks."""
    from torchvision.io import ImageReadMode, decode_image

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
    first = decode(store.read(pairs["train"][0][0]), store.where(pairs["train"][0][0]))
    if max(first.shape[1:]) > SMALL_MAX:
        train, test = (FileSplit(store, tuple(m for m, _ in p), torch.tensor([y for _, y in p])) for p in pairs.values())
        return Dataset("imagefolder", str(root), classes, train, test, "imagenet", IMAGENET_MEAN, IMAGENET_STD)

    def build() -> dict:
        size = tuple(first.shape[1:])
        data: dict = {"classes": list(classes)}
        for split in ("train", "test"):
            data[f"{split}_images"], data[f"{split}_labels"] = decode_all(store, pairs[split], size)
        data["mean"], data["std"] = _stats(data["train_images"])
        return data

    data = cached("imagefolder", store.signature(members), build)
    train, test = (TensorSplit(data[f"{s}_images"], data[f"{s}_labels"]) for s in ("train", "test"))
    return Dataset("imagefolder", str(root), tuple(data["classes"]), train, test, "cifar",
                   tuple(data["mean"]), tuple(data["std"]))
