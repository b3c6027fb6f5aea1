"""rksearch: neural architecture search over Runge-Kutta CNNs (ERKNets and IRKNets).

The public API, in the order of a search: ``load_space`` a YAML space, ``run_search`` it,
``load_study`` the result, take its Pareto ``front`` and ``export`` the chosen spec; ``parse_name``,
``load_spec``, ``build_model`` and ``count`` for single networks. The names load on first use
(PEP 562), so ``import rksearch`` costs nothing: ``rksearch --help`` starts without numpy and
pydantic, ``describe`` and ``space`` without torch (only building a model needs it).
"""
from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports them
    from rksearch.analysis.export import export
    from rksearch.analysis.pareto import front
    from rksearch.analysis.study import load_study
    from rksearch.arch.count import Counts
    from rksearch.arch.names import parse_name
    from rksearch.arch.resolve import load_spec, resolve_spec, save_spec
    from rksearch.arch.rknet import PeriodSpec, RKNetSpec
    from rksearch.core.errors import RKSearchError
    from rksearch.models.registry import build_model, count, create_model
    from rksearch.search.driver import run_search
    from rksearch.space.search_space import SearchSpace, load_space

__version__ = "0.1.0"

_API = {
    # a search, start to end
    "load_space": "rksearch.space.search_space", "SearchSpace": "rksearch.space.search_space",
    "run_search": "rksearch.search.driver",
    "load_study": "rksearch.analysis.study", "front": "rksearch.analysis.pareto", "export": "rksearch.analysis.export",
    # single networks
    "RKNetSpec": "rksearch.arch.rknet", "PeriodSpec": "rksearch.arch.rknet", "parse_name": "rksearch.arch.names",
    "load_spec": "rksearch.arch.resolve", "resolve_spec": "rksearch.arch.resolve", "save_spec": "rksearch.arch.resolve",
    "build_model": "rksearch.models.registry", "create_model": "rksearch.models.registry",
    "count": "rksearch.models.registry", "Counts": "rksearch.arch.count",
    "RKSearchError": "rksearch.core.errors",
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
