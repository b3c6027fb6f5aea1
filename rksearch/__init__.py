"""rksearch: neural architecture search over Runge-Kutta CNNs (ERKNets and IRKNets).

The root imports no torch: ``rksearch --help``, ``rksearch describe`` and ``rksearch space`` start
without it. The spec and counting names are plain Python and imported here; ``build_model`` and
``create_model`` (torch) load on first use (PEP 562). ``count`` must be imported eagerly: it is
also the name of the submodule ``rksearch.count``, which, imported later by anything, would bind
the module in its place.
"""
from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .count import Counts, count
from .errors import RKSearchError
from .spec import PeriodSpec, RKNetSpec, load_spec, parse_name, resolve_spec, save_spec

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports them
    from .models import build_model, create_model

__version__ = "0.1.0"

_LAZY = {"build_model": "rksearch.models", "create_model": "rksearch.models"}

__all__ = [
    "Counts", "PeriodSpec", "RKNetSpec", "RKSearchError", "build_model", "count", "create_model",
    "load_spec", "parse_name", "resolve_spec", "save_spec",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rksearch' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
