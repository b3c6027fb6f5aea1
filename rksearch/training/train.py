"""Training with the paper's recipe (Appendix A): SGD, Nesterov momentum 0.9, weight decay
1e-4, lr 0.1 divided by 10 at 50 % and 75 % of training.

:func:`fit` trains a spec on prepared splits (what a search trial and ``rksearch train`` share),
an RKNet spec or a baseline spec alike, since both build and count themselves. :func:`train`
adds the run folder: a checkpoint every epoch that ``resume`` continues exactly, ``metrics.csv``,
the final model and the test result.
"""
from __future__ import annotations

import csv
import io
import json
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Optional

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from rksearch.models.registry import build_model, count
from rksearch.training import cudagraph
from rksearch.arch.resolve import AnySpec, any_spec_from_dict
from rksearch.data import DataOptions, Loader, LoaderMode, Split, Splits, make_loader, pad_batch, pipeline
from rksearch.data.splits import Dataset, Style
from rksearch.core.errors import RKSearchError
from rksearch.arch.resolve import save_spec
from rksearch.training.config import check_graphable

CHECK_EVERY = 50
"""Steps between checks of the loss for NaN/inf: each check waits for the device."""
CHECKPOINT, METRICS, MODEL, RESULT, SPEC = "checkpoint.pt", "metrics.csv", "model.pt", "result.json", "spec.yaml"
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


class TrainConfig(BaseModel):
    """How a spec is trained; the defaults are the paper's CIFAR recipe."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    epochs: int = Field(default=300, ge=1)
    batch_size: int = Field(default=64, ge=1)
    lr: float = Field(default=0.1, gt=0)
    momentum: float = Field(default=0.9, ge=0)
    nesterov: bool = True
    weight_decay: float = Field(default=1e-4, ge=0)
    milestones: tuple[float, ...] = Field(default=(0.5, 0.75), description="fractions of training where lr *= gamma")
    gamma: float = Field(default=0.1, gt=0)
    augment: bool = True
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["auto", "bf16", "off"] = "auto"
    channels_last: bool = True
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
    loader: LoaderMode = "auto"
    workers: Optional[int] = Field(default=None, ge=0)
    seed: int = 0

    @model_validator(mode="after")
    def _graphable(self) -> "TrainConfig":
        check_graphable(self)
        return self


def paper_recipe(style: Style) -> dict[str, Any]:
    """Appendix A per dataset: CIFAR 300 epochs at batch 64, SVHN 40, ImageNet 90 at 256 with
    lr / 10 every 30 epochs."""
    if style == "imagenet":
        return {"epochs": 90, "batch_size": 256, "milestones": (1 / 3, 2 / 3)}
    return {"epochs": 40 if style == "plain" else 300, "batch_size": 64, "milestones": (0.5, 0.75)}


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


@dataclass
class FitResult:
    model: nn.Module
    history: list[EpochMetrics]
    test_loss: Optional[float]
    test_accuracy: Optional[float]
    seconds: float

    @property
    def train_seconds(self) -> float:
        return sum(m.train_seconds for m in self.history)

    @property
    def images_per_s(self) -> float:
        return sum(m.images for m in self.history) / self.train_seconds if self.history else 0.0


def resolve_device(name: str, field: str = "device") -> torch.device:
    """``auto`` is CUDA where there is one; asking for CUDA without one is a user error naming ``field``."""
    if name not in ("auto", "cuda", "cpu"):
        raise RKSearchError(f"expected one of auto, cuda, cpu, got {name!r}", field=field)
    if name == "cuda" and not torch.cuda.is_available():
        flag = f"; use {field} cpu" if field.startswith("--") else ""
        raise RKSearchError(f"CUDA is not available on this machine (torch sees no GPU){flag}", field=field)
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


def check_fits(spec: AnySpec, ds: Dataset) -> None:
    """The spec must match the data it trains on (errors name the spec field)."""
    if spec.num_classes != ds.num_classes:
        raise RKSearchError(f"is {spec.num_classes} but {ds.name} has {ds.num_classes} classes", field="num_classes")
    if spec.in_channels != 3:
        raise RKSearchError(f"is {spec.in_channels} but {ds.name} images are RGB (3 channels)", field="in_channels")
    if ds.image_size is not None and spec.input_size != ds.image_size:
        raise RKSearchError(f"is {spec.input_size} but {ds.name} images are {ds.image_size}x{ds.image_size}",
                            field="input_size")


class Trainer:
    """Model, optimiser, schedule and loaders of one run, and its state for checkpoints."""

    def __init__(self, spec: AnySpec, splits: Splits, cfg: TrainConfig):
        self.spec, self.splits, self.cfg = spec, splits, cfg
        self.device = resolve_device(cfg.device)
        self.graphed = cfg.cuda_graph and cudagraph.available(self.device)
        if self.graphed:
            cudagraph.check_torch()
        self.amp = cfg.amp == "bf16" or (cfg.amp == "auto" and self.device.type == "cuda")
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
        # a captured step reads the learning rate from a device tensor, which only the fused SGD takes
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                         nesterov=cfg.nesterov and cfg.momentum > 0, weight_decay=cfg.weight_decay,
                                         fused=self.graphed or None)
        if self.graphed:
            cudagraph.lr_tensor(self.optimizer, self.device)
        steps = cfg.epochs * len(self.train_loader)  # the schedule steps per batch
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(
            self.optimizer, [max(1, round(f * steps)) for f in cfg.milestones], gamma=cfg.gamma)
        self.epoch, self.elapsed, self.history = 0, 0.0, []
        # the epoch's sums, updated in place: a captured step adds to them at fixed addresses
        self.loss_sum = torch.zeros((), device=self.device)
        self.correct = torch.zeros((), dtype=torch.int64, device=self.device)
        self._graph: Optional[torch.cuda.CUDAGraph] = None
        self._static: Optional[tuple[torch.Tensor, torch.Tensor]] = None
        self._warm_steps = 0

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

    def _autocast(self):
        # a CUDA graph must not keep autocast's weight casts from its capture
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp,
                              cache_enabled=not self.graphed)

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
            if self.graphed:
                self._graphed_step(x, y)
            else:
                self._step(x, y)
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

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Forward, backward and SGD on one batch; its loss and hits are added to the epoch's sums."""
        with self._autocast():
            logits = self.forward(x)
        loss = F.cross_entropy(logits.float(), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.loss_sum += loss.detach() * len(y)
        self.correct += (logits.argmax(1) == y).sum()

    def _graphed_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """:meth:`_step` as a CUDA graph: the first batches warm up eagerly on a side stream, the
        next one is captured, and from then on every batch is copied in and the graph replayed."""
        if self._static is None:
            self._static = torch.empty_like(x), torch.empty_like(y)
        sx, sy = self._static
        sx.copy_(x)
        sy.copy_(y)
        if self._graph is None and self._warm_steps < cudagraph.WARMUP_STEPS:
            cudagraph.on_side_stream(lambda: self._step(sx, sy))
            self._warm_steps += 1
            return
        if self._graph is None:
            self._graph = cudagraph.capture(lambda: self._step(sx, sy))
        self._graph.replay()

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
            with self._autocast():
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
        _write_atomic(path, lambda tmp: torch.save(self.state_dict(extra), tmp))

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


def fit(
    spec: AnySpec,
    splits: Splits,
    cfg: TrainConfig,
    *,
    checkpoint: Path | None = None,
    resume: bool = False,
    extra: dict | None = None,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
    on_step: Callable[[int, int], None] | None = None,
    on_resume: Callable[[int], None] | None = None,
    evaluate_test: bool = False,
) -> FitResult:
    """Train ``spec`` for ``cfg.epochs``; ``on_epoch`` runs after each epoch (and its checkpoint)
    and may stop the run by raising; ``on_resume`` gets the epochs a checkpoint that fits holds.
    A non-finite loss raises :class:`TrainingDiverged`."""
    check_fits(spec, splits.dataset)
    start = time.perf_counter()
    trainer = Trainer(spec, splits, cfg)
    extra = extra or {}
    if resume and checkpoint is not None and checkpoint.is_file():
        trainer.load(checkpoint, extra)
        if on_resume:
            on_resume(trainer.epoch)
    before = trainer.elapsed
    while trainer.epoch < cfg.epochs:
        metrics = trainer.train_epoch(on_step)
        if checkpoint is not None:
            trainer.save(checkpoint, extra)
        if on_epoch:
            on_epoch(metrics)
    test = trainer.evaluate(splits.test) if evaluate_test else (None, None)
    return FitResult(trainer.model, trainer.history, *test, before + time.perf_counter() - start)


# -- the run folder ------------------------------------------------------------------------------

def _write_atomic(path: Path, write: Callable[[Path], Any]) -> None:
    """``write(tmp)`` then rename over ``path``: an interrupted run never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    tmp.replace(path)


def _metrics_csv(history: list[EpochMetrics]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, [f.name for f in fields(EpochMetrics)], lineterminator="\n")
    writer.writeheader()
    writer.writerows(asdict(m) for m in history)
    return buf.getvalue()


def _past_history(checkpoint: Path) -> list[EpochMetrics]:
    """The epochs a resumed run has already done (fit itself checks that the checkpoint fits)."""
    if not checkpoint.is_file():
        return []
    try:
        return [EpochMetrics(**m) for m in torch.load(checkpoint, weights_only=True, map_location="cpu")["history"]]
    except Exception:  # fit reports a damaged checkpoint as a user error
        return []


@contextmanager
def run_folder(out: Path, resume: bool) -> Iterator[None]:
    """Refuse to overwrite another run; create the folder only once every input has been checked,
    and remove it again if the run fails before writing anything into it."""
    if out.exists() and not out.is_dir():
        raise RKSearchError("exists and is not a folder", source=out, field="--out")
    if not resume and (out / CHECKPOINT).exists():
        raise RKSearchError("already holds a run: pass --resume to continue it, or choose another --out", source=out)
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RKSearchError(f"cannot create the run folder: {e.strerror}", source=out, field="--out") from None
    try:
        yield
    except BaseException:
        if created and not any(out.iterdir()):
            out.rmdir()
        raise


def train(
    spec: AnySpec,
    splits: Splits,
    cfg: TrainConfig,
    out: Path,
    *,
    data: DataOptions,
    resume: bool = False,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
    on_step: Callable[[int, int], None] | None = None,
    on_resume: Callable[[int], None] | None = None,
    evaluate_test: bool = True,
) -> FitResult:
    """Full training of ``spec`` into the folder ``out``: checkpoint, metrics.csv, model.pt
    (state_dict plus spec), spec.yaml and result.json with the test accuracy and the number of
    test images it was measured on (``splits.test``: the whole test set unless the data's
    ``test_subset`` cut it; none with ``evaluate_test=False``, for quick checks)."""
    check_fits(spec, splits.dataset)
    with run_folder(out, resume):
        history = _past_history(out / CHECKPOINT) if resume else []

        def epoch_done(m: EpochMetrics) -> None:
            history.append(m)
            _write_atomic(out / METRICS, lambda tmp: tmp.write_text(_metrics_csv(history)))
            if on_epoch:
                on_epoch(m)

        result = fit(spec, splits, cfg, checkpoint=out / CHECKPOINT, resume=resume, extra={"data": data.model_dump()},
                     on_epoch=epoch_done, on_step=on_step, on_resume=on_resume, evaluate_test=evaluate_test)
    _write_outputs(out, spec, splits.dataset, result, len(splits.test) if evaluate_test else 0)
    return result


def _write_outputs(out: Path, spec: AnySpec, ds: Dataset, result: FitResult, test_images: int) -> None:
    state = {k: v.detach().cpu() for k, v in result.model.state_dict().items()}
    model = {"spec": spec.to_dict(), "state_dict": state, "classes": list(ds.classes), "mean": list(ds.mean),
             "std": list(ds.std)}
    _write_atomic(out / MODEL, lambda tmp: torch.save(model, tmp))
    save_spec(spec, out / SPEC, header=f"{spec.name}, trained on {ds.name}")
    c = count(spec)
    last = result.history[-1]
    summary = {
        "name": spec.name, "dataset": ds.name, "epochs": last.epoch, "test_accuracy": result.test_accuracy,
        "test_loss": result.test_loss, "test_images": test_images, "val_accuracy": last.val_accuracy,
        "params": c.params, "flops": c.flops,
        "seconds": result.seconds, "train_seconds": result.train_seconds, "images_per_s": result.images_per_s,
    }
    _write_atomic(out / RESULT, lambda tmp: tmp.write_text(json.dumps(summary, indent=2) + "\n"))
