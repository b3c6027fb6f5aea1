"""Zero-cost scores: rank architectures at initialisation, without training.

Each score follows the reference implementation of its paper (the versions compared by
Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS", ICLR 2021), so the numbers mean
what the literature means by them:

- ``synflow`` (Tanaka et al. 2020): every parameter and buffer replaced by its absolute value,
  one all-ones input, R = sum of the outputs, score = sum |theta * dR/dtheta|. It reads only the
  input's shape, never the data. BatchNorm runs in eval mode, where freshly initialised running
  statistics (mean 0, var 1) make it the identity, so no batch statistic enters; the pass runs in
  float64 because R is a product over the depth and overflows float32 on deep dense blocks
  (IRKNet-6x4_6x4_6x4 at k = 12 gives about 1e162; past about 1e308 the score is inf, which
  the rank statistics of :mod:`rksearch.proxies.ranking` still order).
- ``naswot`` (Mellor et al. 2021): the binary code of every ReLU unit on each image of the batch,
  kernel K = c c^T + (1 - c)(1 - c)^T summed over all ReLUs, score = log|det K|.
- ``grad_norm``: sum over weight tensors of ||dL/dw||_2, L the cross-entropy of one batch.
- ``snip`` (Lee et al. 2019): sum |dL/dw * w|.
- ``flops``, ``params``: the analytic counts of :func:`rksearch.models.registry.count`, the baselines a
  score has to beat before it is worth anything.

"Weights" are the tensors of convolutions and fully connected layers (2-D and 4-D parameters),
as in the reference code: BatchNorm affine parameters and biases are left out.

The RKNet applies its ReLUs functionally (``F.relu`` inside ``bn_relu_conv``, the
postprocessor and the attention), so NASWOT cannot use module hooks on ``nn.ReLU``. It captures
ReLU outputs with a :class:`~torch.overrides.TorchFunctionMode` that sees every call of
``F.relu``/``torch.relu``/``Tensor.relu`` during the forward pass. Hooks on BatchNorm would miss
the ReLU inside the attention (it follows a linear layer) and any other model's ReLUs; the mode
works for any module without touching its code.

Determinism: a spec is built under ``torch.manual_seed(seed)`` inside a forked RNG (the caller's
RNG state is untouched); dropout is switched off so one forward pass is a function of the
weights and the batch. A model passed in is deep-copied and never modified.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode

from rksearch.models.registry import count
from rksearch.core.errors import RKSearchError
from rksearch.models.registry import build_model
from rksearch.training.proxy import ProxyConfig
from rksearch.arch.rknet import RKNetSpec

Batch = tuple[Tensor, Tensor]
SpecOrModel = Union[RKNetSpec, nn.Module]

DATA_FREE = ("synflow", "flops", "params")  # the scores of an RKNet that need no batch


def weights(model: nn.Module) -> list[Tensor]:
    """The convolution and fully-connected weights a score sums over."""
    return [p for p in model.parameters() if p.dim() >= 2]


def _train_without_dropout(model: nn.Module) -> nn.Module:
    """Train mode (BatchNorm on batch statistics, as the references run) with dropout off."""
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.eval()
    return model


# -- synflow ---------------------------------------------------------------------------------

def synflow(model: nn.Module, input_shape: tuple[int, ...]) -> float:
    """Synaptic flow of ``model`` (modified in place: pass a copy) for one (C, H, W) input."""
    model = model.double().eval()
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.abs_()
    device = next(model.parameters()).device
    model.zero_grad()
    model(torch.ones((1, *input_shape), dtype=torch.float64, device=device)).sum().backward()
    return sum(float((w.detach() * w.grad).abs().sum()) for w in weights(model) if w.grad is not None)


# -- NASWOT ----------------------------------------------------------------------------------

_RELUS = {F.relu, F.relu_, torch.relu, torch.relu_, Tensor.relu, Tensor.relu_}


class ReLUCapture(TorchFunctionMode):
    """Calls ``on_output`` with the output of every ReLU run while the mode is active.

    Inside ``__torch_function__`` the mode is off, so ``F.relu`` calling ``torch.relu`` is
    seen once.
    """

    def __init__(self, on_output: Callable[[Tensor], None]):
        super().__init__()
        self.on_output = on_output

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: Optional[dict] = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if func in _RELUS:
            self.on_output(out)
        return out


def naswot_kernel(model: nn.Module, x: Tensor) -> Tensor:
    """The (N, N) float64 NASWOT kernel of ``model`` on the batch ``x``.

    K[i, j] counts the ReLU units on which images i and j agree (both active or both
    inactive), so K is symmetric with the total number of ReLU units on its diagonal.
    ``model`` runs as it is (set its mode first).
    """
    n = x.shape[0]
    kernel = torch.zeros(n, n, dtype=torch.float64, device=x.device)

    def add(out: Tensor) -> None:
        codes = out.detach().reshape(n, -1) > 0
        units = codes.shape[1]
        # +-1 codes: s s^T = agreements - disagreements, so agreements = (s s^T + units) / 2;
        # float32 sums integers exactly below 2^24
        s = codes.to(torch.float32 if units < 2**24 else torch.float64) * 2 - 1
        kernel.add_(((s @ s.T + units) / 2).double())

    with torch.no_grad(), ReLUCapture(add):
        model(x)
    return kernel


def naswot(model: nn.Module, x: Tensor) -> float:
    _train_without_dropout(model)
    return float(torch.linalg.slogdet(naswot_kernel(model, x)).logabsdet)


# -- gradient scores -------------------------------------------------------------------------

def _loss_gradients(model: nn.Module, batch: Batch) -> list[tuple[Tensor, Tensor]]:
    x, y = batch
    _train_without_dropout(model)
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    return [(w, w.grad) for w in weights(model) if w.grad is not None]


def grad_norm(model: nn.Module, batch: Batch) -> float:
    return sum(float(g.norm()) for _, g in _loss_gradients(model, batch))


def snip(model: nn.Module, batch: Batch) -> float:
    return sum(float((w.detach() * g).abs().sum()) for w, g in _loss_gradients(model, batch))


# -- size baselines --------------------------------------------------------------------------

def _spec_of(spec_or_model: SpecOrModel) -> Optional[RKNetSpec]:
    spec = spec_or_model if isinstance(spec_or_model, RKNetSpec) else getattr(spec_or_model, "spec", None)
    return spec if isinstance(spec, RKNetSpec) else None


def _size(spec_or_model: SpecOrModel, name: str, batch: Optional[Batch]) -> float:
    """Analytic counts for RKNets; counted on the module for any other model."""
    spec = _spec_of(spec_or_model)
    if spec is not None:
        return float(getattr(count(spec), name))
    model = spec_or_model
    if name == "params":
        return float(sum(p.numel() for p in model.parameters() if p.requires_grad))
    x = _need_batch(batch, name)[0]
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        copy.deepcopy(model).eval()(x[:1])
    return float(counter.get_total_flops())


# -- the entry point -------------------------------------------------------------------------

def _need_batch(batch: Optional[Batch], name: str) -> Batch:
    if batch is None:
        raise RKSearchError(f"score {name!r} needs a batch (x, y) of data")
    return batch


def _check_batch(spec: Optional[RKNetSpec], batch: Optional[Batch]) -> None:
    """A batch the spec cannot read is a user error (a space whose proxy data does not fit it)."""
    if spec is None or batch is None:
        return
    x, y = batch
    if x.dim() != 4 or x.shape[1] != spec.in_channels:
        raise RKSearchError(f"{spec.name} reads {spec.in_channels}-channel images, got a batch of shape {tuple(x.shape)}")
    if y.numel() and not 0 <= int(y.min()) <= int(y.max()) < spec.num_classes:
        raise RKSearchError(f"{spec.name} has {spec.num_classes} classes, got labels {int(y.min())}..{int(y.max())}")


def _run(name: str, model: nn.Module, spec: Optional[RKNetSpec], batch: Optional[Batch]) -> float:
    if name == "synflow":
        if batch is None and spec is None:
            raise RKSearchError("synflow of a model that is not an RKNet needs a batch for the input shape")
        shape = tuple(batch[0].shape[1:]) if batch is not None else (spec.in_channels, spec.input_size, spec.input_size)
        return synflow(model, shape)
    batch = _need_batch(batch, name)
    if name == "naswot":
        return naswot(model, batch[0])
    return grad_norm(model, batch) if name == "grad_norm" else snip(model, batch)


_TRAINED_SCORES = ("synflow", "naswot", "grad_norm", "snip")
SCORES = (*_TRAINED_SCORES, "flops", "params")


def check_names(names: Iterable[str]) -> list[str]:
    """``names`` as a list, or a user error naming the unknown ones."""
    names = list(names)
    unknown = [n for n in names if n not in SCORES]
    if unknown:
        raise RKSearchError(f"unknown score {', '.join(map(repr, unknown))}; choose from {', '.join(SCORES)}", field="scores")
    return names


def score(spec_or_model: SpecOrModel, name: str, batch: Optional[Batch] = None, seed: int = 0) -> float:
    """One zero-cost score of a spec (built with ``seed``) or of a model (copied, left as it is).

    ``batch`` is (images, labels); ``synflow`` reads only its shape, and ``synflow``, ``flops`` and
    ``params`` of an RKNet need none. The model runs on the batch's device.
    """
    check_names([name])
    spec = _spec_of(spec_or_model)
    _check_batch(spec, batch)
    if name not in _TRAINED_SCORES:
        return _size(spec_or_model, name, batch)
    device = batch[0].device if batch is not None else torch.device("cpu")
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        if isinstance(spec_or_model, RKNetSpec):
            model = build_model(spec_or_model)
        else:
            model = copy.deepcopy(spec_or_model)
        return _run(name, model.to(device), spec, batch)


@dataclass(frozen=True)
class SpecScores:
    """The scores of one spec and the seconds each took."""

    values: dict[str, float]
    seconds: dict[str, float]


def score_spec(
    spec: RKNetSpec, names: Iterable[str], batch: Optional[Batch] = None, seed: int = 0, width: float = 1.0
) -> SpecScores:
    """Scores of ``spec`` as a search sees it: the zero-cost scores of the network it would
    train (growth rates times the proxy ``width``), ``flops`` and ``params`` of the full spec,
    whose accuracy the ranking is about."""
    proxy_spec = spec.scaled(width)
    values, seconds = {}, {}
    for name in check_names(names):
        start = time.perf_counter()
        values[name] = score(proxy_spec if name in _TRAINED_SCORES else spec, name, batch, seed)
        seconds[name] = time.perf_counter() - start
    return SpecScores(values, seconds)


def proxy_batch(
    proxy: ProxyConfig, batch_size: int, seed: int = 0, input_size: int = 32, device: torch.device | str = "cpu"
) -> Batch:
    """``batch_size`` images of the proxy's training split (validation carved out as a search
    carves it), drawn by ``seed``, normalised and not augmented: what the scored network would
    see in its first training step, minus the randomness of augmentation."""
    from rksearch.data import DataOptions, load_splits, make_loader, pipeline

    splits = load_splits(DataOptions(dataset=proxy.dataset, root=proxy.root, val_size=proxy.val_size, seed=proxy.seed))
    picks = torch.randperm(len(splits.train), generator=torch.Generator().manual_seed(seed))[:batch_size]
    pipe = pipeline(splits.dataset, train=False, augment=False, size=input_size)
    loader = make_loader(splits.train.take(picks), pipe, batch_size=batch_size, device=torch.device(device),
                         shuffle=False, workers=0)
    return next(iter(loader))
