"""Peak memory of a piece of work, on CUDA and on (Linux) CPUs.

CUDA: ``torch.cuda.max_memory_allocated`` above what was allocated when the probe was made;
tensors only, not the caching allocator's reserve. CPU: the process's peak resident set
(``VmHWM``, whose high-water mark ``/proc/self/clear_refs`` resets) above the resident set when
the probe was made, after returning freed heap to the system; it counts every allocation the
process touches, so allocator slack is included. ``None`` where ``/proc`` is missing.
"""
from __future__ import annotations

import ctypes
import gc
from pathlib import Path
from typing import Optional

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kb(key: str) -> Optional[int]:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _trim_heap() -> None:
    """Give freed heap pages back, so an earlier model's garbage does not hide a later one's peak."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class MemoryProbe:
    """``reset_peak()`` then ``peak_bytes()``: the peak since the reset, above the level at creation."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        if self.cuda:
            torch.cuda.synchronize(device)
            self.device = device
            self.base = torch.cuda.memory_allocated(device)
        else:
            _trim_heap()
            rss = _status_kb("VmRSS")
            self.base = None if rss is None else rss * 1024

    @staticmethod
    def kind(device: torch.device) -> str:
        return "cuda_max_memory_allocated" if device.type == "cuda" else "cpu_peak_rss_delta"

    def reset_peak(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:
            _CLEAR_REFS.write_text("5")
        except OSError:
            self.base = None

    def peak_bytes(self) -> Optional[int]:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) - self.base
        hwm = _status_kb("VmHWM")
        if self.base is None or hwm is None:
            return None
        return max(0, hwm * 1024 - self.base)
