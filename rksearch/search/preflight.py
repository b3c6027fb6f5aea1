"""Checks before a search writes anything: candidates, grid, data, failure bound, and a continued study's settings."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import optuna

from rksearch.core.errors import RKSearchError
from rksearch.search.latency import SearchLatency, check_same_target
from rksearch.space.search_space import SearchSpace
from rksearch.storage.baseline_study import baselines_name, is_baseline
from rksearch.storage.folder import DB_NAME, STORAGE_ENV, default_storage, env_storage, storage_of, unmasked
from rksearch.storage.urls import absolute_url, shown_url


def check_has_candidates(space: SearchSpace) -> None:
    """Refuse, before anything is written, a space whose constraints leave no candidate."""
    if space.constraints.max_flops is None and space.constraints.max_params is None:
        return
    f = space.feasibility(random.Random(0), samples=500, exact_limit=2000)
    if f.feasible == 0:
        how = "any" if f.exact else f"any of {f.checked} sampled"
        raise RKSearchError(
            f"no candidate meets the constraints ({how} of {space.size():,} specs); loosen max_flops/max_params "
            "or shrink the space (rksearch space shows what it holds)", source=space.source, field="constraints",
        )


def check_grid(space: SearchSpace, wanted: int, *, field: str) -> None:
    """A grid search trains each feasible spec once: refuse a trial count it can never reach
    (it would propose duplicates until it gave up)."""
    if space.search.sampler != "grid":
        return
    specs = (space.spec_from_params(p) for p in space.enumerate_params())
    feasible = sum(all(v <= 0 for v in space.violations(s)) for s in specs)
    if wanted > feasible:
        raise RKSearchError(f"{wanted} trials, but the grid holds {feasible} feasible specs and trains each once; "
                            f"ask for at most {feasible}", source=space.source, field=field)


def check_dataset(space: SearchSpace) -> None:
    """Check what every trial would fail on alike: the proxy's split sizes and the network's fixed
    fields (classes, channels, input size) against the data. Read from the data's layout where its
    decoded copy is cached (the driver imports no torch); else loaded, and so decoded and cached
    once, before any trial needs it."""
    from types import SimpleNamespace

    from rksearch.data.facts import DataFacts, check_fits, known_facts
    from rksearch.data.splits import split_sizes

    p = space.proxy
    try:
        facts = known_facts(p.dataset, p.root)
        if facts is None:
            from rksearch.data.sources import load_dataset

            facts = DataFacts.of(load_dataset(p.dataset, p.root))
        split_sizes(facts.train, facts.test, val_size=p.val_size, train_subset=p.train_subset,
                    val_subset=p.val_subset)
    except RKSearchError as e:
        raise RKSearchError(e.message, source=space.source, field=f"proxy.{e.field or 'dataset'}") from None
    try:
        check_fits(SimpleNamespace(**space.network.fixed), facts)  # every candidate has these fields
    except RKSearchError as e:
        raise RKSearchError(e.message, source=space.source, field=f"network.{e.field}") from None


DEFAULT_MAX_FAILURES = 10
"""Failed trials a search without ``max_failures`` bears before it stops (or as many as it asks for)."""


def failure_bound(max_failures: int | None, wanted: int) -> tuple[int, str]:
    """The failed trials a search bears, and how its stop message names that bound. Unset, a
    search whose every trial fails alike still ends."""
    if max_failures is not None:
        return max_failures, f"max_failures {max_failures}"
    bound = max(DEFAULT_MAX_FAILURES, wanted)
    return bound, f"max_failures unset: at most {bound}, the trials asked for or {DEFAULT_MAX_FAILURES}"


PROXY_HOW = {"device", "compile", "cudnn_benchmark", "static_shapes", "cuda_graph", "root"}
"""Proxy fields a continued study may change: how a candidate trains, and where its data lies
(relative to where rksearch runs), not what its accuracy means."""


def check_continuable(rdb: optuna.storages.RDBStorage, space: SearchSpace, replay: Any = None,
                      latency: SearchLatency | None = None) -> None:
    """A continued study must go on measuring what it measured: its objectives (the slots its
    trials' values fill), the proxy, whose accuracies share one front, where they come from
    (training, or the table ``replay`` of :mod:`rksearch.search.replay`), and the latency's device key."""
    if space.name not in {s.study_name for s in rdb.get_all_studies()}:
        return
    old = optuna.load_study(study_name=space.name, storage=rdb)
    attrs = old.user_attrs
    then, now = attrs.get("objectives"), list(space.objectives)
    hint = "start over with --fresh, or give the space another name"
    if any(is_baseline(t.user_attrs) for t in old.get_trials(deepcopy=False)):
        raise RKSearchError(f"study {space.name} holds its baselines among the searched trials (written before they "
                            f"moved to {baselines_name(space.name)}): continued, its sampler would learn from them "
                            f"and they would train again; {hint} (pareto and export still read it)",
                            source=space.source, field="baselines")
    table = replay.path.name if replay is not None else None
    if attrs.get("replay") != table:
        was = f"replayed the table {attrs['replay']}" if attrs.get("replay") else "trained its candidates"
        raise RKSearchError(f"study {space.name} {was}; this run {'replays ' + table if table else 'trains'}; {hint}",
                            source=None if replay is not None else space.source,
                            field="--replay" if replay is not None else "proxy")
    if then is not None and list(then) != now:
        raise RKSearchError(f"study {space.name} was run with objectives {list(then)}, not {now}; {hint}",
                            source=space.source, field="objectives")
    check_same_target(attrs.get("latency_device"), latency, space)
    then, now = attrs.get("proxy") or {}, space.proxy.model_dump()
    for k in sorted(set(then) | set(now)):
        was = then.get(k, getattr(type(space.proxy).model_fields.get(k), "default", None))  # a newer field: its default
        if k not in PROXY_HOW and was != now.get(k):
            raise RKSearchError(f"study {space.name} trained its candidates with {k}: {was!r}, not "
                                f"{now.get(k)!r}; their accuracies would share a front; {hint}",
                                source=space.source, field=f"proxy.{k}")


def check_same_storage(study_dir: Path, url: str, field: str) -> None:
    """A study folder holds one study: continuing it in another storage would start a second study
    whose outputs overwrite the first one's."""
    if not study_dir.is_dir():
        return
    recorded = storage_of(study_dir)
    if recorded is None:
        recorded = default_storage(study_dir) if (study_dir / DB_NAME).exists() else None
    elif "***" not in recorded:
        recorded = absolute_url(recorded)
    if recorded is not None and recorded != url and recorded != shown_url(url):
        raise RKSearchError(f"holds a study in {shown_url(recorded)}, not in {shown_url(url)}; continue it there, "
                            "or start over with --fresh or another --out", source=study_dir, field=field)


def chosen_storage(space: SearchSpace, storage: str | None) -> tuple[str | None, dict[str, Any]]:
    """A run's storage URL and where it was given (``source``, ``field``): ``--storage``, else
    ``$RKSEARCH_STORAGE``, else the space's ``storage:``; None: the study folder's own database. A
    masked password (a URL copied from a record) is taken from the variable."""
    if storage:
        given: dict[str, Any] = {"source": None, "field": "--storage"}
    elif env_storage() is not None:
        storage, given = env_storage(), {"source": None, "field": STORAGE_ENV}
    else:
        storage, given = space.storage, {"source": space.source, "field": "storage"}
    return (unmasked(storage, **given) if storage else None), given
