"""The plain sections of a search space: constraints, latency, search (sampler, Ray resources), objectives.

Strict pydantic models, so ``trials: yes`` or ``gpu: "half"`` is an error rather than a guess.
FLOPs and params are written as numbers or with an SI suffix (``2.5e9``, ``2.5G``, ``800M``):
YAML 1.1 reads ``2.5e9`` (no ``+`` in the exponent) as a string, which should not surprise a user.
"""
from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from rksearch.core.objectives import DEFAULT_OBJECTIVES, OBJECTIVES
from rksearch.space.domain import Checker

_SI = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
_QUANTITY = re.compile(r"^\s*((?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)\s*([kKMGT]?)\s*$")


def quantity(value: Any) -> Any:
    """``2.5G`` / ``"2.5e9"`` / ``2500000000`` -> 2.5e9."""
    if isinstance(value, bool):
        raise ValueError("expected a number such as 2.5e9 or 2.5G")
    if isinstance(value, (int, float)):
        return float(value)
    match = _QUANTITY.match(value) if isinstance(value, str) else None
    if not match:
        raise ValueError(f"expected a number such as 2.5e9 or 2.5G, got {value!r}")
    return float(match[1]) * _SI[match[2]]


Quantity = Annotated[float, BeforeValidator(quantity)]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class Constraints(_Strict):
    """Upper bounds on the FULL spec (not the proxy's shrunken copy); None = unbounded. FLOPs and
    params are counted; latency (ms per forward pass) is measured under ``latency:``'s settings."""

    max_flops: Optional[Annotated[Quantity, Field(gt=0)]] = None
    max_params: Optional[Annotated[Quantity, Field(gt=0)]] = None
    max_latency_ms: Optional[Annotated[float, Field(gt=0, allow_inf_nan=False)]] = None


class LatencyConfig(_Strict):
    """How a candidate's latency is measured (:mod:`rksearch.training.latency`): the full network,
    one forward pass of ``batch`` images, on ``device`` at ``precision`` with ``threads`` threads
    (None: torch's default on the measuring machine)."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch: int = Field(default=1, ge=1)
    precision: Literal["fp32", "bf16"] = "fp32"
    threads: Optional[int] = Field(default=None, ge=1)
    channels_last: bool = True


class SchedulerConfig(_Strict):
    """Early stopping on accuracy: ASHA (rungs at grace_epochs * reduction_factor^i) or none."""

    kind: Literal["asha", "none"] = "asha"
    grace_epochs: int = Field(default=1, ge=1)
    reduction_factor: int = Field(default=3, ge=2)


class Resources(_Strict):
    """Ray resources of one trial; a GPU below 1 shares the card between trials."""

    cpu: float = Field(default=1.0, gt=0)
    gpu: float = Field(default=0.0, ge=0)

    @field_validator("gpu")
    @classmethod
    def _ray_fractions(cls, v: float) -> float:
        if v > 1 and v != int(v):
            raise ValueError("a fraction below 1 (trials share a GPU) or a whole number of GPUs")
        return v


class PrescreenConfig(_Strict):
    """Zero-cost pre-screening (:mod:`rksearch.proxies.prescreen`): each of the first ``trials`` trials
    trains the best-scoring of ``candidates`` uniformly drawn feasible specs; None: every trial
    of ``search.trials``, and the sampler only proposes trials beyond them."""

    score: Literal["synflow", "naswot", "grad_norm", "snip"] = "synflow"
    candidates: int = Field(default=8, ge=2)
    trials: Optional[int] = Field(default=None, ge=1)
    batch_size: int = Field(default=64, ge=2, description="images of proxy data for naswot, grad_norm and snip")


def _auto_is_none(value: Any) -> Any:
    """``concurrency: auto`` is the unset value: as many trials as the cluster holds."""
    return None if value == "auto" else value


class SearchConfig(_Strict):
    sampler: Literal["tpe", "nsga2", "nsga3", "gp", "qmc", "random", "grid"] = "tpe"
    trials: int = Field(default=20, ge=1)
    concurrency: Annotated[Optional[Annotated[int, Field(ge=1)]], BeforeValidator(_auto_is_none)] = Field(
        default=None, description="trials at once; None (auto): as many as the Ray cluster's resources hold")
    seed: Optional[int] = None
    scheduler: SchedulerConfig = SchedulerConfig()
    resources: Resources = Resources()
    address: Optional[str] = None
    max_failures: Optional[int] = Field(default=None, ge=0)
    prescreen: Optional[PrescreenConfig] = None

    @model_validator(mode="after")
    def _prescreen_needs_a_choice(self) -> "SearchConfig":
        if self.prescreen is not None and self.sampler == "grid":
            raise ValueError("prescreen: grid trains every point, so there is nothing to pre-screen; use random or tpe")
        return self

    @model_validator(mode="before")
    @classmethod
    def _scheduler_shorthand(cls, data: Any) -> Any:
        """``scheduler: asha`` / ``scheduler: none`` / ``scheduler: null`` for the mapping."""
        if isinstance(data, dict) and (isinstance(data.get("scheduler"), str) or data.get("scheduler", 0) is None):
            return {**data, "scheduler": {"kind": data["scheduler"] or "none"}}
        return data


def parse_objectives(raw: Any, chk: Checker) -> tuple[str, ...]:
    if raw is None:
        return DEFAULT_OBJECTIVES
    if not isinstance(raw, list) or not raw:
        raise chk.fail("objectives", "expected a list such as [accuracy, flops]")
    for i, name in enumerate(raw):
        if name not in OBJECTIVES:
            allowed = ", ".join(f"{o.name} ({o.sense})" for o in OBJECTIVES.values())
            raise chk.fail(f"objectives.{i}", f"unknown objective {name!r}; allowed: {allowed}")
        if name in raw[:i]:
            raise chk.fail(f"objectives.{i}", f"{name} is listed twice")
    if "accuracy" not in raw:
        raise chk.fail("objectives", "must include accuracy (the proxy's validation accuracy)")
    return tuple(raw)


def parse_reference_point(raw: Any, objectives: tuple[str, ...], chk: Checker) -> tuple[tuple[str, float], ...] | None:
    """One value per objective (a hypervolume needs all of them), in the objectives' order."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise chk.fail("reference_point", f"expected a mapping with one value per objective ({', '.join(objectives)})")
    for key, value in raw.items():
        if key not in objectives:
            raise chk.fail(f"reference_point.{key}", f"not an objective of this space; objectives: {', '.join(objectives)}")
        try:
            number = quantity(value)
        except ValueError as e:
            raise chk.fail(f"reference_point.{key}", str(e)) from None
        if not math.isfinite(number):  # a hypervolume against NaN or infinity fails after the whole search
            raise chk.fail(f"reference_point.{key}", f"expected a finite number, got {number}")
    missing = [o for o in objectives if o not in raw]
    if missing:
        raise chk.fail("reference_point", f"missing {', '.join(missing)}: give one value per objective")
    return tuple((o, quantity(raw[o])) for o in objectives)
