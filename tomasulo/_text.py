"""Values in messages: clipped text, short previews and descriptions that never raise.

Shared by every package (error messages name values the same way everywhere).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from typing import Any

__all__ = [
    "MAX_MESSAGE_CHARS",
    "clip_text",
    "describe_value",
    "did_you_mean",
    "json_path",
    "preview",
    "safe_str",
]

#: Error messages from tools are cut to this many characters (with a note of the full length).
MAX_MESSAGE_CHARS = 2000


def json_path(path: Any) -> str:
    """A jsonschema error path as ``a.b[0].c``."""
    out = ""
    for item in path:
        if isinstance(item, int):
            out += f"[{item}]"
        else:
            out += f".{item}" if out else str(item)
    return out


def clip_text(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text``, cut to about ``limit`` characters with a note of its full length when longer."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [cut: {len(text):,} characters in all]"


def safe_str(obj: object, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``str(obj)`` clipped to ``limit``; never raises (an object whose ``__str__`` raises, or
    returns something that is not a string, is described by its type instead)."""
    try:
        text = str(obj)
        if type(text) is not str:
            raise TypeError("__str__ returned a non-string")
    except Exception as exc:
        return f"<{type(obj).__name__} whose str() raised {type(exc).__name__}>"
    return clip_text(text, limit)


def _safe_repr(obj: object) -> str:
    try:
        text = repr(obj)
        if type(text) is not str:
            raise TypeError("__repr__ returned a non-string")
    except Exception as exc:
        return f"<{type(obj).__name__} whose repr() raised {type(exc).__name__}>"
    return text


def preview(value: Any, limit: int = 60) -> str:
    """A short text of ``value`` for error messages: compact JSON where it can be, else a repr;
    never raises, never longer than about ``limit`` characters."""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        text = _safe_repr(value)
    if len(text) > limit:
        text = text[: max(limit - 3, 1)] + "..."
    return text


def describe_value(value: Any) -> str:
    """A short description of a value for error messages: its JSON type and a clipped repr.

    Never raises, even for an object whose ``__repr__`` does.
    """
    kind = {
        type(None): "null",
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "array",
        tuple: "array",
        dict: "object",
    }.get(type(value), type(value).__name__)
    text = _safe_repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{kind} {text}"


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or ''.

    >>> did_you_mean("serch", ["search", "math"])
    " (did you mean 'search'?)"
    """
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
