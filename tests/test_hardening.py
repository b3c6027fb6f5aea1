"""Hostile or broken input (issue 21): alias bombs, huge echoed values, NaN reference points,
odd SQLite paths, zip and image bombs, symlinks out of data folders, stale data caches."""
from __future__ import annotations

import os
import struct
import time
import zipfile
import zlib
from pathlib import Path

import optuna
import pytest
import torch
from helpers import GOOD_SPACE, snapshot

from rksearch.core.errors import RKSearchError
from rksearch.core.yamlio import parse_yaml

# torchvision >= 0.29 warns that its decoders will move to torchcodec; they are what we use until then
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning")

MAX_ALIASES = 100  # rksearch.core.yamlio.MAX_ALIASES
MAX_MESSAGE = 1000  # rksearch.core.errors.MAX_MESSAGE


def bomb(levels: int, width: int = 10) -> str:
    """The "billion laughs" as one value: ``levels`` lists, each of ``width`` aliases to the one before."""
    lists = ["&b0 [" + ", ".join(["lol"] * width) + "]"]
    lists += [f"&b{i} [" + ", ".join([f"*b{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "[" + ", ".join(lists) + "]"


def cli_error(tmp_path: Path, rksearch_cli, args: list[str]) -> str:
    """The one line ``rksearch ARGS`` prints on exit 2, having written nothing (``rksearch_cli``: conftest.py)."""
    before = snapshot(tmp_path)
    r = rksearch_cli(*args, cwd=tmp_path)
    assert r.returncode == 2, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[:2000]
    assert snapshot(tmp_path) == before
    return " ".join(r.stderr.split())


# -- YAML -----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["space", "run", "describe", "train"])
def test_alias_bomb_is_refused_at_once(tmp_path, rksearch_cli, command):
    # a few hundred bytes that name a billion strings; `baselines:` echoes what it cannot read
    path = tmp_path / "bomb.yaml"
    path.write_text(GOOD_SPACE + f"baselines: [{bomb(9)}]\n")
    assert len(bomb(9)) < 1000
    extra = {"run": ["--out", str(tmp_path / "studies")], "train": ["--dataset", "demo"]}.get(command, [])
    start = time.perf_counter()
    err = cli_error(tmp_path, rksearch_cli, [command, str(path), *extra])
    assert time.perf_counter() - start < 10
    assert f"{path}: refused YAML at line " in err and "aliases expand this document beyond 100,000 values" in err


def test_a_smaller_bomb_is_refused_too(tmp_path, rksearch_cli):
    # a million values: read before, and echoed whole (megabytes) in the error message
    path = tmp_path / "bomb.yaml"
    path.write_text(GOOD_SPACE + f"baselines: [{bomb(6)}]\n")
    err = cli_error(tmp_path, rksearch_cli, ["space", str(path)])
    assert "refused YAML" in err and len(err) < 500


@pytest.mark.parametrize("text, message", [
    ("a: &a [1, *a]\n", "line 1, column 4: an alias inside the node it refers to"),
    ("a: &a 1\nb: [" + ", ".join(["*a"] * (MAX_ALIASES + 1)) + "]\n", f"more than {MAX_ALIASES} aliases"),
])
def test_recursive_or_too_many_aliases_are_refused(text, message):
    with pytest.raises(RKSearchError, match="refused YAML") as e:
        parse_yaml(text, "f.yaml")
    assert str(e.value).startswith("f.yaml: ") and message in str(e.value)


def test_a_few_aliases_and_merge_keys_still_work():
    text = "base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\nsame: *b\n" + "more: [" + ", ".join(["*b"] * 90) + "]\n"
    data = parse_yaml(text, "f.yaml")
    assert data["other"] == {"x": 1, "y": 3} and data["same"] == {"x": 1, "y": 2} and len(data["more"]) == 90


@pytest.mark.parametrize("change, field", [
    (("max_flops: 12M", "max_flops: " + "9" * 50_000 + "Q"), "constraints.max_flops"),  # a huge echoed value
    # a line break in a key: still one line
    (("reference_point: {", 'reference_point: {"acc\\nuracy": 0, '), "reference_point.acc\\nuracy"),
])
def test_echoed_values_are_capped_and_on_one_line(tmp_path, rksearch_cli, change, field):
    path = tmp_path / "space.yaml"
    path.write_text(GOOD_SPACE.replace(*change))
    assert path.read_text() != GOOD_SPACE
    err = cli_error(tmp_path, rksearch_cli, ["space", str(path)])
    assert f"{path}: {field}: " in err and len(err) < MAX_MESSAGE + 300


def test_a_capped_message_is_capped_once():
    e = RKSearchError("got " + "x" * 50_000, field="f\nf")
    assert str(e) == "f\\nf: got " + "x" * (MAX_MESSAGE - 4) + "... (49,004 more characters)"
    assert str(e.located("a.yaml")) == f"a.yaml: {e}"


# -- reference points -----------------------------------------------------------------------


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "9e999"])
def test_reference_point_must_be_finite(tmp_path, rksearch_cli, value):
    path = tmp_path / "space.yaml"
    path.write_text(GOOD_SPACE.replace("reference_point: {accuracy: 0.0", f"reference_point: {{accuracy: {value}"))
    assert path.read_text() != GOOD_SPACE
    for command in (["space", str(path)], ["run", str(path), "--out", str(tmp_path / "studies")]):
        err = cli_error(tmp_path, rksearch_cli, command)
        assert f"{path}: reference_point.accuracy: expected a finite number, got " in err


@pytest.mark.parametrize("read", ["space", "export"])
def test_a_long_number_is_refused_in_linear_time(read):
    # `[0-9]*\.?[0-9]+` backtracked quadratically: 50,000 digits took minutes
    from rksearch.analysis.export import parse_amount
    from rksearch.space.config import quantity

    text = "9" * 50_000 + "Q"
    start = time.perf_counter()
    with pytest.raises((ValueError, RKSearchError), match="expected a number such as"):
        quantity(text) if read == "space" else parse_amount(text, "--max-flops")
    assert time.perf_counter() - start < 1
    assert quantity(" 1.5G ") == 1.5e9 and quantity(".5k") == 500 and parse_amount("2.5e+8", "x") == 2.5e8


# -- SQLite paths ---------------------------------------------------------------------------


def test_sqlite_paths_with_question_mark_hash_or_percent(tmp_path, monkeypatch):
    # SQLAlchemy ends a URL's path at `?` and decodes `%41`: `x?y#z%41/demo/optuna.db` opened `x`
    from study_factory import make_study

    from rksearch.storage.folder import default_storage
    from rksearch.storage.open import open_storage
    from rksearch.analysis.study import load_study
    from rksearch.storage.urls import absolute_url, reader_url, sqlite_path

    folder = tmp_path / "x?y#z%41"
    study_dir = make_study(folder, "demo", n=6)
    assert load_study(study_dir).trials.shape[0] == 6 + 3 + 2
    assert sqlite_path(load_study(study_dir).url) == (study_dir / "optuna.db").resolve()
    reader = open_storage(reader_url(study_dir / "optuna.db"), read_only=True)  # what the dashboard opens
    assert [s.study_name for s in reader.get_all_studies()] == ["demo"]

    new = folder / "new#1"  # what `rksearch run --out` opens for a new study
    url = default_storage(new)
    assert sqlite_path(url) == new / "optuna.db"
    optuna.create_study(storage=open_storage(url), study_name="new", directions=["maximize", "minimize"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x?y#z%41"]  # no stray `x` beside it
    assert load_study(new, name="new").name == "new"

    monkeypatch.chdir(folder)  # a relative URL, recorded absolute: still this file
    recorded = absolute_url("sqlite:///demo/optuna.db?timeout=5")
    assert recorded.endswith("?timeout=5") and sqlite_path(recorded) == (study_dir / "optuna.db").resolve()
    assert load_study(tmp_path, storage=recorded, name="demo").trials.shape[0] == 11


# -- image-folder data ----------------------------------------------------------------------

DEMO_CLASSES = ("cat", "dog")


@pytest.fixture(scope="module")
def images():
    """Six real 32x32 CIFAR-10 images of the bundled demo set, as (3, 32, 32) uint8 tensors."""
    from rksearch.data import load_dataset

    demo = load_dataset("demo")
    return [demo.train.images[i] for i in range(6)]


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("RKSEARCH_CACHE", str(tmp_path_factory.mktemp("cache")))


def encoded(image, fmt: str = "bmp") -> bytes:
    """``image`` as a file: BMP has one size for every 32x32 image, so rewrites keep sizes."""
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(out, format=fmt)
    return out.getvalue()


def layout(images, fmt: str = "bmp") -> dict[str, bytes]:
    """train/ and test/ members of an image folder: one image per class and split."""
    return {f"{split}/{c}/0.{fmt}": encoded(images[2 * k + j], fmt)
            for j, split in enumerate(("train", "test")) for k, c in enumerate(DEMO_CLASSES)}


def write_zip(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def write_tree(root: Path, members: dict[str, bytes]) -> Path:
    for name, data in members.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` RGB pixels in a hundred bytes (an image bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def jpeg_declaring(width: int, height: int, image) -> bytes:
    """A real JPEG whose frame header (SOF0) is patched to declare ``width`` x ``height``."""
    data = bytearray(encoded(image, "jpeg"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def data_error(root: Path) -> str:
    from rksearch.data import load_dataset

    with pytest.raises(RKSearchError) as e:
        load_dataset("imagefolder", root)
    assert len(str(e.value).splitlines()) == 1
    return str(e.value)


def test_a_zip_bomb_is_refused_before_it_expands(tmp_path, images):
    members = layout(images)
    members["train/dog/1.bmp"] = b"\0" * (8 * 2**20)  # 8 MiB of zeros: about 8 KiB deflated
    path = write_zip(tmp_path / "bomb.zip", members, zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 100_000
    err = data_error(path)
    assert err.startswith(f"{path}:train/dog/1.bmp: expands to 8,388,608 bytes (") and "a zip bomb?" in err


def test_a_zip_member_beyond_the_size_cap_is_refused(tmp_path, images, monkeypatch):
    from rksearch.data import store

    path = write_zip(tmp_path / "big.zip", layout(images))  # stored: no compression ratio to see
    monkeypatch.setattr(store, "MAX_MEMBER_BYTES", 1000)
    assert f"{path}:train/cat/0.bmp: expands to 3,126 bytes" in data_error(path)


@pytest.mark.parametrize("member, make, message", [
    ("train/cat/0.png", lambda im: png_header(9000, 9000), "image is 9000x9000, more than the 67,108,864 pixels"),
    ("train/dog/0.png", lambda im: png_header(9000, 9000), "image is 9000x9000, more than the 67,108,864 pixels"),
    ("train/dog/0.jpg", lambda im: jpeg_declaring(9000, 9000, im), "image is 9000x9000, more than the 67,108,864"),
    ("train/dog/0.png", lambda im: png_header(100_000, 100_000), "image too large to decode"),
])
@pytest.mark.parametrize("kind", ["folder", "zip"])
def test_an_image_bomb_is_refused_before_it_is_decoded(tmp_path, images, member, make, message, kind):
    # the first image decides the path (decoded into memory); the others are decoded in chunks,
    # JPEGs in one batched call
    fmt = member.rsplit(".", 1)[1].replace("jpg", "jpeg")
    members = {name.replace(".bmp", f".{member.rsplit('.', 1)[1]}"): encoded(images[i], fmt)
               for i, name in enumerate(layout(images))}
    members[member] = make(images[0])
    root = write_zip(tmp_path / "d.zip", members) if kind == "zip" else write_tree(tmp_path / "d", members)
    where = f"{root}:{member}" if kind == "zip" else str(root / member)
    err = data_error(root)
    assert err.startswith(f"{where}: ") and message in err


def test_symbolic_links_out_of_a_data_folder_are_refused(tmp_path, images):
    root = write_tree(tmp_path / "d", layout(images))
    (root / "train" / "cat" / "1.bmp").symlink_to(root / "test" / "cat" / "0.bmp")  # inside: fine
    from rksearch.data import load_dataset

    assert len(load_dataset("imagefolder", root).train.labels) == 3
    outside = write_tree(tmp_path / "elsewhere", {"secret.bmp": encoded(images[5])})
    for link, target in (("train/dog/1.bmp", outside / "secret.bmp"), ("train/bird", outside)):
        (root / link).symlink_to(target)
        assert data_error(root) == f"{root / link}: a symbolic link to {target}, outside the data folder {root}"
        (root / link).unlink()


@pytest.mark.parametrize("kind", ["folder", "zip"])
def test_an_in_place_rewrite_that_keeps_size_and_mtime_is_not_served_from_the_cache(tmp_path, images, kind):
    # what a file system with one-second timestamps, `rsync -a` or `touch -r` makes of a rewrite
    from rksearch.data import load_dataset

    first, second = layout(images[:4]), layout(images[2:])
    assert {k: len(v) for k, v in first.items()} == {k: len(v) for k, v in second.items()} and first != second
    write = write_zip if kind == "zip" else write_tree
    root = write(tmp_path / ("d.zip" if kind == "zip" else "d"), first)
    before = load_dataset("imagefolder", root).train.images.clone()
    files = [root] if kind == "zip" else [root / m for m in first]
    times = [f.stat() for f in files]
    write(root, second)
    for f, st in zip(files, times):
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert (f.stat().st_size, f.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    after = load_dataset("imagefolder", root).train.images
    assert not torch.equal(after, before)
    assert torch.equal(after[0], images[2]) and torch.equal(after[1], images[4])


# -- the dashboard --------------------------------------------------------------------------


def request(method: str, url: str) -> int:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=60) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


@pytest.mark.parametrize("read_only", [False, True])
def test_a_read_only_dashboard_refuses_every_change(tmp_path, read_only):
    from study_factory import make_study

    from rksearch.analysis.dashboard import dashboard
    from rksearch.analysis.study import load_study

    study = make_study(tmp_path, "demo", n=4)
    board = dashboard(study, port=0, read_only=read_only)
    board.start()
    try:
        api = f"{board.base_url}/api/studies"
        assert request("GET", f"{api}/{board.study_id}") == 200 and not board.exposed
        for method, path in (("PUT", "note"), ("POST", "rename"), ("POST", "preference")):  # no body: refused
            assert (request(method, f"{api}/{board.study_id}/{path}") == 405) == read_only
        assert request("DELETE", f"{api}/{board.study_id}") == (405 if read_only else 204)
    finally:
        board.stop()
    if read_only:
        assert len(load_study(study).trials) == 4 + 3 + 2
    else:  # what a dashboard open to the network lets anyone do
        with pytest.raises(RKSearchError, match="holds no study, not study 'demo'"):
            load_study(study)


@pytest.mark.parametrize("host, read_only, warning", [
    ("127.0.0.1", False, None),
    ("localhost", False, None),
    ("0.0.0.0", False, "warning: listening on 0.0.0.0, beyond this machine: whoever reaches it can delete or rename"
                       " studies and change trials (optuna-dashboard has no login and no read-only mode of its own);"
                       " --read-only refuses every change"),
    ("0.0.0.0", True, "note: listening on 0.0.0.0, beyond this machine, read-only: whoever reaches it can read the"
                      " study"),
])
def test_a_dashboard_beyond_loopback_warns(tmp_path, monkeypatch, rksearch_cli, host, read_only, warning):
    from study_factory import make_study

    from rksearch.analysis.dashboard import Dashboard

    served = []
    monkeypatch.setattr(Dashboard, "serve_forever", lambda self: (served.append(self), self.server.server_close()))
    study = make_study(tmp_path, "demo", n=4)
    r = rksearch_cli("dashboard", study, "--port", "0", "--host", host, *["--read-only"] * read_only, cwd=tmp_path)
    assert r.returncode == 0 and len(served) == 1 and served[0].read_only == read_only, r.stderr
    assert " ".join(r.stderr.split()) == (warning or "")
