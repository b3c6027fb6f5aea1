"""Search quality on a tabulated benchmark: which strategy finds the best accuracy/FLOPs front for the same cost.

Every strategy (sampler x ASHA or not) is replayed many times (one seed each) against the table
by the in-process simulator (``rksearch.search.simulate``: the real searcher and ASHA, the table's
curves and costs). The score of a search at cost c is the hypervolume of the front of the
COMPLETE trials it had finished by c, measured with the seed-averaged final accuracies of those
specs (the search saw one noisy seed; the judge uses the mean), divided by the hypervolume of the
table's true front. Reported per strategy at 10, 25, 50 and 100 % of the budget: the
interquartile mean (IQM) over seeds and a bootstrap 95 % interval of it.

A strategy is ``SAMPLER[+asha][+zc[N]]``: the space's search with that sampler, ASHA or no
scheduler, and ``zc`` zero-cost pre-screening (``search.prescreen``: ``--zc-score``,
``--zc-candidates``) of every trial, or ``zcN`` of the first N only (a warm start, after which the
sampler proposes). A pre-screen reads its scores from the cache of ``benchmarks/rkbench/zerocost.py``
(``--zerocost``) instead of scoring, and is charged the seconds the cache says the scoring of its
candidates took, before its first trial, as ``rksearch run`` scores them before it trains.

    python benchmarks/search_quality.py search_spaces/rkbench.yaml benchmarks/rkbench/table.csv \
        --seeds 20 --budget 0.5 --out benchmarks/results/search_quality
"""
from __future__ import annotations

import argparse
import json
import math
import re
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
STRATEGIES = ("random", "random+asha", "tpe", "tpe+asha", "nsga2", "nsga2+asha")  # the default set
STRATEGY = re.compile(r"(?P<sampler>random|tpe|nsga2|gp)(?P<asha>\+asha)?(?:\+zc(?P<zc_trials>\d*))?$")


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
    if stat is iqm:  # all resamples at once: the same draws, and trim_mean's partition and mean row by row
        n = len(v)   # (bit for bit the loop's numbers, in milliseconds instead of a second)
        cut = int(0.25 * n)
        rows = np.partition(v[rng.integers(0, n, (resamples, n))], (cut, n - cut - 1), axis=1)
        stats = rows[:, cut:n - cut].mean(axis=1)
    else:
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


def curve(simulated, judge: Judge, checkpoints: list[float], offset: float = 0.0) -> list[float]:
    """The search's score at each cost of ``checkpoints``: its COMPLETE trials finished by then,
    its clock started at ``offset`` (what it spent before its first trial: a pre-screen's scoring)."""
    names = {t.number: t.user_attrs.get("name") for t in simulated.study.trials if t.state.name == "COMPLETE"}
    out, spent, done = [], offset, []
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


# -- zero-cost scores from a cache --------------------------------------------------------------

def load_zerocost(path: Path) -> dict[str, dict[str, float]]:
    """``name -> {column: value}`` of a cache written by ``benchmarks/rkbench/zerocost.py``."""
    import csv

    if not path.is_file():
        raise RKSearchError("no zero-cost cache here; make it with benchmarks/rkbench/zerocost.py", source=path,
                            field="--zerocost")
    with path.open(newline="") as f:
        return {r["name"]: {k: float(v) for k, v in r.items() if k != "name"} for r in csv.DictReader(f)}


class CachedScorer:
    """A pre-screen's scorer (``rksearch.proxies.prescreen.SpecScorer``) that reads a spec's
    ``score`` from the cache and adds the seconds the cache says it took to ``spent``."""

    def __init__(self, cache: dict[str, dict[str, float]], score: str):
        self.cache, self.score, self.spent = cache, score, 0.0

    def __call__(self, spec):
        from rksearch.proxies.zerocost import SpecScores

        row = self.cache[spec.name]
        self.spent += row[f"{self.score}_seconds"]
        return SpecScores({self.score: row[self.score]}, {self.score: row[f"{self.score}_seconds"]})


# -- the benchmark -----------------------------------------------------------------------------

def strategy_space(space, strategy: str, *, score: str = "synflow", candidates: int = 8, specs: int | None = None):
    """The space searched by ``strategy`` (see the module's docstring); ``specs`` (the table's
    size) bounds a pre-screen of every trial: each slot needs ``candidates`` specs not yet taken."""
    import dataclasses

    from rksearch.space.config import PrescreenConfig

    m = STRATEGY.match(strategy)
    if m is None:
        raise RKSearchError(f"unknown strategy {strategy!r}: SAMPLER[+asha][+zc[N]], SAMPLER one of random, tpe, "
                            "nsga2, gp", field="--strategies")
    scheduler = space.search.scheduler.model_copy(update={"kind": "asha" if m["asha"] else "none"})
    update = {"sampler": m["sampler"], "scheduler": scheduler, "prescreen": None}
    if m["zc_trials"] is not None:
        every = (specs or space.search.trials) - candidates + 1
        update["prescreen"] = PrescreenConfig(score=score, candidates=candidates,
                                              trials=int(m["zc_trials"]) if m["zc_trials"] else every)
    return dataclasses.replace(space, search=space.search.model_copy(update=update))


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
    spaces = {s: strategy_space(space, s, score=args.zc_score, candidates=args.zc_candidates, specs=len(table.curves))
              for s in args.strategies}
    cache = None
    if any(s.search.prescreen for s in spaces.values()):
        if args.zerocost is None:
            raise RKSearchError("a +zc strategy reads its scores from a cache: give --zerocost", field="--zerocost")
        cache = load_zerocost(args.zerocost)
        lacking = sorted(set(table.curves) - set(cache))
        if lacking or args.zc_score not in next(iter(cache.values())):
            raise RKSearchError(f"the cache lacks {len(lacking)} specs of the table (e.g. {lacking[:1]}) or the score "
                                f"{args.zc_score!r}", source=args.zerocost, field="--zerocost")
    results: dict[str, dict] = {}
    for strategy, s_space in spaces.items():
        scores, fine_scores, scoring, started = [], [], [], time.perf_counter()
        for seed in range(args.seeds):
            scorer = CachedScorer(cache, args.zc_score) if s_space.search.prescreen else None
            sim = simulate(s_space, table, seed=seed, budget=budget, scorer=scorer)
            scoring.append(scorer.spent if scorer else 0.0)
            scores.append(curve(sim, judge, checkpoints, scoring[-1]))
            fine_scores.append(curve(sim, judge, fine, scoring[-1]))
        scores, fine_scores = np.array(scores), np.array(fine_scores)
        results[strategy] = {
            "at": {f"{int(100 * f)}%": {"iqm": iqm(scores[:, i]), "ci95": bootstrap_ci(scores[:, i])}
                   for i, f in enumerate(FRACTIONS)},
            "curve_iqm": [iqm(fine_scores[:, i]) for i in range(len(fine))],
            "curve_ci95": [bootstrap_ci(fine_scores[:, i], resamples=500) for i in range(len(fine))],
            "seconds": time.perf_counter() - started,
            "scoring_seconds_mean": float(np.mean(scoring)),
        }
        at = results[strategy]["at"]
        print(f"{strategy:>12}: " + "  ".join(f"{k} {v['iqm']:.3f} [{v['ci95'][0]:.3f}, {v['ci95'][1]:.3f}]"
                                               for k, v in at.items())
              + f"  ({results[strategy]['seconds']:.0f} s)", flush=True)
    return {"space": str(args.space), "table": str(args.table), "table_seeds": args.table_seeds,
            "specs": len(table.curves), "seeds": args.seeds,
            "budget_seconds": budget, "budget_of_table": args.budget, "table_cost_seconds": judge.table_cost,
            "reference": ref, "cost_axis": [c / judge.table_cost for c in fine], "strategies": results,
            "zerocost": str(args.zerocost) if cache else None, "zc_score": args.zc_score if cache else None,
            "zc_candidates": args.zc_candidates if cache else None}


def figure(report: dict, path: Path) -> None:
    """Score against cost (as a share of training the whole table), IQM with 95 % bands: ``path``
    (HTML) and a PNG beside it where Plotly can export one (kaleido and a Chrome installed)."""
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
    try:
        fig.write_image(path.with_suffix(".png"), width=1000, height=600)
    except Exception as e:  # noqa: BLE001  (no kaleido, no Chrome: the HTML is the figure)
        print(f"no PNG ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); figure.html only",
              file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("space", type=Path)
    parser.add_argument("table", type=Path)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--budget", type=float, default=0.5, help="total cost, as a share of training the whole table")
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES),
                        help="SAMPLER[+asha][+zc[N]] (SAMPLER: random, tpe, nsga2, gp); default: the six without zc")
    parser.add_argument("--zerocost", type=Path, default=None, help="zero-cost cache of benchmarks/rkbench/zerocost.py")
    parser.add_argument("--zc-score", default="synflow", choices=("synflow", "naswot", "grad_norm", "snip"),
                        help="the pre-screen's score (default: prescreen's own default, synflow)")
    parser.add_argument("--zc-candidates", type=int, default=8, help="candidates per pre-screened trial (default 8)")
    parser.add_argument("--out", type=Path, default=None, help="folder for report.json and figure.html")
    parser.add_argument("--table-seeds", type=int, nargs="+", default=None,
                        help="use only these training seeds of the table (default: all)")
    parser.add_argument("--replot", action="store_true",
                        help="only redraw --out's figure (HTML, and PNG where possible) from its report.json")
    args = parser.parse_args(argv)
    if args.replot:
        if args.out is None or not (args.out / "report.json").is_file():
            print("error: --replot needs --out DIR holding a report.json", file=sys.stderr)
            return 2
        figure(json.loads((args.out / "report.json").read_text()), args.out / "figure.html")
        return 0
    if args.seeds < 2 or not 0 < args.budget <= 10 or not math.isfinite(args.budget) or args.zc_candidates < 2:
        print("error: --seeds must be at least 2, --budget in (0, 10] and --zc-candidates at least 2", file=sys.stderr)
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
