"""Parameters and FLOPs of any module, measured by PyTorch's own counter.

The convention of ``rksearch.arch.count`` and the paper's tables: FLOPs are 2 x multiply-accumulates
of convolutions and matrix products for one image. The tests hold every analytic count equal to
this one; building on the meta device makes measuring free of memory and arithmetic.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from rksearch.arch.count import Counts


def count_module(model: nn.Module, input_size: int, in_channels: int = 3) -> Counts:
    """Trainable parameters, and FLOPs of one eval-mode forward pass of one square image."""
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    device = next(model.parameters()).device
    x = torch.zeros(1, in_channels, input_size, input_size, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return Counts(params=params, flops=counter.get_total_flops())


def count_built(build: Callable[[], nn.Module], input_size: int, in_channels: int = 3) -> Counts:
    """:func:`count_module` of ``build()`` constructed on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        model = build()
    return count_module(model, input_size, in_channels)
