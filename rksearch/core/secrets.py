"""Passwords out of every text rksearch shows or records: ``scheme://user:secret@`` becomes ``scheme://user:***@``."""
from __future__ import annotations

import re
from typing import Any

MASK = "***"

# scheme://user:password@ -- the password runs to the last "@" before a blank, as a database's URL
# parser may read it (SQLAlchemy ends it at the first "@", so a stray "@" in it would show its rest as
# the host): masking too much is harmless, showing part of a password is not. No parse is needed, so
# a URL SQLAlchemy cannot read is masked all the same.
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*):(?P<secret>\S*)@")
_QUERY = re.compile(r"(?P<head>://\S*?[?&]password=)[^&\s'\"]*", re.IGNORECASE)  # libpq's ?password=


def mask_secrets(text: str) -> str:
    """``text`` with the password of every URL in it masked; the rest as it was."""
    if "://" not in text:
        return text
    text = _USERINFO.sub(lambda m: f"{m['head']}:{MASK}@", text)
    return _QUERY.sub(lambda m: m["head"] + MASK, text)


def has_masked_password(url: str) -> bool:
    """True where ``url`` holds a masked password, as recorded: it cannot open the storage."""
    return f":{MASK}@" in url or bool(re.search(rf"[?&]password={re.escape(MASK)}", url, re.IGNORECASE))


def masked(value: Any) -> Any:
    """``value`` (text, or lists, tuples and dicts of them) with every URL's password masked."""
    if isinstance(value, str):
        return mask_secrets(value)
    if isinstance(value, dict):
        return {k: masked(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(masked(v) for v in value)
    return value
