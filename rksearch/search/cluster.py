"""The Ray cluster a search runs on: started or joined, reachable, with room for one trial (GPU spaces fitted to CPUs)."""
from __future__ import annotations

import os
import signal
import socket
import time
from typing import Any

from rksearch.core.errors import RKSearchError
from rksearch.space.search_space import SearchSpace


def init_ray(address: str | None, space: SearchSpace) -> float:
    """Start or join Ray; returns the seconds it took."""
    import ray

    t0 = time.perf_counter()
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")  # Ctrl-C interrupts the search, not just Tune's run
    kwargs: dict[str, Any] = {"log_to_driver": False, "configure_logging": True, "logging_level": "ERROR"}
    if address:
        kwargs["address"] = address
        check_reachable(address, space)
    else:  # a new local Ray, never a cluster `ray start` announced on this machine: joining one is --address auto
        kwargs["include_dashboard"] = False
        if not os.environ.get("RAY_ADDRESS"):  # Ray's own variable still names a cluster to join
            kwargs["address"] = "local"
    if not ray.is_initialized():
        sigterm = signal.getsignal(signal.SIGTERM)
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise RKSearchError(f"cannot join the Ray cluster: {str(e).splitlines()[0]}", field="--address") from None
        if callable(sigterm):  # the caller's own SIGTERM handling, which ray.init replaced with a bare exit
            signal.signal(signal.SIGTERM, sigterm)
    return time.perf_counter() - t0


def check_reachable(address: str, space: SearchSpace, timeout: float = 10.0) -> None:
    """A ``host:port`` (or ``ray://host:port``) nobody answers at: Ray would retry for minutes."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    host = host.strip("[]")  # [::1]:6379
    if not host or not port.isdigit():
        return  # auto, or a form Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        where = {"source": space.source, "field": "search.address"} if address == space.search.address \
            else {"field": "--address"}
        raise RKSearchError(f"cannot reach a Ray cluster at {address}: {e.strerror or e}", **where) from None


def fit_to_machine(space: SearchSpace) -> tuple[SearchSpace, str | None]:
    """A space that asks for GPUs, on a local Ray without any: trials on the CPU instead, one CPU each,
    as many at once as there are CPUs (at most the space's concurrency), and a one-line notice of
    what changed. Unchanged where a GPU exists, or where ``--set`` pinned ``search.resources.gpu``."""
    import dataclasses

    import ray

    need = space.search.resources
    pinned = any(k in ("search.resources", "search.resources.gpu") for k, _ in space.overrides)
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    if need.gpu == 0 or pinned or any(r.get("GPU", 0) > 0 for r in nodes):
        return space, None
    cpus = int(max((r.get("CPU", 0) for r in nodes), default=1)) or 1
    concurrency = max(1, min(space.search.concurrency, cpus))
    search = space.search.model_copy(update={"concurrency": concurrency,
                                             "resources": need.model_copy(update={"cpu": 1.0, "gpu": 0.0})})
    proxy = space.proxy.model_copy(update={"device": "cpu"}) if space.proxy.device == "cuda" else space.proxy
    notice = (f"no GPU here: trials run on the CPU (search.resources {need.cpu:g} CPU + {need.gpu:g} GPU -> 1 CPU, "
              f"concurrency {space.search.concurrency} -> {concurrency} on {cpus} CPUs"
              + (", proxy.device cuda -> cpu" if proxy is not space.proxy else "")
              + "); --set search.resources.gpu=... pins the space's request")
    return dataclasses.replace(space, search=search, proxy=proxy), notice


def check_resources(space: SearchSpace) -> None:
    """Each trial must fit on one live node of the local Ray cluster: Tune would wait for it forever."""
    import ray

    need = space.search.resources
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    if any(r.get("CPU", 0) >= need.cpu and r.get("GPU", 0) >= need.gpu for r in nodes):
        return
    most = max(nodes, key=lambda r: (r.get("GPU", 0), r.get("CPU", 0)), default={})
    cpus, gpus = most.get("CPU", 0), most.get("GPU", 0)
    gpu_short = need.gpu > gpus
    hint = f"ask for at most {cpus:g} CPU and {gpus:g} GPU" + (" (gpu: 0 trains on CPUs)" if gpu_short and not gpus else "")
    raise RKSearchError(
        f"each trial asks for {need.cpu:g} CPU and {need.gpu:g} GPU, and no node of the Ray cluster has that much "
        f"(the largest: {cpus:g} CPU, {gpus:g} GPU); {hint}",
        source=space.source, field="search.resources.gpu" if gpu_short else "search.resources.cpu",
    )
