"""CIFAR-10 as users have it: downloaded on first use (from a local fake server, never the
internet), a ``cifar-10-batches-py`` folder, or an image-folder zip; offline, one line."""
from __future__ import annotations

import functools
import hashlib
import http.server
import io
import os
import pickle
import tarfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import datasets

from rksearch.cli import main
from rksearch.data import describe_data, load_dataset
from rksearch.data.sources import CIFAR10_MEAN, data_home, default_root
from rksearch.core.errors import RKSearchError

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning")

SHARED_ZIP = Path(__file__).resolve().parents[2] / "../shared/data/cifar10-jpeg.zip"
PER_BATCH = 4  # images in each of the five training batches; the test batch has 6
UNREACHABLE = "http://127.0.0.1:9/cifar-10-python.tar.gz"  # the discard port: nothing listens


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_batches(folder: Path) -> dict[str, np.ndarray]:
    """CIFAR-10's python batches in torchvision's pickle format, tiny: pixels and labels by file."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    written = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        n = 6 if name == "test_batch" else PER_BATCH
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [(i + j) % 10 for j in range(n)]
        (folder / name).write_bytes(pickle.dumps({"batch_label": name, "data": data, "labels": labels}))
        written[name] = data
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names, "num_vis": 3072}))
    return written


def checksums(monkeypatch, folder: Path) -> None:
    """torchvision verifies every batch by its md5: make it expect the fake ones."""
    monkeypatch.setattr(datasets.CIFAR10, "train_list", [[f"data_batch_{k}", md5(folder / f"data_batch_{k}")]
                                                         for k in range(1, 6)])
    monkeypatch.setattr(datasets.CIFAR10, "test_list", [["test_batch", md5(folder / "test_batch")]])
    monkeypatch.setattr(datasets.CIFAR10, "meta", {**datasets.CIFAR10.meta, "md5": md5(folder / "batches.meta")})


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    """No test here reaches the internet: the default folder is private and the URL goes nowhere."""
    monkeypatch.setenv("RKSEARCH_DATA", str(tmp_path / "home" / "rksearch-data"))
    monkeypatch.setenv("RKSEARCH_CACHE", str(tmp_path / "decoded"))
    monkeypatch.setattr(datasets.CIFAR10, "url", UNREACHABLE)


@pytest.fixture
def fake_batches(tmp_path, monkeypatch) -> tuple[Path, dict[str, np.ndarray]]:
    folder = tmp_path / "copy" / "cifar-10-batches-py"
    written = write_batches(folder)
    checksums(monkeypatch, folder)
    return folder, written


class Server:
    """A real HTTP server on localhost serving one folder, counting the requests it answers."""

    def __init__(self, folder: Path):
        self.requests = 0
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def send_head(self):
                outer.requests += 1
                return super().send_head()

            def log_message(self, *args):  # quiet
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=folder))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path):
    (tmp_path / "www").mkdir()
    s = Server(tmp_path / "www")
    yield s
    s.close()


def test_default_folder_is_the_users_cache_unless_rksearch_data_says(monkeypatch, tmp_path):
    assert data_home() == tmp_path / "home" / "rksearch-data" and default_root("svhn") == data_home() / "svhn"
    monkeypatch.delenv("RKSEARCH_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_root("cifar10") == tmp_path / "xdg" / "rksearch" / "data"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_root() == Path.home() / ".cache" / "rksearch" / "data"


def test_cifar10_downloads_on_first_use_then_reads_the_copy(tmp_path, monkeypatch, server, fake_batches, capfd):
    folder, written = fake_batches
    archive = tmp_path / "www" / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    monkeypatch.setattr(datasets.CIFAR10, "url", f"{server.url}/cifar-10-python.tar.gz")
    monkeypatch.setattr(datasets.CIFAR10, "tgz_md5", md5(archive))
    home = data_home()
    assert describe_data("cifar10").startswith(f"data: CIFAR-10 not in {home} yet: downloaded there on first use")

    ds = load_dataset("cifar10")
    assert server.requests >= 2  # our HEAD, then torchvision's download
    assert ds.name == "cifar10" and ds.source == f"CIFAR-10 python batches at {home / 'cifar-10-batches-py'}"
    assert (len(ds.train), len(ds.test), ds.classes[0], ds.style) == (5 * PER_BATCH, 6, "airplane", "cifar")
    first = torch.from_numpy(written["data_batch_1"][0].reshape(3, 32, 32))
    assert torch.equal(ds.train.images[0], first) and torch.equal(ds.test.labels, torch.tensor([5, 6, 7, 8, 9, 0]))
    assert not (home / "cifar-10-python.tar.gz").exists()  # extracted and verified: the archive goes
    assert f"downloading CIFAR-10 (163 MB) into {home}" in capfd.readouterr().err

    server.close()  # the second time needs no network
    again = load_dataset("cifar10")
    assert torch.equal(again.train.images, ds.train.images)
    assert describe_data("cifar10") == f"data: CIFAR-10 python batches at {home / 'cifar-10-batches-py'}"


def test_offline_without_the_data_is_one_line_naming_the_folder(tmp_path, capfd):
    home = data_home()
    with pytest.raises(RKSearchError) as e:
        load_dataset("cifar10")
    msg = str(e.value)
    assert "\n" not in msg and e.value.field == "root"
    assert msg.startswith(f"root: CIFAR-10 is not in {home} and could not be downloaded (")
    assert "connect to the internet once" in msg and "--data-root" in msg
    assert msg.endswith("an existing copy: a cifar-10-batches-py folder or an image-folder zip")
    assert not (tmp_path / "home").exists()  # nothing written, no folder made
    assert capfd.readouterr().err == ""  # nothing announced either


def test_offline_rksearch_train_exits_2_with_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        main(["train", "densenet-40", "--dataset", "cifar10", "--epochs", "1", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert str(data_home()) in err and "could not be downloaded" in err and "--data-root" in err
    assert not out.exists() and not (tmp_path / "home").exists()


def test_a_named_root_is_only_read(tmp_path, server, monkeypatch):
    monkeypatch.setattr(datasets.CIFAR10, "url", f"{server.url}/cifar-10-python.tar.gz")
    root = tmp_path / "nothing"
    with pytest.raises(RKSearchError) as e:
        load_dataset("cifar10", root)
    msg = str(e.value)
    assert str(root / "cifar-10-batches-py") in msg and "image-folder zip" in msg and "--download" in msg
    assert server.requests == 0 and not root.exists()
    with pytest.raises(RKSearchError, match="downloads are off"):
        load_dataset("cifar10", download=False)
    assert server.requests == 0
    assert describe_data("cifar10", root) == f"data: CIFAR-10 not found in {root}"
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"\x1f\x8b")
    with pytest.raises(RKSearchError, match=r"is the downloaded archive: extract it \(tar xzf\) .*cifar-10-batches-py$"):
        load_dataset("cifar10", tmp_path / "cifar-10-python.tar.gz")


def test_cifar10_root_is_the_batches_folder_or_its_parent(tmp_path, fake_batches):
    folder, written = fake_batches
    for root in (folder, folder.parent):
        ds = load_dataset("cifar10", root)
        assert ds.source == f"CIFAR-10 python batches at {folder}" and len(ds.train) == 5 * PER_BATCH
        assert describe_data("cifar10", root) == f"data: CIFAR-10 python batches at {folder}"
    renamed = folder.rename(tmp_path / "my-cifar")  # its owner's name for it
    ds = load_dataset("cifar10", renamed)
    assert ds.source == f"CIFAR-10 python batches at {renamed}" and len(ds.test) == 6


def write_image_zip(path: Path, classes: int) -> Path:
    rng = np.random.default_rng(1)
    with zipfile.ZipFile(path, "w") as z:
        for split, n in (("train", 2), ("test", 1)):
            for c in range(classes):
                for i in range(n):
                    buf = io.BytesIO()
                    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, "PNG")
                    z.writestr(f"cifar/{split}/class{c}/{i}.png", buf.getvalue())
    return path


def test_cifar10_root_may_be_an_image_folder_zip_or_folder(tmp_path):
    zipped = write_image_zip(tmp_path / "cifar.zip", 10)
    ds = load_dataset("cifar10", zipped)
    assert ds.name == "cifar10" and ds.source == f"CIFAR-10 image-folder zip at {zipped}"
    assert (len(ds.train), len(ds.test), ds.mean, ds.style) == (20, 10, CIFAR10_MEAN, "cifar")
    assert describe_data("cifar10", zipped) == f"data: CIFAR-10 image-folder zip at {zipped}"
    with zipfile.ZipFile(zipped) as z:
        z.extractall(tmp_path / "unpacked")
    folder = load_dataset("cifar10", tmp_path / "unpacked")
    assert folder.source == f"CIFAR-10 image folder at {tmp_path / 'unpacked'}"
    assert torch.equal(folder.train.images, ds.train.images)

    three = write_image_zip(tmp_path / "three.zip", 3)
    with pytest.raises(RKSearchError, match=r"not CIFAR-10: 3 classes of 32 px images") as e:
        load_dataset("cifar10", three)
    assert "\n" not in str(e.value)


@pytest.mark.skipif(not SHARED_ZIP.is_file(), reason="the shared CIFAR-10 zip is not beside this checkout")
def test_the_shared_zip_is_told_apart_without_reading_it():
    shown = os.path.abspath(SHARED_ZIP)
    assert describe_data("cifar10", SHARED_ZIP) == f"data: CIFAR-10 image-folder zip at {shown}"
    assert describe_data("imagefolder", SHARED_ZIP) == f"data: imagefolder (image-folder zip at {shown})"
    assert describe_data("demo") == "data: demo (the bundled CIFAR-10 demo subset)"
    with pytest.raises(RKSearchError, match="unknown dataset 'mnist'"):
        describe_data("mnist")
