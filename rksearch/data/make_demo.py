"""Derive the bundled demo data: a balanced CIFAR-10 subset, kept as its original JPEG bytes.

    python -m rksearch.data.make_demo ../shared/data/cifar10-jpeg.zip

picks, with a fixed seed, 200 training images per class from ``train/`` and 50 per class from
``test/`` of an ImageFolder-layout CIFAR-10 and writes them, byte for byte, into
``rksearch/data/demo.zip`` (ImageFolder layout, stored uncompressed: JPEG does not compress
further). About 2.7 MB against 7.7 MB decoded; the loader decodes it once and caches the result.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import zipfile

import torch

from rksearch.data.layout import find_layout
from rksearch.data.store import ImageStore
from rksearch.data.sources import DEMO_FILE

PER_CLASS = {"train": 200, "test": 50}
SEED = 0


def pick(pairs: list[tuple[str, int]], per_class: int, seed: int) -> list[tuple[str, int]]:
    """``per_class`` images of every class, chosen by a seeded permutation, in class order."""
    g = torch.Generator().manual_seed(seed)
    chosen = []
    for label in sorted({y for _, y in pairs}):
        members = [p for p in pairs if p[1] == label]
        chosen += [members[i] for i in sorted(torch.randperm(len(members), generator=g)[:per_class].tolist())]
    return chosen


def make_demo(source: Path, out: Path) -> None:
    store = ImageStore(source)
    classes, pairs = find_layout(store, store.members())
    tmp = out.with_name(out.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as z:
        for split, n in PER_CLASS.items():
            for i, (member, label) in enumerate(pick(pairs[split], n, SEED)):
                info = zipfile.ZipInfo(f"demo/{split}/{classes[label]}/{i:04d}.jpg", date_time=(2026, 1, 1, 0, 0, 0))
                z.writestr(info, store.read(member))  # fixed timestamps: the same bytes every time
    tmp.replace(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="CIFAR-10 in ImageFolder layout (folder or .zip)")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name(DEMO_FILE))
    args = parser.parse_args()
    make_demo(args.source, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
