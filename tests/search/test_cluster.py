"""GPU boxes and Ray clusters: concurrency from the cluster's resources, the node check, where a
trial failed, the driver's RKSEARCH_* variables on the workers, and ray:// refused."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rksearch.core.errors import RKSearchError
from rksearch.search.cluster import plan_concurrency, trial_slots, worker_env
from rksearch.search.nodes import check_nodes
from rksearch.search.trial import failure_site
from rksearch.space.config import Resources, SearchConfig
from rksearch.space.search_space import load_space
from helpers import MANY_PROCESSES, load, two_node_cluster

GPU_BOX = [{"CPU": 16.0, "GPU": 2.0, "memory": 1e11}]
TWO_CPUS = [{"CPU": 1.0}, {"CPU": 1.0}]


def test_auto_concurrency_is_what_the_gpus_or_cpus_hold() -> None:
    assert plan_concurrency(GPU_BOX, Resources(cpu=2, gpu=0.25), None) == (
        8, "concurrency auto: 8 trials at once (2 GPUs at 0.25 GPU per trial on 1 node)")
    assert plan_concurrency(TWO_CPUS, Resources(cpu=1), None) == (
        2, "concurrency auto: 2 trials at once (2 CPUs at 1 CPU per trial on 2 nodes)")
    assert plan_concurrency([{"CPU": 4.0, "GPU": 2.0}], Resources(cpu=2, gpu=0.25), None)[0] == 2  # CPUs bind first
    assert trial_slots([{"CPU": 1.5}, {"CPU": 1.5}], Resources(cpu=1)) == 2  # a trial runs on one node
    assert trial_slots([{"CPU": 0.0}, {"CPU": 8.0, "GPU": 1.0}], Resources(cpu=1, gpu=0.1)) == 8  # 1 / 0.1 > 9.99
    assert trial_slots([{"CPU": 8.0, "GPU": 1.0}], Resources(cpu=1, gpu=0.3)) == 3
    assert plan_concurrency([{"CPU": 8.0}], Resources(cpu=1, gpu=1), None) == (
        1, "concurrency auto: 1 trial at a time (no node holds a trial of 1 CPU and 1 GPU yet)")


def test_a_fixed_concurrency_is_kept_and_says_what_stays_idle() -> None:
    assert plan_concurrency(GPU_BOX, Resources(cpu=2, gpu=0.25), 2) == (2, (
        "search.concurrency 2: 1.5 of 2 GPUs stay idle (the cluster holds 8 trials: 2 GPUs at 0.25 GPU per trial "
        "on 1 node; unset or auto uses them all)"))
    assert plan_concurrency(TWO_CPUS, Resources(cpu=1), 1)[1].startswith("search.concurrency 1: 1 of 2 CPU slots stay idle")
    assert plan_concurrency(TWO_CPUS, Resources(cpu=1), 2) == (2, None)
    assert plan_concurrency(TWO_CPUS, Resources(cpu=1), 5) == (5, None)  # Tune queues what does not fit


def test_concurrency_unset_or_auto() -> None:
    assert SearchConfig().concurrency is None
    assert SearchConfig(concurrency="auto").concurrency is None
    assert SearchConfig(concurrency=3).concurrency == 3


def test_workers_get_the_drivers_rksearch_variables_but_not_the_storage() -> None:
    environ = {"RKSEARCH_DATA": "/data", "RKSEARCH_INJECT_FAULTS": "raise@1", "PATH": "/bin",
               "RKSEARCH_STORAGE": "postgresql://u:secret@h/db"}
    assert worker_env(environ) == {"RKSEARCH_DATA": "/data", "RKSEARCH_INJECT_FAULTS": "raise@1"}


def test_ray_init_hands_the_workers_the_rksearch_variables(monkeypatch, demo_space) -> None:
    import ray

    from rksearch.search.cluster import init_ray

    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    monkeypatch.setenv("RKSEARCH_DATA", "/data/shared")
    monkeypatch.setenv("RKSEARCH_STORAGE", "postgresql://u:secret@h/db")
    init_ray(None, load_space(demo_space()))
    assert calls[0]["runtime_env"]["env_vars"]["RKSEARCH_DATA"] == "/data/shared"
    assert "RKSEARCH_STORAGE" not in calls[0]["runtime_env"]["env_vars"]



@pytest.mark.parametrize("given, seen", [(None, "0"), ("1", "1")])
def test_ray_usage_stats_are_off_before_ray_starts_unless_asked_for(monkeypatch, demo_space, given, seen) -> None:
    import ray

    from rksearch.search.cluster import init_ray

    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append((kwargs, os.environ.get("RAY_USAGE_STATS_ENABLED"))))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    if given is None:
        monkeypatch.delenv("RAY_USAGE_STATS_ENABLED", raising=False)
    else:
        monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", given)
    init_ray(None, load_space(demo_space()))
    kwargs, env = calls[0]
    assert env == seen  # what Ray's processes inherit
    assert kwargs["include_dashboard"] is False and kwargs["address"] == "local"


RAY_CHILDREN_ENV = """
import os, subprocess, sys
from rksearch.search.cluster import init_ray
from rksearch.space.search_space import load_space
init_ray(None, load_space(sys.argv[1]))
import ray
ps = subprocess.run(["ps", "-o", "pid=,comm=", "--ppid", str(os.getpid())], capture_output=True, text=True).stdout
for pid, comm in (line.split(None, 1) for line in ps.splitlines()):
    if comm.strip() in ("gcs_server", "raylet"):
        env = open(f"/proc/{pid}/environ", "rb").read().split(b"\\0")
        print(comm.strip(), [e.decode() for e in env if e.startswith(b"RAY_USAGE_STATS_ENABLED=")])
ray.shutdown()
"""


@MANY_PROCESSES
@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc")
def test_a_local_ray_starts_its_processes_with_usage_stats_off(demo_space) -> None:
    """A real local Ray, started by init_ray in a process of its own: its GCS and raylet inherit the switch."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_USAGE_STATS_ENABLED", "RAY_ADDRESS")}
    r = subprocess.run([sys.executable, "-c", RAY_CHILDREN_ENV, str(demo_space())], capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert sorted(r.stdout.splitlines()) == ["gcs_server ['RAY_USAGE_STATS_ENABLED=0']",
                                             "raylet ['RAY_USAGE_STATS_ENABLED=0']"], (r.stdout, r.stderr[-2000:])

def _forward(layer: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return layer(x)


def test_a_failure_is_placed_in_our_code_and_where_it_went_deeper() -> None:
    """``ours`` is rksearch's folder in a trial; here it is this test's, so these frames count as ours."""
    try:
        _forward(torch.nn.Linear(3, 2), torch.zeros(1, 4))
    except RuntimeError as e:
        site = failure_site(e, ours=Path(__file__).parent)
    first, deeper = site.split(" -> ")
    assert first.startswith("search/test_cluster.py:") and first.endswith(" in _forward: return layer(x)")
    assert deeper.startswith("torch/nn/modules/linear.py:") and " in forward: " in deeper
    try:
        try:
            _forward(torch.nn.Linear(3, 2), torch.zeros(1, 4))
        except RuntimeError as e:
            raise MemoryError("out of memory") from e  # a wrapper: placed where its cause failed
    except MemoryError as e:
        assert failure_site(e, ours=Path(__file__).parent) == site


def test_ray_client_addresses_are_refused_before_anything_is_written(tmp_path: Path, demo_space, rksearch_cli) -> None:
    out = tmp_path / "studies"
    r = rksearch_cli("run", demo_space(), "--out", out, "--address", "ray://head:10001")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert ("error: --address: ray://head:10001: Ray Client (ray://) is not supported; run rksearch on a machine of "
            "the cluster with --address HEAD:PORT and a PostgreSQL storage") in r.stderr
    space = demo_space("client", search__address="ray://head:10001")
    r = rksearch_cli("run", space, "--out", out)
    assert r.returncode == 2 and f"{space}: search.address: ray://head:10001: Ray Client" in r.stderr, r.stderr
    r = rksearch_cli("run", demo_space(), "--out", out, env={"RAY_ADDRESS": "ray://head:10001"})
    assert r.returncode == 2 and "error: RAY_ADDRESS: ray://head:10001: Ray Client" in r.stderr, r.stderr
    assert not out.exists()


@pytest.mark.slow
def test_the_node_check_names_the_node_and_the_path(tmp_path: Path, demo_space, ray_session) -> None:
    space = load_space(demo_space())
    assert check_nodes(space) is None  # one node: nothing to say
    missing = tmp_path / "no-such-folder"
    cifar = load_space(demo_space("cifar", proxy__dataset="cifar10", proxy__root=str(missing)))
    with pytest.raises(RKSearchError) as caught:
        check_nodes(cifar)
    node = ray_session.nodes()[0]
    assert str(caught.value).startswith(f"{cifar.source}: proxy.root: on node {node['NodeManagerAddress']} "
                                        f"({node['NodeID'][:8]}): cifar10 is not in {missing} there; ")
    with pytest.raises(RKSearchError, match=rf"^--replay: on node .*: {tmp_path}/table.csv is not there$"):
        check_nodes(space, replay=tmp_path / "table.csv")


PROBE = """
import dataclasses, json, os, sys
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from rksearch.core.errors import RKSearchError
from rksearch.search.cluster import choose_concurrency, init_ray, live_nodes
from rksearch.search.nodes import check_nodes
from rksearch.space.search_space import load_space

address, path, missing = sys.argv[1:4]
run = sys.argv[4:]
space = load_space(path)
init_ray(address, space)
probe = ray.remote(num_cpus=0)(lambda: os.environ.get("RKSEARCH_PROBE"))
seen = ray.get([probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote()
                for n in live_nodes()])
chosen, line = choose_concurrency(space)
cifar = dataclasses.replace(space, proxy=space.proxy.model_copy(update={"dataset": "cifar10", "root": missing}))
try:
    check_nodes(cifar)
    error = None
except RKSearchError as e:
    error = str(e)
print(json.dumps({"seen": seen, "concurrency": chosen.search.concurrency, "line": line, "error": error,
                  "nodes": [n["NodeID"][:8] for n in live_nodes()]}))
sys.stdout.flush()
from rksearch.cli import main
main(run)  # the search, on the Ray this process joined (a cold start and a connect less than a process of its own)
"""


@MANY_PROCESSES
@pytest.mark.slow
def test_two_nodes_with_gpus(tmp_path: Path, demo_space) -> None:
    """Two nodes of 1 CPU and 1 (pretend) GPU each, trials of 1 CPU and 1 GPU (the demo trains on
    the CPU): auto runs 2 at once, one on each node; the driver's RKSEARCH_* variables reach every
    node; a data root missing on a node fails the check naming the node and the path. The search
    runs in the probe's process, after the probe: a cold start and a connect less. (Fractions of a
    GPU are counted in test_auto_concurrency_is_what_the_gpus_or_cpus_hold; trials of 0.5 GPU here
    ran 4 worker processes where 2 show the same, at about 4 s of CPU each.)"""
    space = demo_space("gpus", search__trials=4, search__concurrency="auto", search__scheduler="none",
                       search__resources={"cpu": 1, "gpu": 1})
    missing = tmp_path / "no-such-folder"
    node = {"num_cpus": 1, "num_gpus": 1}
    run = ["run", str(space), "--out", str(tmp_path)]
    with two_node_cluster(tmp_path, head=node, node=node) as address:
        probe = subprocess.run([sys.executable, "-c", PROBE, address, str(space), str(missing), *run,
                                "--address", address], capture_output=True, text=True, timeout=600,
                               env={**os.environ, "RKSEARCH_PROBE": "yes"})
        assert probe.returncode == 0, probe.stderr[-3000:]
    lines = probe.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith('{"seen": '))
    got, stdout = json.loads(lines[at]), "\n".join(lines[at + 1:])  # the probe's findings, then the search's
    assert got["seen"] == ["yes", "yes"]  # a variable only the driver had
    assert got["concurrency"] == 2 and got["line"] == (
        "concurrency auto: 2 trials at once (2 GPUs at 1 GPU per trial on 2 nodes)")
    assert got["error"].startswith(f"{space}: proxy.root: on node ") and f"not in {missing} there" in got["error"]
    assert any(f"({n}): " in got["error"] for n in got["nodes"])
    assert "concurrency auto: 2 trials at once (2 GPUs at 1 GPU per trial on 2 nodes)" in stdout
    assert "checked 2 nodes" in stdout
    done = [t for t in load(tmp_path / "gpus").trials if t.user_attrs.get("outcome") == "trained"]
    assert len(done) == 4 and len({t.user_attrs["node"] for t in done}) == 2
