"""One error type for everything a user can get wrong.

The CLI turns an :class:`RKSearchError` into a single line on stderr and exit status 2;
anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

from pathlib import Path

from rksearch.core.secrets import mask_secrets


MAX_MESSAGE = 1000  # characters of a message; a value echoed from a hostile file can be huge
MAX_FIELD = 200  # characters of a field path (keys come from the user's file too)


def capped(text: str, limit: int) -> str:
    """``text`` on one line (line breaks shown as ``\\n``), at most about ``limit`` characters; a
    capped text stays as it is when capped again (an error re-raised with its message)."""
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    if len(text) <= limit + 50:
        return text
    return f"{text[:limit]}... ({len(text) - limit:,} more characters)"


class RKSearchError(Exception):
    """A user error: bad file, bad field, bad value. ``str()`` is the one-line message, capped
    (MAX_MESSAGE, MAX_FIELD) however large a value it echoes, and never shows a URL's password
    (:func:`rksearch.core.secrets.mask_secrets`), whoever wrote the message."""

    exit_code = 2

    def __init__(self, message: str, *, source: str | Path | None = None, field: str | None = None):
        self.message = capped(mask_secrets(str(message)), MAX_MESSAGE)
        self.source = mask_secrets(str(source)) if source is not None else None
        self.field = capped(mask_secrets(str(field)), MAX_FIELD) if field is not None else None
        super().__init__(self.render())

    def render(self) -> str:
        where = ": ".join(p for p in (self.source, self.field) if p)
        return f"{where}: {self.message}" if where else self.message

    def located(self, source: str | Path) -> "RKSearchError":
        """The same error, attributed to ``source`` unless it already names a file."""
        if self.source is not None:
            return self
        return type(self)(self.message, source=source, field=self.field)


def from_validation_error(err, *, source: str | Path | None = None, prefix: str = "") -> RKSearchError:
    """Turn a pydantic ``ValidationError`` into one line that names every bad field."""
    errors = err.errors()
    locs = [tuple(e["loc"]) for e in errors]
    parts = []
    for e, loc in zip(errors, locs):
        # a container's length error caused by its own bad items adds nothing
        if e["type"] == "too_short" and any(o[: len(loc)] == loc and o != loc for o in locs):
            continue
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "model_type":  # "... or instance of Constraints": a class the user never sees
            msg = f"expected a mapping, got {type(e['input']).__name__}"
        path = [prefix] if prefix else []
        path += [str(p) for p in loc]
        head, sep, rest = msg.partition(": ")
        if sep and head.isidentifier():  # "stages: needs >= 2" raised by a model validator
            path.append(head)
            msg = rest
        where = ".".join(path)
        parts.append(f"{where}: {msg}" if where else msg)
    return RKSearchError("; ".join(parts), source=source)
