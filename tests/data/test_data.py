"""Datasets, splits, the decode cache and both loaders, on real CIFAR-10 images."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from PIL import Image

from rksearch.data import (
    DataOptions, Dataset, FileSplit, TensorSplit, load_dataset, load_splits, make_loader, pipeline, split_dataset,
)
from rksearch.data.augment import PAD, crop_flip, random_crops
from rksearch.data.cache import cache_path
from rksearch.data.facts import DataFacts, known_facts
from rksearch.data.loaders import ResidentLoader, StreamLoader
from rksearch.data.sources import TORCHVISION
from rksearch.data.splits import split_sizes
from rksearch.core.errors import RKSearchError

# torchvision >= 0.29 warns that its decoders will move to torchcodec; they are what we use until then
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning")

SHARED_ZIP = Path(__file__).resolve().parents[2] / "../shared/data/cifar10-jpeg.zip"
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("RKSEARCH_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="module")
def demo() -> Dataset:
    return load_dataset("demo")


def write_folder(root: Path, ds: Dataset, per_class: int = 3, side: int | None = None, fmt: str = "png",
                 test_name: str = "test") -> Path:
    """An ImageFolder tree of real demo images (resized to ``side`` if given)."""
    for split_name, split in (("train", ds.train), (test_name, ds.test)):
        for label, name in enumerate(ds.classes):
            folder = root / "wrapped" / split_name / name
            folder.mkdir(parents=True)
            for i, idx in enumerate((split.labels == label).nonzero().flatten()[:per_class].tolist()):
                im = Image.fromarray(split.images[idx].permute(1, 2, 0).numpy())
                im = im.resize((side, side)) if side else im
                im.save(folder / f"{i:04d}.{fmt}")
    return root


def batches(loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.clone(), y.clone()) for x, y in loader]


# -- datasets ----------------------------------------------------------------------------------

def test_demo_is_a_balanced_cifar10_subset(demo: Dataset) -> None:
    assert demo.classes[:3] == ("airplane", "automobile", "bird") and demo.num_classes == 10
    assert demo.train.images.shape == (2000, 3, 32, 32) and demo.train.images.dtype == torch.uint8
    assert demo.test.images.shape == (500, 3, 32, 32)
    assert demo.train.labels.bincount().tolist() == [200] * 10
    assert demo.test.labels.bincount().tolist() == [50] * 10
    assert demo.image_size == 32 and demo.style == "cifar"
    assert 60 < demo.train.images.float().mean() < 160  # real photographs, not blank arrays


def test_known_facts_are_the_loaded_datasets_once_it_is_cached(tmp_path, demo) -> None:
    """The driver's check reads a cached dataset's facts from its layout; before the first load
    (nothing cached) only loading tells, and a large-image folder (never decoded) always tells."""
    assert known_facts("demo") is None  # this test's cache folder is empty
    assert DataFacts.of(load_dataset("demo")) == DataFacts("demo", 10, 2000, 500, 32)
    assert known_facts("demo") == DataFacts.of(demo)

    small = write_folder(tmp_path / "small", demo, per_class=2, side=40)
    assert known_facts("imagefolder", small) is None
    assert known_facts("imagefolder", small) is None  # asking caches nothing
    load_dataset("imagefolder", small)
    assert known_facts("imagefolder", small) == DataFacts("imagefolder", 10, 20, 20, 40)
    with pytest.raises(RKSearchError, match="not CIFAR-10: 10 classes of 40 px"):  # the check loading makes
        known_facts("cifar10", small)
    large = write_folder(tmp_path / "large", demo, per_class=1, side=80)
    assert known_facts("imagefolder", large) == DataFacts.of(load_dataset("imagefolder", large))
    assert known_facts("imagefolder", large).image_size is None
    assert known_facts("cifar10") is None  # torchvision's formats: only loading tells


def test_every_name_the_data_package_exports_loads() -> None:
    """``rksearch.data`` loads its names on first use (no torch at import): each one resolves."""
    import rksearch.data as data

    assert all(getattr(data, name) is not None for name in data.__all__)
    assert set(data.__all__) <= set(dir(data))
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        data.nothing  # noqa: B018


def test_split_sizes_are_what_split_dataset_takes(demo) -> None:
    assert split_sizes(2000, 500) == (200, 1800, 200, 500)  # a tenth for validation, the rest whole
    assert split_sizes(2000, 500, val_size=100, train_subset=50, val_subset=20, test_subset=30) == (100, 50, 20, 30)
    s = split_dataset(demo, val_size=100, train_subset=50, val_subset=20, test_subset=30, seed=1)
    assert (len(s.train), len(s.val), len(s.test)) == (50, 20, 30)
    with pytest.raises(RKSearchError, match="asks for 1901 images but only 1900"):
        split_sizes(2000, 500, val_size=100, train_subset=1901)


def test_imagefolder_folder_is_lossless_and_cached(tmp_path, demo) -> None:
    root = write_folder(tmp_path / "pngs", demo)
    ds = load_dataset("imagefolder", root)
    assert ds.classes == demo.classes and len(ds.train) == 30 and len(ds.test) == 30
    first = (demo.train.labels == 0).nonzero()[0, 0]
    assert torch.equal(ds.train.images[0], demo.train.images[first])  # PNG round trip is exact
    assert ds.train.labels.tolist() == sorted(ds.train.labels.tolist())

    # the second load reads the cache: a mark put into the cached file comes back
    [cached] = list(Path(os.environ["RKSEARCH_CACHE"]).glob("imagefolder-*.pt"))
    data = torch.load(cached, weights_only=True)
    data["train_labels"][0] = 9
    torch.save(data, cached)
    assert load_dataset("imagefolder", root).train.labels[0] == 9

    # touching a file changes the key: decoded again, the mark is gone
    os.utime(root / "wrapped" / "train" / "airplane" / "0000.png", ns=(1, 1))
    assert load_dataset("imagefolder", root).train.labels[0] == 0


@pytest.mark.slow
def test_imagefolder_zip_full_cifar10(demo) -> None:
    if not SHARED_ZIP.is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{SHARED_ZIP} is missing; CI must provide it")
        pytest.skip(f"{SHARED_ZIP} not here")
    ds = load_dataset("imagefolder", SHARED_ZIP)
    assert (len(ds.train), len(ds.test)) == (50000, 10000) and ds.classes == demo.classes
    assert ds.train.labels.bincount().tolist() == [5000] * 10 and ds.test.labels.bincount().tolist() == [1000] * 10
    assert abs(ds.mean[0] - 0.491) < 0.01 and abs(ds.std[2] - 0.26) < 0.01  # CIFAR-10's known statistics
    # every demo image is one of these, decoded the same way
    flat = ds.train.images.flatten(1)
    some = demo.train.images[::250].flatten(1)
    assert all((flat == img).all(1).any() for img in some)
    again = load_dataset("imagefolder", SHARED_ZIP)
    assert torch.equal(again.test.images, ds.test.images)


def test_large_images_stay_files_with_imagenet_transforms(tmp_path, demo) -> None:
    root = write_folder(tmp_path / "big", demo, per_class=2, side=80, fmt="jpg", test_name="val")  # ImageNet's layout
    ds = load_dataset("imagefolder", root)
    assert isinstance(ds.train, FileSplit) and ds.style == "imagenet" and ds.image_size is None
    assert len(ds.test) == 20 and ds.test.files[0].endswith("val/airplane/0000.jpg")
    for train in (True, False):
        pipe = pipeline(ds, train=train, augment=True, size=64)
        loader = make_loader(ds.train, pipe, batch_size=8, device=CPU, shuffle=train, workers=0)
        assert isinstance(loader, StreamLoader)
        shapes = [tuple(x.shape) for x, _ in loader]
        assert shapes == [(8, 3, 64, 64)] * 2 + [(4, 3, 64, 64)]
    with pytest.raises(RKSearchError, match="resident loader needs images decoded"):
        make_loader(ds.train, pipe, batch_size=8, device=CPU, shuffle=True, mode="resident")


# -- splits ------------------------------------------------------------------------------------

def test_split_is_seeded_balanced_and_disjoint(demo) -> None:
    a = split_dataset(demo, val_size=500, seed=3)
    b = split_dataset(demo, val_size=500, seed=3)
    c = split_dataset(demo, val_size=500, seed=4)
    assert torch.equal(a.val.images, b.val.images) and torch.equal(a.train.labels, b.train.labels)
    assert not torch.equal(a.val.images, c.val.images)
    assert len(a.train) == 1500 and a.val.labels.bincount().tolist() == [50] * 10
    train_rows = {bytes(img.numpy()) for img in a.train.images}
    assert not any(bytes(img.numpy()) in train_rows for img in a.val.images)
    assert a.test is demo.test


def test_subsets_are_balanced_prefixes(demo) -> None:
    s = split_dataset(demo, val_size=100, train_subset=50, val_subset=20, test_subset=30, seed=1)
    assert (len(s.train), len(s.val), len(s.test)) == (50, 20, 30)
    assert s.train.labels.bincount().tolist() == [5] * 10 and s.val.labels.bincount().tolist() == [2] * 10
    full = split_dataset(demo, val_size=100, seed=1)
    assert torch.equal(full.train.images[:50], s.train.images)
    assert split_dataset(demo).val is not None and len(split_dataset(demo).val) == 200  # default: a tenth
    assert split_dataset(demo, val_size=0).val is None


@pytest.mark.parametrize("kwargs, field", [
    ({"val_size": 2000}, "val_size"), ({"train_subset": 1901}, "train_subset"),
    ({"val_subset": 101}, "val_subset"), ({"test_subset": 501}, "test_subset"),
])
def test_split_sizes_out_of_range(demo, kwargs, field) -> None:
    with pytest.raises(RKSearchError) as e:
        split_dataset(demo, **{"val_size": 100, **kwargs})
    assert e.value.field == field


def test_load_splits_from_options() -> None:
    s = load_splits(DataOptions(dataset="demo", val_size=250, train_subset=100, seed=2))
    assert (len(s.train), len(s.val), len(s.test)) == (100, 250, 500)


# -- augmentation and loaders -----------------------------------------------------------------

def test_crop_flip_matches_slicing(demo) -> None:
    images = demo.train.images[:16]
    padded = torch.nn.functional.pad(images, (PAD,) * 4)
    shift, flip = random_crops(16, torch.Generator().manual_seed(0))
    out = crop_flip(padded, torch.arange(16), shift, flip, 32)
    assert out.shape == (16, 3, 32, 32) and out.is_contiguous(memory_format=torch.channels_last)
    for i in range(16):
        dy, dx = shift[i].tolist()
        ref = padded[i, :, dy:dy + 32, dx:dx + 32]
        assert torch.equal(out[i], ref.flip(-1) if flip[i] else ref)
    assert flip.any() and not flip.all() and len(set(map(tuple, shift.tolist()))) > 5


def test_resident_training_batches(demo) -> None:
    split = split_dataset(demo, val_size=0, train_subset=1000).train
    pipe = pipeline(demo, train=True, augment=True, size=32)
    loader = make_loader(split, pipe, batch_size=128, device=CPU, shuffle=True,
                         generator=torch.Generator().manual_seed(0), channels_last=True)
    assert isinstance(loader, ResidentLoader) and len(loader) == 8
    got = batches(loader)
    assert [len(y) for _, y in got] == [128] * 7 + [104]
    x, y = got[0]
    assert x.dtype == torch.float32 and x.shape == (128, 3, 32, 32) and x.is_contiguous(memory_format=torch.channels_last)
    assert abs(x.mean()) < 0.4 and 0.6 < x.std() < 1.4  # normalised
    assert torch.cat([y for _, y in got]).sort().values.equal(split.labels.sort().values)  # each image once
    again = batches(make_loader(split, pipe, batch_size=128, device=CPU, shuffle=True,
                                generator=torch.Generator().manual_seed(0), channels_last=True))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(got, again))
    second_epoch = batches(loader)
    assert not torch.equal(second_epoch[0][0], got[0][0])


def test_single_leftover_image_is_dropped_in_training_only(demo) -> None:
    split = split_dataset(demo, val_size=0, train_subset=129).train
    pipe = pipeline(demo, train=True, augment=True, size=32)
    assert [len(y) for _, y in make_loader(split, pipe, batch_size=64, device=CPU, shuffle=True)] == [64, 64]
    assert [len(y) for _, y in make_loader(split, pipe, batch_size=64, device=CPU, shuffle=False)] == [64, 64, 1]
    for mode in ("resident", "dataloader"):
        assert len(make_loader(split, pipe, batch_size=64, device=CPU, shuffle=True, mode=mode, workers=0)) == 2


def test_both_paths_agree_on_evaluation_batches(demo) -> None:
    pipe = pipeline(demo, train=False, augment=True, size=32)
    assert not pipe.crops
    resident = batches(make_loader(demo.test, pipe, batch_size=100, device=CPU, shuffle=False))
    stream = batches(make_loader(demo.test, pipe, batch_size=100, device=CPU, shuffle=False, mode="dataloader", workers=1))
    assert len(resident) == len(stream) == 5
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(resident, stream))


def test_dataloader_path_augments_per_sample(demo) -> None:
    pipe = pipeline(demo, train=True, augment=True, size=32)
    split = demo.test
    x, _ = next(iter(make_loader(split, pipe, batch_size=64, device=CPU, shuffle=False, mode="dataloader", workers=0)))
    plain = pipeline(demo, train=False, augment=False, size=32)
    ref, _ = next(iter(make_loader(split, plain, batch_size=64, device=CPU, shuffle=False)))
    assert x.shape == ref.shape == (64, 3, 32, 32) and not torch.equal(x, ref)


def test_svhn_style_is_divided_by_255_without_augmentation(demo) -> None:
    src = TORCHVISION["svhn"]
    ds = Dataset("svhn", "test", demo.classes, demo.train, demo.test, src.style, src.mean, src.std)
    pipe = pipeline(ds, train=True, augment=True, size=32)
    assert not pipe.augment
    x, y = next(iter(make_loader(TensorSplit(demo.test.images, demo.test.labels), pipe, batch_size=50, device=CPU,
                                 shuffle=False)))
    assert torch.allclose(x, demo.test.images[:50].float() / 255)


# -- errors -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, expect", [
    ("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python"), ("svhn", "train_32x32.mat"),
])
def test_missing_torchvision_root_says_where_to_put_it(tmp_path, name, expect) -> None:
    with pytest.raises(RKSearchError) as e:
        load_dataset(name, tmp_path / "nothing")
    msg = str(e.value)
    assert str(tmp_path / "nothing" / expect) in msg and "--download" in msg and e.value.field == "root"


def test_imagefolder_errors(tmp_path, demo) -> None:
    with pytest.raises(RKSearchError, match="no such folder or zip"):
        load_dataset("imagefolder", tmp_path / "missing")
    with pytest.raises(RKSearchError, match="needs a root"):
        load_dataset("imagefolder")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RKSearchError, match="no images"):
        load_dataset("imagefolder", tmp_path / "empty")
    (tmp_path / "notzip.zip").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(RKSearchError, match="not a readable zip"):
        load_dataset("imagefolder", tmp_path / "notzip.zip")
    with pytest.raises(RKSearchError, match="unknown dataset 'mnist'"):
        load_dataset("mnist")


def test_folder_without_test_split(tmp_path, demo) -> None:
    root = write_folder(tmp_path / "f", demo, per_class=1)
    for f in (root / "wrapped" / "test").rglob("*.png"):
        f.unlink()
    with pytest.raises(RKSearchError, match="no test/ or val/"):
        load_dataset("imagefolder", root)


def test_corrupt_image_is_named(tmp_path, demo) -> None:
    root = write_folder(tmp_path / "f", demo, per_class=2, fmt="jpg")
    bad = root / "wrapped" / "train" / "cat" / "0001.jpg"
    bad.write_bytes(bad.read_bytes()[:40])
    with pytest.raises(RKSearchError) as e:
        load_dataset("imagefolder", root)
    assert str(bad) in str(e.value) and "cannot decode" in str(e.value)


def test_corrupt_large_image_is_named_when_read(tmp_path, demo) -> None:
    root = write_folder(tmp_path / "f", demo, per_class=1, side=72)
    bad = root / "wrapped" / "test" / "dog" / "0000.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    ds = load_dataset("imagefolder", root)
    loader = make_loader(ds.test, pipeline(ds, train=False, augment=False, size=64), batch_size=4, device=CPU,
                         shuffle=False, workers=1)
    with pytest.raises(RKSearchError) as e:
        batches(loader)
    assert str(bad) in str(e.value)


def test_mixed_small_sizes_are_refused(tmp_path, demo) -> None:
    root = write_folder(tmp_path / "f", demo, per_class=1)
    odd = root / "wrapped" / "train" / "ship" / "0000.png"
    Image.open(odd).resize((40, 32)).save(odd)
    with pytest.raises(RKSearchError, match="40x32 but the others are 32x32"):
        load_dataset("imagefolder", root)


def test_cache_key_depends_on_source() -> None:
    assert cache_path("imagefolder", ["a", 1]) != cache_path("imagefolder", ["b", 1])
    assert cache_path("imagefolder", ["a", 1]) == cache_path("imagefolder", ["a", 1])
