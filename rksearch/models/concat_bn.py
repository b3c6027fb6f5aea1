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
import torch.nn.functional as F
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


def concat_batch_norm(xs: list[Tensor], bn: nn.BatchNorm2d, pad: int = 0, keep_parts: bool = True) -> Tensor:
    """``bn(torch.cat(xs, 1))``, with ``pad`` more all-zero output channels.

    In training (see :func:`keeps_parts`) the backward keeps ``xs`` rather than the concatenation.
    The padding is a zero input part normalised with zero scale and shift, so its output is
    zero and the real channels' outputs, gradients and running statistics are BN's own; the
    padded statistics are copied back into ``bn``'s buffers. Without either, this is a call of
    the module itself, so its hooks see it.
    """
    parts = keep_parts and keeps_parts(xs, bn)
    if not (pad or parts):
        return bn(xs[0] if len(xs) == 1 else torch.cat(xs, dim=1))
    weight, bias, mean, var = bn.weight, bn.bias, bn.running_mean, bn.running_var
    if pad:
        x = xs[0]
        zeros = x.new_zeros((x.shape[0], pad, *x.shape[2:]))
        xs = [*xs, zeros.to(memory_format=torch.channels_last) if x.stride(1) == 1 else zeros]
        weight, bias = F.pad(weight, (0, pad)), F.pad(bias, (0, pad))
        if mean is not None:
            mean, var = F.pad(mean, (0, pad)), F.pad(var, (0, pad), value=1.0)
    momentum = bn_momentum(bn) if bn.training and mean is not None else 0.0
    if parts:
        out = _ConcatBatchNorm.apply(weight, bias, mean, var, momentum, bn.eps, *xs)
    else:
        out = F.batch_norm(torch.cat(xs, dim=1), mean, var, weight, bias, bn.training or mean is None, momentum,
                           bn.eps)
    if pad and bn.training and mean is not None:
        c = bn.num_features
        bn.running_mean.copy_(mean[:c])
        bn.running_var.copy_(var[:c])
    return out
