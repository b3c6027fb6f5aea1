"""Model library: ``build_model(spec)`` and the timm-style ``create_model(name, **fields)``."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from rksearch.core.errors import RKSearchError
from rksearch.arch.rknet import RKNetSpec, with_fields
from rksearch.models.rknet import RKNet

if TYPE_CHECKING:
    from rksearch.arch.baselines import AnySpec

RESNET18_FIELDS = ("num_classes", "in_channels")


def build_model(spec: AnySpec) -> nn.Module:
    """The PyTorch module for ``spec``: an :class:`RKNet`, or the baseline a baseline spec names."""
    return RKNet(spec) if isinstance(spec, RKNetSpec) else spec.build()


def create_model(name_or_spec: str | Path | AnySpec, **fields: Any) -> nn.Module:
    """A model from a spec, a spec file, or a name plus fields: an RKNet (``IRKNet-3x1_3x1_3x1``
    with ``growth_rate=36``, ``m=[2, 4, 8, 16]``, ``stem="imagenet"``, ...), a baseline
    (``densenet-bc-100``, ``cliquenet-t12-k36``) or ``resnet18``, the CIFAR ResNet-18 that
    ``rksearch bench`` measures against. A field a network does not have is an error."""
    from rksearch.arch.baselines import BaselineSpec, resolve_network

    if isinstance(name_or_spec, RKNetSpec):
        return build_model(with_fields(name_or_spec, **fields))
    if isinstance(name_or_spec, BaselineSpec):
        return build_model(name_or_spec.replace(**fields) if fields else name_or_spec)
    if str(name_or_spec).strip().lower() == "resnet18":
        from rksearch.models.resnet import resnet18_cifar

        wrong = sorted(set(fields) - set(RESNET18_FIELDS))
        if wrong:
            raise RKSearchError(f"resnet18 takes {' and '.join(RESNET18_FIELDS)} only", field=wrong[0])
        return resnet18_cifar(**fields)
    return build_model(resolve_network(name_or_spec, **fields))


__all__ = ["RKNet", "build_model", "create_model"]
