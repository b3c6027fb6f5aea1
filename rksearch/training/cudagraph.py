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
from torch.torch_version import TorchVersion

from rksearch.core.errors import RKSearchError

WARMUP_STEPS = 3
"""Eager steps on a side stream before the capture, as the PyTorch docs do."""
MIN_TORCH = "2.5"
"""Since 2.5 a scheduler sets a tensor learning rate in place without a host sync; 2.3 puts a new
tensor in the param group (the graph would keep the old rate: no decay), 2.4 syncs every step."""


def available(device: torch.device) -> bool:
    return device.type == "cuda"


def check_torch() -> None:
    if TorchVersion(torch.__version__) < MIN_TORCH:
        raise RKSearchError(f"needs torch >= {MIN_TORCH} (this is {torch.__version__}): older schedulers never "
                            "update the learning rate a graph reads", field="cuda_graph")


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
    # thread_local: a DataLoader's pin-memory thread may call CUDA while this thread captures
    with torch.cuda.graph(graph, capture_error_mode="thread_local"):
        step()
    return graph


def lr_tensor(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Hold every param group's learning rate in a device tensor that a scheduler updates in place.
    Before a capture only: a graph reads the tensor it was captured with."""
    for group in optimizer.param_groups:
        group["lr"] = torch.tensor(float(group["lr"]), device=device)


def as_float(v):
    """A learning rate as a Python float; one held in a (float32) tensor is rounded to the digits
    float32 carries, so 0.1 stays 0.1 in metrics and checkpoints, not 0.10000000149011612."""
    return float(f"{float(v):.7g}") if isinstance(v, torch.Tensor) else v


def plain_lrs(state: dict) -> dict:
    """An optimiser's or scheduler's state dict with its learning rates as floats, so that a
    checkpoint resumes the same with or without CUDA graphs (and never holds device tensors there)."""
    state = dict(state)
    if "param_groups" in state:
        state["param_groups"] = [{**g, **{k: as_float(g[k]) for k in ("lr", "initial_lr") if k in g}}
                                 for g in state["param_groups"]]
    for key in ("base_lrs", "_last_lr"):
        if key in state:
            state[key] = [as_float(v) for v in state[key]]
    return state
