"""The one training step (forward, cross-entropy, backward, SGD), eager or as a CUDA graph: what the
trainer runs on every batch and ``rksearch bench`` times."""
from __future__ import annotations

from typing import Callable, Iterable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rksearch.training import cudagraph


def sgd(params: Iterable[nn.Parameter], device: torch.device, *, graphed: bool, foreach: Optional[bool] = None,
        **hyper: float | bool) -> torch.optim.SGD:
    """SGD with ``hyper`` (lr, momentum, ...); for a captured step fused, its learning rate in a device
    tensor (a Python float would be baked into the graph, and only the fused SGD reads a tensor)."""
    optimizer = torch.optim.SGD(params, **hyper, foreach=foreach, fused=graphed or None)
    if graphed:
        cudagraph.lr_tensor(optimizer, device)
    return optimizer


class TrainStep:
    """One batch's training step of ``model`` with ``optimizer``.

    ``forward`` is the model or its compiled form; ``mark_step`` tells torch.compile's own CUDA
    graphs that a new step begins. ``sums`` = (loss sum, correct count) tensors that every step
    adds its batch to in place (a captured step adds at fixed addresses). With ``graphed``, calls
    copy their batch into static ``inputs`` (allocated on the first call unless given: a caller
    that always passes these same tensors copies nothing), warm up eagerly on a side stream for
    :data:`cudagraph.WARMUP_STEPS` calls, then capture the step once and replay it.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, *, amp: bool, graphed: bool,
                 forward: Optional[Callable[[Tensor], Tensor]] = None, mark_step: bool = False,
                 sums: Optional[tuple[Tensor, Tensor]] = None, inputs: Optional[tuple[Tensor, Tensor]] = None):
        self.model, self.optimizer, self.amp, self.graphed = model, optimizer, amp, graphed
        self.forward = forward or model
        self.device_type = next(model.parameters()).device.type
        self.mark_step, self.sums, self.inputs = mark_step, sums, inputs
        self.graph: Optional[torch.cuda.CUDAGraph] = None
        self.warm_steps = 0

    def autocast(self) -> torch.autocast:
        """bf16 autocast where ``amp``; a CUDA graph must not keep autocast's weight casts from its capture."""
        return torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=self.amp, cache_enabled=not self.graphed)

    def eager(self, x: Tensor, y: Tensor) -> None:
        """Forward, backward and SGD on one batch, now."""
        if self.mark_step:  # torch.compile's CUDA graphs: this step may overwrite the last step's outputs
            torch.compiler.cudagraph_mark_step_begin()
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            logits = self.forward(x)
        loss = F.cross_entropy(logits.float(), y)
        loss.backward()
        self.optimizer.step()
        if self.sums is not None:
            loss_sum, correct = self.sums
            loss_sum += loss.detach() * len(y)
            correct += (logits.argmax(1) == y).sum()

    def __call__(self, x: Tensor, y: Tensor) -> None:
        """One step on the batch (x, y): eager, or through the CUDA graph (warm-up, capture, replay)."""
        if not self.graphed:
            self.eager(x, y)
            return
        if self.inputs is None:
            self.inputs = torch.empty_like(x), torch.empty_like(y)
        sx, sy = self.inputs
        if x is not sx:
            sx.copy_(x)
            sy.copy_(y)
        if self.graph is None and self.warm_steps < cudagraph.WARMUP_STEPS:
            self._warm_up()
            return
        self.capture()
        self.graph.replay()

    def _warm_up(self) -> None:
        cudagraph.on_side_stream(lambda: self.eager(*self.inputs))
        self.warm_steps += 1

    def capture(self) -> None:
        """Warm up (the steps still due) and record the step on the static inputs, unless done;
        recording runs nothing. ``rksearch bench`` captures before it times anything."""
        while self.warm_steps < cudagraph.WARMUP_STEPS:
            self._warm_up()
        if self.graph is None:
            self.graph = cudagraph.capture(lambda: self.eager(*self.inputs))
