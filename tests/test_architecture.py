"""The house rules, checked on every run: layers import only downward, no cycles, small modules with docstrings.

The layers and the forbidden imports are import-linter contracts in pyproject.toml (imports inside
functions count); these tests run them and add what import-linter does not check.
"""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "rksearch"
MAX_LINES = 450  # a module past this is doing more than one job: split it
MODULES = sorted(PACKAGE.rglob("*.py"))


def test_the_import_contracts_hold():
    """Layers (cli > search > proxies|analysis > space > training > data|models > arch|storage > core),
    arch without torch, analysis and storage without Ray or torch, and no cycle at any depth."""
    exe = Path(sys.executable).with_name("lint-imports")
    cmd = [str(exe)] if exe.exists() else [shutil.which("lint-imports") or "lint-imports"]
    r = subprocess.run([*cmd, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "4 kept, 0 broken" in r.stdout


def test_the_contracts_catch_an_upward_import(tmp_path):
    """The check can fail: a copy of the package with arch importing search breaks the layers."""
    copy = tmp_path / "rksearch"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "arch" / "upward.py").write_text('"""An arch module that reaches up."""\nfrom rksearch.search import driver\n')
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    exe = Path(sys.executable).with_name("lint-imports")
    r = subprocess.run([str(exe) if exe.exists() else "lint-imports", "--no-cache"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120, env={"PYTHONPATH": str(tmp_path), "PATH": ""})
    assert r.returncode == 1 and "rksearch.arch.upward -> rksearch.search.driver" in r.stdout


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_module_is_small_and_says_what_it_is_for(path):
    text = path.read_text()
    lines = text.count("\n")
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines (at most {MAX_LINES}): split it by job"
    assert ast.get_docstring(ast.parse(text)), f"{path.relative_to(ROOT)}: add a one-line docstring saying what it is for"
