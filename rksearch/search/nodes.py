"""Before the first trial, on every node that will run trials: rksearch and torch import, and the data is there."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

from rksearch.core.errors import RKSearchError
from rksearch.search.cluster import live_nodes
from rksearch.space.search_space import SearchSpace

CHECK_TIMEOUT_S = 180.0
"""Seconds every node has to answer (a busy node starts a worker process first)."""


def inspect_node(dataset: Optional[str], path: Optional[str]) -> Optional[tuple[Optional[str], str]]:
    """On a node: ``(field, problem)`` that would fail every trial there, None where nothing would.
    ``dataset`` and ``path``: the proxy's dataset and root, located as a trial there locates them
    (with the node's ``RKSEARCH_DATA``); ``dataset`` None: ``path`` is a file the trials read."""
    try:
        import torch  # noqa: F401  every trial trains with it

        import rksearch.search.trial  # noqa: F401  what Tune runs
    except ImportError as e:
        return None, f"cannot import {e.name or 'a module'} there ({e}); install rksearch on every node"
    if dataset is None:
        return None if path is None or Path(path).is_file() else ("--replay", f"{path} is not there")
    from rksearch.data import locate

    try:
        where = locate(dataset, path)
    except RKSearchError as e:
        return f"proxy.{e.field or 'root'}", e.message
    if where.path is None or (where.kind != "missing" and where.path.exists()):
        return None
    return "proxy.root", (f"{dataset} is not in {where.path} there; every node that runs trials needs the data at "
                          "the same path: point --data-root (proxy.root) at a folder they all reach, or copy it there")


def node_name(node: dict[str, Any]) -> str:
    """A node as messages name it: its address and the start of its Ray node id."""
    return f"{node.get('NodeManagerAddress', '?')} ({str(node.get('NodeID', ''))[:8]})"


def runs_trials(resources: dict[str, float], space: SearchSpace) -> bool:
    need = space.search.resources
    return resources.get("CPU", 0) >= need.cpu and resources.get("GPU", 0) >= need.gpu


def check_nodes(space: SearchSpace, replay: Optional[Path] = None, timeout: float = CHECK_TIMEOUT_S) -> Optional[str]:
    """Run :func:`inspect_node` on every live node a trial fits on, all at once; the first problem
    is one error naming the node and the path. Returns a line for a cluster of several nodes."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    if replay is not None:
        dataset, path = None, str(Path(replay).resolve())
    else:
        root = space.proxy.root  # as the searcher hands it to the trials
        dataset, path = space.proxy.dataset, str(Path(root).resolve()) if root else None
    nodes = [n for n in live_nodes() if runs_trials(n["Resources"], space)]
    task = ray.remote(num_cpus=0, max_retries=0)(inspect_node)
    pending = {node_name(n): task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
               .remote(dataset, path) for n in nodes}
    deadline = time.monotonic() + timeout
    for name, ref in pending.items():
        field = None
        try:
            found = ray.get(ref, timeout=max(1.0, deadline - time.monotonic()))
        except ray.exceptions.GetTimeoutError:
            found = None, f"no answer to the check in {timeout:g} s"
        except ray.exceptions.RayError as e:
            last = [line for line in str(e).splitlines() if line.strip()]
            found = None, f"cannot run rksearch there: {last[-1].strip() if last else type(e).__name__}"
        if found is not None:
            field, problem = found
            mine = field is not None and field.startswith("proxy.")  # a field of the space, not an option
            raise RKSearchError(f"on node {name}: {problem}", source=space.source if mine else None, field=field)
    if len(nodes) < 2:
        return None
    what = "the table" if replay is not None else "the data"
    return f"checked {len(nodes)} nodes: rksearch and torch import, {what} is there"
