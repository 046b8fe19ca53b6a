"""JSON Schema of the JSON plan dialect, typed per tool."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ._shapes import Node

__all__ = ["plan_json_schema"]


def plan_json_schema(
    tools: Mapping[str, tuple[tuple[str, Node, bool], ...]], *, max_tasks: int, start_id: int
) -> dict[str, Any]:
    """The JSON plan dialect's schema.

    The exact shape::

        {"tasks": [
            {"id": 1, "tool": "search", "args": {"query": "Mount Everest"}},
            {"id": 2, "tool": "math", "thought": "optional",
             "args": {"expression": "${1.height_m} / 2", "x": {"$ref": 1, "path": ".height_m"}}}
        ]}

    - ``tasks`` holds 1 to ``max_tasks`` tasks; each has ``id`` (an integer, at least
      ``start_id``), ``tool`` (one of the toolset's names), ``args`` (an object typed by that
      tool's input schema, keyword arguments only) and optionally ``thought`` (a string). The end
      of the array is the plan's ``join()``.
    - Any argument value, at any depth, may instead be a reference object
      ``{"$ref": k}`` or ``{"$ref": k, "path": "<path>"}`` where ``path`` is written as in the
      text dialect after ``$k``: ``".field"``, ``"[0]"``, ``".items[0].name"``.
    - Strings may hold ``${k}`` / ``${k.field}`` interpolations, as in the text dialect.
    - ``answer`` (optional) is the plan's answer template, a string that may interpolate the
      tasks' results (``"Everest is ${3} times as tall"``), as ``join("...")`` in the text dialect.
    - What JSON Schema cannot say is left to the parser: ids rising by one from ``start_id``
      and references naming only earlier ids.
    """
    ref_schema = {
        "type": "object",
        "properties": {
            "$ref": {"type": "integer", "minimum": 1},
            "path": {"type": "string", "pattern": r"^(\.[A-Za-z_][A-Za-z0-9_]*|\[(0|[1-9][0-9]*)\])*$"},
        },
        "required": ["$ref"],
        "additionalProperties": False,
    }
    defs: dict[str, Any] = {"ref": ref_schema}
    names: dict[Node, str] = {}

    def value(node: Node) -> dict[str, Any]:
        return {"anyOf": [literal(node), {"$ref": "#/$defs/ref"}]}

    def literal(node: Node) -> dict[str, Any]:
        kind = node[0]
        if kind in ("array", "object", "any", "object_any", "union"):
            name = names.get(node)
            if name is None:
                name = names[node] = f"v{len(names)}"
                defs[name] = {}
                defs[name] = build(node)
            return {"$ref": f"#/$defs/{name}"}
        return build(node)

    def build(node: Node) -> dict[str, Any]:
        kind = node[0]
        if kind == "string":
            bounds = {"minLength": node[1]} if len(node) > 1 and node[1] else {}
            if len(node) > 2 and node[2] is not None:
                bounds["maxLength"] = node[2]
            if len(node) > 3:
                # the pattern as given (in the subset engines read), or a ${k} interpolation,
                # whose text is known only once the results exist
                return {
                    "anyOf": [
                        {"type": "string", **bounds, "pattern": node[3]},
                        {"type": "string", "pattern": r"\$\{[0-9]"},
                    ]
                }
            return {"type": "string", **bounds}
        if kind == "integer":
            ints: dict[str, Any] = {"type": "integer"}
            if node[1] is not None:
                ints["minimum"] = node[1]
            if node[2] is not None:
                ints["maximum"] = node[2]
            return ints
        if kind == "number" and len(node) > 1:
            keys = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
            return {"type": "number", **{k: v for k, v in zip(keys, node[1:], strict=True) if v is not None}}
        if kind in ("number", "boolean", "null"):
            return {"type": kind}
        if kind == "enum":
            return {"enum": [json.loads(t) for t in node[1]]}
        if kind == "union":
            return {"anyOf": [literal(n) for n in node[1]]}
        if kind == "array":
            out: dict[str, Any] = {"type": "array", "items": value(node[1])}
            if node[2]:
                out["minItems"] = node[2]
            if node[3] is not None:
                out["maxItems"] = node[3]
            return out
        if kind == "object":
            return _object(node[1])
        if kind == "object_any":
            return {"type": "object", "additionalProperties": value(("any",))}
        # any JSON value, with references anywhere inside
        return {
            "anyOf": [
                {"type": ["string", "number", "boolean", "null"]},
                {"type": "array", "items": {"$ref": "#/$defs/anyref"}},
                {"type": "object", "additionalProperties": {"$ref": "#/$defs/anyref"}},
            ]
        }

    def _object(params: tuple[tuple[str, Node, bool], ...]) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {name: value(sub) for name, sub, _ in params},
            "required": [name for name, _, req in params if req],
            "additionalProperties": False,
        }

    defs["anyref"] = {"anyOf": [literal(("any",)), {"$ref": "#/$defs/ref"}]}
    task_schemas = []
    for tool, params in tools.items():
        task_schemas.append(
            {
                "type": "object",
                "properties": {
                    "id": {"type": "integer", "minimum": start_id},
                    "tool": {"const": tool},
                    "thought": {"type": "string"},
                    "args": _object(params),
                },
                "required": ["id", "tool", "args"],
                "additionalProperties": False,
            }
        )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Plan",
        "type": "object",
        "properties": {
            "tasks": {
                "type": "array",
                "items": {"oneOf": task_schemas} if len(task_schemas) > 1 else task_schemas[0],
                "minItems": 1,
                "maxItems": max_tasks,
            },
            "answer": {"type": "string"},
        },
        "required": ["tasks"],
        "additionalProperties": False,
        "$defs": defs,
    }
