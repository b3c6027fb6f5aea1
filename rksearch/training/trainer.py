"""One run's trainer with the paper's recipe (SGD, Nesterov 0.9, weight decay 1e-4, lr 0.1 / 10 at 50 % and
75 %): model, schedule, loaders, epochs of :class:`~rksearch.training.step.TrainStep`, evaluation, checkpoints."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F

from rksearch.arch.resolve import AnySpec, any_spec_from_dict
from rksearch.core.errors import RKSearchError
from rksearch.core.files import write_atomic
from rksearch.data import Loader, Split, Splits, make_loader, pad_batch, pipeline
from rksearch.models.registry import build_model
from rksearch.training import cudagraph
from rksearch.training.config import TrainConfig
from rksearch.training.step import TrainStep, sgd

CHECK_EVERY = 50
"""Steps between checks of the loss for NaN/inf: each check waits for the device."""
RESUMABLE_CHANGES = {"device", "compile", "cudnn_benchmark", "cuda_graph", "workers", "loader"}
"""Config fields a resumed run may change: where and how it runs, not what it computes."""
RESUMABLE_DATA_CHANGES = {"test_subset"}
"""Data fields a resumed run may change: what the end measures, not what is trained."""
BEFORE_FIELDS = {"static_shapes": False}
"""How checkpoints written before a config field existed ran."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite: a search records the trial as failed."""

    def __init__(self, epoch: int, step: int):
        self.epoch, self.step = epoch, step
        super().__init__(f"training diverged: non-finite loss in epoch {epoch} by step {step}")


@dataclass
class EpochMetrics:
    epoch: int
    lr: float
    images: int
    train_loss: float
    train_accuracy: float
    val_loss: Optional[float]
    val_accuracy: Optional[float]
    images_per_s: float
    train_seconds: float
    seconds: float
    """Wall time since the run began (summed over resumes), evaluation included."""


def resolve_device(name: str, field: str = "device") -> torch.device:
    """``auto`` is CUDA where there is one; asking for CUDA without one is a user error naming ``field``."""
    if name not in ("auto", "cuda", "cpu"):
        raise RKSearchError(f"expected one of auto, cuda, cpu, got {name!r}", field=field)
    if name == "cuda" and not torch.cuda.is_available():
        flag = f"; use {field} cpu" if field.startswith("--") else ""
        raise RKSearchError(f"CUDA is not available on this machine (torch sees no GPU){flag}", field=field)
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


class Trainer:
    """Model, optimiser, schedule and loaders of one run, and its state for checkpoints."""

    def __init__(self, spec: AnySpec, splits: Splits, cfg: TrainConfig):
        self.spec, self.splits, self.cfg = spec, splits, cfg
        self.device = resolve_device(cfg.device)
        self.graphed = cfg.cuda_graph and cudagraph.available(self.device)
        if self.graphed:
            cudagraph.check_torch()
        amp = cfg.amp == "bf16" or (cfg.amp == "auto" and self.device.type == "cuda")
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = cfg.cudnn_benchmark
        torch.manual_seed(cfg.seed)
        self.model = build_model(spec).to(self.device)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.forward = torch.compile(self.model) if cfg.compile else self.model
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.train_loader = self._loader(splits.train, train=True)
        self._eval_loaders: dict[int, Loader] = {}
        self.optimizer = sgd(self.model.parameters(), self.device, graphed=self.graphed, lr=cfg.lr,
                             momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
                             weight_decay=cfg.weight_decay)
        steps = cfg.epochs * len(self.train_loader)  # the schedule steps per batch
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(
            self.optimizer, [max(1, round(f * steps)) for f in cfg.milestones], gamma=cfg.gamma)
        self.epoch, self.elapsed, self.history = 0, 0.0, []
        # the epoch's sums, zeroed in place: a captured step adds to them at fixed addresses
        self.loss_sum = torch.zeros((), device=self.device)
        self.correct = torch.zeros((), dtype=torch.int64, device=self.device)
        self.step = TrainStep(self.model, self.optimizer, amp=amp, graphed=self.graphed, forward=self.forward,
                              sums=(self.loss_sum, self.correct))

    def _loader(self, split: Split, train: bool) -> Loader:
        pipe = pipeline(self.splits.dataset, train=train, augment=self.cfg.augment, size=self.spec.input_size)
        return make_loader(split, pipe, batch_size=self.cfg.batch_size if train else self._eval_batch,
                           device=self.device, shuffle=train, generator=self.generator if train else None,
                           channels_last=self.cfg.channels_last, drop_last=train and self.cfg.static_shapes,
                           mode=self.cfg.loader, workers=self.cfg.workers)

    @property
    def _eval_batch(self) -> int:
        """The training batch's shape with static shapes, else twice the batch (no gradients to keep)."""
        return min(self.cfg.batch_size, len(self.splits.train)) if self.cfg.static_shapes else 2 * self.cfg.batch_size

    def _check(self, step: int) -> None:
        if not torch.isfinite(self.loss_sum):
            raise TrainingDiverged(self.epoch + 1, step)

    def train_epoch(self, on_step: Callable[[int, int], None] | None = None) -> EpochMetrics:
        start = time.perf_counter()
        lr = cudagraph.as_float(self.optimizer.param_groups[0]["lr"])  # a tensor under CUDA graphs
        self.model.train()
        self.loss_sum.zero_()
        self.correct.zero_()
        seen = 0
        for step, (x, y) in enumerate(self.train_loader, 1):
            self.step(x, y)
            self.scheduler.step()
            seen += len(y)
            if step % CHECK_EVERY == 0:
                self._check(step)
            if on_step:
                on_step(step, len(self.train_loader))
        self._check(len(self.train_loader))
        train_loss, train_acc = self.loss_sum.item() / seen, self.correct.item() / seen
        train_seconds = time.perf_counter() - start
        val_loss, val_acc = self.evaluate(self.splits.val) if self.splits.val is not None else (None, None)
        self.epoch += 1
        self.elapsed += time.perf_counter() - start
        metrics = EpochMetrics(self.epoch, lr, seen, train_loss, train_acc, val_loss, val_acc, seen / train_seconds,
                               train_seconds, self.elapsed)
        self.history.append(metrics)
        return metrics

    @torch.inference_mode()
    def evaluate(self, split: Split) -> tuple[float, float]:
        """(mean loss, accuracy) on ``split``, without augmentation."""
        if id(split) not in self._eval_loaders:
            self._eval_loaders[id(split)] = self._loader(split, train=False)
        loader = self._eval_loaders[id(split)]
        self.model.eval()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        for x, y in loader:
            if self.cfg.static_shapes:
                x, y = pad_batch(x, y, self._eval_batch)  # padding rows are ignored by both sums
            with self.step.autocast():
                logits = self.forward(x)
            loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
        return loss_sum.item() / len(split), correct.item() / len(split)

    # -- checkpoints -------------------------------------------------------------------------

    def state_dict(self, extra: dict) -> dict:
        rng = {"torch": torch.get_rng_state(), "loader": self.generator.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "format": 1, "spec": self.spec.to_dict(), "config": self.cfg.model_dump(mode="json"), "extra": extra,
            "epoch": self.epoch, "elapsed": self.elapsed, "history": [asdict(m) for m in self.history],
            "model": self.model.state_dict(), "optimizer": cudagraph.plain_lrs(self.optimizer.state_dict()),
            "scheduler": cudagraph.plain_lrs(self.scheduler.state_dict()), "rng": rng,
        }

    def save(self, path: Path, extra: dict) -> None:
        write_atomic(path, lambda f: torch.save(self.state_dict(extra), f))

    def load(self, path: Path, extra: dict) -> None:
        """Continue from a checkpoint of the same spec, data and (computing) config."""
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as e:  # torch raises many types for a damaged file, some with advice not to follow here
            raise RKSearchError(f"damaged or not a checkpoint of rksearch train ({type(e).__name__}); start again "
                                "with another --out", source=path) from None
        mine = self.state_dict(extra)
        for key in ("spec", "extra", "config"):
            then, now = state.get(key), mine[key]
            if key == "config" and then is not None:
                then = {**BEFORE_FIELDS, **then}
            if key == "extra":
                then, now = _resume_identity(then), _resume_identity(now)
            diff = [k for k in sorted(set(then or {}) | set(now)) if (then or {}).get(k) != now.get(k)
                    and not (key == "config" and k in RESUMABLE_CHANGES)]
            if not diff:
                continue
            k = diff[0]
            started = f"{k}={(then or {}).get(k)!r}, now {now.get(k)!r}"
            if key == "spec" and then is not None:
                try:
                    then_name = any_spec_from_dict(then).name
                except RKSearchError:  # a spec of an older rksearch: the field says enough
                    then_name = self.spec.name
                if then_name != self.spec.name:
                    started = f"{then_name}, now {self.spec.name}"
            raise RKSearchError(f"the run was started with {started}; resume with the same settings or choose "
                                "another output folder", source=path, field=key)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        for group in self.optimizer.param_groups:  # how SGD runs is this trainer's, not the checkpoint's
            group.update({k: self.optimizer.defaults[k] for k in ("foreach", "fused")})
        if self.graphed:
            cudagraph.lr_tensor(self.optimizer, self.device)
        torch.set_rng_state(state["rng"]["torch"].cpu())
        self.generator.set_state(state["rng"]["loader"].cpu())
        if "cuda" in state["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state_all([s.cpu() for s in state["rng"]["cuda"]])
        self.epoch, self.elapsed = state["epoch"], state["elapsed"]
        self.history = [EpochMetrics(**m) for m in state["history"]]


def _resume_identity(extra: Any) -> Any:
    """A checkpoint's ``extra`` without the data fields a resumed run may change."""
    if not isinstance(extra, dict) or not isinstance(extra.get("data"), dict):
        return extra
    return {**extra, "data": {k: v for k, v in extra["data"].items() if k not in RESUMABLE_DATA_CHANGES}}
