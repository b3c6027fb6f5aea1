"""Model library: ``build_model(spec)`` and the timm-style ``create_model(name, **fields)``."""
from __future__ import annotations

from typing import Any

from torch import nn

from ..spec import RKNetSpec, resolve_spec
from .rknet import RKNet


def build_model(spec: RKNetSpec) -> RKNet:
    """The PyTorch module for ``spec``."""
    return RKNet(spec)


def create_model(name_or_spec: str | RKNetSpec, **fields: Any) -> nn.Module:
    """A model from a spec, a spec file, or a name such as ``IRKNet-3x1_3x1_3x1`` plus fields
    (``growth_rate=36``, ``m=[2, 4, 8, 16]``, ``stem="imagenet"``, ...). ``resnet18`` builds the
    CIFAR ResNet-18 baseline."""
    if isinstance(name_or_spec, RKNetSpec):
        return build_model(name_or_spec)
    if name_or_spec == "resnet18":
        from .resnet import resnet18_cifar
        return resnet18_cifar(**fields)
    return build_model(resolve_spec(name_or_spec, **fields))


__all__ = ["RKNet", "build_model", "create_model"]
