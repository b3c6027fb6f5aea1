"""What a training or proxy config is checked against, without torch.

A space's ``proxy:`` is validated when the space loads (``rksearch space`` runs no training), so
its checks cannot live in the torch modules :mod:`rksearch.training.train` and :mod:`rksearch.data`.
"""
from __future__ import annotations

from typing import Any

DATASET_NAMES = ("demo", "imagefolder", "cifar10", "cifar100", "svhn")
"""The names :data:`rksearch.data.DATASETS` loads (a test holds the two equal)."""


def check_graphable(cfg: Any) -> None:
    """``cuda_graph`` replays one batch shape of the eager step (a trainer's or a proxy's config)."""
    if cfg.cuda_graph and not cfg.static_shapes:
        raise ValueError("cuda_graph: replays one batch shape, so it needs static_shapes")
    if cfg.cuda_graph and cfg.compile:
        raise ValueError("cuda_graph: captures the eager step; compile makes its own CUDA graphs (choose one)")
