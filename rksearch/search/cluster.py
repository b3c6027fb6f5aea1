"""The Ray cluster a search runs on: started or joined, reachable, with room for trials (how many at once)."""
from __future__ import annotations

import math
import os
import signal
import socket
import time
from typing import Any

from rksearch.core.errors import RKSearchError
from rksearch.space.config import Resources
from rksearch.space.search_space import SearchSpace
from rksearch.storage.folder import STORAGE_ENV

USAGE_STATS_ENV = "RAY_USAGE_STATS_ENABLED"  # Ray's documented switch for its usage statistics


def worker_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The driver's ``RKSEARCH_*`` variables, which every Ray worker gets (Ray's ``runtime_env``):
    ``RKSEARCH_DATA`` moves the data there too. Not ``RKSEARCH_STORAGE``: only the driver writes the
    study, and Ray shows a job's runtime_env to anyone who reaches its dashboard."""
    environ = os.environ if environ is None else environ
    return {k: v for k, v in sorted(environ.items()) if k.startswith("RKSEARCH_") and k != STORAGE_ENV}


def address_field(address: str, space: SearchSpace) -> dict[str, Any]:
    """Where an address came from: the space's ``search.address`` or ``--address``."""
    return {"source": space.source, "field": "search.address"} if address == space.search.address \
        else {"field": "--address"}


def cluster_address(address: str | None) -> str | None:
    """The Ray cluster a search joins: ``--address`` (or ``search.address``), else Ray's own
    ``RAY_ADDRESS``; None: it starts a Ray of its own, which is this machine."""
    return address or os.environ.get("RAY_ADDRESS") or None


def refuse_ray_client(address: str | None, space: SearchSpace) -> None:
    """A ``ray://`` address (Ray Client), given or in ``RAY_ADDRESS``, is refused: its workers would
    not see the driver's files, and Tune through Ray Client is not what rksearch is tested on."""
    where = address_field(address, space) if address else {"field": "RAY_ADDRESS"}
    address = cluster_address(address)
    if address and address.strip().lower().startswith("ray://"):
        raise RKSearchError(f"{address}: Ray Client (ray://) is not supported; run rksearch on a machine of the "
                            "cluster with --address HEAD:PORT and a PostgreSQL storage every node reaches "
                            "(RKSEARCH_STORAGE)", **where)


def init_ray(address: str | None, space: SearchSpace) -> float:
    """Start or join Ray; returns the seconds it took. Ray's usage statistics are off unless
    ``RAY_USAGE_STATS_ENABLED=1`` asks for them (the variable outranks ``ray enable-usage-stats``).
    Ray's own servers listen on every interface: ray.init has no public option to bind them to
    127.0.0.1 (README, Security), so rksearch starts no Ray dashboard and no Ray Client server."""
    import ray

    t0 = time.perf_counter()
    os.environ.setdefault(USAGE_STATS_ENV, "0")  # before ray.init: the processes it starts inherit it
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")  # Ctrl-C interrupts the search, not just Tune's run
    kwargs: dict[str, Any] = {"log_to_driver": False, "configure_logging": True, "logging_level": "ERROR"}
    if worker_env():
        kwargs["runtime_env"] = {"env_vars": worker_env()}
    refuse_ray_client(address, space)
    if address:
        kwargs["address"] = address
        check_reachable(address, space)
    else:  # a new local Ray, never a cluster `ray start` announced on this machine: joining one is --address auto
        kwargs["include_dashboard"] = False
        if cluster_address(None) is None:  # Ray's own RAY_ADDRESS still names a cluster to join
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
    """A ``host:port`` nobody answers at: Ray would retry for minutes."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")  # [::1]:6379
    if not host or not port.isdigit():
        return  # auto, or a form Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise RKSearchError(f"cannot reach a Ray cluster at {address}: {e.strerror or e}",
                            **address_field(address, space)) from None


def fit_to_machine(space: SearchSpace) -> tuple[SearchSpace, str | None]:
    """A space that asks for GPUs, on a local Ray without any: trials on the CPU instead, one CPU each,
    as many at once as there are CPUs (at most the space's concurrency), and a one-line notice of
    what changed. Unchanged where a GPU exists, or where ``--set`` pinned ``search.resources.gpu``."""
    import dataclasses

    need = space.search.resources
    pinned = any(k in ("search.resources", "search.resources.gpu") for k, _ in space.overrides)
    nodes = [n["Resources"] for n in live_nodes()]
    if need.gpu == 0 or pinned or any(r.get("GPU", 0) > 0 for r in nodes):
        return space, None
    cpus = int(max((r.get("CPU", 0) for r in nodes), default=1)) or 1
    was = space.search.concurrency  # None (auto) stays auto: as many as the CPUs hold
    concurrency = None if was is None else max(1, min(was, cpus))
    search = space.search.model_copy(update={"concurrency": concurrency,
                                             "resources": need.model_copy(update={"cpu": 1.0, "gpu": 0.0})})
    proxy = space.proxy.model_copy(update={"device": "cpu"}) if space.proxy.device == "cuda" else space.proxy
    notice = (f"no GPU here: trials run on the CPU (search.resources {need.cpu:g} CPU + {need.gpu:g} GPU -> 1 CPU"
              + (f", concurrency {was} -> {concurrency} on {cpus} CPUs" if was is not None else "")
              + (", proxy.device cuda -> cpu" if proxy is not space.proxy else "")
              + "); --set search.resources.gpu=... pins the space's request")
    return dataclasses.replace(space, search=search, proxy=proxy), notice


def check_resources(space: SearchSpace) -> None:
    """Each trial must fit on one live node of the local Ray cluster: Tune would wait for it forever."""
    need = space.search.resources
    nodes = [n["Resources"] for n in live_nodes()]
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


def live_nodes() -> list[dict[str, Any]]:
    """``ray.nodes()`` of the nodes alive now."""
    import ray

    return [n for n in ray.nodes() if n.get("Alive")]


def trial_slots(nodes: list[dict[str, float]], need: Resources) -> int:
    """Trials of ``need`` that run at once on ``nodes`` (each node's Ray resources, ``CPU`` and
    ``GPU``): a trial runs on one node, so each node holds what both its CPUs and its GPUs hold."""
    def fits(have: float, each: float) -> float:
        return math.floor(have / each + 1e-9) if each > 0 else math.inf

    return sum(int(min(fits(r.get("CPU", 0), need.cpu), fits(r.get("GPU", 0), need.gpu))) for r in nodes)


def plan_concurrency(nodes: list[dict[str, float]], need: Resources, wanted: int | None) -> tuple[int, str | None]:
    """The trials a search runs at once on ``nodes``, and the line that says why: ``wanted``
    None (``auto``) is as many as the nodes hold (at least 1, where none holds one yet: a cluster
    may autoscale); a fixed value is kept, and where it is below that, the line says what stays idle."""
    slots = trial_slots(nodes, need)
    gpus, cpus = sum(r.get("GPU", 0) for r in nodes), sum(r.get("CPU", 0) for r in nodes)
    on = f"{len(nodes)} nodes" if len(nodes) != 1 else "1 node"
    held = (f"{gpus:g} GPU{'s' * (gpus != 1)} at {need.gpu:g} GPU per trial" if need.gpu > 0
            else f"{cpus:g} CPU{'s' * (cpus != 1)} at {need.cpu:g} CPU per trial") + f" on {on}"
    if wanted is None:
        if slots == 0:
            return 1, f"concurrency auto: 1 trial at a time (no node holds a trial of {need.cpu:g} CPU and " \
                      f"{need.gpu:g} GPU yet)"
        return slots, f"concurrency auto: {slots} trial{'s' * (slots != 1)} at once ({held})"
    if wanted >= slots:
        return wanted, None
    idle = (f"{(slots - wanted) * need.gpu:g} of {gpus:g} GPUs stay idle" if need.gpu > 0
            else f"{slots - wanted} of {slots} CPU slots stay idle")
    return wanted, (f"search.concurrency {wanted}: {idle} (the cluster holds {slots} trials: {held}; "
                    "unset or auto uses them all)")


def choose_concurrency(space: SearchSpace) -> tuple[SearchSpace, str | None]:
    """``space`` with ``search.concurrency`` fixed for the Ray cluster it runs on (see
    :func:`plan_concurrency`), and the line to print."""
    import dataclasses

    nodes = [n["Resources"] for n in live_nodes()]
    concurrency, line = plan_concurrency(nodes, space.search.resources, space.search.concurrency)
    search = space.search.model_copy(update={"concurrency": concurrency})
    return dataclasses.replace(space, search=search), line
