"""Tools used by the plan-language tests, built from plain schemas."""

from __future__ import annotations

from tomasulo.tools import Tool, Toolset


def plan_tools() -> Toolset:
    """search, math, get-weather, math.factorial and a tool with nested object arguments."""
    return Toolset(
        [
            Tool(
                name="search",
                description="Search the web.",
                input_schema={
                    "type": "object",
                    "properties": {
                        "query": {"type": "string"},
                        "limit": {"type": "integer", "minimum": 1},
                    },
                    "required": ["query"],
                    "additionalProperties": False,
                },
            ),
            Tool(
                name="math",
                description="Evaluate an expression.",
                input_schema={
                    "type": "object",
                    "properties": {
                        "expression": {"type": "string"},
                        "context": {"type": "array", "items": {"type": "number"}},
                    },
                    "required": ["expression"],
                },
            ),
            Tool(
                name="get-weather",
                input_schema={
                    "type": "object",
                    "properties": {
                        "city": {"type": "string"},
                        "unit": {"enum": ["celsius", "fahrenheit"]},
                    },
                    "required": ["city"],
                },
            ),
            Tool(
                name="math.factorial",
                input_schema={
                    "type": "object",
                    "properties": {"n": {"type": "integer"}},
                    "required": ["n"],
                },
            ),
            Tool(
                name="book",
                input_schema={
                    "type": "object",
                    "properties": {
                        "guest": {
                            "type": "object",
                            "properties": {
                                "name": {"type": "string"},
                                "age": {"type": "integer"},
                            },
                            "required": ["name"],
                        },
                        "nights": {"type": "integer"},
                        "vip": {"type": "boolean"},
                        "tags": {"type": "array", "items": {"type": "string"}},
                        "note": {"type": ["string", "null"]},
                    },
                    "required": ["guest"],
                },
            ),
            Tool(name="now", input_schema={"type": "object", "properties": {}}),
        ]
    )
