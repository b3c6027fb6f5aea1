"""Helpers several test folders share: a CLI call in this process, a reader of a running study,
a folder snapshot, the tiny replay space with its synthetic table, and a two-node Ray cluster."""
from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import optuna
import pytest
import yaml

from rksearch.cli import main
from rksearch.models.registry import count
from rksearch.space.search_space import load_space

ROOT = Path(__file__).resolve().parents[1]

MANY_PROCESSES = pytest.mark.xdist_group("many_processes")
"""Tests that start a Ray of their own or several processes that each train, and the longest
whole searches in this process's Ray: ``make test`` (``--dist loadgroup``) runs them one after
another on one worker, beside the other worker's lighter tests, not two at once on the 2 cores
(each then took up to 3x as long)."""
GOOD_SPACE = (ROOT / "search_spaces" / "demo.yaml").read_text()  # the demo space: the base of the bad-file cases

def cli(args: list[str], capsys) -> tuple[int, str, str]:
    """``rksearch ARGS`` in this process: exit status, stdout, stderr."""
    try:
        main(args)
        code = 0
    except SystemExit as e:
        code = e.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def load(study_dir: Path, name: str | None = None) -> optuna.Study:
    """The study as a reader beside a running search sees it (``name``: another study of the
    folder's database, such as ``<folder>/baselines``). It never creates the database or its
    tables: a reader that did raced the search's own creation of them (UNIQUE constraint failed:
    alembic_version), which killed the search in test_kill_the_driver_then_resume."""
    db = study_dir / "optuna.db"
    if not db.is_file():
        raise FileNotFoundError(db)
    storage = optuna.storages.RDBStorage(f"sqlite:///{db}", skip_table_creation=True)
    return optuna.load_study(study_name=name or study_dir.name, storage=storage)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


EPOCHS = 3


def write_space(folder: Path, trials: int = 16, **changes) -> Path:
    data = {"name": "tiny", "network": {"stem": "cifar", "in_channels": 3, "num_classes": 10, "input_size": 32},
            "periods": {"count": 3, "method": ["erk", "irk"], "stages": [2, 3], "steps": 1, "growth_rate": 4, "m": 1},
            "objectives": ["accuracy", "flops"],
            "proxy": {"dataset": "demo", "epochs": EPOCHS, "device": "cpu"},
            "search": {"sampler": "tpe", "trials": trials, "concurrency": 2, "seed": 0,
                       "scheduler": {"kind": "asha", "grace_epochs": 1, "reduction_factor": 2},
                       "resources": {"cpu": 1, "gpu": 0}},
            "reference_point": {"accuracy": 0.0, "flops": "10M"}}
    for key, value in changes.items():  # section__field=value sets one field; section=value a whole section
        section, _, field = key.partition("__")
        if field:
            data[section][field] = value
        else:
            data[section] = value
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def accuracy(flops: int, epoch: int, seed: int) -> float:
    return round(0.2 + 0.5 * (1 - math.exp(-flops / 3e6)) * epoch / EPOCHS + 0.02 * seed, 4)


def write_table(folder: Path, space_path: Path, *, drop: int = 0, epochs: int = EPOCHS) -> Path:
    """Every spec of the space at seeds 0 and 1 (less the first ``drop`` specs)."""
    space = load_space(space_path)
    rows = []
    for i, params in enumerate(space.enumerate_params()):
        if i < drop:
            continue
        spec = space.spec_from_params(params)
        c = count(spec)
        for seed in (0, 1):
            for e in range(1, epochs + 1):
                rows.append({"name": spec.name, "seed": seed, "epoch": e, "val_acc": accuracy(c.flops, e, seed),
                             "seconds": round(c.flops / 1e6 * e, 3), "flops": c.flops, "params": c.params})
    path = folder / "table.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path



TWO_NODES = """
import json, sys
from ray.cluster_utils import Cluster

head, node = json.loads(sys.argv[1]), json.loads(sys.argv[2])
cluster = Cluster(initialize_head=True, connect=False, head_node_args=head)
try:
    cluster.add_node(**node)
    cluster.wait_for_nodes()
    print(cluster.address, flush=True)
    sys.stdin.read()  # up until the test closes stdin
finally:
    cluster.shutdown()
"""
"""A two-node Ray cluster, held by a process of its own: ``Cluster.shutdown`` resets the Ray state
of the process it runs in (its internal KV), which would break the session's Ray in this one."""


@contextlib.contextmanager
def two_node_cluster(folder: Path, head: dict[str, Any] | None = None,
                     node: dict[str, Any] | None = None) -> Iterator[str]:
    """The address of a local two-node Ray cluster, each node ``Cluster.add_node``'s arguments
    (``num_cpus``, ``num_gpus``: a GPU count no process needs a real card for); shut down, and its
    process group killed, when the block ends."""
    log = folder / "cluster.log"  # a file: a full pipe would stall the cluster
    args = [json.dumps(head or {"num_cpus": 1}), json.dumps(node or {"num_cpus": 1})]
    with log.open("w") as sink:
        holder = subprocess.Popen([sys.executable, "-c", TWO_NODES, *args], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=sink, text=True, start_new_session=True)
    try:
        address = holder.stdout.readline().strip()
        assert address, log.read_text()[-3000:]
        yield address
    finally:
        holder.stdin.close()
        try:
            holder.wait(timeout=120)
        finally:
            try:
                os.killpg(holder.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
