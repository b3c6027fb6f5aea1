"""rksearch uses only the public APIs of Optuna and Ray: no private attribute, no private module.

A private name (``study._storage``, ``trial._trial_id``, ``ray._private``) may change in any
release; Optuna 5.1 broke the wrapper that relied on one. The check reads the package's source,
``getattr(x, "_name")`` included; the few private names allowed are listed with why.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "rksearch"
# (file, private name) -> why the package may touch it
ALLOWED = {
    ("search/trial.py", "_exit"): "os._exit: a crash drill's worker must die without cleanup",
    ("cli/__init__.py", "_exit"): "os._exit: exit 143 when Ray's processes died under a SIGTERM (a clean exit hangs)",
    ("models/concat_bn.py", "_batch_norm_with_update"): "torch's fused batch-norm op (not Optuna or Ray)",
    ("proxies/zerocost.py", "_DropoutNd"): "torch's base class of every dropout module (not Optuna or Ray)",
    ("core/stopping.py", "_private"): "ray_lost: Ray offers no public way to ask whether its own processes died "
                                 "(a SIGTERM to the process group); without it the CLI hangs a minute and exits 1",
    ("core/stopping.py", "_global_node"): "the same, ray_lost",
}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _owner(node: ast.expr) -> str:
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""


def private_uses(source: str) -> list[tuple[int, str, str]]:
    """(line, name, what) for every private module imported from Optuna or Ray and every private
    attribute read, ``getattr`` included, on an object that is not ``self`` or ``cls``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        modules = []
        if isinstance(node, ast.ImportFrom) and node.module:
            modules = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        for m in modules:
            parts = m.split(".")
            if parts[0] in ("optuna", "ray") and any(_private(p) for p in parts):
                found.append((node.lineno, next(p for p in parts if _private(p)), f"import {m}"))
        if isinstance(node, ast.Attribute) and _private(node.attr) and _owner(node.value) not in ("self", "cls"):
            found.append((node.lineno, node.attr, f"{_owner(node.value) or '<expr>'}.{node.attr}"))
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr")
                and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str) and _private(node.args[1].value)):
            found.append((node.lineno, node.args[1].value, f"{node.func.id}(..., {node.args[1].value!r})"))
    return found


def test_no_private_optuna_or_ray_names_in_the_package() -> None:
    uses = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE).as_posix()
        uses += [f"rksearch/{where}:{line}: {what}" for line, name, what in private_uses(path.read_text(encoding="utf-8"))
                 if (where, name) not in ALLOWED]
    assert uses == [], "\n".join(uses)


def test_the_check_finds_what_it_looks_for() -> None:
    source = ("from optuna.samplers._ga import _base\nimport ray._private.utils\n"
              "x = study._storage.get(trial._trial_id)\nself._mine = os._exit\ngetattr(ray, '_private')\n")
    assert sorted(what for _, _, what in private_uses(source)) == [
        "getattr(..., '_private')", "import optuna.samplers._ga", "import optuna.samplers._ga._base",
        "import ray._private.utils", "os._exit", "study._storage", "trial._trial_id"]
