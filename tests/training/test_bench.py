"""``rksearch bench`` and the throughput script: output keys, arithmetic and errors (tiny models)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rksearch import count, parse_name, save_spec
from rksearch.training.bench import BenchOptions, Measurement, candidate, measure, paired_ratio, run_bench
from rksearch.core.errors import RKSearchError

from helpers import MANY_PROCESSES

ROOT = Path(__file__).resolve().parents[2]
TINY = ["IRKNet-2x1_2x1", "-k", "4", "--device", "cpu", "-b", "2", "--warmup", "0", "--repeats", "2"]
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}  # on a shared machine, far faster than two
torch.set_num_threads(1)


@pytest.fixture
def bench(rksearch_cli):
    """``rksearch bench ARGS`` in this process (conftest.py), on the one thread set above."""
    return lambda *args: rksearch_cli("bench", *args)


def test_json(tmp_path: Path, bench) -> None:
    spec = parse_name("IRKNet-2x1_2x1", growth_rate=4, input_size=8)  # 8 px: a cheap ResNet-18 baseline too
    save_spec(spec, tmp_path / "tiny.yaml")
    r = bench(str(tmp_path / "tiny.yaml"), *TINY[3:], "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for key in ("images_per_s", "peak_memory_bytes", "effective_tflops", "baseline_images_per_s", "ratio",
                "step_ms", "forward_flops", "baseline_peak_memory_bytes", "warmup_s"):
        assert key in out, key
    assert out["images_per_s"] > 0 and out["baseline_images_per_s"] > 0 and out["ratio"] > 0
    assert out["forward_flops"] == count(spec).flops and out["name"] == "IRKNet-2x1_2x1 k=4"
    assert out["effective_tflops"] == pytest.approx(3 * out["forward_flops"] * out["images_per_s"] / 1e12)
    assert out["images_per_s"] == pytest.approx(2 / (out["step_ms"] / 1e3))
    assert len(out["step_ms_repeats"]) == 2
    assert out["peak_memory_kind"] == "cpu_peak_rss_delta" and out["peak_memory_bytes"] >= 0
    assert (out["device"], out["batch_size"], out["impl"], out["compile"]) == ("cpu", 2, "concat", False)


def test_table_without_baseline(bench) -> None:
    r = bench(*TINY, "--baseline", "none", "--impl", "per-connection")
    assert r.returncode == 0, r.stderr
    assert "IRKNet-2x1_2x1 k=4" in r.stdout and "ResNet-18" not in r.stdout and "impl per-connection" in r.stdout


def test_a_baseline() -> None:
    """DenseNet and CliqueNet baselines time like RKNets, counted by the same counter."""
    from rksearch.arch.baselines import baseline_spec

    opts = BenchOptions(device="cpu", batch_size=2, warmup=0, repeats=1)
    for name, impl in (("densenet-bc-10-k4", "concat"), ("cliquenet-t6-k4", "per-connection")):
        out = run_bench(name, impl=impl, baseline="none", options=opts, input_size=8)
        spec = baseline_spec(name, input_size=8)
        assert out["name"] == spec.name and out["forward_flops"] == count(spec).flops and out["images_per_s"] > 0
    with pytest.raises(RKSearchError, match="applies to RKNets only"):
        candidate("densenet-bc-10-k4", m=2)


@NO_CUDA
def test_cuda_missing(bench) -> None:
    r = bench("IRKNet-2x1_2x1", "--device", "cuda")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().count("\n") == 0 and "CUDA is not available" in r.stderr


@pytest.mark.parametrize("args, needle", [
    (["IRKNet-2x1_2x1", "--amp", "fp16"], "--amp"),
    (["IRKNet-2x1_2x1", "--impl", "sliced"], "--impl"),
    (["resnet18", "--impl", "per-connection"], "RKNets only"),
    (["IRKNet-2x1_2x1", "--device", "cpu", "--cuda-graph"], "--cuda-graph"),
    (["IRKNet-2x1_2x1", "--device", "cpu", "--batch-size", "0"], "--batch-size"),
    (["IRKNet-1x1"], "stages"),
])
def test_user_errors(args: list[str], needle: str, capsys: pytest.CaptureFixture) -> None:
    from rksearch.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["bench", *args])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and needle in err, err


def test_api_baseline_none_and_tweaks() -> None:
    out = run_bench("IRKNet-2x1_2x1", 4, baseline="none",
                    options=BenchOptions(device="cpu", batch_size=2, warmup=0, repeats=1))
    assert out["baseline_images_per_s"] is None and out["ratio"] is None and out["images_per_s"] > 0
    a, b = candidate("ERKNet-2x1", 4), candidate("ERKNet-2x1", 4, "per-connection")
    b.tweaks = {"batch_size": 4, "channels_last": False}
    ms = measure([a, b], BenchOptions(device="cpu", batch_size=2, warmup=0, repeats=2))
    assert [m.batch_size for m in ms] == [2, 4] and all(len(m.step_s) == 2 for m in ms)


def test_paired_ratio() -> None:
    a = Measurement("a", 8, 1, 1, None, 0.0, [1.0, 2.0, 1.0])
    b = Measurement("b", 8, 1, 1, None, 0.0, [2.0, 2.0, 3.0])
    assert paired_ratio(a, b) == 2.0  # neighbouring timings: 2/1, 2/2, 3/1


def test_options_validate() -> None:
    with pytest.raises(RKSearchError, match="--compile-mode"):
        BenchOptions(compile_mode="fast")
    with pytest.raises(RKSearchError, match="reduce-overhead"):
        BenchOptions(compile=True, cuda_graph=True)
    assert BenchOptions(device="cpu").resolved() == BenchOptions(
        device="cpu", batch_size=32, amp="off", channels_last=True, warmup=2, repeats=5, steps=1)


@NO_CUDA
def test_gpu_script_fails_cleanly_without_cuda() -> None:
    env = {**ONE_THREAD, "PYTHON": sys.executable}
    r = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh")], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and "needs CUDA" in r.stderr and r.stdout == ""


@pytest.mark.slow  # five cold interpreters importing torch: about 10 s
def test_gpu_script_dry_run_checks_and_lists() -> None:
    """``gpu.sh --dry-run``: what is there (python, torch and its GPUs, torchvision, numpy, a
    compiler), then every row a GPU run measures, in its order; exit 0 without a GPU."""
    env = {**ONE_THREAD, "PYTHON": sys.executable}
    r = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--dry-run"], capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    for what in ("python", "torch", "torchvision", "numpy", "GPU", "C compiler"):
        assert any(line.startswith(f"{what}: ") for line in lines), (what, r.stdout)
    assert f"torch: {torch.__version__}" in lines
    rows = [line.strip() for line in lines if line.startswith("  ") and " | " in line]
    assert rows[0] == "eager | ResNet-18 | eager"
    assert "proxy trials | proxy trials of a new model (section 3) | at most 240 s" in rows
    assert rows[-1] == "levers | IRKNet-3x1_3x1_3x1 k=36 | eager, concat, half batch"
    assert "cuda-graph | ERKNet-6x1_6x1_6x1 k=36 | eager + CUDA graph" in rows
    assert len(rows) == 36


@MANY_PROCESSES
@pytest.mark.slow
def test_throughput_script_check(tmp_path: Path) -> None:
    """The whole table's plumbing on tiny CPU models: workers, rows, proxy trials, JSON."""
    out = tmp_path / "rows.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--check", "--json", str(out)],
                       capture_output=True, text=True, timeout=900, env=ONE_THREAD)
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    assert data["rows"] and all("images_per_s" in row for row in data["rows"]), data["rows"]
    assert "| model | variant | images/s |" in r.stdout
    proxy = data["proxy"]["rows"]
    assert not [row for row in proxy if "error" in row], proxy
    assert {row["variant"] for row in proxy} >= {"new model, static_shapes off", "new model, cudnn_benchmark off"}
    assert "static_shapes off: " in r.stdout and "s a proxy against" in r.stdout  # each answer's gain, printed


@pytest.mark.slow
def test_shapes_benchmark_runs() -> None:
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_shapes.py"), "--no-compile", "--pairs", "1",
                        "--threads", "1"], capture_output=True, text=True, timeout=600, env=ONE_THREAD)
    assert r.returncode == 0, r.stderr
    assert "| on | 0 |" in r.stdout and "| off | 0 |" in r.stdout and "off / on:" in r.stdout
