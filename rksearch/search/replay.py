"""A tabulated benchmark as a trial backend: a search replayed against per-epoch learning curves.

``rksearch run SPACE.yaml --replay TABLE.csv`` runs the real search stack (samplers, ASHA, the
study's bookkeeping and outputs) with a trial that reads its validation accuracy after every
epoch from the table instead of training (RK-Bench, ``benchmarks/rkbench/``; the idea of Syne
Tune's simulated tabular backend and NAS-Bench-201). A table has one row per spec x seed x epoch:
``name``, ``seed``, ``epoch``, ``val_acc`` (0 to 1), ``seconds`` (cumulative up to that epoch),
``flops``, ``params``; a ``cpu_seconds`` column, where present, is the cost instead (the CPU time
of the training, which other processes sharing the build machine do not inflate).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

from rksearch.models.registry import count
from rksearch.core.errors import RKSearchError
from rksearch.search.trial import measured_at_sampling

COLUMNS = ("name", "seed", "epoch", "val_acc", "seconds", "flops", "params")
REPLAYABLE = ("accuracy", "flops", "params", "latency")  # the table answers the first three, the searcher latency
# (rksearch.search.latency) at sampling time; throughput needs training on the device
MISSING_SHOWN = 3


@dataclass(frozen=True)
class Curve:
    """One spec trained at one seed: accuracy and cumulative cost after epochs 1..n."""

    accuracy: tuple[float, ...]
    cost: tuple[float, ...]


@dataclass(frozen=True)
class Table:
    """A tabulated benchmark, read once: curves by spec name and seed, and each spec's counts."""

    path: Path
    curves: dict[str, dict[int, Curve]]
    counts: dict[str, tuple[int, int]]  # name -> (flops, params) of the full spec
    cost_column: str

    @property
    def epochs(self) -> int:
        """Epochs every curve of the table has."""
        return min(len(c.accuracy) for seeds in self.curves.values() for c in seeds.values())

    def curve(self, name: str, seed: int) -> Curve:
        return self.curves[name][seed]

    def seed_for(self, name: str, draw: str) -> int:
        """The table seed a trial replays: one of the spec's seeds, drawn reproducibly from ``draw``."""
        seeds = sorted(self.curves[name])
        return random.Random(draw).choice(seeds)

    def check_spec(self, name: str, flops: int, params: int) -> str | None:
        """Why the table cannot answer for this spec (None when it can)."""
        if name not in self.counts:
            return f"spec {name} is not in the table {self.path.name}"
        if self.counts[name] != (flops, params):
            have = self.counts[name]
            return (f"spec {name} has {flops:,} FLOPs and {params:,} params, the table's {name} {have[0]:,} and "
                    f"{have[1]:,}: another network under the same name (a growth rate the name does not carry?)")
        return None


def load_table(path: str | Path, *, field: str = "--replay") -> Table:
    """Read and check a table (cached: a Ray worker reads it once for all its trials)."""
    return _load(str(Path(path).resolve()), field)


@lru_cache(maxsize=4)
def _load(path: str, field: str) -> Table:
    import numpy as np
    import pandas as pd

    from rksearch.arch.names import parse_name

    file = Path(path)
    if not file.is_file():
        raise RKSearchError("no such table (a CSV of name, seed, epoch, val_acc, seconds, flops, params)",
                            source=file, field=field)
    try:
        frame = pd.read_csv(file)
    except Exception as e:  # noqa: BLE001  (pandas raises many types; all mean an unreadable table)
        raise RKSearchError(f"not a readable CSV table: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
                            source=file, field=field) from None
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise RKSearchError(f"no column {', '.join(missing)}; a table needs {', '.join(COLUMNS)}", source=file,
                            field=field)
    if frame.empty:
        raise RKSearchError("holds no rows", source=file, field=field)
    cost = "cpu_seconds" if "cpu_seconds" in frame.columns else "seconds"
    for c in ("seed", "epoch", "val_acc", cost, "flops", "params"):
        values = pd.to_numeric(frame[c], errors="coerce")
        bad = ~np.isfinite(values.to_numpy(dtype=float))
        if bad.any():
            row = int(bad.argmax())
            raise RKSearchError(f"row {row + 2}: {c} {frame[c].iloc[row]!r} is not a finite number", source=file,
                                field=field)
        frame[c] = values
    if not frame["val_acc"].between(0, 1).all():
        row = int((~frame["val_acc"].between(0, 1)).idxmax())
        raise RKSearchError(f"row {row + 2}: val_acc {frame['val_acc'].iloc[row]} is not between 0 and 1",
                            source=file, field=field)
    names = frame["name"].astype(str)
    for name in names.unique():
        try:
            parse_name(name)
        except RKSearchError as e:
            raise RKSearchError(f"name {name!r} is not a spec name: {e.message}", source=file, field=field) from None
    curves: dict[str, dict[int, Curve]] = {}
    counts: dict[str, tuple[int, int]] = {}
    for (name, seed), rows in frame.assign(name=names).groupby(["name", "seed"], sort=True):
        rows = rows.sort_values("epoch")
        if list(rows["epoch"]) != list(range(1, len(rows) + 1)):
            raise RKSearchError(f"{name} seed {int(seed)}: epochs {list(map(int, rows['epoch']))}, not 1..n",
                                source=file, field=field)
        flops, params = int(rows["flops"].iloc[0]), int(rows["params"].iloc[0])
        if counts.setdefault(name, (flops, params)) != (flops, params):
            raise RKSearchError(f"{name}: two different FLOPs/params counts (two specs under one name)",
                                source=file, field=field)
        curves.setdefault(name, {})[int(seed)] = Curve(tuple(map(float, rows["val_acc"])),
                                                       tuple(map(float, rows[cost])))
    return Table(file, curves, counts, cost)


def check_replayable(space: Any, table: Table, *, limit: int = 100_000) -> None:
    """Before a replayed search starts: the space's objectives are ones the table answers, its proxy
    asks for no more epochs than the table has, and (for a space of at most ``limit`` specs)
    every feasible spec of the space is in the table."""
    source = space.source
    others = [o for o in space.objectives if o not in REPLAYABLE]
    if others:
        raise RKSearchError(f"a replayed search answers accuracy, flops, params (from the table) and latency "
                            f"(measured), not {', '.join(others)}", source=source, field="objectives")
    if space.proxy.epochs > table.epochs:
        raise RKSearchError(f"{space.proxy.epochs} epochs, but the table {table.path.name} holds {table.epochs}",
                            source=source, field="proxy.epochs")
    if space.size() > limit:
        return  # checked trial by trial instead
    missing, wrong, feasible = [], [], 0
    for params in space.enumerate_params():
        spec = space.spec_from_params(params)
        if any(v > 0 for v in space.violations(spec)):
            continue
        feasible += 1
        c = count(spec)
        why = table.check_spec(spec.name, c.flops, c.params)
        if why is not None:
            (missing if spec.name not in table.counts else wrong).append(spec.name if spec.name not in table.counts else why)
    if wrong:
        raise RKSearchError(wrong[0], source=table.path, field="--replay")
    if missing:
        more = f" (and {len(missing) - MISSING_SHOWN} more)" if len(missing) > MISSING_SHOWN else ""
        raise RKSearchError(f"{len(missing)} of the {feasible} feasible specs of space {space.name} are not in the "
                            f"table: {', '.join(missing[:MISSING_SHOWN])}{more}", source=table.path, field="--replay")


def replay_results(config: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """What a replayed trial reports, epoch by epoch (the last one ``final``): the table's accuracy
    and cumulative cost at the seed the trial draws; one failed result where the table has no
    curve for the spec. Shared by the Ray trial and the in-process simulator."""
    table = load_table(config["replay"])
    spec, epochs = config["spec_name"], config["proxy"]["epochs"]
    flops, params = config["counts"]
    static = {"flops": flops, "params": params, "trained_flops": flops, "trained_params": params,
              **measured_at_sampling(config)}
    why = table.check_spec(spec, flops, params)
    if why is not None:
        yield {**static, "accuracy": 0.0, "epoch": 0, "failed": True, "fail_reason": why}
        return
    seed = table.seed_for(spec, config["replay_draw"])
    curve = table.curve(spec, seed)
    for e in range(1, epochs + 1):
        m = {**static, "accuracy": curve.accuracy[e - 1], "epoch": e, "epochs": e, "seconds": curve.cost[e - 1],
             "table_seed": seed}
        yield {**m, "final": True} if e == epochs else m


def replay_trial(config: dict[str, Any]) -> None:
    """One Tune trial replayed: the table's accuracy after every epoch, its cost as the seconds, and
    where it ran (host and Ray node, as a trained trial records them)."""
    import socket

    import ray
    from ray import tune

    where = {"hostname": socket.gethostname(), "node": ray.get_runtime_context().get_node_id()}
    for result in replay_results(config):
        tune.report({**result, **where})
