"""rksearch: neural architecture search over Runge-Kutta CNNs (ERKNets and IRKNets)."""
from .count import Counts, count
from .errors import RKSearchError
from .models import build_model, create_model
from .spec import PeriodSpec, RKNetSpec, load_spec, parse_name, resolve_spec, save_spec

__version__ = "0.1.0"

__all__ = [
    "Counts", "PeriodSpec", "RKNetSpec", "RKSearchError", "build_model", "count", "create_model",
    "load_spec", "parse_name", "resolve_spec", "save_spec",
]
