"""``rksearch train``: full training of an exported spec or a baseline, with a progress bar."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from rksearch.cli._app import app, as_option, err, out


@app.command()
def train(
    spec_file: Path = typer.Argument(..., metavar="SPEC", help="A spec file (YAML or JSON: an RKNet or a baseline spec) "
                                     "or a baseline name such as densenet-bc-100 or cliquenet-t12-k36."),
    dataset: str = typer.Option(..., "--dataset", help="demo, imagefolder, cifar10, cifar100 or svhn."),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="Dataset folder (or .zip for imagefolder)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1,
                                         help="Default: the paper's (300 CIFAR, 40 SVHN, 90 ImageNet)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Default: 64 (256 for large images)."),
    lr: float = typer.Option(0.1, "--lr", min=0.0, help="Initial SGD learning rate, divided by 10 at the paper's milestones."),
    val_size: Optional[int] = typer.Option(None, "--val-size", min=0,
                                           help="Validation images carved from train (default a tenth; 0: none)."),
    train_subset: Optional[int] = typer.Option(None, "--train-subset", min=1,
                                               help="Train on the first N training images (class-balanced, after the "
                                                    "validation images are carved out) instead of all: for quick checks."),
    test_subset: Optional[int] = typer.Option(None, "--test-subset", min=1,
                                              help="Measure the end on N test images (a class-balanced subset) "
                                                   "instead of the whole test set: for quick checks."),
    no_test: bool = typer.Option(False, "--no-test", help="No test evaluation at the end (quick checks)."),
    no_augment: bool = typer.Option(False, "--no-augment", help="No crop/flip augmentation."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    loader: str = typer.Option("auto", "--loader", help="auto, resident (whole split on the device) or dataloader."),
    workers: Optional[int] = typer.Option(None, "--workers", min=0, help="DataLoader workers."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the model."),
    no_static_shapes: bool = typer.Option(False, "--no-static-shapes",
                                          help="Let batches vary: keep each epoch's partial last batch, no "
                                               "padded evaluation batch (default: one batch shape)."),
    cuda_graph: bool = typer.Option(False, "--cuda-graph",
                                    help="Replay the training step as one CUDA graph (CUDA, no --compile)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the weights, the data split and the batch order."),
    download: Optional[bool] = typer.Option(
        None, "--download/--no-download",
        help="cifar10, cifar100, svhn: without --data-root they download into the cache folder on first use "
             "($RKSEARCH_DATA, else ~/.cache/rksearch/data); --download also fetches into a --data-root that "
             "lacks them, --no-download never downloads."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Run folder (default runs/<spec file name>)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
) -> None:
    """Train a spec or a baseline with the paper's recipe; checkpoint, metrics.csv, model and test result to --out."""
    from pydantic import ValidationError

    from rksearch.data import DataOptions, load_splits
    from rksearch.core.errors import RKSearchError, from_validation_error
    from rksearch.arch.resolve import resolve_any_spec
    from rksearch.training.config import TrainConfig, paper_recipe
    from rksearch.data.facts import check_fits
    from rksearch.training.run import CHECKPOINT
    from rksearch.training.run import train as train_spec
    from rksearch.training.trainer import TrainingDiverged, resolve_device

    # before anything starts: a machine without CUDA says so at once
    if resolve_device(device, "--device").type != "cuda" and cuda_graph:
        raise RKSearchError("CUDA graphs need a CUDA device", field="--cuda-graph")
    if no_test and test_subset is not None:
        raise RKSearchError("--no-test evaluates no test images; drop one of the two", field="--test-subset")
    if dataset == "demo" and data_root is not None:
        raise RKSearchError("the demo data is bundled and takes no --data-root", field="--data-root")
    spec = resolve_any_spec(spec_file)
    try:
        data = DataOptions(dataset=dataset, root=data_root, val_size=val_size, train_subset=train_subset,
                           test_subset=test_subset, seed=seed, download=download)
        splits = load_splits(data)
        given = {"epochs": epochs, "batch_size": batch_size}
        recipe = {**paper_recipe(splits.dataset.style), **{k: v for k, v in given.items() if v is not None}}
        cfg = TrainConfig(**recipe, lr=lr, augment=not no_augment, device=device, loader=loader, workers=workers,
                          compile=compile, static_shapes=not no_static_shapes, cuda_graph=cuda_graph, seed=seed)
    except ValidationError as e:
        raise as_option(from_validation_error(e), OPTIONS) from None
    except RKSearchError as e:
        raise as_option(e, OPTIONS) from None
    try:
        check_fits(spec, splits.dataset)
    except RKSearchError as e:
        raise e.located(spec_file) from None
    folder = out_dir or Path("runs") / spec_file.stem
    if resume and not (folder / CHECKPOINT).is_file():
        err.print(f"nothing to resume in {folder}: starting a new run", highlight=False, soft_wrap=True)
    try:
        with _Progress(cfg.epochs, folder) as progress:
            result = train_spec(spec, splits, cfg, folder, data=data, resume=resume, evaluate_test=not no_test,
                                on_epoch=progress.epoch_done, on_step=progress.step, on_resume=progress.resumed)
    except TrainingDiverged as e:
        err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    if no_test:
        measured = "not tested (--no-test)"
    else:
        of = f" of {len(splits.dataset.test)}" if len(splits.test) < len(splits.dataset.test) else ""
        measured = f"test accuracy {result.test_accuracy or 0.0:.2%} ({len(splits.test)}{of} images)"
    out.print(f"{spec.name} on {splits.dataset.name}: {measured}, {result.seconds:.0f} s; wrote {folder}",
              highlight=False, soft_wrap=True)


OPTIONS = {"dataset": "--dataset", "root": "--data-root", "val_size": "--val-size", "train_subset": "--train-subset",
           "test_subset": "--test-subset",
           "loader": "--loader", "workers": "--workers", "epochs": "--epochs", "batch_size": "--batch-size", "lr": "--lr",
           "cuda_graph": "--cuda-graph"}


class _Progress:
    """A rich progress bar over the batches of each epoch, with the last epoch's loss and accuracy."""

    def __init__(self, epochs: int, folder: Path):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("epoch {task.fields[epoch]}/" + str(epochs)), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), console=err, transient=True)
        self.task = self.bar.add_task("train", total=None, epoch=1, stats="")
        self.epoch, self.folder = 1, folder

    def __enter__(self) -> "_Progress":
        if err.is_terminal:  # a log gets the epoch lines only: stopping the bar there wrote an empty line
            self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if err.is_terminal:
            self.bar.stop()

    def step(self, step: int, steps: int) -> None:
        self.bar.update(self.task, completed=step, total=steps, epoch=self.epoch)

    def resumed(self, epochs_done: int) -> None:
        """Said only once the checkpoint was found to fit the run."""
        self.bar.console.print(f"continuing the run in {self.folder} after epoch {epochs_done}", highlight=False,
                               soft_wrap=True)
        self.epoch = epochs_done + 1

    def epoch_done(self, m) -> None:
        val = f"  val acc {m.val_accuracy:.2%}" if m.val_accuracy is not None else ""
        stats = f"loss {m.train_loss:.3f}  train acc {m.train_accuracy:.2%}{val}  {m.images_per_s:.0f} img/s"
        self.bar.console.print(f"epoch {m.epoch}: {stats}  ({m.seconds:.0f} s)", highlight=False, soft_wrap=True)
        self.epoch = m.epoch + 1
        self.bar.update(self.task, completed=0, epoch=self.epoch, stats=stats)
