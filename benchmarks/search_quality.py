"""Search quality on a tabulated benchmark: which strategy finds the best accuracy/FLOPs front for the same cost.

Every strategy (sampler x ASHA or not) is replayed many times (one seed each) against the table
by the in-process simulator (``rksearch.search.simulate``: the real searcher and ASHA, the table's
curves and costs). The score of a search at cost c is the hypervolume of the front of the
COMPLETE trials it had finished by c, measured with the seed-averaged final accuracies of those
specs (the search saw one noisy seed; the judge uses the mean), divided by the hypervolume of the
table's true front. Reported per strategy at 10, 25, 50 and 100 % of the budget: the
interquartile mean (IQM) over seeds and a bootstrap 95 % interval of it.

    python benchmarks/search_quality.py search_spaces/rkbench.yaml benchmarks/rkbench/table.csv \
        --seeds 20 --budget 0.5 --out benchmarks/results/search_quality
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout: the package beside it
    sys.path.insert(0, str(ROOT))

from rksearch.core.errors import RKSearchError  # noqa: E402

FRACTIONS = (0.10, 0.25, 0.50, 1.00)
STRATEGIES = ("random", "random+asha", "tpe", "tpe+asha", "nsga2", "nsga2+asha")


# -- statistics (hand-checked in tests/benchmarks/test_search_quality.py) -------------------------------

def iqm(values: np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50 % (scipy's trim_mean, a quarter cut each side)."""
    from scipy.stats import trim_mean

    return float(trim_mean(np.asarray(values, dtype=float), 0.25))


def bootstrap_ci(values: np.ndarray, stat=iqm, *, resamples: int = 2000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat`` over the seeds (resampled with replacement)."""
    v = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    stats = np.array([stat(v[rng.integers(0, len(v), len(v))]) for _ in range(resamples)])
    lo, hi = np.quantile(stats, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def normalized_hv(points: np.ndarray, true_hv: float, reference: tuple[float, float]) -> float:
    """Hypervolume of (accuracy, FLOPs) ``points`` against ``reference``, over the true front's."""
    from rksearch.analysis.pareto import hypervolume

    if len(points) == 0:
        return 0.0
    return hypervolume(points, reference, ("maximize", "minimize")) / true_hv


# -- the judge ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Judge:
    """The table's truth: each spec's seed-averaged final accuracy and FLOPs, the true front's
    hypervolume, the reference point, and the cost of training the whole table once."""

    mean_accuracy: dict[str, float]
    flops: dict[str, float]
    reference: tuple[float, float]
    true_hv: float
    table_cost: float

    @classmethod
    def of(cls, table, epochs: int, reference: tuple[float, float]) -> "Judge":
        from rksearch.analysis.pareto import hypervolume

        mean = {n: float(np.mean([c.accuracy[epochs - 1] for c in seeds.values()])) for n, seeds in table.curves.items()}
        cost = sum(float(np.mean([c.cost[epochs - 1] for c in seeds.values()])) for seeds in table.curves.values())
        points = np.array([(mean[n], table.counts[n][0]) for n in mean])
        return cls(mean, {n: float(table.counts[n][0]) for n in mean}, reference,
                   hypervolume(points, reference, ("maximize", "minimize")), cost)

    def score(self, names: list[str]) -> float:
        points = np.array([(self.mean_accuracy[n], self.flops[n]) for n in set(names)]).reshape(-1, 2)
        return normalized_hv(points, self.true_hv, self.reference)


def curve(simulated, judge: Judge, checkpoints: list[float]) -> list[float]:
    """The search's score at each cost of ``checkpoints``: its COMPLETE trials finished by then."""
    names = {t.number: t.user_attrs.get("name") for t in simulated.study.trials if t.state.name == "COMPLETE"}
    out, spent, done = [], 0.0, []
    order = iter(simulated.costs)
    pending = next(order, None)
    for c in checkpoints:
        while pending is not None and spent + pending[1] <= c:
            spent += pending[1]
            if pending[0] in names:
                done.append(names[pending[0]])
            pending = next(order, None)
        out.append(judge.score(done))
    return out


# -- the benchmark -----------------------------------------------------------------------------

def strategy_space(space, strategy: str):
    import dataclasses

    sampler, _, asha = strategy.partition("+")
    scheduler = space.search.scheduler.model_copy(update={"kind": "asha" if asha else "none"})
    return dataclasses.replace(space, search=space.search.model_copy(update={"sampler": sampler, "scheduler": scheduler}))


def run(args: argparse.Namespace) -> dict:
    from rksearch.search.replay import check_replayable, load_table
    from rksearch.search.simulate import simulate
    from rksearch.space.search_space import load_space

    space = load_space(args.space)
    table = load_table(args.table, field="table")
    if args.table_seeds:  # e.g. a table still being built: the training seeds every spec has
        import dataclasses

        curves = {n: {k: c for k, c in seeds.items() if k in args.table_seeds} for n, seeds in table.curves.items()}
        missing = sorted(n for n, seeds in curves.items() if not seeds)
        if missing:
            raise RKSearchError(f"{len(missing)} specs have none of the training seeds {args.table_seeds} "
                                f"(e.g. {missing[0]})", field="--table-seeds")
        table = dataclasses.replace(table, curves=curves)
    check_replayable(space, table)
    epochs = space.proxy.epochs
    ref = (space.reference_point["accuracy"], space.reference_point["flops"])
    judge = Judge.of(table, epochs, ref)
    budget = args.budget * judge.table_cost
    checkpoints = [f * budget for f in FRACTIONS]
    fine = list(np.linspace(0, budget, 41)[1:])
    results: dict[str, dict] = {}
    for strategy in args.strategies:
        s_space = strategy_space(space, strategy)
        scores, fine_scores, started = [], [], time.perf_counter()
        for seed in range(args.seeds):
            sim = simulate(s_space, table, seed=seed, budget=budget)
            scores.append(curve(sim, judge, checkpoints))
            fine_scores.append(curve(sim, judge, fine))
        scores, fine_scores = np.array(scores), np.array(fine_scores)
        results[strategy] = {
            "at": {f"{int(100 * f)}%": {"iqm": iqm(scores[:, i]), "ci95": bootstrap_ci(scores[:, i])}
                   for i, f in enumerate(FRACTIONS)},
            "curve_iqm": [iqm(fine_scores[:, i]) for i in range(len(fine))],
            "curve_ci95": [bootstrap_ci(fine_scores[:, i], resamples=500) for i in range(len(fine))],
            "seconds": time.perf_counter() - started,
        }
        at = results[strategy]["at"]
        print(f"{strategy:>12}: " + "  ".join(f"{k} {v['iqm']:.3f} [{v['ci95'][0]:.3f}, {v['ci95'][1]:.3f}]"
                                               for k, v in at.items())
              + f"  ({results[strategy]['seconds']:.0f} s)", flush=True)
    return {"space": str(args.space), "table": str(args.table), "table_seeds": args.table_seeds,
            "specs": len(table.curves), "seeds": args.seeds,
            "budget_seconds": budget, "budget_of_table": args.budget, "table_cost_seconds": judge.table_cost,
            "reference": ref, "cost_axis": [c / judge.table_cost for c in fine], "strategies": results}


def figure(report: dict, path: Path) -> None:
    """Score against cost (as a share of training the whole table), IQM with 95 % bands."""
    import plotly.graph_objects as go

    fig = go.Figure()
    x = [100 * c for c in report["cost_axis"]]
    for name, r in report["strategies"].items():
        lo, hi = zip(*r["curve_ci95"])
        fig.add_trace(go.Scatter(x=x + x[::-1], y=list(hi) + list(lo)[::-1], fill="toself", opacity=0.2,
                                 line={"width": 0}, showlegend=False, name=name))
        fig.add_trace(go.Scatter(x=x, y=r["curve_iqm"], mode="lines", name=name))
    fig.update_layout(title=f"{Path(report['space']).stem}: normalized hypervolume vs cost ({report['seeds']} seeds)",
                      xaxis_title="cost (% of training the whole table once)",
                      yaxis_title="hypervolume / true front's (IQM, 95 % CI)")
    fig.write_html(path, include_plotlyjs="directory")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("space", type=Path)
    parser.add_argument("table", type=Path)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--budget", type=float, default=0.5, help="total cost, as a share of training the whole table")
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--out", type=Path, default=None, help="folder for report.json and figure.html")
    parser.add_argument("--table-seeds", type=int, nargs="+", default=None,
                        help="use only these training seeds of the table (default: all)")
    args = parser.parse_args(argv)
    if args.seeds < 2 or not 0 < args.budget <= 10 or not math.isfinite(args.budget):
        print("error: --seeds must be at least 2 and --budget in (0, 10]", file=sys.stderr)
        return 2
    try:
        report = run(args)
    except RKSearchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "report.json").write_text(json.dumps(report, indent=1))
        figure(report, args.out / "figure.html")
        print(f"wrote {args.out / 'report.json'} and {args.out / 'figure.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
