"""One place that turns "a name, a file or a mapping" into a spec of either kind (RKNet or baseline),
and writes one back."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from rksearch.arch.baseline_names import NAMES_HELP
from rksearch.arch.baselines import BaselineSpec, baseline_spec
from rksearch.arch.rknet import RKNetSpec, parse_yaml, read_text, resolve_spec
from rksearch.core.errors import RKSearchError
from rksearch.core.files import write_text

AnySpec = RKNetSpec | BaselineSpec
"""What a trainer, a proxy and a study trial take: both kinds offer ``name``,
``scaled()``, ``to_dict()``/``to_json()``/``to_yaml()`` and the input fields."""
SPEC_SUFFIXES = (".yaml", ".yml", ".json")


def any_spec_from_dict(data: Any, *, source: str | Path | None = None) -> AnySpec:
    """A baseline spec when ``data`` has a ``baseline`` key, an RKNet spec otherwise."""
    if isinstance(data, dict) and "baseline" in data:
        return BaselineSpec.from_dict(data, source=source)
    if isinstance(data, dict) and "rknet" not in data and source is not None:
        raise RKSearchError(
            "not an RKNet spec ('rknet: 1'), nor a baseline spec ('baseline: densenet|cliquenet')", source=source
        )
    return RKNetSpec.from_dict(data, source=source)


def load_any_spec(path: str | Path) -> AnySpec:
    """An RKNet spec (``rknet: 1``) or a baseline spec (``baseline: ...``) from a YAML/JSON file."""
    text = read_text(path)
    if str(path).endswith(".json"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise RKSearchError(f"malformed JSON: {e}", source=path) from None
    else:
        data = parse_yaml(text, path)
    return any_spec_from_dict(data, source=path)


BASELINE_FIELDS = ("growth_rate", "stem", "input_size", "num_classes")


def resolve_network(name_or_path: str | Path, **fields: Any) -> AnySpec:
    """What ``rksearch describe`` and ``bench`` take: an RKNet or a baseline, by name or spec file,
    with fields changed (``None`` ignored; ``m`` and ``multiscale`` are RKNet fields)."""
    text = str(name_or_path)
    given = {k: v for k, v in fields.items() if v is not None}
    loaded = load_any_spec(text) if Path(text).is_file() or text.endswith(SPEC_SUFFIXES) else None
    if isinstance(loaded, RKNetSpec):
        return resolve_spec(text, **given)
    if loaded is None and not _names_a_baseline(text):
        try:
            return resolve_spec(text, **given)
        except RKSearchError as e:
            if e.field != "name":
                raise
            raise RKSearchError(f"{e.message}; or a baseline: {NAMES_HELP}", source=e.source, field=e.field) from None
    wrong = sorted(set(given) - set(BASELINE_FIELDS))
    if wrong:
        flag = "--no-multiscale" if wrong[0] == "multiscale" else f"--{wrong[0].replace('_', '-')}"
        raise RKSearchError(f"applies to RKNets only, not to the baseline {text}", field=flag)
    if isinstance(given.get("growth_rate"), list):
        raise RKSearchError("a baseline has one growth rate", field="--growth-rate")
    if loaded is not None:
        return loaded.replace(**given) if given else loaded
    return baseline_spec(text, **given)


def _names_a_baseline(text: str) -> bool:
    """Not a file: a baseline name, whose grammar errors are then the useful ones."""
    return text.strip().lower().startswith(("densenet", "cliquenet"))


def resolve_any_spec(arg: str | Path) -> AnySpec:
    """A spec file, or else an RKNet or baseline name (``rksearch train IRKNet-3x1_3x1_3x1``,
    ``rksearch train densenet-bc-100``), as ``describe`` takes them.

    An existing path or a spec suffix reads the file; a word starting with densenet/cliquenet is a
    baseline name (its grammar errors are the useful ones); an RKNet name is parsed with the name
    grammar's defaults; anything else is none of these, in one message.
    """
    text = str(arg)
    if Path(text).exists() or text.endswith(SPEC_SUFFIXES):
        return load_any_spec(text)
    if _names_a_baseline(text):
        try:
            return baseline_spec(text)
        except RKSearchError as e:
            raise RKSearchError(e.message, source=text) from None
    try:
        return resolve_spec(text)
    except RKSearchError:
        if re.match(r"^\s*[EI]?RKNet-", text):  # an RKNet name with a grammar error: that error is the useful one
            raise
    raise RKSearchError(f"no such spec file, not an RKNet name (ERKNet-3x1_3x1_3x1, RKNet-E2x1_I3x1) and not a "
                        f"baseline name ({NAMES_HELP})", source=text)


def save_spec(spec: AnySpec, path: str | Path, header: str = "") -> None:
    """Write atomically, so an interrupted write never leaves half a spec behind."""
    p = Path(path)
    write_text(p, spec.to_json(indent=2) + "\n" if p.suffix == ".json" else spec.to_yaml(header))
