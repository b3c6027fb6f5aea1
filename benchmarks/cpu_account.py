"""Where a machine's CPU went during a run: this process and its descendants, sampled from /proc (Linux).

    with CpuAccount() as acct:          # a thread samples every process under this one
        ...                             # e.g. run_search(...)
        acct.mark("first step", t)      # a wall-clock time (time.time()) to split the account at
    print(acct.table())

Each process is put in one class by its command line: the driver (this process), a trial worker
(a Ray worker that ran a Tune trial), an unused worker (a Ray worker that never did: Ray's
pre-started ones), and Ray's own processes (GCS, raylet, dashboard, agents, monitors). Idle is the
CPU time the machine had (cores x wall) that none of these used: another program's CPU counts as
idle, so run it on an otherwise idle machine. A process's CPU is its user + system time, read until it
exits (the last sample before it goes: up to one interval of it is missed).
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

CLASSES = ("driver", "trial workers", "unused workers", "Ray's processes")
_WORKER_MARKS = ("default_worker.py", "setup_worker.py", "ray::IDLE", "ray::ImplicitFunc")
_HZ = os.sysconf("SC_CLK_TCK")


@dataclass
class _Proc:
    cmds: set[str] = field(default_factory=set)
    samples: list[tuple[float, float]] = field(default_factory=list)  # (wall clock, CPU seconds so far)

    def cpu_by(self, t: float) -> float:
        """CPU seconds used by wall-clock time ``t`` (the last sample at or before it)."""
        best = 0.0
        for at, cpu in self.samples:
            if at > t:
                break
            best = cpu
        return best

    def kind(self, driver: bool) -> str:
        if driver:
            return "driver"
        if any(m in c for c in self.cmds for m in _WORKER_MARKS):
            return "trial workers" if any("ray::ImplicitFunc" in c for c in self.cmds) else "unused workers"
        return "Ray's processes"


def process_start() -> float:
    """This process's start, wall clock (Linux: /proc/self/stat's start time after boot)."""
    with open("/proc/self/stat") as f:
        ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    return time.time() - uptime + ticks / _HZ


def _read(pid: str) -> tuple[int, float, str] | None:
    """(parent pid, CPU seconds, command line) of a live process, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return None
    return int(stat[1]), (int(stat[11]) + int(stat[12])) / _HZ, cmd


class CpuAccount:
    """Samples this process and every descendant every ``interval`` seconds while it is open."""

    def __init__(self, interval: float = 0.2, since: float | None = None):
        """``since``: the wall-clock time the account starts at (default: when it is opened); this
        process's CPU is counted from its own start, so give its start time to count its imports too."""
        self.interval, self.root, self.since = interval, os.getpid(), since
        self.procs: dict[int, _Proc] = {}
        self.marks: dict[str, float] = {}
        self.cores = os.cpu_count() or 1
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> "CpuAccount":
        self.start = self.since if self.since is not None else time.time()
        self.sample()
        # this process's CPU before the account opened: the run's when ``since`` is its start, not otherwise
        self._root_base = 0.0 if self.since is not None else self.procs[self.root].samples[0][1]
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()
        self.end = time.time()

    def mark(self, name: str, at: float) -> None:
        """Split the account at wall-clock time ``at`` too."""
        self.marks[name] = at

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        now = time.time()
        seen = {int(p): r for p in os.listdir("/proc") if p.isdigit() and (r := _read(p)) is not None}
        mine = {self.root}
        grew = True
        while grew:  # descendants: the driver's children (Ray's servers) and theirs (Ray's workers)
            new = {pid for pid, (ppid, _, _) in seen.items() if ppid in mine and pid not in mine}
            mine |= new
            grew = bool(new)
        mine |= set(self.procs) & set(seen)  # one re-parented after its parent exited stays counted
        for pid in mine:
            _, cpu, cmd = seen[pid]
            p = self.procs.setdefault(pid, _Proc())
            if cmd:
                p.cmds.add(cmd)
            p.samples.append((now, cpu))

    def by_class(self, t: float) -> dict[str, float]:
        """CPU seconds each class used from the start to wall-clock time ``t``, and ``idle``."""
        used = dict.fromkeys(CLASSES, 0.0)
        for pid, p in self.procs.items():
            base = self._root_base if pid == self.root else 0.0
            used[p.kind(pid == self.root)] += max(0.0, p.cpu_by(t) - base)
        used["idle"] = max(0.0, self.cores * (min(t, self.end) - self.start) - sum(used.values()))
        return used

    def busy(self, step: float = 1.0) -> list[float]:
        """The share of the machine's CPUs in use, per ``step`` seconds from the start (a timeline of idle)."""
        shares, t = [], self.start
        while t < self.end:
            a, b = self.by_class(t), self.by_class(min(t + step, self.end))
            used = sum(b[c] - a[c] for c in CLASSES)
            shares.append(used / (self.cores * (min(t + step, self.end) - t)))
            t += step
        return shares

    def table(self) -> str:
        """One row per split (the marks, then the end): CPU seconds by class, and the machine's share."""
        cols = (*CLASSES, "idle")
        lines = [f"| CPU seconds ({self.cores} cores) up to | " + " | ".join(cols) + " |",
                 "|---|" + "---:|" * len(cols)]
        for name, at in [*sorted(self.marks.items(), key=lambda kv: kv[1]), ("the end", self.end)]:
            used = self.by_class(at)
            have = self.cores * max(1e-9, min(at, self.end) - self.start)
            lines.append(f"| {name} ({min(at, self.end) - self.start:.1f} s) | "
                         + " | ".join(f"{used[c]:.1f} ({100 * used[c] / have:.0f} %)" for c in cols) + " |")
        return "\n".join(lines)
