"""A trial runs torch (and its DataLoader workers) on the CPUs Ray gave it, whatever OMP_NUM_THREADS
the user exported (issue 22) and however many cores the machine has."""
from __future__ import annotations

import os

import pytest

from rksearch.training.proxy import threads_warning


def test_threads_warning_only_when_the_environment_asks_for_more():
    assert threads_warning(1, {"OMP_NUM_THREADS": "4"}).startswith("OMP_NUM_THREADS=4 in the environment")
    assert "torch runs 2 thread(s)" in threads_warning(2.5, {"OMP_NUM_THREADS": "3"})
    assert threads_warning(2, {"OMP_NUM_THREADS": "2"}) is None
    assert threads_warning(0.5, {"OMP_NUM_THREADS": "1"}) is None  # a fraction of a CPU still runs one thread
    assert threads_warning(1, {}) is None
    assert threads_warning(1, {"OMP_NUM_THREADS": "lots"}) is None


def test_dataloader_workers_follow_the_cpus_given() -> None:
    from rksearch.data import default_workers

    assert default_workers(2) == 2 and default_workers(32) == 8
    assert default_workers() == min(8, os.cpu_count() or 1)  # outside Ray: the machine's


@pytest.mark.slow
def test_a_one_cpu_ray_task_trains_on_one_thread_despite_omp_num_threads_4(ray_session):
    ray = ray_session  # the session's Ray (conftest.py)

    from rksearch import parse_name
    from rksearch.training.proxy import ProxyConfig, proxy_evaluate

    @ray.remote(num_cpus=1, runtime_env={"env_vars": {"OMP_NUM_THREADS": "4"}})
    def trial() -> dict:
        import os
        import warnings

        import torch

        import rksearch.training.run as run

        seen: dict = {"env": os.environ.get("OMP_NUM_THREADS"), "before": torch.get_num_threads(), "during": []}
        cfg = ProxyConfig(dataset="demo", train_subset=64, val_size=32, epochs=1, batch_size=32, device="cpu")
        fit = run.fit

        def spy(spec, splits, config, **kwargs):  # the DataLoader's workers the training is given
            seen["workers"] = config.workers
            return fit(spec, splits, config, **kwargs)

        run.fit = spy
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                proxy_evaluate(parse_name("ERKNet-2x1_2x1", growth_rate=4), cfg,
                               report=lambda r: seen["during"].append(torch.get_num_threads()))
        finally:
            run.fit = fit
        seen["warnings"] = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
        return seen

    seen = ray.get(trial.remote(), timeout=300)
    assert seen["env"] == "4"
    if (os.cpu_count() or 1) > 1:  # torch in the worker started with more than one thread (min(4, cores) here)
        assert seen["before"] > 1
    assert seen["during"] == [1]  # one epoch, trained on the one CPU Ray gave the task
    assert seen["workers"] == 1  # a DataLoader would decode in one worker process, not one per core
    assert [w for w in seen["warnings"] if "OMP_NUM_THREADS=4" in w]
