"""Batches on the device: the resident path (whole split as one tensor there) or a DataLoader.

The resident path is airbench's: no workers, no per-sample Python, one gather per batch. It is
device-agnostic, so on a CPU it is the fast path too; the DataLoader path is for images that
stay files (ImageNet) and for datasets too large for the device.
"""
from __future__ import annotations

import os
from typing import Iterator, Literal, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, default_collate

from rksearch.core.errors import RKSearchError
from rksearch.data.augment import PAD, Normalize, Pipeline, crop_flip, random_crops, sample_transform
from rksearch.data.imagefolder import decode
from rksearch.data.splits import Split, TensorSplit

LoaderMode = Literal["auto", "resident", "dataloader"]
Batch = tuple[Tensor, Tensor]
DEVICE_SHARE = 0.5
"""The resident path takes at most this share of the device's free memory."""


class Loader(Protocol):
    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Batch]: ...


IGNORE = -100
"""The label of a padding row: ``F.cross_entropy``'s default ``ignore_index``, and no class."""


def num_batches(n: int, batch_size: int, shuffle: bool, drop_last: bool = False) -> int:
    """Batches per epoch. ``drop_last`` drops a partial final batch where there is a full one;
    otherwise only a final training batch of one image is dropped (BatchNorm cannot train on it)."""
    full, rest = divmod(n, batch_size)
    if drop_last and full:
        return full
    return full + (rest > 1 or (rest == 1 and (not shuffle or full == 0)))


class ResidentLoader:
    """The split as one uint8 tensor on ``device``; order, crops and flips drawn per epoch from
    ``generator`` (so a checkpoint of its state resumes the exact sequence)."""

    def __init__(self, split: TensorSplit, pipe: Pipeline, *, batch_size: int, device: torch.device,
                 shuffle: bool, generator: torch.Generator | None, channels_last: bool, drop_last: bool = False):
        images = split.images.to(device)
        self.images = F.pad(images, (PAD,) * 4) if pipe.crops else images
        self.labels = split.labels.to(device)
        self.pipe, self.batch_size, self.device = pipe, batch_size, device
        self.shuffle, self.generator, self.drop_last = shuffle, generator or torch.Generator(), drop_last
        self.normalize = Normalize(pipe, device, channels_last)

    def __len__(self) -> int:
        return num_batches(len(self.labels), self.batch_size, self.shuffle, self.drop_last)

    def __iter__(self) -> Iterator[Batch]:
        n, bs = len(self.labels), self.batch_size
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        order = order.to(self.device)
        if self.pipe.crops:
            shift, flip = (t.to(self.device) for t in random_crops(n, self.generator))
        for b in range(len(self)):
            index = order[b * bs:(b + 1) * bs]
            if self.pipe.crops:
                x = crop_flip(self.images, index, shift[index], flip[index], self.pipe.size)
            else:
                x = self.images[index]
            yield self.normalize(x), self.labels[index]


class _Samples(torch.utils.data.Dataset):
    """One uint8 image and label per index; an undecodable file comes back as its error."""

    def __init__(self, split: Split, pipe: Pipeline):
        self.split, self.transform = split, sample_transform(pipe)

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int):
        s = self.split
        if isinstance(s, TensorSplit):
            image = s.images[i]
        else:
            try:
                image = decode(s.store.read(s.files[i]), s.store.where(s.files[i]))
            except RKSearchError as e:
                return e, -1
        return self.transform(image), s.labels[i]


def _collate(samples: list):
    """A batch, or the first decoding error in it (raised again, as one line, in the main process)."""
    errors = [img for img, _ in samples if isinstance(img, RKSearchError)]
    return errors[0] if errors else default_collate(samples)


class StreamLoader:
    """A torch DataLoader: workers decode and augment per sample, the device normalises."""

    def __init__(self, split: Split, pipe: Pipeline, *, batch_size: int, device: torch.device,
                 shuffle: bool, generator: torch.Generator | None, channels_last: bool, workers: int,
                 drop_last: bool = False):
        n = len(split)
        self.loader = DataLoader(
            _Samples(split, pipe), batch_size=batch_size, shuffle=shuffle, num_workers=workers,
            generator=generator or torch.Generator(), collate_fn=_collate, pin_memory=device.type == "cuda",
            drop_last=num_batches(n, batch_size, shuffle, drop_last) < -(-n // batch_size),
            prefetch_factor=4 if workers else None,
        )
        self.device = device
        self.normalize = Normalize(pipe, device, channels_last)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Batch]:
        for batch in self.loader:
            if isinstance(batch, RKSearchError):
                raise batch
            x, y = batch
            yield self.normalize(x.to(self.device, non_blocking=True)), y.to(self.device)


def pad_batch(x: Tensor, y: Tensor, size: int) -> Batch:
    """The batch grown to ``size`` rows of zero images labelled :data:`IGNORE`, which the loss
    and ``argmax == label`` skip: evaluation then runs at the training batch's shape, whose
    kernels cuDNN has already tuned (and a compiled model has already captured)."""
    n = size - len(y)
    if n <= 0:
        return x, y
    return F.pad(x, (0, 0) * (x.dim() - 1) + (0, n)), F.pad(y, (0, n), value=IGNORE)  # F.pad keeps the layout


def fits_on(split: Split, device: torch.device) -> bool:
    """Whether the split can live on ``device`` (padded) without crowding out training."""
    if not isinstance(split, TensorSplit):
        return False
    if device.type != "cuda":
        return True
    _, c, h, w = split.images.shape
    need = len(split) * c * (h + 2 * PAD) * (w + 2 * PAD)
    return need < DEVICE_SHARE * torch.cuda.mem_get_info(device)[0]


def default_workers(cpus: int | None = None) -> int:
    """A DataLoader's worker processes: the ``cpus`` a process was given (a Ray trial's), else the
    machine's, at most 8."""
    return min(8, cpus or os.cpu_count() or 1)


def make_loader(
    split: Split,
    pipe: Pipeline,
    *,
    batch_size: int,
    device: torch.device,
    shuffle: bool,
    generator: torch.Generator | None = None,
    channels_last: bool = False,
    drop_last: bool = False,
    mode: LoaderMode = "auto",
    workers: int | None = None,
) -> Loader:
    """The resident loader where the split is decoded and fits the device (``auto``), else a DataLoader."""
    if mode == "resident" and not isinstance(split, TensorSplit):
        raise RKSearchError("the resident loader needs images decoded in memory; this dataset keeps its "
                            "large images as files, use the dataloader", field="loader")
    common = dict(batch_size=batch_size, device=device, shuffle=shuffle, generator=generator, channels_last=channels_last,
                  drop_last=drop_last)
    if mode == "resident" or (mode == "auto" and fits_on(split, device)):
        return ResidentLoader(split, pipe, **common)
    workers = default_workers() if workers is None else workers
    return StreamLoader(split, pipe, workers=workers, **common)
