"""Augmentation and normalisation, batched on the device or per sample in DataLoader workers.

Both paths move uint8 images and normalise on the device: a quarter of float32's bytes cross
the bus, and one normalisation serves both.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from rksearch.data.splits import Style

PAD = 4
RESIZE_RATIO = 256 / 224
"""ImageNet evaluation resizes to 256 then center-crops 224; other sizes keep the ratio."""


@dataclass(frozen=True)
class Pipeline:
    """How one split becomes model input."""

    style: Style
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: bool
    size: int

    @property
    def crops(self) -> bool:
        """The paper's "+": 4-pixel zero padding, a random crop back to size, a horizontal flip."""
        return self.augment and self.style == "cifar"


class Normalize:
    """uint8 (B, C, H, W) -> float32 ``(x / 255 - mean) / std``, in channels_last layout if asked."""

    def __init__(self, pipe: Pipeline, device: torch.device, channels_last: bool):
        mean = torch.tensor(pipe.mean, device=device).view(1, -1, 1, 1)
        std = torch.tensor(pipe.std, device=device).view(1, -1, 1, 1)
        self.scale = 1 / (255 * std)
        self.shift = -mean / std
        self.layout = torch.channels_last if channels_last else torch.contiguous_format

    def __call__(self, x: Tensor) -> Tensor:
        return x.float().mul_(self.scale).add_(self.shift).contiguous(memory_format=self.layout)


def random_crops(n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Per image: the (row, col) offset of its crop in the padded image, and whether to flip it."""
    shift = torch.randint(0, 2 * PAD + 1, (n, 2), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    return shift, flip


def crop_flip(padded: Tensor, index: Tensor, shift: Tensor, flip: Tensor, size: int) -> Tensor:
    """Images ``index`` of a padded uint8 stack, each cropped at its ``shift`` and mirrored where
    ``flip``, in one gather: (B, C, size, size) with channels_last strides."""
    ar = torch.arange(size, device=padded.device)
    rows = shift[:, 0, None] + ar  # (B, size)
    cols = shift[:, 1, None] + torch.where(flip[:, None], size - 1 - ar, ar)
    out = padded[index[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # (B, size, size, C)
    return out.permute(0, 3, 1, 2)


def sample_transform(pipe: Pipeline) -> Callable[[Tensor], Tensor]:
    """The per-sample uint8 -> uint8 transform of the DataLoader path (torchvision v2)."""
    from torchvision.transforms import v2

    if pipe.style == "imagenet":
        if pipe.augment:
            return v2.Compose([v2.RandomResizedCrop(pipe.size, antialias=True), v2.RandomHorizontalFlip()])
        return v2.Compose([v2.Resize(round(pipe.size * RESIZE_RATIO), antialias=True), v2.CenterCrop(pipe.size)])
    if pipe.crops:
        return v2.Compose([v2.RandomCrop(pipe.size, padding=PAD), v2.RandomHorizontalFlip()])
    return v2.Identity()
