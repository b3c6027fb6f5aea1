"""The search benchmark's CPU account: real child processes' CPU lands in the class their command line names."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from cpu_account import CLASSES, CpuAccount  # noqa: E402

SPIN = "import sys, time\nt = time.process_time()\nwhile time.process_time() - t < float(sys.argv[1]): pass"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_children_and_grandchildren_are_counted_by_class() -> None:
    with CpuAccount(interval=0.05) as acct:
        # a Ray server's stand-in, then a worker that ran a trial (a grandchild, as Ray's workers are the raylet's)
        subprocess.run([sys.executable, "-c", SPIN, "0.4", "gcs_server"], check=True)
        nested = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {SPIN!r}, '0.4', 'ray::ImplicitFunc'])"
        subprocess.run([sys.executable, "-c", nested], check=True)
        middle = time.time()
        time.sleep(0.3)  # nothing runs: idle
    end = acct.by_class(acct.end)
    assert set(end) == {*CLASSES, "idle"}
    assert 0.3 <= end["trial workers"] <= 0.6  # the worker's spin, less at most one interval unseen before it exited
    assert end["Ray's processes"] >= 0.3  # the server's spin, and the nested worker's parent
    assert end["unused workers"] == 0
    assert end["driver"] < 0.3  # this process from the account's opening: its sampling thread
    assert sum(end.values()) == pytest.approx(acct.cores * (acct.end - acct.start), rel=0.05)
    acct.mark("the children ended", middle)
    table = acct.table()
    assert "the children ended" in table and "the end" in table and table.count("\n") == 3


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_since_counts_this_process_from_its_own_start() -> None:
    with CpuAccount(since=time.time() - 60) as acct:
        opened = time.time()
    assert acct.by_class(opened)["driver"] >= time.process_time() - 0.3  # pytest's own imports and tests so far
