"""Reading user files: safe YAML (no repeated keys, no alias bombs) and JSON, errors as one line."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from rksearch.core.errors import RKSearchError

MAX_ALIASES = 100  # aliases (``*name``, ``<<: *name``) in one YAML document
MAX_NODES = 100_000  # values in one YAML document, every alias counted as what it repeats


class _Refused(yaml.composer.ComposerError):
    """Well-formed YAML that rksearch will not read (too many aliases, a recursive structure)."""


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_: set[int]) -> int:
    """How many values ``node`` holds once its aliases are expanded; refuses more than
    MAX_NODES (an alias bomb: a few hundred bytes that expand to billions) and an alias inside
    the very node it names (a structure that contains itself)."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_:
        raise _Refused(None, None, "an alias inside the node it refers to (a recursive structure)", node.start_mark)
    open_.add(key)
    children = node.value if isinstance(node, yaml.SequenceNode) else (
        [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else [])
    total = 1
    for child in children:
        total += _expanded_size(child, sizes, open_)
        if total > MAX_NODES:
            raise _Refused(None, None, f"aliases expand this document beyond {MAX_NODES:,} values", node.start_mark)
    open_.discard(key)
    sizes[key] = total
    return total


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe YAML that refuses a key given twice in one mapping, where plain YAML keeps the last
    silently (a second ``proxy:`` section would replace the first), more than MAX_ALIASES aliases,
    and aliases that expand a document beyond MAX_NODES values."""

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            self.aliases = getattr(self, "aliases", 0) + 1
            if self.aliases > MAX_ALIASES:
                raise _Refused(None, None, f"more than {MAX_ALIASES} aliases (*name)", self.peek_event().start_mark)
        return super().compose_node(parent, index)

    def compose_document(self) -> yaml.Node:
        node = super().compose_document()
        _expanded_size(node, {}, set())
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # <<: *anchor, resolved by the base class
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                again = key in seen
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if again:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def parse_yaml(text: str, source: str | Path | None) -> Any:
    """YAML text to Python data; a syntax error, a repeated key or an alias bomb becomes one line
    with its position and the file."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        what = "refused YAML" if isinstance(e, _Refused) else "malformed YAML"
        raise RKSearchError(f"{what}{where}: {problem}", source=source) from None


def parse_json(text: str, source: str | Path | None) -> Any:
    """JSON text to Python data; a syntax error becomes one line naming the file."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise RKSearchError(f"malformed JSON: {e}", source=source) from None


def read_text(path: str | Path) -> str:
    """Read a user file, turning the usual OS errors into one-line user errors."""
    p = Path(path)
    try:
        return p.read_text()
    except FileNotFoundError:
        raise RKSearchError("no such file", source=p) from None
    except IsADirectoryError:
        raise RKSearchError("is a directory, expected a file", source=p) from None
    except UnicodeDecodeError:
        raise RKSearchError("not a text file", source=p) from None
    except OSError as e:
        raise RKSearchError(e.strerror or str(e), source=p) from None


def read_data(path: str | Path) -> Any:
    """A user file's data: JSON by its ``.json`` suffix, YAML otherwise."""
    text = read_text(path)
    return parse_json(text, path) if str(path).endswith(".json") else parse_yaml(text, path)
