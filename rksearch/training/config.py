"""The options of a training (and of a proxy, its short form), torch-free: a space's ``proxy:`` is checked
when the space loads, and ``rksearch space`` imports no torch."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from rksearch.data.splits import Style

"""The names :data:`rksearch.data.DATASETS` loads (a test holds the two equal)."""
LoaderMode = Literal["auto", "resident", "dataloader"]
"""The modes :func:`rksearch.data.make_loader` takes (its own ``LoaderMode``, which imports torch)."""


class TrainOptions(BaseModel):
    """The options a full training and a search's proxy share; the defaults are the paper's CIFAR recipe."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    epochs: int = Field(default=300, ge=1)
    batch_size: int = Field(default=64, ge=1)
    lr: float = Field(default=0.1, gt=0)
    augment: bool = True
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["auto", "bf16", "off"] = "auto"
    compile: bool = False
    cudnn_benchmark: bool = Field(default=True, description="let cuDNN time every convolution algorithm once per new "
                                  "shape: pays off over long runs; a 1-epoch proxy of a new model may not recoup it")
    static_shapes: bool = Field(default=True, description="every batch the model sees has the training batch's shape: "
                                "an epoch's partial last training batch is dropped (the order is reshuffled every "
                                "epoch) and the last evaluation batch is padded, so cuDNN tunes and torch.compile "
                                "captures one shape, not three")
    cuda_graph: bool = Field(default=False, description="on a CUDA device, capture the training step (forward, "
                             "backward, SGD) as one CUDA graph and replay it for every batch: small nets are bound "
                             "by kernel launches. Needs static_shapes and replaces compile; ignored on a CPU")
    seed: int = 0

    @model_validator(mode="after")
    def _graphable(self) -> "TrainOptions":
        """``cuda_graph`` replays one batch shape of the eager step."""
        if self.cuda_graph and not self.static_shapes:
            raise ValueError("cuda_graph: replays one batch shape, so it needs static_shapes")
        if self.cuda_graph and self.compile:
            raise ValueError("cuda_graph: captures the eager step; compile makes its own CUDA graphs (choose one)")
        return self


class TrainConfig(TrainOptions):
    """How a spec is trained (``rksearch train``; a proxy builds one with ``ProxyConfig.train_config``)."""

    momentum: float = Field(default=0.9, ge=0)
    nesterov: bool = True
    weight_decay: float = Field(default=1e-4, ge=0)
    milestones: tuple[float, ...] = Field(default=(0.5, 0.75), description="fractions of training where lr *= gamma")
    gamma: float = Field(default=0.1, gt=0)
    channels_last: bool = True
    loader: LoaderMode = "auto"
    workers: Optional[int] = Field(default=None, ge=0)


def paper_recipe(style: Style) -> dict[str, Any]:
    """Appendix A per dataset: CIFAR 300 epochs at batch 64, SVHN 40, ImageNet 90 at 256 with
    lr / 10 every 30 epochs."""
    if style == "imagenet":
        return {"epochs": 90, "batch_size": 256, "milestones": (1 / 3, 2 / 3)}
    return {"epochs": 40 if style == "plain" else 300, "batch_size": 64, "milestones": (0.5, 0.75)}

