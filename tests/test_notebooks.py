"""The notebooks run top to bottom against real studies, and are committed without outputs."""
from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest
from paper_study import make_table1_study
from study_factory import make_study

from rksearch import load_spec
from rksearch.analysis.study import load_study

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NAMES = ("pareto_analysis", "compare_studies", "paper_claims")


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


def _defaults(name: str) -> list[str]:
    """The committed studies a notebook reads when no environment variable names others."""
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    return re.findall(r'"\.\./studies/(\w+)"', nb.cells[1].source)


@pytest.mark.parametrize("name", NAMES)
def test_default_studies_are_committed(name: str) -> None:
    """A notebook run as shipped reads studies committed beside it, each a shipped space's."""
    studies = _defaults(name)
    assert studies
    for study in studies:
        assert (NOTEBOOKS.parent / "studies" / study / "optuna.db").is_file(), study
        assert (NOTEBOOKS.parent / "search_spaces" / f"{study}.yaml").is_file() or study == "demo", study


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_runs_as_shipped(name: str, monkeypatch) -> None:
    """On a fresh clone, no environment variables: every cell runs on the committed studies."""
    for key in [k for k in os.environ if k.startswith("RKSEARCH_")]:
        monkeypatch.delenv(key)  # (pareto_analysis writes notebooks/best.yaml, git-ignored)
    text = _text(_run(name, {}, monkeypatch))
    for study in _defaults(name):
        assert study in text, study


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


@pytest.mark.slow
def test_paper_claims(tmp_path, monkeypatch) -> None:
    # ERK as the paper found (error falls with stages); IRK's two middle networks swapped, IRK-4x1_4x1_4x1 failed
    errors = {"ERKNet-6x1_6x1_6x1": 20.0, "ERKNet-7x1_6x1_6x1": 19.0, "ERKNet-7x1_7x1_6x1": 18.5,
              "ERKNet-7x1_7x1_7x1": 18.0, "IRKNet-3x1_3x1_3x1": 22.0, "IRKNet-4x1_3x1_3x1": 20.0,
              "IRKNet-4x1_4x1_3x1": 21.0}
    study = make_table1_study(tmp_path, errors, epochs=4)
    nb = _run("paper_claims", {"RKSEARCH_STUDY": str(study)}, monkeypatch)
    text = _text(nb)
    assert "study paper_table1" in text and "7 complete, 1 fail" in text
    assert "ERK, paper: error falls with every added stage (Spearman rho -1.00)" in text
    assert "ERK, study: error falls with every added stage (Spearman rho -1.00)" in text
    assert "IRK, paper: error falls with every added stage (Spearman rho -1.00)" in text
    assert "IRK, study: error does not fall with every added stage (Spearman rho -0.50)" in text
    figures = [o["data"]["application/vnd.plotly.v1+json"] for c in nb.cells for o in c.get("outputs", [])
               if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(figures) == 1
    traces = {t["name"]: t for t in figures[0]["data"]}
    assert set(traces) == {"ERK (study)", "ERK (paper)", "IRK (study)", "IRK (paper)"}
    assert list(traces["IRK (study)"]["x"]) == [9, 10, 11, 12]
    assert [round(v, 6) if v is not None else None for v in traces["IRK (study)"]["y"]] == [22.0, 20.0, 21.0, None]
    assert list(traces["ERK (paper)"]["y"]) == [7.08, 7.02, 6.67, 6.61]
    titles = " ".join(a["text"] for a in figures[0]["layout"]["annotations"])
    assert "proxy validation error, 4 epochs" in titles and "test error, 300 epochs (full training)" in titles
