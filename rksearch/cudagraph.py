"""Whole-step CUDA graphs: record one training step (forward, backward, SGD) once, then replay it.

Small RK nets are bound by kernel launches, not by arithmetic: a replay launches the step's
hundreds of kernels with one call. This is the whole-network capture of the PyTorch CUDA docs,
shared by the trainer (``TrainConfig.cuda_graph``) and ``rksearch bench --cuda-graph``.

What a captured step needs, and its callers provide:
- every tensor it reads or writes keeps its address: inputs are copied into static tensors, the
  loss sums are updated in place, and the learning rate lives in a device tensor that a fused SGD
  reads (a Python float would be baked into the graph);
- autocast without its weight-cast cache (the cache would keep the casts of the captured step);
- warm-up steps on a side stream first, so that lazy initialisation (cuDNN plans, the
  optimiser's momentum buffers, the allocator) happens outside the capture.
"""
from __future__ import annotations

from typing import Callable

import torch

WARMUP_STEPS = 3
"""Eager steps on a side stream before the capture, as the PyTorch docs do."""


def available(device: torch.device) -> bool:
    return device.type == "cuda"


def on_side_stream(step: Callable[[], None]) -> None:
    """Run ``step`` eagerly on a side stream, ordered after and before the current stream's work."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        step()
    torch.cuda.current_stream().wait_stream(side)


def capture(step: Callable[[], None]) -> torch.cuda.CUDAGraph:
    """Record ``step`` (after its warm-up steps) as a graph. Recording runs nothing: replay the
    graph once for the step it stands for."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return graph


def lr_tensor(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Hold every param group's learning rate in a device tensor that a scheduler updates in place."""
    for group in optimizer.param_groups:
        lr = float(group["lr"])
        if isinstance(group["lr"], torch.Tensor) and group["lr"].device == device:
            group["lr"].fill_(lr)
        else:
            group["lr"] = torch.tensor(lr, device=device)


def plain_lrs(state: dict) -> dict:
    """An optimiser's or scheduler's state dict with its learning rates as floats, so that a
    checkpoint resumes the same with or without CUDA graphs (and never holds device tensors there)."""
    def plain(v):
        return float(v) if isinstance(v, torch.Tensor) and v.ndim == 0 else v

    state = dict(state)
    if "param_groups" in state:
        state["param_groups"] = [{**g, **{k: plain(g[k]) for k in ("lr", "initial_lr") if k in g}}
                                 for g in state["param_groups"]]
    for key in ("base_lrs", "_last_lr"):
        if key in state:
            state[key] = [plain(v) for v in state[key]]
    return state
