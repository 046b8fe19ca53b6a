"""Tool argument schemas reduced to the value shapes a plan grammar can express."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, TypeAlias

from ._ast import value_to_text
from ._regex import read_pattern

__all__ = ["ANY", "STRING", "Node", "literal_text", "normalize", "tool_params"]

# -- tool schemas as value shapes ----------------------------------------------------------------
# Tool argument schemas reduced to the value shapes a grammar can express.
#
# A JSON schema is normalized into a small hashable :data:`Node` tree. What a grammar cannot
# express exactly is widened (never narrowed), so the grammar admits a superset of valid values and
# the parser's validation has the last word; the features kept are exactly the ones the plan
# grammar enforces:
#
# - ``{"type": "string"}``, with ``minLength`` / ``maxLength`` kept up to 256 characters (a
#   string holding ``$`` or a ``${k}`` interpolation only has its lengths checked after parsing),
#   and ``pattern`` where it is in the subset :mod:`._regex` reads (a grammar then holds the
#   pattern and leaves the lengths to validation; a pattern outside it is widened); ``format``
#   is widened,
# - ``integer`` with its bounds (``minimum``, ``maximum``, exclusive ones), ``number`` with its
#   bounds (kept exactly in the JSON plan schema; the text grammars keep the sign and, for
#   bounds below 1e15, the number of integer digits), ``boolean``, ``null``, type lists,
# - ``enum`` and ``const`` of JSON values,
# - ``array`` with ``items`` (``minItems`` / ``maxItems`` kept up to 64),
# - ``object`` with ``properties`` and ``required`` (properties written in schema order),
# - ``anyOf`` / ``oneOf`` (as a union; ``oneOf`` exclusivity is left to validation),
# - local ``$ref`` into ``$defs`` / ``definitions`` (recursion widens to any value),
# - anything else: any JSON value.


#: ``("any",)``, ``("string",)``, ``("string", min, max)`` or ``("string", min, max, pattern)``,
#: ``("integer", lo, hi)``, ``("number",)`` or
#: ``("number", minimum, maximum, exclusive_minimum, exclusive_maximum)``, ``("boolean",)``,
#: ``("null",)``, ``("enum", texts)``, ``("array", item, min, max)``,
#: ``("object", ((name, node, required), ...))``, ``("union", (node, ...))``.
Node: TypeAlias = tuple[Any, ...]

ANY: Node = ("any",)
STRING: Node = ("string",)
_MAX_DEPTH = 24
#: String length bounds up to this are kept exactly; larger ones are widened.
MAX_STRING_BOUND = 256


def literal_text(value: Any) -> str:
    """How a JSON value is written in a plan (the canonical form the parser reads back)."""
    return value_to_text(value)


def normalize(schema: Any, root: Mapping[str, Any] | None = None) -> Node:
    """The :data:`Node` for ``schema``; ``root`` resolves local ``$ref`` s (default: ``schema``)."""
    if root is None:
        root = schema if isinstance(schema, Mapping) else {}
    return _norm(schema, root, (), 0)


def tool_params(schema: Mapping[str, Any]) -> tuple[tuple[str, Node, bool], ...]:
    """A tool's parameters in order: ``(name, node, required)``."""
    props = schema.get("properties") or {}
    required = set(schema.get("required") or ())
    return tuple((name, normalize(sub, schema), name in required) for name, sub in props.items())


def _resolve(ref: str, root: Mapping[str, Any]) -> Any:
    if not ref.startswith("#/"):
        return None
    node: Any = root
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _norm(schema: Any, root: Mapping[str, Any], seen: tuple[str, ...], depth: int) -> Node:
    if schema is True or schema is None or not isinstance(schema, Mapping) or depth > _MAX_DEPTH:
        return ANY
    if "$ref" in schema:
        ref = schema["$ref"]
        target = _resolve(ref, root) if isinstance(ref, str) else None
        if target is None or ref in seen:
            return ANY
        return _norm(target, root, (*seen, ref), depth + 1)
    if "const" in schema:
        return ("enum", (literal_text(schema["const"]),))
    if "enum" in schema and isinstance(schema["enum"], list) and schema["enum"]:
        return ("enum", tuple(dict.fromkeys(literal_text(v) for v in schema["enum"])))
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            return _union([_norm(o, root, seen, depth + 1) for o in options])
    t = schema.get("type")
    if isinstance(t, list):
        return _union([_norm({**schema, "type": x}, root, seen, depth + 1) for x in t])
    if t == "string":
        return _string(schema)
    if t == "integer":
        return ("integer", *_int_bounds(schema))
    if t == "number":
        return _number(schema)
    if t == "boolean":
        return ("boolean",)
    if t == "null":
        return ("null",)
    if t == "array":
        items = schema.get("items")
        item = _norm(items, root, seen, depth + 1) if isinstance(items, Mapping) else ANY
        if "prefixItems" in schema:
            item = ANY
        lo = schema.get("minItems", 0)
        hi = schema.get("maxItems")
        lo = lo if isinstance(lo, int) and lo >= 0 else 0
        hi = hi if isinstance(hi, int) and hi >= lo else None
        return ("array", item, lo, hi)
    if t == "object":
        props = schema.get("properties")
        if not isinstance(props, Mapping) or not props:
            return ("object_any",)
        required = set(schema.get("required") or ())
        return (
            "object",
            tuple((name, _norm(sub, root, seen, depth + 1), name in required) for name, sub in props.items()),
        )
    return ANY


def _string(schema: Mapping[str, Any]) -> Node:
    def bound(key: str) -> int | None:
        v = schema.get(key)
        return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None

    lo, hi = bound("minLength") or 0, bound("maxLength")
    if hi is not None and (hi < lo or hi > MAX_STRING_BOUND):
        hi = None
    lo = min(lo, MAX_STRING_BOUND)
    pattern = schema.get("pattern")
    if isinstance(pattern, str) and read_pattern(pattern) is not None:
        return ("string", lo, hi, pattern)
    return STRING if lo == 0 and hi is None else ("string", lo, hi)


def _number(schema: Mapping[str, Any]) -> Node:
    """``("number",)``, or ``("number", minimum, maximum, exclusiveMinimum, exclusiveMaximum)``
    with ``None`` for each keyword not given (finite numbers only)."""
    keys = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
    vals = [schema.get(k) for k in keys]
    vals = [
        v if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) else None
        for v in vals
    ]
    return ("number",) if all(v is None for v in vals) else ("number", *vals)


def _int_bounds(schema: Mapping[str, Any]) -> tuple[int | None, int | None]:
    def num(key: str) -> float | None:
        v = schema.get(key)
        return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None

    lo_vals = [v for v in (num("minimum"),) if v is not None]
    hi_vals = [v for v in (num("maximum"),) if v is not None]
    ex_lo, ex_hi = num("exclusiveMinimum"), num("exclusiveMaximum")
    if ex_lo is not None:
        lo_vals.append(math.floor(ex_lo) + 1)
    if ex_hi is not None:
        hi_vals.append(math.ceil(ex_hi) - 1)
    lo = math.ceil(max(lo_vals)) if lo_vals else None
    hi = math.floor(min(hi_vals)) if hi_vals else None
    return lo, hi


def _union(nodes: list[Node]) -> Node:
    flat: list[Node] = []
    for n in nodes:
        flat.extend(n[1] if n[0] == "union" else (n,))
    if any(n == ANY for n in flat):
        return ANY
    kinds = {n[0] for n in flat}
    numbers = [n for n in flat if n[0] == "number"]
    if len(numbers) > 1 or (numbers != [("number",)] and numbers and "integer" in kinds):
        # one number rule: bounds would need the union of ranges, so they are widened
        flat = [n for n in flat if n[0] != "number"] + [("number",)]
    if "number" in kinds:  # every integer is a number
        flat = [n for n in flat if n[0] != "integer"]
    if "integer" in kinds:  # one integer rule covering every range
        ints = [n for n in flat if n[0] == "integer"]
        if len(ints) > 1:
            lo = None if any(n[1] is None for n in ints) else min(n[1] for n in ints)
            hi = None if any(n[2] is None for n in ints) else max(n[2] for n in ints)
            flat = [n for n in flat if n[0] != "integer"] + [("integer", lo, hi)]
    strings = [n for n in flat if n[0] == "string"]
    if len(strings) > 1:  # one string rule: the widest bounds
        lo = min(n[1] if len(n) > 1 else 0 for n in strings)
        his = [n[2] if len(n) > 1 else None for n in strings]
        hi = None if any(h is None for h in his) else max(h for h in his if h is not None)
        merged = STRING if lo == 0 and hi is None else ("string", lo, hi)  # patterns widened
        flat = [n for n in flat if n[0] != "string"] + [merged]
    if STRING in flat:
        # a free string already admits every string enum value
        flat = [
            ("enum", tuple(t for t in n[1] if not t.startswith('"'))) if n[0] == "enum" else n for n in flat
        ]
        flat = [n for n in flat if n != ("enum", ())]
    if "object_any" in kinds:
        flat = [n for n in flat if n[0] != "object"]
    arrays = [n for n in flat if n[0] == "array"]
    if len(arrays) > 1:  # one array rule whose items take any of the item shapes
        merged = ("array", _union([a[1] for a in arrays]), min(a[2] for a in arrays), None)
        flat = [n for n in flat if n[0] != "array"] + [merged]
    enums = [t for n in flat if n[0] == "enum" for t in n[1]]
    rest = [n for n in flat if n[0] != "enum"]
    if enums:
        rest.append(("enum", tuple(dict.fromkeys(enums))))
    out = list(dict.fromkeys(rest))
    return out[0] if len(out) == 1 else ("union", tuple(out))
