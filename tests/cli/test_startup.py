"""The commands that need no tensor start without torch, Ray or Optuna (issue 22).

Each case runs the CLI in process inside a fresh interpreter, then reads ``sys.modules``; the
start-up times themselves are measured by ``benchmarks/bench_startup.py``, not asserted here.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "ray", "optuna")

SCRIPT = """
import json, sys
from rksearch.cli import main
seen = []
for argv in json.loads(sys.argv[1]):
    try:
        main(argv)
        code = 0
    except SystemExit as e:
        code = e.code or 0
    seen.append({"argv": argv, "code": code, "heavy": [m for m in %r if m in sys.modules]})
print("SEEN " + json.dumps(seen))
""" % (HEAVY,)


def run_cli(*argvs: list[str]) -> list[dict]:
    """Run ``rksearch ARGV`` for each of ``argvs`` in turn in one new interpreter; per call its exit
    status and which of torch/ray/optuna had been imported by then."""
    r = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(list(argvs))], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("SEEN ")][-1]
    return json.loads(line[len("SEEN "):])


def verbs() -> list[str]:
    from rksearch.cli import app

    return sorted(typer.main.get_command(app).commands)


def test_help_and_every_verbs_help_import_no_torch_ray_or_optuna():
    names = verbs()
    assert {"run", "train", "describe", "space", "pareto", "export"} <= set(names)
    seen = run_cli(["--help"], *[[v, "--help"] for v in names])
    assert [s["argv"] for s in seen] == [["--help"], *[[v, "--help"] for v in names]]
    for s in seen:
        assert s["code"] == 0, s
        assert s["heavy"] == [], f"rksearch {' '.join(s['argv'])} imported {s['heavy']}"


@pytest.mark.parametrize("argv", [
    ["space", "search_spaces/demo.yaml"],
    ["space", "search_spaces/demo.yaml", "--json", "--sample", "3"],
    ["describe", "IRKNet-3x1_3x1_3x1"],
    ["describe", "ERKNet-3x2_3x2", "--json", "--growth-rate", "24"],
])
def test_space_and_describe_of_an_rknet_import_no_torch(argv):
    [s] = run_cli(argv)
    assert s["code"] == 0 and s["heavy"] == [], s


def test_describe_of_a_baseline_imports_no_torch():
    """Baselines are counted analytically too (rksearch.arch.count; equal to the counter, tests/arch)."""
    [s] = run_cli(["describe", "densenet-bc-100", "--json"])
    assert s["code"] == 0 and s["heavy"] == [], s


def test_the_package_root_keeps_its_names_and_loads_torch_only_to_build_a_model():
    code = ("import sys, rksearch; assert not {'torch', 'numpy', 'pydantic'} & set(sys.modules); "
            "from rksearch import Counts, PeriodSpec, RKNetSpec, RKSearchError, count, load_spec, parse_name, "
            "resolve_spec, save_spec, build_model, create_model, load_space, SearchSpace, load_study, front, export; "
            "assert not {'torch', 'ray'} & set(sys.modules), 'the public names load no torch nor Ray'; "
            "model = build_model(parse_name('ERKNet-2x1_2x1', growth_rate=4)); assert 'torch' in sys.modules; "
            "assert all(getattr(rksearch, n) is not None for n in rksearch.__all__); "
            "assert set(rksearch.__all__) <= set(dir(rksearch)); "
            "print(model.__class__.__name__)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "RKNet"
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        import rksearch

        rksearch.nothing  # noqa: B018


def test_the_torch_free_loader_modes_are_the_loaders():
    """TrainConfig validates ``loader`` without torch, so it keeps its own copy of the modes."""
    from typing import get_args

    from rksearch.data.loaders import LoaderMode
    from rksearch.training.config import LoaderMode as ConfigLoaderMode

    assert get_args(ConfigLoaderMode) == get_args(LoaderMode)


def test_a_searchs_data_check_imports_torch_only_to_decode_the_data(tmp_path):
    """The driver checks a cached dataset from its layout (rksearch.data.facts), so the driver of a
    demo search never imports torch; with nothing cached it loads (decodes, caches) the data once."""
    code = ("import sys; from rksearch.data import describe_data; from rksearch.search.preflight import check_dataset; "
            "from rksearch.space.search_space import load_space; describe_data('demo'); "
            "check_dataset(load_space('search_spaces/demo.yaml')); print('torch' in sys.modules)")
    env = {**os.environ, "RKSEARCH_CACHE": str(tmp_path)}
    seen = [subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=300) for _ in range(2)]
    assert [r.returncode for r in seen] == [0, 0], seen[0].stderr + seen[1].stderr
    assert [r.stdout.strip() for r in seen] == ["True", "False"]  # the first decodes and caches; then no torch
    assert len(list(tmp_path.glob("imagefolder-*.pt"))) == 1
