"""rksearch: neural architecture search over Runge-Kutta CNNs (ERKNets and IRKNets).

The public names load on first use (PEP 562), so ``import rksearch`` costs nothing: ``rksearch
--help`` starts without numpy and pydantic, ``describe`` and ``space`` without torch (only
``build_model`` and ``create_model`` need it).
"""
from __future__ import annotations

import sys
import types
from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports them
    from rksearch.arch.count import Counts, count
    from rksearch.core.errors import RKSearchError
    from rksearch.models import build_model, create_model
    from rksearch.arch.rknet import PeriodSpec, RKNetSpec, load_spec, parse_name, resolve_spec, save_spec

__version__ = "0.1.0"

_API = {
    "Counts": "rksearch.arch.count", "count": "rksearch.arch.count", "RKSearchError": "rksearch.core.errors",
    "build_model": "rksearch.models", "create_model": "rksearch.models",
    "PeriodSpec": "rksearch.arch.rknet", "RKNetSpec": "rksearch.arch.rknet", "load_spec": "rksearch.arch.rknet",
    "parse_name": "rksearch.arch.rknet", "resolve_spec": "rksearch.arch.rknet", "save_spec": "rksearch.arch.rknet",
}
__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rksearch' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})


class _Package(types.ModuleType):
    """``rksearch.arch.count`` stays the function: importing the submodule of that name (which Python
    then binds on the package) must not replace it, as the eager root never let it."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _API and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
