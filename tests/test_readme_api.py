"""The README's Python API example runs as written: load_space, run_search, load_study, front, export."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _api_example() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## The Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_the_readme_api_example_runs(tmp_path):
    code = _api_example().replace('"search_spaces/', f'"{ROOT}/search_spaces/')
    code += ("\nassert result.study_dir.name == 'demo' and result.done >= 4, result\n"
             "assert len(study.trials) >= 4 and not pareto.members.empty, study.trials\n"
             "assert isinstance(rksearch.load_spec('best.yaml'), rksearch.RKNetSpec)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
