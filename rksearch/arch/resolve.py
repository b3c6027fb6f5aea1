"""The one place that turns a name, a spec file or a mapping into a spec of either kind (RKNet or
baseline), and writes one back; :func:`resolve` is the resolver, the others are its wrappers."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from rksearch.arch.baseline_names import NAMES_HELP
from rksearch.arch.baselines import BaselineSpec, baseline_spec
from rksearch.arch.names import named, with_fields
from rksearch.arch.rknet import RKNetSpec
from rksearch.core.errors import RKSearchError
from rksearch.core.files import write_text
from rksearch.core.yamlio import read_data

AnySpec = RKNetSpec | BaselineSpec
"""What a trainer, a proxy and a study trial take: both kinds offer ``name``,
``scaled()``, ``to_dict()``/``to_json()``/``to_yaml()`` and the input fields."""
SPEC_SUFFIXES = (".yaml", ".yml", ".json")
BASELINE_FIELDS = ("growth_rate", "stem", "input_size", "num_classes")  # the options a baseline shares
RKNET, BASELINE, FILE = "rknet", "baseline", "file"
BOTH = (RKNET, BASELINE)


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
    return any_spec_from_dict(read_data(path), source=path)


def load_spec(path: str | Path) -> RKNetSpec:
    """Read an RKNet spec file (YAML, or JSON by its suffix)."""
    return RKNetSpec.from_dict(read_data(path), source=path)


def _names_a_baseline(text: str) -> bool:
    """Not a file: a baseline name, whose grammar errors are then the useful ones."""
    return text.strip().lower().startswith(("densenet", "cliquenet"))


def _how(text: str, kinds: tuple[str, ...]) -> str:
    """How ``text`` is read: a spec file (it exists, or has a spec suffix), else a baseline name
    or an RKNet name."""
    if Path(text).is_file() or text.endswith(SPEC_SUFFIXES):
        return FILE
    return BASELINE if RKNET not in kinds or (BASELINE in kinds and _names_a_baseline(text)) else RKNET


def _load(path: str, kinds: tuple[str, ...]) -> AnySpec:
    if kinds == (RKNET,):  # its messages say what an RKNet spec file lacks
        return load_spec(path)
    spec = load_any_spec(path)
    if RKNET not in kinds and isinstance(spec, RKNetSpec):  # only convert asks for a baseline alone
        raise RKSearchError("is an RKNet spec already; convert takes a DenseNet or CliqueNet", source=path)
    return spec


def _changed(spec: AnySpec, given: dict[str, Any]) -> AnySpec:
    if isinstance(spec, RKNetSpec):
        return with_fields(spec, **given)
    return spec.replace(**given) if given else spec


def resolve(network: str | Path | AnySpec, *, kinds: tuple[str, ...] = BOTH, **fields: Any) -> AnySpec:
    """A spec of one of ``kinds`` from a spec, a spec file, a baseline name or an RKNet name, with
    ``fields`` changed (``None``: unchanged). Taking both kinds, the fields are the options both
    share, and one only an RKNet has (``m``, ``multiscale``) is refused for a baseline by name or file."""
    given = {k: v for k, v in fields.items() if v is not None}
    if isinstance(network, (RKNetSpec, BaselineSpec)):
        return _changed(network, given)
    text = str(network)
    how = _how(text, kinds)
    if how == RKNET:
        return named(text, **given)
    spec = _load(text, kinds) if how == FILE else None
    if isinstance(spec, RKNetSpec):
        return _changed(spec, given)
    if RKNET in kinds:
        wrong = sorted(set(given) - set(BASELINE_FIELDS))
        if wrong:
            flag = "--no-multiscale" if wrong[0] == "multiscale" else f"--{wrong[0].replace('_', '-')}"
            raise RKSearchError(f"applies to RKNets only, not to the baseline {text}", field=flag)
        if isinstance(given.get("growth_rate"), list):
            raise RKSearchError("a baseline has one growth rate", field="--growth-rate")
    return _changed(spec, given) if spec is not None else baseline_spec(text, **given)


def resolve_spec(name_or_path: str | Path, **fields: Any) -> RKNetSpec:
    """An RKNet spec from a file path (``.yaml``/``.yml``/``.json``) or from a name plus keyword fields."""
    return resolve(name_or_path, kinds=(RKNET,), **fields)


def resolve_network(network: str | Path | AnySpec, **fields: Any) -> AnySpec:
    """What ``rksearch describe`` and ``bench`` take: an RKNet or a baseline, by name or spec file,
    with fields changed (``None`` ignored; ``m`` and ``multiscale`` are RKNet fields)."""
    try:
        return resolve(network, **fields)
    except RKSearchError as e:
        if e.field != "name" or not isinstance(network, (str, Path)) or _how(str(network), BOTH) != RKNET:
            raise
        raise RKSearchError(f"{e.message}; or a baseline: {NAMES_HELP}", source=e.source, field=e.field) from None


def resolve_any_spec(arg: str | Path) -> AnySpec:
    """A spec file, or else an RKNet or baseline name (``rksearch train IRKNet-3x1_3x1_3x1``,
    ``rksearch train densenet-bc-100``), as ``describe`` takes them.

    An existing path or a spec suffix reads the file; a word starting with densenet/cliquenet is a
    baseline name (its grammar errors are the useful ones); an RKNet name is parsed with the name
    grammar's defaults; anything else is none of these, in one message.
    """
    text = str(arg)
    if Path(text).is_dir():  # a path, if a wrong one: its reader says what is wrong with it
        return load_any_spec(text)
    try:
        return resolve(text)
    except RKSearchError as e:
        how = _how(text, BOTH)
        if how == BASELINE:
            raise RKSearchError(e.message, source=text) from None
        if how == RKNET and not re.match(r"^\s*[EI]?RKNet-", text):  # an RKNet name's grammar error is the useful one
            raise RKSearchError(f"no such spec file, not an RKNet name (ERKNet-3x1_3x1_3x1, RKNet-E2x1_I3x1) and "
                                f"not a baseline name ({NAMES_HELP})", source=text) from None
        raise


def save_spec(spec: AnySpec, path: str | Path, header: str = "") -> None:
    """Write atomically, so an interrupted write never leaves half a spec behind."""
    p = Path(path)
    write_text(p, spec.to_json(indent=2) + "\n" if p.suffix == ".json" else spec.to_yaml(header))
