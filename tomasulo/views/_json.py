"""One rule for turning any value into JSON data, so ``--json`` and batch output are always valid JSON.

Tool results are whatever Python objects tools return; the output must still parse. The rule
(also in docs/cli.md):

- ``str``, ``int``, ``bool`` and ``None`` stay as they are; a lone surrogate in a string (text that
  came from bytes that were not UTF-8) becomes U+FFFD; an integer too long for JSON text
  (over 4300 digits) becomes a string saying how many digits it has.
- finite floats stay; ``NaN``, ``inf`` and ``-inf`` become the strings ``"NaN"``,
  ``"Infinity"`` and ``"-Infinity"``.
- lists and tuples become arrays; sets and frozensets become arrays sorted by their JSON text.
- mappings become objects; keys that are not strings become their JSON text (``1`` -> ``"1"``,
  ``None`` -> ``"null"``) or, for other objects, their ``str()``.
- ``bytes``, ``bytearray`` and ``memoryview`` become ``{"base64": "..."}``.
- pydantic models become their ``model_dump(mode="json")``; dataclasses an object of their
  fields; enums their value; dates and times their ISO 8601 text.
- anything else becomes its ``str()`` (``"<unprintable T>"`` if that raises).
- a container inside itself becomes ``"<circular reference>"`` at the point where it repeats,
  and anything nested deeper than :data:`MAX_JSON_DEPTH` becomes ``"<nested too deeply>"``.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import enum
import json
import math
import re
import sys
from collections.abc import Mapping
from typing import Any

__all__ = ["MAX_JSON_DEPTH", "dumps_json", "find_lone_surrogate", "jsonable"]

#: Values nested deeper than this are cut (``"<nested too deeply>"``).
MAX_JSON_DEPTH = 100

CIRCULAR = "<circular reference>"
TOO_DEEP = "<nested too deeply>"
_SCALARS = (str, int, float, bool, type(None))
_SURROGATE = re.compile("[\ud800-\udfff]")


def _text(value: str) -> str:
    if value.isascii():
        return value
    return _SURROGATE.sub("\ufffd", value)


def _int(value: int) -> int | str:
    try:
        repr(value)
    except ValueError:
        return f"<integer of about {int(value.bit_length() * 0.30103)} digits>"
    return value


def _float(value: float) -> float | str:
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _str_of(value: Any) -> str:
    try:
        return _text(str(value))
    except Exception:
        return f"<unprintable {type(value).__name__}>"


def _key(key: Any) -> str:
    if isinstance(key, str):
        return _text(key)
    if key is None or isinstance(key, bool):
        return json.dumps(key)
    if isinstance(key, int):
        return str(_int(key))
    if isinstance(key, float):
        converted = _float(key)
        return converted if isinstance(converted, str) else repr(converted)
    return _str_of(key)


def jsonable(value: Any) -> Any:
    """``value`` as JSON data by the rule in this module's docstring; never raises.

    >>> jsonable({"n": float("nan"), "s": {2, 1}, 3: b"hi"})
    {'n': 'NaN', 's': [1, 2], '3': {'base64': 'aGk='}}
    """
    return _convert(value, set(), 0)


def _convert(value: Any, active: set[int], depth: int) -> Any:
    kind = type(value)
    if kind is str:
        return _text(value)
    if kind is bool or value is None:
        return value
    if isinstance(value, int) and not isinstance(value, bool | enum.Enum):
        return _int(int(value))
    if isinstance(value, float):
        return _float(float(value))
    if isinstance(value, str) and not isinstance(value, enum.Enum):
        return _text(str(value))
    if isinstance(value, bytes | bytearray | memoryview):
        return {"base64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, enum.Enum):
        return _convert(value.value, active, depth)
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if depth >= MAX_JSON_DEPTH:
        return TOO_DEEP
    if id(value) in active:
        return CIRCULAR
    active.add(id(value))
    try:
        return _container(value, active, depth + 1)
    finally:
        active.discard(id(value))


def _container(value: Any, active: set[int], depth: int) -> Any:
    if isinstance(value, Mapping):
        try:
            items = list(value.items())
        except Exception:
            return _str_of(value)
        return {_key(k): _convert(v, active, depth) for k, v in items}
    if isinstance(value, list | tuple):
        return [_convert(v, active, depth) for v in value]
    if isinstance(value, set | frozenset):
        converted = [_convert(v, active, depth) for v in value]
        return sorted(converted, key=lambda v: json.dumps(v, sort_keys=True))
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):
        try:
            dumped = dump(mode="json")
        except Exception:
            return _str_of(value)
        return _convert(dumped, active, depth)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = dataclasses.fields(value)
        return {f.name: _convert(getattr(value, f.name, None), active, depth) for f in fields}
    return _str_of(value)


def dumps_json(value: Any, *, indent: int | None = None, ascii_only: bool | None = None) -> str:
    """``value`` as JSON text, by :func:`jsonable`'s rule; always valid, strict JSON.

    ``ascii_only`` escapes every non-ASCII character (default: when standard output cannot
    encode UTF-8).
    """
    if ascii_only is None:
        encoding = (getattr(sys.stdout, "encoding", None) or "").lower().replace("-", "")
        ascii_only = encoding != "utf8"
    return json.dumps(jsonable(value), indent=indent, ensure_ascii=ascii_only, allow_nan=False)


def find_lone_surrogate(value: Any, _depth: int = 0) -> str | None:
    """The first lone surrogate in the strings of ``value`` (as ``U+D800``), or ``None``."""
    if isinstance(value, str):
        match = None if value.isascii() else _SURROGATE.search(value)
        return f"U+{ord(match.group()):04X}" if match else None
    if _depth > MAX_JSON_DEPTH or isinstance(value, _SCALARS):
        return None
    if isinstance(value, Mapping):
        for k, v in value.items():
            found = find_lone_surrogate(k, _depth + 1) or find_lone_surrogate(v, _depth + 1)
            if found:
                return found
    elif isinstance(value, list | tuple):
        for v in value:
            found = find_lone_surrogate(v, _depth + 1)
            if found:
                return found
    return None
