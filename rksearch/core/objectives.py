"""The objectives a search can optimise, once: direction, the trial attr measuring each, units."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rksearch.core.errors import RKSearchError

DEFAULT_OBJECTIVES = ("accuracy", "flops")


@dataclass(frozen=True)
class Objective:
    """What one objective means: its direction, the trial attr that measures it, display units."""

    name: str
    direction: str  # "maximize" | "minimize"
    attr: str  # the trial user attr measuring it when no attr carries its own name
    scale: float = 1.0
    unit: str = ""

    @property
    def label(self) -> str:
        return f"{self.name} ({self.unit})" if self.unit else self.name

    @property
    def sense(self) -> str:
        return "max" if self.direction == "maximize" else "min"


OBJECTIVES: dict[str, Objective] = {
    o.name: o
    for o in (
        Objective("accuracy", "maximize", "accuracy"),
        Objective("flops", "minimize", "flops", 1e-9, "GFLOPs"),
        Objective("params", "minimize", "params", 1e-6, "M params"),
        Objective("latency", "minimize", "latency", 1.0, "ms"),
        Objective("throughput", "maximize", "images_per_s", 1.0, "images/s"),
    )
}


def objective(name: str, *, field: str = "objectives", source: str | Path | None = None) -> Objective:
    """The :class:`Objective` called ``name``; a user error naming the known ones otherwise."""
    try:
        return OBJECTIVES[name]
    except (KeyError, TypeError):
        raise RKSearchError(f"unknown objective {name!r}; known: {', '.join(OBJECTIVES)}", source=source, field=field) from None


def parse_objectives(text: str | Sequence[str], *, field: str = "--objectives") -> tuple[str, ...]:
    """``"accuracy,flops"`` or a list -> validated, duplicate-free names (at least two)."""
    names = [n.strip() for n in text.split(",")] if isinstance(text, str) else list(text)
    for n in names:
        objective(n, field=field)
    if len(names) < 2 or len(set(names)) != len(names):
        raise RKSearchError(f"need at least two different objectives, got {', '.join(names) or 'none'}", field=field)
    return tuple(names)
