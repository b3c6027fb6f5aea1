"""One factory for every spec: ``build_model(spec)`` and ``count(spec)``, dispatched on the spec's type.

Importing this module costs no torch: RKNets and the DenseNet and CliqueNet baselines are counted
analytically (:mod:`rksearch.arch.count`, held equal to PyTorch's own counter by the tests), and
torch loads only to build a module.
"""
from __future__ import annotations

from functools import singledispatch
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rksearch.arch.baselines import CliqueNetSpec, DenseNetSpec
from rksearch.arch.count import Counts, cliquenet_count, densenet_count, rknet_count
from rksearch.arch.resolve import AnySpec, resolve_network
from rksearch.arch.rknet import RKNetSpec
from rksearch.core.errors import RKSearchError

if TYPE_CHECKING:
    from torch import nn

RESNET18_FIELDS = ("num_classes", "in_channels")


@singledispatch
def build_model(spec: AnySpec) -> nn.Module:
    """The PyTorch module for ``spec``: an :class:`~rksearch.models.rknet.RKNet`, or the baseline a
    baseline spec names."""
    raise RKSearchError(f"no model is registered for a {type(spec).__name__}")


@build_model.register(RKNetSpec)
def _(spec: RKNetSpec) -> nn.Module:
    from rksearch.models.rknet import RKNet

    return RKNet(spec)


@build_model.register(DenseNetSpec)
def _(spec: DenseNetSpec) -> nn.Module:
    from rksearch.models.densenet import DenseNet

    return DenseNet(spec)


@build_model.register(CliqueNetSpec)
def _(spec: CliqueNetSpec) -> nn.Module:
    from rksearch.models.cliquenet import CliqueNet

    return CliqueNet(spec)


@singledispatch
def count(spec: AnySpec) -> Counts:
    """Trainable parameters and FLOPs of ``build_model(spec)`` (FLOPs = 2 x multiply-accumulates of
    one image, the paper's convention)."""
    raise RKSearchError(f"no count is registered for a {type(spec).__name__}")


@count.register(RKNetSpec)
def _(spec: RKNetSpec) -> Counts:
    return rknet_count(spec)


count.register(DenseNetSpec, densenet_count)
count.register(CliqueNetSpec, cliquenet_count)


def create_model(name_or_spec: str | Path | AnySpec, **fields: Any) -> nn.Module:
    """A model from a spec, a spec file, or a name plus fields: an RKNet (``IRKNet-3x1_3x1_3x1``
    with ``growth_rate=36``, ``m=[2, 4, 8, 16]``, ``stem="imagenet"``, ...), a baseline
    (``densenet-bc-100``, ``cliquenet-t12-k36``) or ``resnet18``, the CIFAR ResNet-18 that
    ``rksearch bench`` measures against. A field a network does not have is an error."""
    if isinstance(name_or_spec, (str, Path)) and str(name_or_spec).strip().lower() == "resnet18":
        from rksearch.models.resnet import resnet18_cifar

        wrong = sorted(set(fields) - set(RESNET18_FIELDS))
        if wrong:
            raise RKSearchError(f"resnet18 takes {' and '.join(RESNET18_FIELDS)} only", field=wrong[0])
        return resnet18_cifar(**fields)
    return build_model(resolve_network(name_or_spec, **fields))
