"""Zero-cost scores of every RK-Bench spec, computed once into a resumable cache CSV (no training).

Every feasible spec of the space (``enumerate_params`` order, as ``build.py`` numbers them) is
scored with every score rksearch has (synflow, NASWOT, grad_norm, snip, FLOPs, params) by the
pre-screener's own :class:`rksearch.proxies.prescreen.Scorer`: the proxy's width and input size,
one batch of the proxy's real training split, drawn and every network initialised with
``--seed`` (default: ``proxy.seed``, as ``rksearch calibrate`` scores). The cache is rewritten
in one step after every spec, so a killed run keeps what it finished and a rerun scores only the
specs it lacks; a cache made with other settings is refused.

    python benchmarks/rkbench/zerocost.py search_spaces/rkbench.yaml --out benchmarks/rkbench/zerocost.csv

Run it from the checkout's root (the space's data root is relative to it).
``benchmarks/rkbench/fidelity.py`` reads the cache beside the table.
"""
from __future__ import annotations

import argparse
import csv
import io
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script from a checkout: the package beside it
    sys.path.insert(0, str(ROOT))

from rksearch.core.errors import RKSearchError  # noqa: E402

SETTINGS = ("score_seed", "batch_size", "width", "input_size")
"""Columns that must agree between a cache and the run that extends it."""


def columns(names: list[str]) -> list[str]:
    return ["spec_id", "name", *names, *SETTINGS, *(f"{n}_seconds" for n in names)]


def read_cache(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def write_cache(path: Path, rows: list[dict], names: list[str]) -> None:
    from rksearch.core.files import write_text

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns(names), lineterminator="\n")
    writer.writeheader()
    writer.writerows(sorted(rows, key=lambda r: int(r["spec_id"])))
    write_text(path, buf.getvalue())


def load_scores(path: str | Path, score: str) -> dict[str, float]:
    """``name -> score`` from a cache (what a replayed pre-screen reads instead of scoring)."""
    rows = read_cache(Path(path))
    if not rows:
        raise RKSearchError("no zero-cost cache here; make it with benchmarks/rkbench/zerocost.py", source=path)
    if score not in rows[0]:
        raise RKSearchError(f"the cache has no score {score!r}", source=path)
    return {r["name"]: float(r[score]) for r in rows}


def run(args: argparse.Namespace) -> int:
    import torch

    from rksearch.proxies.prescreen import Scorer
    from rksearch.proxies.zerocost import SCORES
    from rksearch.space.search_space import load_space

    torch.set_num_threads(args.threads)
    space = load_space(args.space)
    names = list(SCORES)
    seed = space.proxy.seed if args.seed is None else args.seed
    specs = [(i, space.spec_from_params(p)) for i, p in enumerate(space.enumerate_params())]
    specs = [(i, s) for i, s in specs if space.feasible(s)]
    settings = {"score_seed": str(seed), "batch_size": str(args.batch_size), "width": str(space.proxy.width),
                "input_size": str(specs[0][1].input_size)}
    rows = read_cache(args.out)
    for row in rows[:1]:
        differ = {k: (row.get(k), v) for k, v in settings.items() if row.get(k) != v}
        if differ or list(row) != columns(names):
            raise RKSearchError(f"the cache was made with other settings or scores ({differ or 'columns'}); "
                                "write to another --out", source=args.out)
    done = {r["name"] for r in rows}
    todo = [(i, s) for i, s in specs if s.name not in done]
    print(f"{len(specs)} specs, {len(done)} in the cache, {len(todo)} to score", flush=True)
    scorer = Scorer(space, names, seed=seed, batch_size=args.batch_size)
    started = time.perf_counter()
    for j, (i, spec) in enumerate(todo, 1):
        result = scorer(spec)
        rows.append({"spec_id": i, "name": spec.name, **{n: repr(result.values[n]) for n in names}, **settings,
                     **{f"{n}_seconds": f"{result.seconds[n]:.4f}" for n in names}})
        write_cache(args.out, rows, names)
        elapsed = time.perf_counter() - started
        print(f"[{j}/{len(todo)}] {spec.name}: {sum(result.seconds.values()):.2f} s | "
              f"{elapsed:.0f} s, ETA {elapsed / j * (len(todo) - j):.0f} s", flush=True)
    print(f"wrote {args.out} ({len(rows)} specs) in {time.perf_counter() - started:.0f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("space", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="the cache CSV (created, or extended)")
    parser.add_argument("--seed", type=int, default=None, help="the batch and initialisation seed (default: proxy.seed)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    try:
        return run(args)
    except RKSearchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
