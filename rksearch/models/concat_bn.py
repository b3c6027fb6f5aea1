"""Training-mode BatchNorm over a channel concatenation that keeps the parts for its backward.

``bn(torch.cat(xs, 1))`` saves the concatenation for BN's backward: a copy of every input per
consumer. That is why the concatenated RKNets kept more activations than one conv per
connection, whose BNs save the inputs themselves (IRKNet-5x1_5x1_5x1-AB, k = 80, batch 512 on
an H200: 9.9 against 7.3 GiB). A feature is one tensor however many stages read it, so saving
the parts and concatenating them again in the backward keeps what one conv per connection keeps,
for one more copy in the backward. The arithmetic is BN's own (the ops ``F.batch_norm`` runs),
so the function, its gradients and the running statistics are unchanged.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor, nn


def bn_momentum(bn: nn.BatchNorm2d) -> float:
    """Count one more training batch, as ``nn.BatchNorm2d`` does, and return the factor its
    running averages move by (the cumulative average's 1/batches where momentum is None)."""
    bn.num_batches_tracked.add_(1)
    return bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)


class _ConcatBatchNorm(torch.autograd.Function):
    """The ops ``F.batch_norm`` runs in training (cuDNN's where it applies), saving the parts."""

    @staticmethod
    def forward(ctx: Any, weight: Tensor, bias: Tensor, running_mean: Tensor, running_var: Tensor,
                momentum: float, eps: float, *xs: Tensor) -> Tensor:
        out, mean, rstd, reserve = torch.ops.aten._batch_norm_with_update(
            torch.cat(xs, dim=1), weight, bias, running_mean, running_var, momentum, eps)
        ctx.save_for_backward(weight, mean, rstd, reserve, *xs)
        ctx.eps = eps
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Optional[Tensor], ...]:
        weight, mean, rstd, reserve, *xs = ctx.saved_tensors
        need = ctx.needs_input_grad
        gx, gw, gb = torch.ops.aten.batch_norm_backward(
            grad, torch.cat(xs, dim=1), weight, None, None, mean, rstd, True, ctx.eps,
            [any(need[6:]), need[0], need[1]], reserve,
        )
        parts = gx.split([x.shape[1] for x in xs], dim=1) if gx is not None else [None] * len(xs)
        return (gw, gb, None, None, None, None, *parts)


def keeps_parts(xs: list[Tensor], bn: nn.BatchNorm2d) -> bool:
    """Where :func:`concat_batch_norm` applies: several parts, a training step that records
    gradients, running statistics. Not under ``torch.compile``, whose partitioner already
    chooses what to keep and what to recompute."""
    return (
        len(xs) > 1 and bn.training and bn.running_mean is not None and torch.is_grad_enabled()
        and not torch.compiler.is_compiling()
    )


def concat_batch_norm(xs: list[Tensor], bn: nn.BatchNorm2d) -> Tensor:
    """``bn(torch.cat(xs, 1))`` in training mode, its backward keeping ``xs`` rather than the
    concatenation (see :func:`keeps_parts` for where it applies)."""
    return _ConcatBatchNorm.apply(bn.weight, bn.bias, bn.running_mean, bn.running_var, bn_momentum(bn), bn.eps, *xs)
