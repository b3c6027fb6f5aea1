"""Training, checkpoint/resume, divergence, the proxy evaluation and ``rksearch train``."""
from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pytest
import torch

from rksearch import count, parse_name, save_spec
from rksearch.arch.baselines import baseline_spec
from helpers import cli
from rksearch.data import DataOptions, load_splits
from rksearch.core.errors import RKSearchError
from rksearch.training.proxy import ProxyConfig, proxy_evaluate
from rksearch.data.loaders import num_batches
from rksearch.training.config import TrainConfig
from rksearch.training.run import fit, train
from rksearch.training.trainer import Trainer, TrainingDiverged

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning")

SPEC = parse_name("IRKNet-3x1_3x1_3x1", growth_rate=12)
DROPPY = SPEC.replace(dropout=0.2)
TINY = parse_name("ERKNet-2x1_2x1", growth_rate=6)
SMALL_DATA = DataOptions(dataset="demo", val_size=100, train_subset=192, test_subset=100)


class Interrupted(Exception):
    pass


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))




@pytest.fixture(scope="module")
def small_splits():
    return load_splits(SMALL_DATA)


def test_defaults_are_the_papers_recipe() -> None:
    cfg = TrainConfig()
    assert (cfg.lr, cfg.momentum, cfg.nesterov, cfg.weight_decay, cfg.milestones, cfg.gamma) == \
        (0.1, 0.9, True, 1e-4, (0.5, 0.75), 0.1)


@pytest.mark.slow
def test_one_epoch_on_demo_beats_chance() -> None:
    splits = load_splits(DataOptions(dataset="demo", val_size=500))
    result = fit(SPEC, splits, TrainConfig(epochs=1, batch_size=32, device="cpu"))
    [m] = result.history
    assert m.val_accuracy >= 0.15, m  # chance is 0.10; 0.15 on 500 images is 5 standard errors above it
    assert m.train_loss < 2.30 and m.images_per_s > 0 and m.seconds >= m.train_seconds > 0


def test_schedule_divides_lr_at_half_and_three_quarters(small_splits) -> None:
    result = fit(TINY, small_splits, TrainConfig(epochs=4, batch_size=64, device="cpu"))
    assert [round(m.lr, 6) for m in result.history] == [0.1, 0.1, 0.01, 0.001]
    assert [m.epoch for m in result.history] == [1, 2, 3, 4]


# two real 3-epoch trainings (slow); the fast run resumes in test_graphed_training_equals_eager_and_resumes_either_way
@pytest.mark.slow
def test_resume_equals_uninterrupted_run(tmp_path, small_splits) -> None:
    cfg = TrainConfig(epochs=3, batch_size=64, device="cpu")  # dropout and augmentation: every RNG matters
    train(DROPPY, small_splits, cfg, tmp_path / "a", data=SMALL_DATA)

    def stop_after_first(m) -> None:
        if m.epoch == 1:
            raise Interrupted

    with pytest.raises(Interrupted):
        train(DROPPY, small_splits, cfg, tmp_path / "b", data=SMALL_DATA, on_epoch=stop_after_first)
    assert not (tmp_path / "b" / "model.pt").exists() and len(read_csv(tmp_path / "b" / "metrics.csv")) == 1
    train(DROPPY, small_splits, cfg, tmp_path / "b", data=SMALL_DATA, resume=True)

    a, b = (torch.load(tmp_path / r / "model.pt", weights_only=True) for r in "ab")
    assert a["spec"] == b["spec"] == DROPPY.to_dict()
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    rows_a, rows_b = read_csv(tmp_path / "a" / "metrics.csv"), read_csv(tmp_path / "b" / "metrics.csv")
    keys = ("epoch", "lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy")
    assert [[r[k] for k in keys] for r in rows_a] == [[r[k] for k in keys] for r in rows_b] and len(rows_a) == 3
    ra, rb = (json.loads((tmp_path / r / "result.json").read_text()) for r in "ab")
    assert ra["test_accuracy"] == rb["test_accuracy"] and ra["params"] == count(DROPPY).params

    with pytest.raises(RKSearchError, match="already holds a run"):
        train(DROPPY, small_splits, cfg, tmp_path / "b", data=SMALL_DATA)
    with pytest.raises(RKSearchError, match="epochs=3, now 4") as e:
        train(DROPPY, small_splits, cfg.model_copy(update={"epochs": 4}), tmp_path / "b", data=SMALL_DATA, resume=True)
    assert e.value.field == "config" and e.value.source == str(tmp_path / "b" / "checkpoint.pt")
    with pytest.raises(RKSearchError, match="spec: the run was started with dropout=0.2, now 0.0"):
        train(SPEC, small_splits, cfg, tmp_path / "b", data=SMALL_DATA, resume=True)
    with pytest.raises(RKSearchError, match=f"started with {DROPPY.name}, now DenseNet-BC-10-k4; resume with the same"):
        train(baseline_spec("densenet-bc-10-k4"), small_splits, cfg, tmp_path / "b", data=SMALL_DATA, resume=True)


def test_checkpoints_from_before_static_shapes_resume_as_they_ran(tmp_path, small_splits) -> None:
    cfg = TrainConfig(epochs=2, batch_size=64, device="cpu", static_shapes=False)

    def stop(m) -> None:
        raise Interrupted

    with pytest.raises(Interrupted):
        train(TINY, small_splits, cfg, tmp_path, data=SMALL_DATA, on_epoch=stop)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    del state["config"]["static_shapes"]  # as written before the field existed
    torch.save(state, tmp_path / "checkpoint.pt")
    with pytest.raises(RKSearchError, match="static_shapes=False, now True"):
        train(TINY, small_splits, cfg.model_copy(update={"static_shapes": True}), tmp_path, data=SMALL_DATA,
              resume=True)
    assert train(TINY, small_splits, cfg, tmp_path, data=SMALL_DATA, resume=True).history[-1].epoch == 2


def test_non_finite_loss_raises_typed_error(small_splits) -> None:
    with pytest.raises(TrainingDiverged) as e:
        fit(TINY, small_splits, TrainConfig(epochs=3, lr=1e30, device="cpu"))
    assert e.value.epoch in (1, 2, 3) and e.value.step >= 1 and "non-finite loss" in str(e.value)


def test_spec_must_match_the_data(small_splits) -> None:
    with pytest.raises(RKSearchError) as e:
        fit(TINY.replace(num_classes=100), small_splits, TrainConfig(epochs=1, device="cpu"))
    assert e.value.field == "num_classes" and "demo has 10 classes" in str(e.value)
    with pytest.raises(RKSearchError, match="demo images are 32x32") as e:
        fit(TINY.replace(input_size=64), small_splits, TrainConfig(epochs=1, device="cpu"))


def _batch_shapes(splits, cfg: TrainConfig) -> tuple[set[int], set[int]]:
    """The batch sizes the model saw in one epoch's training and in its validation."""
    trainer = Trainer(TINY, splits, cfg)
    seen: dict[bool, set[int]] = {True: set(), False: set()}
    trainer.model.register_forward_pre_hook(lambda m, args: seen[m.training].add(args[0].shape[0]))
    trainer.train_epoch()
    return seen[True], seen[False]


def test_static_shapes_show_the_model_one_batch_shape(small_splits) -> None:
    # 192 training images at batch 40: 4 full batches and 32 left over; 100 validation images
    cfg = TrainConfig(epochs=1, batch_size=40, device="cpu")
    assert _batch_shapes(small_splits, cfg) == ({40}, {40})
    assert _batch_shapes(small_splits, cfg.model_copy(update={"static_shapes": False})) == ({40, 32}, {80, 20})


def test_padded_evaluation_equals_unpadded(small_splits) -> None:
    a, b = (Trainer(TINY, small_splits, TrainConfig(batch_size=48, device="cpu", static_shapes=static))
            for static in (True, False))  # the same seed: the same weights
    (loss_a, acc_a), (loss_b, acc_b) = a.evaluate(small_splits.val), b.evaluate(small_splits.val)
    assert acc_a == acc_b and loss_a == pytest.approx(loss_b, rel=1e-5)


def test_static_shapes_drop_only_a_partial_batch() -> None:
    assert num_batches(49_000, 512, True, drop_last=True) == 95
    assert num_batches(49_000, 512, True) == 96
    assert num_batches(300, 512, True, drop_last=True) == 1  # no full batch: the partial one stays
    assert num_batches(1_024, 512, True, drop_last=True) == 2


# -- the proxy evaluation ------------------------------------------------------------------------

def test_proxy_reports_full_and_trained_costs() -> None:
    reports: list[dict] = []
    cfg = ProxyConfig(dataset="demo", train_subset=200, val_size=100, epochs=2, batch_size=50, width=0.5, device="cpu")
    r = proxy_evaluate(SPEC, cfg, report=reports.append)
    assert 0 <= r["accuracy"] <= 1 and r["epochs"] == 2
    assert (r["params"], r["flops"]) == (count(SPEC).params, count(SPEC).flops)
    small = count(SPEC.scaled(0.5))
    assert (r["trained_params"], r["trained_flops"]) == (small.params, small.flops) and small.flops < r["flops"] / 2
    assert r["seconds"] >= r["train_seconds"] > 0 and r["images_per_s"] > 0
    assert [x["epoch"] for x in reports] == [1, 2] and reports[-1]["accuracy"] == r["accuracy"]
    assert set(reports[0]) == {"epoch", "accuracy", "loss", "images_per_s", "seconds", "val_loss", "train_seconds",
                               "elapsed", "started_at", "data_seconds", "build_seconds", "val_seconds"}
    assert 0 < reports[0]["train_seconds"] <= reports[0]["elapsed"] < reports[1]["elapsed"] <= reports[1]["seconds"]
    # where the seconds went (rksearch.search.overhead): set-up once, validation summed over the epochs
    first, last = reports[0], reports[1]
    assert first["started_at"] == last["started_at"] == r["started_at"] <= time.time()
    assert 0 <= r["data_seconds"] and 0 < r["build_seconds"] and first["build_seconds"] == r["build_seconds"]
    assert 0 < first["val_seconds"] < last["val_seconds"] == r["val_seconds"]
    set_up = r["data_seconds"] + r["build_seconds"]
    assert set_up + last["elapsed"] <= r["seconds"]  # set-up, then the epochs (steps and validation)
    assert last["val_seconds"] == pytest.approx(last["elapsed"] - first["train_seconds"] - last["train_seconds"])


def test_proxy_lets_a_scheduler_stop_the_trial() -> None:
    calls = []

    def stop(metrics: dict) -> None:
        calls.append(metrics)
        raise Interrupted

    with pytest.raises(Interrupted):
        proxy_evaluate(TINY, ProxyConfig(train_subset=100, val_size=50, epochs=5, device="cpu"), report=stop)
    assert len(calls) == 1


# -- rksearch train ------------------------------------------------------------------------------

@pytest.mark.slow
def test_cli_trains_into_a_run_folder(tmp_path, rksearch_cli) -> None:
    """``rksearch train`` in this process (conftest.py), three times: trained, resumed, refused."""
    spec_file = tmp_path / "net.yaml"
    save_spec(TINY, spec_file)
    out = tmp_path / "runs" / "net"
    cmd = ["train", str(spec_file), "--dataset", "demo", "--epochs", "2",
           "--train-subset", "128", "--val-size", "64", "--batch-size", "32", "--device", "cpu", "--out", str(out)]
    r = rksearch_cli(*cmd)
    assert r.returncode == 0, r.stderr
    assert "test accuracy" in r.stdout and "epoch 2:" in r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "metrics.csv", "model.pt", "result.json", "spec.yaml"]
    assert len(read_csv(out / "metrics.csv")) == 2
    assert json.loads((out / "result.json").read_text())["epochs"] == 2
    again = rksearch_cli(*cmd, "--resume")
    assert again.returncode == 0 and "continuing the run" in again.stderr and "after epoch 2" in again.stderr
    changed = rksearch_cli(*cmd[:cmd.index("--epochs") + 1], "3", *cmd[cmd.index("--epochs") + 2:], "--resume")
    assert changed.returncode == 2 and "epochs=2, now 3" in changed.stderr
    assert "continuing" not in changed.stderr and len(changed.stderr.strip().splitlines()) == 1


def _spec_file(tmp_path: Path, **changes) -> Path:
    p = tmp_path / "net.yaml"
    save_spec(TINY.replace(**changes) if changes else TINY, p)
    return p


@pytest.mark.parametrize("case, needle", [
    ("missing spec", "no such file"),
    ("not a spec", "not an RKNet spec"),
    ("missing root", "cifar-10-batches-py"),
    ("empty folder", "no images"),
    ("corrupt image", "cannot decode image"),
    ("class mismatch", "num_classes: is 100 but demo has 10 classes"),
    ("bad device", "device"),
    ("out under a file", "--out: cannot create the run folder: Not a directory"),
    ("damaged checkpoint", "checkpoint.pt: damaged or not a checkpoint of rksearch train"),
    ("cuda graph on a cpu", "--cuda-graph: CUDA graphs need a CUDA device"),
])
def test_cli_errors_are_one_line_and_write_nothing(tmp_path, capsys, case, needle) -> None:
    out = tmp_path / "out"
    if case == "out under a file":
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "run"
    spec = _spec_file(tmp_path, num_classes=100) if case == "class mismatch" else _spec_file(tmp_path)
    args = ["train", str(spec), "--dataset", "demo", "--out", str(out)]
    if case == "missing spec":
        args[1] = str(tmp_path / "nope.yaml")
    elif case == "not a spec":
        (tmp_path / "other.yaml").write_text("name: hello\n")
        args[1] = str(tmp_path / "other.yaml")
    elif case == "missing root":
        args[3:4] = ["cifar10", "--data-root", str(tmp_path / "nodata")]
    elif case in ("empty folder", "corrupt image"):
        root = tmp_path / "folder"
        (root / "train" / "cat").mkdir(parents=True)
        (root / "test" / "cat").mkdir(parents=True)
        if case == "corrupt image":
            (root / "train" / "cat" / "1.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
            (root / "test" / "cat" / "1.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
        args[3:4] = ["imagefolder", "--data-root", str(root)]
    elif case == "bad device":
        args += ["--device", "tpu"]
    elif case == "cuda graph on a cpu":
        args += ["--device", "cpu", "--cuda-graph"]
    elif case == "damaged checkpoint":
        out.mkdir()
        (out / "checkpoint.pt").write_text("garbage")
        args += ["--resume", "--train-subset", "64", "--val-size", "32", "--device", "cpu"]
    code, stdout, stderr = cli(args, capsys)
    assert code == 2, stderr
    assert needle in stderr and "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert not out.exists() or sorted(p.name for p in out.iterdir()) == ["checkpoint.pt"]


def test_cli_divergence_is_reported_without_traceback(tmp_path, capsys) -> None:
    code, _, stderr = cli(["train", str(_spec_file(tmp_path)), "--dataset", "demo", "--epochs", "1", "--lr", "1e30",
                           "--train-subset", "256", "--val-size", "10", "--device", "cpu", "--out", str(tmp_path / "o")],
                          capsys)
    assert code == 1 and "training diverged" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "o").exists()  # diverged before its first checkpoint: no empty run folder left


@pytest.mark.parametrize("fields, needle", [
    ({"cuda_graph": True, "static_shapes": False}, "cuda_graph: replays one batch shape, so it needs static_shapes"),
    ({"cuda_graph": True, "compile": True}, "cuda_graph: captures the eager step"),
])
def test_cuda_graph_needs_static_shapes_and_no_compile(fields, needle) -> None:
    for config in (TrainConfig, ProxyConfig):
        with pytest.raises(ValueError, match=needle):
            config(**fields)


class _ReplayInPython:
    """What a CUDA graph does, in Python: a replay runs the captured step again on the same
    tensors. Counts captures and replays, so that the trainer's bookkeeping is tested on a CPU."""

    def __init__(self, monkeypatch) -> None:
        import rksearch.training.cudagraph as cg

        self.side = self.captured = self.replays = 0
        monkeypatch.setattr(cg, "available", lambda device: True)
        monkeypatch.setattr(cg, "on_side_stream", self._side)
        monkeypatch.setattr(cg, "capture", self._capture)

    def _side(self, step) -> None:
        self.side += 1
        step()

    def _capture(self, step):
        self.captured += 1
        self.step = step
        return self

    def replay(self) -> None:
        self.replays += 1
        self.step()


def test_graphed_training_equals_eager_and_resumes_either_way(tmp_path, small_splits, monkeypatch) -> None:
    cfg = TrainConfig(epochs=3, batch_size=64, device="cpu", augment=False)  # 3 batches per epoch
    eager = fit(TINY, small_splits, cfg).history
    fake = _ReplayInPython(monkeypatch)
    graphed_cfg = cfg.model_copy(update={"cuda_graph": True})
    trainer = Trainer(TINY, small_splits, graphed_cfg)
    assert isinstance(trainer.optimizer.param_groups[0]["lr"], torch.Tensor)  # read by the graph, set in place
    for _ in range(3):
        trainer.train_epoch()
    assert (fake.side, fake.captured, fake.replays) == (3, 1, 6)  # warm-up, one capture, a replay per batch
    keys = ("lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy")
    for a, b in zip(eager, trainer.history):
        assert [getattr(b, k) for k in keys] == pytest.approx([getattr(a, k) for k in keys], rel=1e-4)
    state = trainer.state_dict({})
    assert all(type(g["lr"]) is float for g in state["optimizer"]["param_groups"])  # resumable without graphs

    def stop(m) -> None:
        raise Interrupted

    for first, then in ((graphed_cfg, cfg), (cfg, graphed_cfg)):  # cuda_graph may change on resume
        out = tmp_path / f"run{first.cuda_graph}"
        with pytest.raises(Interrupted):
            train(TINY, small_splits, first, out, data=SMALL_DATA, on_epoch=stop)
        resumed = train(TINY, small_splits, then, out, data=SMALL_DATA, resume=True).history
        assert [m.lr for m in resumed] == pytest.approx([m.lr for m in eager])
        assert resumed[-1].train_loss == pytest.approx(eager[-1].train_loss, rel=1e-4)
        # the resumed trainer keeps its own SGD (fused, tensor lr, under graphs), not the checkpoint's
        again = Trainer(TINY, small_splits, then)
        again.load(out / "checkpoint.pt", {"data": SMALL_DATA.model_dump()})
        group = again.optimizer.param_groups[0]
        assert bool(group["fused"]) == then.cuda_graph and isinstance(group["lr"], torch.Tensor) == then.cuda_graph
    assert [m.lr for m in trainer.history] == [0.1, 0.1, 0.01]  # not float32's 0.10000000149011612


def test_cli_no_static_shapes_reaches_the_trainer(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    code, _, err = cli(["train", str(_spec_file(tmp_path)), "--dataset", "demo", "--epochs", "1", "--train-subset", "64",
                        "--val-size", "32", "--device", "cpu", "--no-static-shapes", "--out", str(out)], capsys)
    assert code == 0, err
    assert torch.load(out / "checkpoint.pt", weights_only=True)["config"]["static_shapes"] is False


def test_cli_test_subset_bounds_the_evaluated_images_and_no_test_skips_them(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    args = ["train", str(_spec_file(tmp_path)), "--dataset", "demo", "--epochs", "1", "--train-subset", "64",
            "--val-size", "32", "--batch-size", "32", "--device", "cpu", "--out", str(out)]
    code, stdout, err = cli([*args, "--test-subset", "40"], capsys)
    assert code == 0, err
    full = len(load_splits(DataOptions(dataset="demo")).test)
    assert f"(40 of {full} images)" in stdout
    result = json.loads((out / "result.json").read_text())
    assert result["test_images"] == 40 and result["test_accuracy"] is not None
    # the test subset is no part of the run's identity: a resumed run may measure on another one
    code, stdout, err = cli([*args, "--resume", "--test-subset", "20"], capsys)
    assert code == 0, err
    assert json.loads((out / "result.json").read_text())["test_images"] == 20 and "(20 of" in stdout
    code, stdout, err = cli([*args, "--resume", "--no-test"], capsys)
    assert code == 0, err
    result = json.loads((out / "result.json").read_text())
    assert result["test_images"] == 0 and result["test_accuracy"] is None and "not tested (--no-test)" in stdout
    code, _, err = cli([*args, "--resume"], capsys)  # the default stays the whole test set
    assert code == 0, err
    assert json.loads((out / "result.json").read_text())["test_images"] == full
    code, _, err = cli([*args, "--resume", "--no-test", "--test-subset", "5"], capsys)
    assert code == 2 and err.count("\n") == 1 and "--test-subset" in err


def test_cli_full_disk_at_a_checkpoint_is_one_line_and_keeps_the_last_one(tmp_path, rksearch_cli, monkeypatch) -> None:
    """ENOSPC injected into os.write once the first checkpoint is saved: the second one fails."""
    import errno
    import os

    out = tmp_path / "run"
    real = os.write

    def write(fd: int, data) -> int:
        if os.readlink(f"/proc/self/fd/{fd}").endswith("checkpoint.pt.tmp") and (out / "checkpoint.pt").exists():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)
    r = rksearch_cli("train", _spec_file(tmp_path), "--dataset", "demo", "--epochs", "2", "--train-subset", "64",
                     "--val-size", "32", "--batch-size", "32", "--device", "cpu", "--out", out)
    monkeypatch.undo()
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert f"{out / 'checkpoint.pt'}: no space left on the device" in last and "last complete one is kept" in last
    assert "needs more than" in last
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert not any(p.name.endswith(".tmp") for p in out.iterdir())
