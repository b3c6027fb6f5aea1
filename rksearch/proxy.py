"""The proxy evaluation every search trial runs: a short training of a (possibly shrunken) spec."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field


class ProxyConfig(BaseModel):
    """How a candidate is trained during a search (the ``proxy:`` section of a space).

    The proxy may shrink the candidate (fewer epochs, data subsets, ``width`` multiplying every
    growth rate) but always reports the FLOPs and params of the full spec beside those of what
    it trained.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    dataset: str = "demo"
    root: Optional[str] = None
    train_subset: Optional[int] = Field(default=None, ge=1, description="training images used (after the val split)")
    val_size: int = Field(default=500, ge=1, description="images carved out of the training set for validation")
    val_subset: Optional[int] = Field(default=None, ge=1)
    epochs: int = Field(default=1, ge=1)
    batch_size: int = Field(default=128, ge=1)
    lr: float = Field(default=0.1, gt=0)
    width: float = Field(default=1.0, gt=0, description="multiplier on every growth rate")
    augment: bool = True
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["auto", "bf16", "off"] = "auto"
    compile: bool = False
    seed: int = 0
