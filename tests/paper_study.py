"""A study of ``search_spaces/paper_table1.yaml`` recorded by the search engine's own searcher.

The grid points are enqueued as ``rksearch run`` enqueues them, every trial is proposed and
recorded by :class:`rksearch.search.searcher.RKSearcher` (params, spec, counts, outcome); only the proxy
training is replaced by a given error per spec name, so no test trains for real.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from study_factory import storage

from rksearch.models.registry import count
from rksearch.space.search_space import load_space
from rksearch.arch.rknet import RKNetSpec

TABLE1_SPACE = Path(__file__).resolve().parents[1] / "search_spaces" / "paper_table1.yaml"


def make_table1_study(root: Path, errors: Mapping[str, float], *, epochs: int = 3) -> Path:
    """The study folder ``root/paper_table1``: the grid in order, trial i with validation error
    ``errors[name]`` (%); names missing from ``errors`` stay unmeasured (a failed trial)."""
    from rksearch.search.searcher import RKSearcher

    space = load_space(TABLE1_SPACE)
    path = root / space.name
    searcher = RKSearcher(space, storage(path / "optuna.db"), "test-driver")
    study = searcher.study
    proxy = space.proxy.model_copy(update={"epochs": epochs})
    for k, v in {"objectives": space.objectives, "reference_point": space.reference_point,
                 "space": TABLE1_SPACE.read_text(), "proxy": proxy.model_dump(), "study_dir": space.name}.items():
        study.set_user_attr(k, v)
    points = list(space.enumerate_params())
    for params in points:
        study.enqueue_trial(params, skip_if_exists=True)
    for i in range(len(points)):
        config = searcher.suggest(f"t{i}")
        spec = RKNetSpec.from_dict(config["spec"])
        error = errors.get(spec.name)
        c = count(spec)
        result = {} if error is None else {
            "accuracy": 1 - error / 100, "flops": c.flops, "params": c.params, "epochs": epochs, "final": True,
            "trained_flops": c.flops, "trained_params": c.params, "images_per_s": 1000.0, "seconds": 2.0,
        }
        searcher.on_trial_complete(f"t{i}", result)
    return path
