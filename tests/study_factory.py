"""Real Optuna studies in the study-folder format ``rksearch run`` writes, for the tests.

Only the accuracies are synthetic (a noisy rising function of FLOPs, so fronts look like real
ones); specs, counts, states, attrs, params and the SQLite/WAL storage are the real thing.
"""
from __future__ import annotations

import math
import random
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial
from sqlalchemy.pool import NullPool

from rksearch import RKNetSpec, count
from rksearch.core.objectives import OBJECTIVES

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = "name: {name}\nobjectives: [{objectives}]\n"


def random_spec(rng: random.Random, periods: int = 3) -> RKNetSpec:
    ps = []
    for _ in range(periods):
        method = rng.choice(["erk", "irk"])
        ps.append({"method": method, "stages": rng.randint(2, 6), "steps": rng.randint(1, 2),
                   "growth_rate": rng.choice([12, 24, 36]), "m": rng.choice([1, 2]) if method == "erk" else 1})
    return RKNetSpec.from_dict({"bottleneck": rng.random() < 0.3, "periods": ps})


def _params(spec: RKNetSpec) -> tuple[dict, dict]:
    params, dists = {"periods": len(spec.periods)}, {"periods": CategoricalDistribution([2, 3, 4])}
    for i, p in enumerate(spec.periods):
        for f, choices in (("method", ["erk", "irk"]), ("stages", [2, 3, 4, 5, 6]), ("steps", [1, 2]),
                           ("growth_rate", [12, 24, 36]), ("m", [1, 2])):
            params[f"p{i}.{f}"] = getattr(p, f)
            dists[f"p{i}.{f}"] = CategoricalDistribution(choices)
    params["bottleneck"], dists["bottleneck"] = spec.bottleneck, CategoricalDistribution([False, True])
    return params, dists


def storage(db: Path) -> optuna.storages.RDBStorage:
    """The storage as the search engine opens it: SQLite in WAL mode."""
    db.parent.mkdir(parents=True, exist_ok=True)

    def connect() -> sqlite3.Connection:
        con = sqlite3.connect(db, timeout=60, check_same_thread=False)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")  # WAL's usual setting: durable at checkpoints, fast commits
        return con

    # no pooled connection outlives a write: once made, the folder is at rest (no -wal/-shm), as a
    # finished search leaves it, whenever the garbage collector runs
    return optuna.storages.RDBStorage(f"sqlite:///{db}", engine_kwargs={"creator": connect, "poolclass": NullPool})


def trial_for(spec: RKNetSpec, number: int, state: TrialState, objectives: Sequence[str], rng: random.Random,
              accuracy: float | None = None, flops: float | None = None) -> optuna.trial.FrozenTrial:
    c = count(spec)
    flops = float(c.flops) if flops is None else flops
    if accuracy is None:
        accuracy = min(0.95, max(0.1, 0.35 + 0.12 * math.log10(flops / 1e6) + rng.gauss(0, 0.03)))
    attrs = {"spec": spec.to_yaml(), "name": spec.name, "flops": flops, "params": c.params,
             "trained_flops": flops / 4, "trained_params": c.params // 4, "accuracy": accuracy,
             "epochs": 3, "images_per_s": 1e12 / flops, "seconds": 1.5, "ray_trial_id": f"t{number:05d}", "node": "n0"}
    measured = {"accuracy": accuracy, "flops": flops, "params": float(c.params), "latency": flops / 1e9,
                "throughput": attrs["images_per_s"]}
    values = None
    if state == TrialState.PRUNED:
        attrs.update(epochs=1, accuracy=accuracy * 0.6)
    elif state == TrialState.FAIL:
        attrs = {"spec": attrs["spec"], "name": spec.name, "fail_reason": "CUDA out of memory (synthetic)"}
    elif state == TrialState.COMPLETE:
        values = [measured[o] for o in objectives]
    params, dists = _params(spec)
    return create_trial(state=state, values=values, params=params, distributions=dists, user_attrs=attrs)


def make_study(root: Path, name: str = "demo", *, n: int = 24, seed: int = 0,
               objectives: Sequence[str] = ("accuracy", "flops"), reference_point: dict | None = None,
               points: Sequence[tuple[float, float]] | None = None, pruned: int = 3, failed: int = 2,
               proxy: dict | None = None) -> Path:
    """A study folder ``root/name`` with ``n`` trials (``points``: explicit (accuracy, flops) pairs;
    ``proxy``: the recorded proxy, default a demo proxy that records no validation size)."""
    rng = random.Random(seed)
    path = root / name
    study = optuna.create_study(study_name=name, storage=storage(path / "optuna.db"),
                                directions=[OBJECTIVES[o].direction for o in objectives])
    study.set_user_attr("objectives", list(objectives))
    study.set_user_attr("space", SPACE.format(name=name, objectives=", ".join(objectives)))
    study.set_user_attr("proxy", proxy if proxy is not None else {"dataset": "demo", "epochs": 3, "width": 0.5})
    if reference_point is not None:
        study.set_user_attr("reference_point", reference_point)
    (path / "space.yaml").write_text(SPACE.format(name=name, objectives=", ".join(objectives)))
    pts = list(points) if points is not None else [None] * n
    states = [TrialState.COMPLETE] * len(pts) + [TrialState.PRUNED] * pruned + [TrialState.FAIL] * failed
    order = list(range(len(states)))
    rng.shuffle(order)
    for number, k in enumerate(order):
        p = pts[k] if k < len(pts) else None
        acc, fl = p if p is not None else (None, None)
        study.add_trial(trial_for(random_spec(rng), number, states[k], objectives, rng, acc, fl))
    return path
