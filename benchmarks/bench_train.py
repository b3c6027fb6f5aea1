"""Training throughput: images/s of one epoch per spec, and what data loading costs.

    python benchmarks/bench_train.py                       # CPU, demo data (2,000 images)
    python benchmarks/bench_train.py --device cuda          # GPU: both data paths, a CIFAR-10-sized epoch

On CPU it trains each spec for two epochs on the 2,000 demo images (the first includes one-off
setup) and prints both epoch times. On a GPU it trains on a CIFAR-10-sized training set (the
shared CIFAR-10 zip with ``--data-root``, otherwise the demo images repeated to 50,000) once
with the resident loader and once with the DataLoader, and times the loader alone too: its
share of the epoch is what data loading costs.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from rksearch import parse_name
from rksearch.data import DataOptions, Dataset, Splits, TensorSplit, load_dataset, load_splits
from rksearch.training.config import TrainConfig
from rksearch.training.trainer import Trainer

SPECS = {
    "IRKNet-3x1_3x1_3x1 k=12": parse_name("IRKNet-3x1_3x1_3x1", growth_rate=12),
    "ERKNet-6x1_6x1_6x1 k=12": parse_name("ERKNet-6x1_6x1_6x1", growth_rate=12),
    "IRKNet-3x1_3x1_3x1 k=36": parse_name("IRKNet-3x1_3x1_3x1", growth_rate=36),
    "ERKNet-6x1_6x1_6x1 k=36": parse_name("ERKNet-6x1_6x1_6x1", growth_rate=36),
}
DEFAULT_SPECS = {
    "cpu": ["IRKNet-3x1_3x1_3x1 k=12", "ERKNet-6x1_6x1_6x1 k=12"],
    "cuda": ["IRKNet-3x1_3x1_3x1 k=12", "IRKNet-3x1_3x1_3x1 k=36", "ERKNet-6x1_6x1_6x1 k=36"],
}
CIFAR10_TRAIN = 50_000


def cifar_sized(root: str | None) -> Splits:
    """CIFAR-10's training set from the zip, or the demo images tiled to the same size."""
    ds = load_dataset("imagefolder", root) if root else load_dataset("demo")
    reps = -(-CIFAR10_TRAIN // len(ds.train))
    images, labels = ds.train.images.repeat(reps, 1, 1, 1), ds.train.labels.repeat(reps)
    train = TensorSplit(images[:CIFAR10_TRAIN], labels[:CIFAR10_TRAIN])
    big = Dataset(ds.name, ds.source, ds.classes, train, ds.test, ds.style, ds.mean, ds.std)
    return Splits(big, train, None, ds.test)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def loader_seconds(trainer: Trainer) -> float:
    """One epoch of the training loader alone: fetch, augment, normalise, no model."""
    sync(trainer.device)
    start = time.perf_counter()
    for x, y in trainer.train_loader:
        pass
    sync(trainer.device)
    return time.perf_counter() - start


def bench(name: str, splits: Splits, cfg: TrainConfig, epochs: int) -> dict:
    trainer = Trainer(SPECS[name], splits, cfg)
    metrics = [trainer.train_epoch() for _ in range(epochs)]
    load = loader_seconds(trainer)
    last = metrics[-1]
    row = {
        "spec": name, "device": str(trainer.device), "loader": type(trainer.train_loader).__name__,
        "batch_size": cfg.batch_size, "images": len(splits.train), "threads": torch.get_num_threads(),
        "load_average": round(os.getloadavg()[0], 1),  # other processes on the machine skew CPU timings
        "epoch_seconds": [round(m.train_seconds, 2) for m in metrics], "images_per_s": round(last.images_per_s),
        "loader_seconds": round(load, 3), "loader_share": round(load / last.train_seconds, 4),
    }
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--specs", nargs="*", choices=list(SPECS), metavar="SPEC",
                        help=f"default: {DEFAULT_SPECS}")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2, help="epochs per measurement; the last one is reported")
    parser.add_argument("--data-root", help="CIFAR-10 in ImageFolder layout, for the GPU's CIFAR-10-sized epoch")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="DataLoader workers (GPU)")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    args = parser.parse_args()

    rows = []
    specs = args.specs or DEFAULT_SPECS[args.device]
    base = dict(epochs=args.epochs, batch_size=args.batch_size, device=args.device, compile=args.compile)
    if args.device == "cpu":
        splits = load_splits(DataOptions(dataset="demo", val_size=0))
        rows += [bench(name, splits, TrainConfig(**base), args.epochs) for name in specs]
    else:
        splits = cifar_sized(args.data_root)
        for name in specs:
            for mode in ("resident", "dataloader"):
                rows.append(bench(name, splits, TrainConfig(**base, loader=mode, workers=args.workers), args.epochs))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
