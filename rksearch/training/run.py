"""Training a spec to the end, RKNet or baseline: :func:`fit` (a search trial's and ``rksearch train``'s) and
:func:`train`, which adds the run folder (checkpoint, metrics.csv, model, result) that ``--resume`` continues."""
from __future__ import annotations

import csv
import io
import json
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import torch
from torch import nn

from rksearch.arch.resolve import AnySpec, save_spec
from rksearch.core.errors import RKSearchError
from rksearch.core.files import write_atomic
from rksearch.data import DataOptions, Splits
from rksearch.data.facts import check_fits
from rksearch.data.splits import Dataset
from rksearch.models.registry import count
from rksearch.training.config import TrainConfig
from rksearch.training.trainer import EpochMetrics, Trainer

CHECKPOINT, METRICS, MODEL, RESULT, SPEC = "checkpoint.pt", "metrics.csv", "model.pt", "result.json", "spec.yaml"


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
    A non-finite loss raises :class:`~rksearch.training.trainer.TrainingDiverged`."""
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
            write_atomic(out / METRICS, lambda f: f.write(_metrics_csv(history).encode()))
            if on_epoch:
                on_epoch(m)

        result = fit(spec, splits, cfg, checkpoint=out / CHECKPOINT, resume=resume, extra={"data": data.model_dump()},
                     on_epoch=epoch_done, on_step=on_step, on_resume=on_resume, evaluate_test=evaluate_test)
    _write_outputs(out, spec, splits.dataset, result, len(splits.test) if evaluate_test else 0)
    return result


def _write_outputs(out: Path, spec: AnySpec, ds: Dataset, result: FitResult, test_images: int) -> None:
    state = {k: v.detach().cpu() for k, v in result.model.state_dict().items()}
    model: dict[str, Any] = {"spec": spec.to_dict(), "state_dict": state, "classes": list(ds.classes),
                             "mean": list(ds.mean), "std": list(ds.std)}
    write_atomic(out / MODEL, lambda f: torch.save(model, f))
    save_spec(spec, out / SPEC, header=f"{spec.name}, trained on {ds.name}")
    c = count(spec)
    last = result.history[-1]
    summary = {
        "name": spec.name, "dataset": ds.name, "epochs": last.epoch, "test_accuracy": result.test_accuracy,
        "test_loss": result.test_loss, "test_images": test_images, "val_accuracy": last.val_accuracy,
        "params": c.params, "flops": c.flops,
        "seconds": result.seconds, "train_seconds": result.train_seconds, "images_per_s": result.images_per_s,
    }
    write_atomic(out / RESULT, lambda f: f.write((json.dumps(summary, indent=2) + "\n").encode()))
