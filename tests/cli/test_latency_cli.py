"""``rksearch latency``: a spec measured once per device key, a space's table built resumably, the report, bad input."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rksearch import parse_name, save_spec
from helpers import write_space

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")


@pytest.fixture
def latency(rksearch_cli, tmp_path: Path):
    """``rksearch latency ARGS`` in this process, its cache (tables and locks) in ``tmp_path/cache``."""
    return lambda *args: rksearch_cli("latency", *args, env={"RKSEARCH_CACHE": str(tmp_path / "cache")})


@pytest.fixture
def tiny_spec(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    save_spec(parse_name("IRKNet-2x1_2x1", growth_rate=2, input_size=8), path)
    return path


def test_a_spec_is_measured_once_per_key_and_the_key_is_printed(latency, tiny_spec: Path, tmp_path: Path) -> None:
    first = latency(tiny_spec, "--device", "cpu", "--threads", "1", "--json")
    assert first.returncode == 0, first.stderr
    row = json.loads(first.stdout)["specs"][0]
    assert row["measured_now"] and row["median_ms"] > 0 and row["p90_ms"] >= row["median_ms"] and row["runs"] >= 10
    assert {k: row["key"][k] for k in ("device", "threads", "batch", "precision", "channels_last", "torch")} == \
        {"device": "cpu", "threads": 1, "batch": 1, "precision": "fp32", "channels_last": True, "torch": torch.__version__}
    assert Path(row["table"]).parent == tmp_path / "cache" / "latency"
    again = latency(tiny_spec, "--device", "cpu", "--threads", "1")
    assert again.returncode == 0, again.stderr
    assert f"median {row['median_ms']:.3f} ms" in again.stdout and "from the table" in again.stdout
    assert "device key: " in again.stdout and "1 thread, batch 1, fp32, channels_last" in again.stdout


def test_rounds_are_the_users_choice(latency, tiny_spec: Path) -> None:
    """``--rounds 3``: three rounds of timed runs, the number the fastest round's median; 0 is refused."""
    r = latency(tiny_spec, "--device", "cpu", "--threads", "1", "--rounds", "3", "--json")
    assert r.returncode == 0, r.stderr
    row = json.loads(r.stdout)["specs"][0]
    assert len(row["round_medians"]) == 3 and row["median_ms"] == pytest.approx(min(row["round_medians"]))
    bad = latency(tiny_spec, "--rounds", "0")
    assert bad.returncode == 2 and "--rounds" in bad.stderr and "Traceback" not in bad.stderr


def test_a_space_table_is_resumable_and_reported(latency, tmp_path: Path) -> None:
    space = write_space(tmp_path)
    html = tmp_path / "out" / "tiny-latency.html"
    html.parent.mkdir()
    r = latency(space, "--sample", "3", "--report", "--device", "cpu", "--threads", "1", "--html", html)
    assert r.returncode == 0, r.stderr
    assert "this run measured 3, found 0 in it" in r.stdout and "Spearman rho against it: FLOPs" in r.stdout
    assert html.is_file() and (html.parent / "plotly.min.js").is_file()
    page = html.read_text()
    assert 'src="plotly.min.js"' in page and any(f'"name":"{m}, ' in page for m in ("ERK", "IRK", "mixed"))
    r = latency(space, "--sample", "4", "--device", "cpu", "--threads", "1", "--json")
    assert r.returncode == 0, r.stderr
    table = json.loads(r.stdout)["tables"][0]
    assert table["specs"] == 4 and table["measured_now"] == 1  # the first 3 of the same draw are in the table


@pytest.mark.parametrize("args, needle", [
    (["--device", "tpu"], "--device: expected one of auto, cpu, cuda, got 'tpu'"),
    (["--batch", "0"], "--batch: expected a positive number of images, got 0"),
    (["--batch", "1,x"], "--batch: expected an integer or a comma-separated list of integers, got '1,x'"),
    (["--precision", "fp16"], "--precision: expected one of fp32, bf16, got 'fp16'"),
    (["--threads", "0"], "--threads: expected a positive number of threads, got 0"),
    (["--all"], "--all: takes a search-space file"),
    (["SPACE"], "tiny.yaml: --all: a space needs --all, --sample N or --report"),
    (["SPACE", "--all", "--sample", "2"], "--sample: give --all or --sample N, not both"),
    pytest.param(["--device", "cuda"], "--device: CUDA is not available on this machine", marks=NO_CUDA),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(latency, tiny_spec: Path, tmp_path: Path,
                                                            args: list[str], needle: str) -> None:
    target = tiny_spec
    if args[:1] == ["SPACE"]:
        (tmp_path / "space").mkdir()
        target, args = write_space(tmp_path / "space"), args[1:]
    r = latency(target, *args)
    assert r.returncode == 2 and needle in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "cache").exists()


def test_rksearch_space_shows_a_latency_bound_as_measured_not_counted(rksearch_cli, tmp_path: Path) -> None:
    space = write_space(tmp_path, constraints={"max_latency_ms": 20}, objectives=["accuracy", "latency"],
                        reference_point={"accuracy": 0.0, "latency": 20})
    r = rksearch_cli("space", space)
    assert r.returncode == 0, r.stderr
    assert "<= 20 ms latency (measured in a search, not in this share)" in r.stdout
    assert "latency (min)" in r.stdout
