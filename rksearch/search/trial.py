"""One Tune trial: the proxy training of a candidate in a Ray worker, and the faults a drill injects into it."""
from __future__ import annotations

import contextlib
import os
import socket
from typing import Any

from rksearch.arch.resolve import any_spec_from_dict
from rksearch.models.registry import count
from rksearch.training.proxy import ProxyConfig


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

    def report(m: dict[str, Any]) -> None:
        nonlocal in_report
        if m["epoch"] >= proxy.epochs:
            return  # the last epoch is reported once, complete, after the evaluation
        in_report = True
        tune.report({**static, **{k: m.get(k) for k in ("loss", "seconds", "images_per_s")},
                     "accuracy": m["accuracy"], "epoch": m["epoch"], "epochs": m["epoch"]})
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
    final = {**static, **r, "final": True, "epoch": r["epochs"]}
    if "throughput" in config["objectives"]:
        final["throughput"] = r["images_per_s"]
    tune.report(final)


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
    if isinstance(e, MemoryError) or any(m in lowered for m in _OOM_MARKERS):
        return f"out of memory: {text}" if text else "out of memory"
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
