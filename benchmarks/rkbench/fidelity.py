"""Rank fidelity from RK-Bench's table: each epoch budget and each zero-cost score against the final accuracy.

What ``rksearch calibrate`` measures, read from the table instead of trained: the reference is
each spec's final-epoch accuracy averaged over the table's seeds; epoch e's ranking (the seed
mean, and each seed alone) and every zero-cost score of the cache (``zerocost.py``) are compared
with it by :mod:`rksearch.proxies.fidelity`'s own functions (Kendall tau-b, Spearman rho, top-k
overlap, the seed-to-seed noise floor). Added here: a percentile bootstrap 95 % interval over the
specs (resampled with replacement), a Fisher-z interval for Spearman's rho, and each seed's epoch
e against the OTHER seeds' final mean (at the last epoch a seed compared with a mean that holds
it is flattered; against the others it is the honest single-seed number).

    python benchmarks/rkbench/fidelity.py benchmarks/rkbench/table.csv \
        --zerocost benchmarks/rkbench/zerocost.csv --out benchmarks/results/rkbench_fidelity.json
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
for path in (ROOT, Path(__file__).resolve().parent):  # the package, and zerocost.py beside this file
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from rksearch.core.errors import RKSearchError  # noqa: E402
from rksearch.proxies.fidelity import as_dict, budget_fidelity, column_means, score_fidelity  # noqa: E402
from rksearch.proxies.ranking import kendall_tau, spearman_rho  # noqa: E402

RESAMPLES = 1000


def bootstrap(stat, a: list[float], b: list[float], *, resamples: int = RESAMPLES, seed: int = 0) -> list[float]:
    """Percentile bootstrap 95 % interval of ``stat(a, b)`` over the specs."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        i = rng.integers(0, len(x), len(x))
        values.append(stat(x[i], y[i]))
    return [float(v) for v in np.nanquantile(values, [0.025, 0.975])]


def paired_difference(a: list[float], b: list[float], reference: list[float], *, resamples: int = RESAMPLES,
                      seed: int = 0) -> list[float]:
    """Percentile bootstrap 95 % interval of rho(a, reference) - rho(b, reference), the same specs resampled for both."""
    x, y, r = (np.asarray(v, dtype=float) for v in (a, b, reference))
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        i = rng.integers(0, len(x), len(x))
        values.append(spearman_rho(x[i], r[i]) - spearman_rho(y[i], r[i]))
    return [float(v) for v in np.nanquantile(values, [0.025, 0.975])]


def fisher_rho(rho: float, n: int) -> list[float]:
    """Fisher-z 95 % interval of Spearman's rho, with Fieller et al.'s variance 1.06 / (n - 3)."""
    z, half = math.atanh(rho), 1.96 * math.sqrt(1.06 / (n - 3))
    return [math.tanh(z - half), math.tanh(z + half)]


def report(table_path: Path, zerocost: Path | None, k: int) -> dict:
    from rksearch.search.replay import load_table

    table = load_table(table_path, field="table")
    names = sorted(table.curves)
    seeds = sorted(set.intersection(*(set(s) for s in table.curves.values())))
    epochs = table.epochs

    def grid(e: int, which: str) -> list[list[float]]:  # [seed][spec] after epoch e
        return [[getattr(table.curves[n][s], which)[e - 1] for n in names] for s in seeds]

    final = grid(epochs, "accuracy")
    reference = column_means(final)
    out: dict = {"table": str(table_path), "specs": len(names), "seeds": seeds, "top_k": k, "epochs": []}
    for e in range(1, epochs + 1):
        acc = grid(e, "accuracy")
        f = budget_fidelity(f"{e} ep", e, 1.0, acc, grid(e, "cost"), reference, k)
        mean = column_means(acc)
        others = [column_means([final[j] for j in range(len(seeds)) if j != i]) for i in range(len(seeds))]
        out["epochs"].append({
            **as_dict(f),
            "tau_ci95": bootstrap(kendall_tau, mean, reference), "rho_ci95": bootstrap(spearman_rho, mean, reference),
            "rho_seeds": [spearman_rho(row, reference) for row in acc],
            "tau_vs_other_seeds": [kendall_tau(row, o) for row, o in zip(acc, others)],
            "rho_vs_other_seeds": [spearman_rho(row, o) for row, o in zip(acc, others)],
        })
    if zerocost is not None:
        from zerocost import read_cache

        rows = {r["name"]: r for r in read_cache(zerocost)}
        missing = [n for n in names if n not in rows]
        if missing:
            raise RKSearchError(f"{len(missing)} specs of the table are not in the cache (e.g. {missing[0]})",
                                source=zerocost)
        scores = [c for c in next(iter(rows.values())) if f"{c}_seconds" in next(iter(rows.values()))]
        out["scores"] = []
        params = [float(rows[n]["params"]) for n in names]
        for s in scores:
            values = [float(rows[n][s]) for n in names]
            f = score_fidelity(s, values, [float(rows[n][f"{s}_seconds"]) for n in names], reference)
            out["scores"].append({**as_dict(f), "rho_ci95": bootstrap(spearman_rho, values, reference),
                                  "rho_fisher95": fisher_rho(f.rho, len(names)),
                                  "tau_ci95": bootstrap(kendall_tau, values, reference),
                                  "rho_seeds": [spearman_rho(values, row) for row in final],
                                  "rho_minus_params_ci95": paired_difference(values, params, reference)})
    return out


def markdown(r: dict) -> str:
    iv = lambda v: f"[{v[0]:.3f}, {v[1]:.3f}]"  # noqa: E731
    lines = [f"{r['specs']} specs, seeds {r['seeds']}; reference: final-epoch accuracy, mean over seeds", "",
             "| epoch | rho (seed mean) [95 % CI] | tau (seed mean) [95 % CI] | tau per seed vs mean | "
             "tau per seed vs other seed's final | rho per seed vs other seed's final | seed-vs-seed tau | "
             f"top-{r['top_k']} overlap | CPU s per run |", "|" + "---|" * 9]
    for e in r["epochs"]:
        per = lambda xs: ", ".join(f"{x:.3f}" for x in xs)  # noqa: E731
        lines.append(f"| {e['epochs']} | {e['rho']:.3f} {iv(e['rho_ci95'])} | {e['tau']:.3f} {iv(e['tau_ci95'])} | "
                     f"{per(e['tau_seeds'])} | {per(e['tau_vs_other_seeds'])} | {per(e['rho_vs_other_seeds'])} | "
                     f"{e['noise_tau']:.3f} | {e['top_k']:.2f} | {e['seconds_per_run']:.1f} |")
    if "scores" in r:
        lines += ["", "| score | Spearman rho [bootstrap 95 %] | Fisher 95 % | Kendall tau [bootstrap 95 %] | "
                  "rho vs seed 0 / seed 1 alone | rho - params' rho [paired bootstrap 95 %] | s per spec |",
                  "|" + "---|" * 7]
        params_rho = next(s["rho"] for s in r["scores"] if s["score"] == "params")
        for s in r["scores"]:
            lines.append(f"| {s['score']} | {s['rho']:.3f} {iv(s['rho_ci95'])} | {iv(s['rho_fisher95'])} | "
                         f"{s['tau']:.3f} {iv(s['tau_ci95'])} | {' / '.join(f'{x:.3f}' for x in s['rho_seeds'])} | "
                         f"{s['rho'] - params_rho:+.3f} {iv(s['rho_minus_params_ci95'])} | "
                         f"{s['seconds_per_spec']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", type=Path)
    parser.add_argument("--zerocost", type=Path, default=None, help="the cache of zerocost.py")
    parser.add_argument("--top-k", type=int, default=24, help="k of the top-k overlap (default 24: a tenth of RK-Bench)")
    parser.add_argument("--out", type=Path, default=None, help="a JSON report")
    args = parser.parse_args(argv)
    try:
        r = report(args.table, args.zerocost, args.top_k)
    except RKSearchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(markdown(r))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
