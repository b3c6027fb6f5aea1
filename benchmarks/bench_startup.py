"""Start-up of the commands that need no tensor (issue 22): wall time and peak memory per call.

    python benchmarks/bench_startup.py                    # 5 repeats each, this checkout
    python benchmarks/bench_startup.py --source /tmp/old  # the same commands on another source tree

Each command runs as a fresh ``python -m rksearch ...`` process (what the ``rksearch`` script
does) in ``--source`` (its working folder, so first on ``sys.path``); ``python -c "import torch"`` runs in the same
rounds as the baseline. One untimed round warms the file cache first; the rounds interleave the
commands, so a load change on the machine touches all of them alike. Prints a Markdown table:
median, min and max wall seconds, and the median peak RSS (from ``wait4``).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "rksearch --help": ["-m", "rksearch", "--help"],
    "rksearch describe IRKNet-3x1_3x1_3x1": ["-m", "rksearch", "describe", "IRKNet-3x1_3x1_3x1"],
    "rksearch describe densenet-bc-100": ["-m", "rksearch", "describe", "densenet-bc-100"],
    "rksearch space search_spaces/demo.yaml": ["-m", "rksearch", "space", str(ROOT / "search_spaces/demo.yaml")],
    'python -c "import torch" (baseline)': ["-c", "import torch"],
}


def timed(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of ``python ARGS``; a failing command stops the benchmark."""
    start = time.perf_counter()
    p = subprocess.Popen([sys.executable, *args], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - start
    p.returncode = os.waitstatus_to_exitcode(status)
    err = p.stderr.read().decode() if p.stderr else ""
    p.stderr and p.stderr.close()
    if p.returncode != 0:
        raise SystemExit(f"python {' '.join(args)} exited {p.returncode}: {err.strip()[-400:]}")
    return wall, usage.ru_maxrss / 1024  # KB on Linux


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--source", type=Path, default=ROOT, help="the source tree whose rksearch/ is timed")
    ap.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    args = ap.parse_args(argv)
    source = args.source.resolve()  # the working folder too: ``-m`` and ``-c`` put it first on sys.path
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(source), os.environ.get("PYTHONPATH")]))}
    for cmd in COMMANDS.values():  # warm the file cache (and catch a failing command before timing)
        timed(cmd, env, source)
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeats):
        for name, cmd in COMMANDS.items():
            runs[name].append(timed(cmd, env, source))
    rows = [{"command": name, "median_s": statistics.median(w for w, _ in r), "min_s": min(w for w, _ in r),
             "max_s": max(w for w, _ in r), "rss_mb": statistics.median(m for _, m in r)} for name, r in runs.items()]
    if args.json:
        print(json.dumps({"source": str(args.source), "repeats": args.repeats, "rows": rows}))
        return 0
    print(f"source {args.source}, {args.repeats} repeats, load average {os.getloadavg()[0]:.1f}\n")
    print("| command | median | min | max | peak RSS |\n|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| `{r['command']}` | {r['median_s']:.2f} s | {r['min_s']:.2f} s | {r['max_s']:.2f} s | "
              f"{r['rss_mb']:.0f} MB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
