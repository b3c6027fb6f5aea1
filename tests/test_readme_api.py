"""The README's Python API example runs as written: load_space, run_search, load_study, front, export."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _api_example() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## The Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_the_readme_api_example_runs(tmp_path, monkeypatch, ray_session):
    """In this process, in a fresh folder, on the session's Ray (conftest.py); test_startup.py
    imports the public names in a fresh interpreter. The proxy is shrunk as conftest.py's demo
    space (256 training images, not the demo's 1,500) and trains one trial at a time (one Ray
    worker to start, not two): what runs is the API, not a training."""
    code = _api_example().replace('"search_spaces/', f'"{ROOT}/search_spaces/')
    overrides = '{"proxy.epochs": 1}'
    assert overrides in code, code
    code = code.replace(overrides, '{"proxy.epochs": 1, "proxy.train_subset": 256, "proxy.val_size": 128, '
                                   '"search.concurrency": 1}')
    code += ("\nassert result.study_dir.name == 'demo' and result.done >= 4, result\n"
             "assert len(study.trials) >= 4 and not pareto.members.empty, study.trials\n"
             "assert isinstance(rksearch.load_spec('best.yaml'), rksearch.RKNetSpec)\n")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md (The Python API)", "exec"), {"__name__": "readme_example"})
