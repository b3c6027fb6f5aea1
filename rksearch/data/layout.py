"""An image folder's layout read without decoding it (nor importing torch): its classes, the
(member, label) pairs of its splits, and its images' side from the first one's header."""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from rksearch.core.errors import RKSearchError
from rksearch.data.cache import cache_path
from rksearch.data.store import ImageStore

CACHE_KIND = "imagefolder"
"""The decoded copies of image folders in the cache folder (rksearch.data.cache)."""
SMALL_MAX = 64
"""Images up to this side are decoded into memory; larger ones are read per sample."""
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


@dataclass(frozen=True)
class Layout:
    """What an image folder or zip holds, from its file names and the first image's header."""

    store: ImageStore
    members: list[str]
    classes: tuple[str, ...]
    pairs: dict[str, list[tuple[str, int]]]  # train and test: (member, label)
    size: tuple[int, int]  # (height, width) of the first training image

    @property
    def small(self) -> bool:
        """Small images are decoded into memory (and cached); large ones are read per sample."""
        return max(self.size) <= SMALL_MAX

    def signature(self) -> list:
        """What the decoded copy's cache key hashes (:meth:`ImageStore.signature`)."""
        return self.store.signature(self.members)

    def is_cached(self) -> bool:
        """Its decoded copy is in the cache folder (a copy that cannot be read is rebuilt when loaded)."""
        return cache_path(CACHE_KIND, self.signature()).is_file()


def read_layout(root: Path) -> Layout:
    """The layout of the image folder or zip at ``root``; one line naming the file where it has none."""
    if not root.exists():
        raise RKSearchError("no such folder or zip file", source=root, field="root")
    store = ImageStore(root)
    members = store.members()
    classes, pairs = find_layout(store, members)
    first = pairs["train"][0][0]
    return Layout(store, members, classes, pairs, check_pixels(store.read(first), store.where(first)))
