"""Datasets by name: the bundled demo subset, torchvision's CIFAR-10/100 and SVHN, ImageFolder.

Where the data is looked for (:func:`locate`): a root the user names is read as it is (for CIFAR-10
either torchvision's ``cifar-10-batches-py`` folder, a folder holding one, or an image-folder zip or
folder); without a root, torchvision's datasets live in :func:`default_root` and are downloaded there
on first use. :func:`describe_data` says in one line which of these a run will read.
"""
from __future__ import annotations

import os
import socket
import sys
from contextlib import contextmanager
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Callable, Iterator, Optional

from rksearch.core.errors import RKSearchError
from rksearch.data.splits import Dataset, Style, TensorSplit

CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
DEMO_FILE = "demo.zip"
TORONTO = "https://www.cs.toronto.edu/~kriz"
DOWNLOAD_TIMEOUT = 30.0
"""Seconds a download waits for the server to answer (or for the next bytes) before giving up."""


@dataclass(frozen=True)
class TorchvisionSource:
    """Where torchvision expects one of its datasets below ``root`` and how to normalise it."""

    title: str
    needs: tuple[str, ...]
    url: str
    style: Style
    mean: tuple[float, ...]
    std: tuple[float, ...]
    size: str = ""  # what a download weighs
    folder: str = ""  # its own subfolder of the default root ("": torchvision makes one)
    copy: str = ""  # what an existing copy looks like, for the error that asks for one


TORCHVISION = {
    "cifar10": TorchvisionSource("CIFAR-10", ("cifar-10-batches-py",), f"{TORONTO}/cifar-10-python.tar.gz",
                                 "cifar", CIFAR10_MEAN, CIFAR10_STD, "163 MB",
                                 copy="a cifar-10-batches-py folder or an image-folder zip"),
    "cifar100": TorchvisionSource("CIFAR-100", ("cifar-100-python",), f"{TORONTO}/cifar-100-python.tar.gz",
                                  "cifar", CIFAR100_MEAN, CIFAR100_STD, "161 MB",
                                  copy="a cifar-100-python folder or a folder holding one"),
    # the paper divides SVHN by 255 and does not augment it
    "svhn": TorchvisionSource("SVHN", ("train_32x32.mat", "test_32x32.mat"), "http://ufldl.stanford.edu/housenumbers/",
                              "plain", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "246 MB", folder="svhn",
                              copy="a folder holding train_32x32.mat and test_32x32.mat"),
}


def data_home() -> Path:
    """``$RKSEARCH_DATA``, else ``rksearch/data`` in the user's cache folder (``$XDG_CACHE_HOME``,
    else ``~/.cache``): where torchvision datasets are downloaded when no root is given."""
    if os.environ.get("RKSEARCH_DATA"):
        return Path(os.environ["RKSEARCH_DATA"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME")
    base = Path(cache).expanduser() if cache and Path(cache).is_absolute() else Path.home() / ".cache"
    return base / "rksearch" / "data"


def default_root(name: str = "cifar10") -> Path:
    """The folder a torchvision dataset ``name`` is read from (and downloaded into) without a root."""
    src = TORCHVISION.get(name)
    return data_home() / src.folder if src is not None and src.folder else data_home()


# -- where the data is ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Location:
    """What :func:`locate` found for a dataset: ``kind`` is ``bundled``, ``torchvision`` (its
    files in ``path``, which torchvision reads as its root), ``batches`` (CIFAR's python batches
    folder itself), ``zip`` or ``folder`` (an image folder) or ``missing`` (nothing yet);
    ``default``: no root was given, so ``path`` is the download folder."""

    name: str
    kind: str
    path: Optional[Path]
    default: bool = False

    def describe(self) -> str:
        if self.kind == "bundled":
            return "the bundled CIFAR-10 demo subset"
        where = _shown(self.path) if self.path is not None else "?"
        src = TORCHVISION.get(self.name)
        title = src.title if src is not None else ""
        if self.kind in ("zip", "folder"):
            what = "image-folder zip" if self.kind == "zip" else "image folder"
            return f"{title} {what} at {where}" if title else f"{what} at {where}"
        if self.kind == "archive":
            return f"{title} archive at {where} (not read as it is: extract it)"
        if self.kind == "missing":
            return (f"{title} not in {where} yet: downloaded there on first use ({src.size} from {src.url})"
                    if self.default else f"{title} not found in {where}")
        if self.name == "svhn":
            return f"SVHN .mat files in {where}"
        batches = self.path if self.kind == "batches" else self.path / src.needs[0]
        return f"{title} python batches at {_shown(batches)}"


def _shown(path: Path) -> str:
    """``path`` as messages show it: absolute, ``..`` resolved, symbolic links kept."""
    return os.path.abspath(path)


def _is_cifar_batches(folder: Path, name: str) -> bool:
    """``folder`` is CIFAR's python batches folder itself (perhaps renamed by its owner)."""
    files = ("data_batch_1", "test_batch") if name == "cifar10" else ("train", "test", "meta")
    return all((folder / f).is_file() for f in files)


def _looks_like_imagefolder(folder: Path) -> bool:
    """A folder with train/, test/ or val/ in it or one level down (the ImageFolder convention)."""
    splits = {"train", "test", "val"}
    try:
        return any(p.is_dir() and (p.name in splits or any(q.name in splits and q.is_dir() for q in p.iterdir()))
                   for p in folder.iterdir())
    except OSError:
        return False


def locate(name: str, root: str | Path | None = None) -> Location:
    """Where dataset ``name`` would be read from, without reading or downloading anything."""
    if name not in LOADERS:
        raise RKSearchError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}", field="dataset")
    if name == "demo":
        return Location(name, "bundled", None)
    path = Path(root).expanduser() if root is not None else None
    if name == "imagefolder":
        path = _required(path)
        return Location(name, "zip" if path.is_file() else "folder", path)
    src = TORCHVISION[name]
    if path is None:
        path = default_root(name)
        found = all((path / n).exists() for n in src.needs)
        return Location(name, "torchvision" if found else "missing", path, default=True)
    if all((path / n).exists() for n in src.needs):
        return Location(name, "torchvision", path)
    if name != "svhn" and path.is_dir() and _is_cifar_batches(path, name):
        return Location(name, "batches", path)
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz")):
        return Location(name, "archive", path)
    if name == "cifar10" and (path.is_file() or (path.is_dir() and _looks_like_imagefolder(path))):
        return Location(name, "zip" if path.is_file() else "folder", path)
    return Location(name, "missing", path)


def describe_data(name: str, root: str | Path | None = None) -> str:
    """The line a run prints before it starts: which data it reads, from where, e.g.
    ``data: CIFAR-10 image-folder zip at /data/cifar10-jpeg.zip``; nothing is read or downloaded."""
    return f"data: {name} ({locate(name, root).describe()})" if name in ("demo", "imagefolder") \
        else f"data: {locate(name, root).describe()}"


# -- loading ---------------------------------------------------------------------------------------

@contextmanager
def demo_path() -> Iterator[Path]:
    """The bundled demo zip as a file (a temporary copy where rksearch is installed zipped)."""
    with resources.as_file(resources.files(__package__) / DEMO_FILE) as path:
        yield path


def load_imagefolder(root: Path) -> Dataset:
    """:func:`rksearch.data.imagefolder.load_imagefolder`, imported at the first call."""
    from rksearch.data.imagefolder import load_imagefolder  # torch: only where images are read

    return load_imagefolder(root)


def load_demo() -> Dataset:
    """The bundled balanced CIFAR-10 subset (see :mod:`rksearch.data.make_demo`)."""
    with demo_path() as path:
        ds = load_imagefolder(path)
    return replace(ds, name="demo", source="bundled", mean=CIFAR10_MEAN, std=CIFAR10_STD)


@contextmanager
def _download_timeout(seconds: float) -> Iterator[None]:
    """torchvision's downloads wait forever for a silent server; give them a deadline."""
    before = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(before)


def _torchvision_splits(name: str, root: Path, download: bool, base_folder: Optional[str] = None) -> tuple:
    from torchvision import datasets

    if name == "svhn":  # torchvision reads SVHN's .mat files with scipy
        return tuple(datasets.SVHN(str(root), split=s, download=download) for s in ("train", "test"))
    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    if base_folder is not None and base_folder != cls.base_folder:  # a batches folder renamed by its owner
        cls = type(cls.__name__, (cls,), {"base_folder": base_folder})
    return tuple(cls(str(root), train=t, download=download) for t in (True, False))


def _reachable(name: str) -> None:
    """Ask the server for the file's headers first, so that offline nothing is announced or made."""
    import urllib.request

    from torchvision import datasets

    url = datasets.SVHN.split_list["train"][0] if name == "svhn" else \
        (datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100).url
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "rksearch"})
    with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT):
        pass


def _download(name: str, root: Path) -> tuple:
    """Fetch ``name`` into ``root`` with torchvision and read it; offline: one line naming the
    folder and the ways to fix it, and no folder left behind that this made."""
    src = TORCHVISION[name]
    made = [p for p in (root, *root.parents) if not p.exists()]
    try:
        _reachable(name)
        print(f"downloading {src.title} ({src.size}) into {_shown(root)} (once; later runs read it there)",
              file=sys.stderr, flush=True)
        with _download_timeout(DOWNLOAD_TIMEOUT):
            splits = _torchvision_splits(name, root, download=True)
    except (OSError, RuntimeError, ValueError) as e:  # URLError and timeouts are OSErrors
        for folder in made:  # deepest first; a folder with anything in it stays
            try:
                folder.rmdir()
            except OSError:
                break
        reason = str(getattr(e, "reason", None) or e).strip().splitlines()
        raise RKSearchError(
            f"{src.title} is not in {_shown(root)} and could not be downloaded "
            f"({reason[0] if reason else type(e).__name__}); connect to the internet once so it downloads there, "
            f"or point --data-root (proxy.root) at an existing copy: {src.copy}", field="root") from None
    archive = root / Path(src.url).name
    if name != "svhn":  # extracted and verified: the archive is no longer needed
        archive.unlink(missing_ok=True)
    return splits


def load_torchvision(name: str, root: Path | None, download: bool | None = None) -> Dataset:
    """CIFAR-10/100 or SVHN through torchvision (CIFAR-10 also from an image-folder zip or folder).

    ``download``: None (default) downloads into :func:`default_root` when no root is given and the
    files are missing; True also downloads into a given root; False never downloads.
    """
    src = TORCHVISION[name]
    where = locate(name, root)
    if where.kind in ("zip", "folder"):
        return _cifar10_images(where)
    if where.kind == "archive":
        raise RKSearchError(f"{_shown(where.path)} is the downloaded archive: extract it (tar xzf) and point "
                            f"--data-root (proxy.root) at the folder it holds, {src.needs[0]}", field="root")
    path, splits = where.path, None
    if where.kind == "missing":
        if not (download or (download is None and where.default)):
            hint = ("downloads are off (drop --no-download)" if where.default else
                    "pass --download to fetch it there" if download is None else
                    f"leave the root out so it downloads into {_shown(default_root(name))}")
            raise RKSearchError(
                f"{src.title} not found in {_shown(path)}: expected "
                f"{', '.join(str(path / n) for n in src.needs if not (path / n).exists())}"
                f"{' (or the batches folder itself, or an image-folder zip)' if name == 'cifar10' else ''}; "
                f"point --data-root (proxy.root) at {src.copy}, or {hint}", field="root")
        splits = _download(name, path)
        where = replace(where, kind="torchvision")
    if splits is None:
        root_, base = (path.parent, path.name) if where.kind == "batches" else (path, None)
        try:
            splits = _torchvision_splits(name, root_, False, base)
        except (RuntimeError, OSError, ValueError) as e:
            raise RKSearchError(f"cannot read {src.title}: {e}", source=path, field="root") from None
    train, test = splits

    import numpy as np
    import torch

    def tensors(ds) -> TensorSplit:
        images = torch.from_numpy(np.ascontiguousarray(ds.data))
        images = images if name == "svhn" else images.permute(0, 3, 1, 2).contiguous()  # CIFAR is NHWC
        labels = torch.as_tensor(np.asarray(ds.labels if name == "svhn" else ds.targets), dtype=torch.int64)
        return TensorSplit(images, labels)

    classes = tuple(getattr(train, "classes", None) or (str(i) for i in range(10)))
    return Dataset(name, where.describe(), classes, tensors(train), tensors(test), src.style, src.mean, src.std)


def _cifar10_images(where: Location) -> Dataset:
    """CIFAR-10 as an image folder or zip: ten classes of 32x32 images, CIFAR-10's normalisation."""
    ds = load_imagefolder(where.path)
    check_cifar10(ds.num_classes, ds.image_size, where.path)
    return replace(ds, name="cifar10", source=where.describe(), mean=CIFAR10_MEAN, std=CIFAR10_STD)


def check_cifar10(num_classes: int, image_size: int | None, path: Path) -> None:
    """An image folder read as CIFAR-10 must have its ten classes of 32 px images."""
    if num_classes != 10 or image_size != 32:
        size = f"{image_size} px" if image_size else "large"
        raise RKSearchError(f"not CIFAR-10: {num_classes} classes of {size} images (CIFAR-10 has 10 of 32 px)",
                            source=path, field="root")


LOADERS: dict[str, Callable[[Path | None, Optional[bool]], Dataset]] = {
    "demo": lambda root, download: load_demo(),
    "imagefolder": lambda root, download: load_imagefolder(_required(root)),
    **{n: (lambda root, download, n=n: load_torchvision(n, root, download)) for n in TORCHVISION},
}
DATASETS = tuple(LOADERS)


def _required(root: Path | None) -> Path:
    if root is None:
        raise RKSearchError("imagefolder needs a root: a folder or .zip with train/ and test/ (or val/); an image "
                            "folder is never downloaded, so point --data-root (proxy.root) at one", field="root")
    return root


def load_dataset(name: str, root: str | Path | None = None, *, download: bool | None = None) -> Dataset:
    """The dataset called ``name`` (one of :data:`DATASETS`), full train and test splits.

    Without a root, torchvision's datasets are downloaded into :func:`default_root` on first use
    (``download=False`` forbids it; ``download=True`` also fetches into a given root that lacks them).
    ``Dataset.source`` says what was read, e.g. ``CIFAR-10 python batches at ...``.
    """
    if name not in LOADERS:
        raise RKSearchError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}", field="dataset")
    return LOADERS[name](Path(root).expanduser() if root is not None else None, download)
