"""Model library: torch modules built from specs. ``build_model(spec)``, ``count(spec)`` and the
timm-style ``create_model(name, **fields)`` live in :mod:`rksearch.models.registry` (torch-free to
import); the modules themselves in ``rknet``, ``densenet``, ``cliquenet`` and ``resnet``."""
from __future__ import annotations

from rksearch.models.registry import build_model, count, create_model

__all__ = ["build_model", "count", "create_model"]
