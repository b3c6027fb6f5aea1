"""One Tune trial: the proxy training of a candidate in a Ray worker, and the faults a drill injects into it."""
from __future__ import annotations

import contextlib
import os
import socket
import traceback
from pathlib import Path
from typing import Any

from rksearch.arch.resolve import any_spec_from_dict
from rksearch.models.registry import count
from rksearch.search.overhead import IN_TRIAL
from rksearch.training.proxy import ProxyConfig


TIMES = ("started_at", *IN_TRIAL)
"""What a trial reports of where its seconds went, with every result (rksearch.search.overhead)."""


def injected_fault(trial_number: int | str) -> str | None:
    """Fault injection for tests and drills: RKSEARCH_INJECT_FAULTS="raise@1,nan@2,oom@3,crash@4".

    Keys are Optuna trial numbers (``b0``: baseline 0). raise: an exception; nan: a learning rate
    that makes the loss non-finite for real; oom: an address-space cap that makes allocations fail
    for real; crash: the worker process dies. Read by the driver, which puts it in the trial's
    config: a Ray worker started before the variable was set (an in-process test's) does not see it.
    """
    for item in filter(None, os.environ.get("RKSEARCH_INJECT_FAULTS", "").split(",")):
        kind, _, number = item.partition("@")
        if number.strip() == str(trial_number):
            return kind.strip()
    return None


def measured_at_sampling(config: dict[str, Any]) -> dict[str, Any]:
    """What the searcher measured before the trial (its latency), reported with every result."""
    return {"latency": config["latency"]} if "latency" in config else {}


def run_trial(config: dict[str, Any]) -> None:
    """One Tune trial: the proxy training of a candidate, reported every epoch."""
    import ray
    from ray import tune

    from rksearch.training.proxy import proxy_evaluate

    spec = any_spec_from_dict(config["spec"])
    proxy = ProxyConfig.model_validate(config["proxy"])
    c = count(spec)
    static = {"flops": c.flops, "params": c.params, "hostname": socket.gethostname(),
              "node": ray.get_runtime_context().get_node_id(), **measured_at_sampling(config)}
    fault = config.get("fault")  # injected_fault(), read by the driver
    if fault == "nan":  # a learning rate no network survives: a real non-finite loss
        proxy = proxy.model_copy(update={"lr": 1e12})
    in_report = False

    def throughput(m: dict[str, Any]) -> dict[str, Any]:
        """Every result holds every objective (Tune refuses one without the searcher's metrics):
        an epoch's images/s, and the run's in the final result."""
        return {"throughput": m["images_per_s"]} if "throughput" in config["objectives"] else {}

    def report(m: dict[str, Any]) -> None:
        nonlocal in_report
        if m["epoch"] >= proxy.epochs:
            return  # the last epoch is reported once, complete, after the evaluation
        in_report = True
        tune.report({**static, **{k: m.get(k) for k in ("loss", "seconds", "images_per_s", *TIMES)},
                     "accuracy": m["accuracy"], "epoch": m["epoch"], "epochs": m["epoch"], **throughput(m)})
        in_report = False

    try:
        if fault == "raise":
            raise RuntimeError("injected failure")
        if fault == "crash":
            os._exit(1)
        with _memory_guard(0 if fault == "oom" else None):
            r = proxy_evaluate(spec, proxy, report=report)
    except Exception as e:
        if in_report:
            raise
        tune.report({**static, "accuracy": 0.0, "epoch": 0, "failed": True, "fail_reason": _reason(e)})
        return
    tune.report({**static, **r, "final": True, "epoch": r["epochs"], **throughput(r)})


@contextlib.contextmanager
def _memory_guard(extra_bytes: int | None):
    """Cap the address space at the current size plus ``extra_bytes`` (CPU out-of-memory guard)."""
    if extra_bytes is None:
        yield
        return
    import resource

    def address_space() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * resource.getpagesize()

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = address_space() + extra_bytes
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    except Exception as e:
        # whatever failed first (an allocator, a thread, a oneDNN primitive) failed for want of memory
        if address_space() + 64 * 2**20 >= cap:
            raise MemoryError(f"out of memory under the {cap / 2**30:.2f} GiB address-space cap: {e}") from e
        raise
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


_OOM_MARKERS = ("out of memory", "can't allocate memory", "cannot allocate memory", "can't start new thread")


def _reason(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else ""
    lowered = text.lower()
    site = failure_site(e)
    at = f" [at {site}]" if site else ""
    if isinstance(e, MemoryError) or any(m in lowered for m in _OOM_MARKERS):
        return (f"out of memory: {text}" if text else "out of memory") + at
    return (f"{type(e).__name__}: {text}" if text else type(e).__name__) + at


PACKAGE_DIR = Path(os.path.abspath(__file__)).parents[1]
"""The rksearch package's folder: a failure is placed in its code first."""


def _shown_file(filename: str, ours: Path) -> str:
    """A traceback's file as a reason shows it: from the package on (``rksearch/...``, ``torch/...``)."""
    path = Path(os.path.abspath(filename))
    if path.is_relative_to(ours):
        return path.relative_to(ours.parent).as_posix()
    parts = path.parts
    for marker in ("site-packages", "dist-packages"):
        if marker in parts:
            return "/".join(parts[parts.index(marker) + 1:])
    return "/".join(parts[-2:])


def failure_site(e: BaseException, ours: Path = PACKAGE_DIR, width: int = 80) -> str:
    """Where ``e`` was raised, as the last lines of its traceback show it: ``file:line in function:
    code`` of the innermost frame in ``ours`` (the package) and, where it went deeper (into torch),
    `` -> `` the innermost frame of all. An exception raised ``from`` another is placed where that one was."""
    while e.__cause__ is not None and e.__cause__.__traceback__ is not None:
        e = e.__cause__
    frames = traceback.extract_tb(e.__traceback__)
    if not frames:
        return ""
    mine = [f for f in frames if Path(os.path.abspath(f.filename)).is_relative_to(ours)]
    shown = [mine[-1], frames[-1]] if mine and mine[-1] is not frames[-1] else [frames[-1]]

    def line(f: traceback.FrameSummary) -> str:
        code = (f.line or "").strip()
        code = code if len(code) <= width else code[:width - 3] + "..."
        return f"{_shown_file(f.filename, ours)}:{f.lineno} in {f.name}" + (f": {code}" if code else "")

    return " -> ".join(line(f) for f in shown)
