"""The notebooks run top to bottom against real studies, and are committed without outputs."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from study_factory import make_study

from rksearch import load_spec
from rksearch.study import load_study

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NAMES = ("pareto_analysis", "compare_studies")


def _run(name: str, env: dict[str, str], monkeypatch) -> nbformat.NotebookNode:
    from nbclient import NotebookClient

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return nb


def _text(nb: nbformat.NotebookNode) -> str:
    parts = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            parts.append(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")))
    return "\n".join(parts)


@pytest.mark.parametrize("name", NAMES)
def test_committed_without_outputs(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    assert "parameters" in code[0].metadata.get("tags", [])


@pytest.mark.slow
def test_pareto_analysis(tmp_path, monkeypatch) -> None:
    study = make_study(tmp_path, "erk", n=14)
    out = tmp_path / "chosen.yaml"
    nb = _run("pareto_analysis", {"RKSEARCH_STUDY": str(study), "RKSEARCH_EXPORT": str(out)}, monkeypatch)
    text = _text(nb)
    assert "study erk" in text and "hypervolume" in text and "p0_stages" in text
    assert "knee: trial" in text
    assert load_spec(out).name in load_study(study).trials["name"].values
    figures = [o for c in nb.cells for o in c.get("outputs", []) if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(figures) == 4  # front, hypervolume history, choices on accuracy and on FLOPs


@pytest.mark.slow
def test_compare_studies(tmp_path, monkeypatch) -> None:
    a = make_study(tmp_path, "erk", n=10, seed=1)
    b = make_study(tmp_path, "irk", n=10, seed=2)
    nb = _run("compare_studies", {"RKSEARCH_STUDY_A": str(a), "RKSEARCH_STUDY_B": str(b)}, monkeypatch)
    text = _text(nb)
    assert "shared reference point" in text and "erk:" in text and "irk:" in text
    figures = [o for c in nb.cells for o in c.get("outputs", []) if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(figures) == 2
