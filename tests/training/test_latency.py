"""The latency protocol, the device key, the per-device table (measured once per key) and the device lock.

Nothing here asserts a time: the protocol's rules run on a fake clock, and the lock is checked by
the intervals two processes (and two threads) record while they hold it.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch

from rksearch import parse_name
from rksearch.core.errors import RKSearchError
from rksearch.training import latency_table
from rksearch.training.latency import (DeviceKey, Latency, Protocol, Settings, cpu_model, device_key, median_interval,
                                       time_runs)
from rksearch.training.latency_table import LatencyTable, latency_of

ROOT = Path(__file__).resolve().parents[2]
QUICK = Protocol(window=2, max_warmup=4, min_runs=3, max_runs=6, max_seconds=5.0)
ONE = Settings(device="cpu", threads=1)


def tiny(k: int = 2):
    return parse_name("IRKNet-2x1_2x1", growth_rate=k, input_size=8)


def fake_clock(durations: list[float]):
    """A clock under which the i-th run of ``time_runs`` takes ``durations[i]`` (the last one after)."""
    state = {"t": 0.0, "runs": 0}

    def clock() -> float:
        return state["t"]

    def run() -> None:
        i = min(state["runs"], len(durations) - 1)
        state["t"] += durations[i]
        state["runs"] += 1

    return run, clock, state


def test_warm_up_ends_when_two_window_medians_agree_then_times_until_the_median_is_stable() -> None:
    # a cold start (10, 5 ms), then steady 1 ms: warm-up windows of 5 runs, medians 5 ms, 1 ms, 1 ms
    run, clock, state = fake_clock([0.010, 0.005, 0.005, 0.005, 0.004] + [0.001] * 500)
    lat = time_runs(run, Protocol(window=5, min_runs=10, rounds=1), clock=clock)
    assert lat.settled and lat.warmup_runs == 15
    assert lat.stable and lat.runs == 10 and state["runs"] == 25  # identical runs: stable at min_runs
    assert lat.median_ms == pytest.approx(1.0) and lat.p90_ms == pytest.approx(1.0) and lat.spread == 0


def test_a_drifting_device_hits_the_caps_and_says_so() -> None:
    run, clock, _ = fake_clock([0.001 * (1 + i / 10) for i in range(100)])  # slower every run
    lat = time_runs(run, Protocol(window=5, max_warmup=20, min_runs=10, max_runs=40, rounds=1), clock=clock)
    assert not lat.settled and lat.warmup_runs == 20
    assert lat.runs == 40 and not lat.stable and lat.p90_ms > lat.median_ms and lat.spread > 0
    assert "warm-up never settled" in lat.line() and "median not stable" in lat.line()


def test_the_number_is_the_fastest_rounds_median() -> None:
    """Another process takes the device for the second and fourth rounds (every run 3 ms, not 1):
    the rounds share the caps, each stops when its own median is stable, and the fastest round's
    median is the number; the line says how far the slowest round was."""
    steady = [0.001] * 10
    run, clock, state = fake_clock([0.001] * 10 + steady + [0.003] * 10 + steady + [0.003] * 10 + steady)
    lat = time_runs(run, Protocol(window=5, min_runs=10, max_runs=100, rounds=5), clock=clock)
    assert lat.warmup_runs == 10 and lat.runs == 50 and state["runs"] == 60
    assert lat.round_medians == pytest.approx((1.0, 3.0, 1.0, 3.0, 1.0))
    assert lat.median_ms == pytest.approx(1.0) and lat.p90_ms == pytest.approx(1.0) and lat.stable
    assert "50 runs in 5 rounds, the slowest round's median 200 % above" in lat.line()


def test_median_interval_brackets_the_median() -> None:
    xs = sorted(float(i) for i in range(101))
    lo, hi = median_interval(xs)
    assert lo < 50 < hi and hi - lo < 25


def test_the_device_key_names_what_the_number_is_valid_for() -> None:
    key = device_key(Settings(device="cpu", batch=4, precision="bf16", threads=1, channels_last=False))
    assert (key.device, key.name, key.torch, key.threads, key.batch, key.precision, key.channels_last) == \
        ("cpu", cpu_model(), torch.__version__, 1, 4, "bf16", False)
    assert key.text() == f"{cpu_model()} (cpu), torch {torch.__version__}, 1 thread, batch 4, bf16, contiguous"
    other = device_key(Settings(device="cpu", batch=1, threads=1, channels_last=False, precision="bf16"))
    assert other.slug != key.slug and other.differences(key) == ["batch 1 (not 4)"]
    assert DeviceKey.from_dict(key.to_dict()) == key


@pytest.mark.parametrize("settings, needle", [
    (Settings(device="tpu"), "--device: expected one of auto, cpu, cuda, got 'tpu'"),
    (Settings(batch=0), "--batch: expected a positive number of images, got 0"),
    (Settings(precision="fp8"), "--precision: expected one of fp32, bf16, got 'fp8'"),
    (Settings(threads=0), "--threads: expected a positive number of threads, got 0"),
])
def test_bad_settings_are_user_errors_naming_the_option(settings: Settings, needle: str) -> None:
    with pytest.raises(RKSearchError) as e:
        device_key(settings)
    assert str(e.value) == needle


def test_a_spec_is_measured_once_per_key(tmp_path: Path, monkeypatch) -> None:
    calls = []
    real = latency_table.measure_unlocked
    monkeypatch.setattr(latency_table, "measure_unlocked", lambda *a: calls.append(a[0].name) or real(*a))
    table = LatencyTable.for_key(device_key(ONE), tmp_path / "tables")
    assert not table.path.exists() and len(table) == 0 and table.get(tiny()) is None  # nothing written yet
    first, now = latency_of(table, tiny(), QUICK, lock=tmp_path / "locks")
    assert now and first.median_ms > 0 and first.runs >= QUICK.min_runs and calls == ["IRKNet-2x1_2x1"]
    again = LatencyTable.for_key(device_key(ONE), tmp_path / "tables")  # a later run: the same file, by key
    assert again.path == table.path and latency_of(again, tiny(), QUICK, lock=tmp_path / "locks") == (first, False)
    assert calls == ["IRKNet-2x1_2x1"]
    assert LatencyTable.read(table.path).key == table.key and [r["name"] for r in table.rows()] == ["IRKNet-2x1_2x1"]
    other = LatencyTable.for_key(device_key(Settings(device="cpu", threads=1, batch=2)), tmp_path / "tables")
    assert other.path != table.path and other.get(tiny()) is None  # another key: another table


def test_a_table_of_another_device_is_read_never_measured_into(tmp_path: Path) -> None:
    here = device_key(ONE)
    elsewhere = DeviceKey("cuda", "Some GPU", here.torch, 1, 1, "fp32", True, "cuda-x")
    table = LatencyTable(tmp_path / "gpu.sqlite", elsewhere)
    table.put(tiny(), Latency(0.5, 0.6, 0.1, 10, 10, True, True))
    read = LatencyTable.read(table.path)
    assert read.key == elsewhere and read.get(tiny()).median_ms == 0.5 and not read.measurable_here()
    assert latency_of(read, tiny(), QUICK)[0].median_ms == 0.5
    with pytest.raises(RKSearchError, match="cannot measure IRKNet-2x1_2x1 for this table here"):
        latency_of(read, tiny(3), QUICK)


@pytest.mark.parametrize("content, needle", [(None, "no such latency table"), (b"not sqlite at all" * 100, "not a latency table")])
def test_a_bad_table_file_is_a_user_error(tmp_path: Path, content, needle: str) -> None:
    path = tmp_path / "t.sqlite"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(RKSearchError, match=needle) as e:
        LatencyTable.read(path)
    assert e.value.field == "--latency-table"


LOCKER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from rksearch.training.latency import DeviceKey, device_lock
    key = DeviceKey("cpu", "x", "t", 1, 1, "fp32", True, "cpu")
    with open(sys.argv[2], "w") as out:
        for _ in range(5):
            with device_lock(key, Path(sys.argv[1])):
                start = time.time()
                time.sleep(0.02)
                out.write(f"{start} {time.time()}\\n")
            time.sleep(0.005)
""")


def no_overlap(intervals: list[tuple[float, float]]) -> bool:
    spans = sorted(intervals)
    return all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:]))


def test_two_processes_never_hold_the_device_at_once(tmp_path: Path) -> None:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    procs = [subprocess.Popen([sys.executable, "-c", LOCKER, str(tmp_path), str(tmp_path / f"{i}.txt")], env=env)
             for i in range(2)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    intervals = [tuple(map(float, line.split())) for i in range(2)
                 for line in (tmp_path / f"{i}.txt").read_text().splitlines()]
    assert len(intervals) == 10 and no_overlap(intervals)


def test_two_threads_measuring_at_once_take_turns(tmp_path: Path, monkeypatch) -> None:
    intervals, real = [], latency_table.measure_unlocked

    def recorded(*args):
        start = time.time()
        try:
            return real(*args)
        finally:
            intervals.append((start, time.time()))

    monkeypatch.setattr(latency_table, "measure_unlocked", recorded)
    table = LatencyTable.for_key(device_key(ONE), tmp_path)
    threads = [threading.Thread(target=latency_of, args=(table, tiny(k), QUICK), kwargs={"lock": tmp_path / "locks"})
               for k in (2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert len(intervals) == 2 and no_overlap(intervals) and len(table) == 2
