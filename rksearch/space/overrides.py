"""Space fields set on the command line: ``--set KEY=VALUE`` (dotted keys, YAML values), ``--data-root``, ``--dataset``.

One convention for ``run``, ``space``, ``calibrate`` and ``zc``: the overrides change the space as
read from its file before it is validated, so a bad value is refused as it would be in the file,
but named by the option that gave it (``--set proxy.epochs=two: ...``). A search records the
overrides it ran with (the study's user attr ``overrides``).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from rksearch.core.errors import RKSearchError


def parse_overrides(items: Sequence[str], *, data_root: str | Path | None = None,
                    dataset: str | None = None) -> dict[str, Any]:
    """``["proxy.epochs=2", ...]`` (plus the shortcuts) -> {dotted key: value}, values read as YAML."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise RKSearchError(f"expected KEY=VALUE with a dotted key (proxy.epochs=2), got {item!r}", field="--set")
        try:
            out[key] = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as e:
            raise RKSearchError(f"{key}: not a YAML value: {str(e).splitlines()[0]}", field="--set") from None
    if dataset is not None:
        out["proxy.dataset"] = dataset
    if data_root is not None:
        out["proxy.root"] = str(Path(data_root).expanduser().resolve())  # where rksearch runs, as the file's
    return out


def apply_overrides(data: Any, overrides: dict[str, Any], source: str | Path) -> Any:
    """``data`` (a space read from YAML) with every override set; sections are created as needed."""
    if not overrides:
        return data
    if not isinstance(data, dict):
        return data  # the space's own check names what is wrong with the file
    for key, value in overrides.items():
        node, parts = data, key.split(".")
        for i, part in enumerate(parts[:-1]):
            part = _key(node, part)
            child = node.get(part) if isinstance(node, dict) else None
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise RKSearchError(f"{'.'.join(parts[:i + 1])} is {child!r} in {source}, not a section with keys",
                                    field=f"--set {key}")
            node = child
        node[_key(node, parts[-1])] = value
    return data


def _key(node: dict, part: str) -> Any:
    """A digit key is the integer YAML reads (``periods.overrides.0``), unless the file has it as text."""
    return int(part) if part.isdigit() and part not in node else part


def blame(e: RKSearchError, overrides: dict[str, Any]) -> RKSearchError:
    """A space error in a field an override set, named by that override rather than the file."""
    field, message = e.field, e.message
    if field is None:  # a validation error names its field in the message: "proxy.epochs: Input should be ..."
        head, sep, rest = message.partition(": ")
        field, message = (head, rest) if sep and " " not in head else ("", message)
    for key in sorted(overrides, key=len, reverse=True):
        if field == key or field.startswith(key + "."):
            flag = {"proxy.dataset": "--dataset", "proxy.root": "--data-root"}.get(key, f"--set {key}")
            return RKSearchError(f"{overrides[key]!r}: {message}", source=e.source, field=flag)
    return e
