"""Decode once: decoded datasets are kept as tensor files in a cache folder keyed by their source."""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import warnings
from pathlib import Path
from typing import Callable

from rksearch.core.errors import RKSearchError
from rksearch.core.files import write_atomic

CACHE_VERSION = 1


def cache_dir() -> Path:
    """``$RKSEARCH_CACHE``, else ``~/.cache/rksearch``."""
    return Path(os.environ.get("RKSEARCH_CACHE") or Path.home() / ".cache" / "rksearch")


def cache_path(kind: str, signature: list) -> Path:
    key = hashlib.sha1(json.dumps([CACHE_VERSION, kind, signature]).encode()).hexdigest()[:20]
    return cache_dir() / f"{kind}-{key}.pt"


def cached(kind: str, signature: list, build: Callable[[], dict]) -> dict:
    """``build()``'s dict of tensors and plain values, from the cache when the signature matches.

    A cache that cannot be read is rebuilt; one that cannot be written only costs a warning.
    """
    import torch  # here: a driver that only asks whether a copy is cached (cache_path) imports no torch

    path = cache_path(kind, signature)
    if path.is_file():
        try:
            return torch.load(path, weights_only=True, mmap=True)
        except (RuntimeError, OSError, EOFError, pickle.UnpicklingError):
            pass
    data = build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda f: torch.save(data, f), unique=True)  # workers may build it at once
    except (OSError, RKSearchError) as e:  # a full disk among them
        warnings.warn(f"could not write the dataset cache {path}: {e}", stacklevel=2)
    return data
