"""``echo`` and ``sleep``: small tools for tests, demos and timing experiments."""

from __future__ import annotations

from typing import Any

import anyio

from ...exceptions import ConfigError
from .._tool import Tool, ToolPolicy

__all__ = ["echo_tool", "sleep_tool"]


def echo_tool(*, name: str = "echo") -> Tool:
    """``echo(value)`` returns ``value`` unchanged (any JSON value, references included)."""

    def echo(value: Any) -> Any:
        return value

    return Tool(
        name=name,
        description="Return the value unchanged.",
        input_schema={
            "type": "object",
            "properties": {"value": {"description": "any JSON value"}},
            "required": ["value"],
            "additionalProperties": False,
        },
        policy=ToolPolicy(idempotent=True),
        fn=echo,
    )


def sleep_tool(*, max_seconds: float = 60.0, name: str = "sleep") -> Tool:
    """``sleep(seconds, value?)`` waits, then returns ``value`` (or ``seconds``)."""
    if not max_seconds > 0:
        raise ConfigError(f"max_seconds must be positive, got {max_seconds}")

    async def sleep(seconds: float, value: Any = None) -> Any:
        if not 0 <= seconds <= max_seconds:
            raise ValueError(f"seconds must be between 0 and {max_seconds}, got {seconds}")
        await anyio.sleep(seconds)
        return seconds if value is None else value

    return Tool(
        name=name,
        description=f"Wait `seconds` (at most {max_seconds}), then return `value` or the seconds.",
        input_schema={
            "type": "object",
            "properties": {
                "seconds": {"type": "number", "minimum": 0, "maximum": max_seconds},
                "value": {"description": "returned after the wait"},
            },
            "required": ["seconds"],
            "additionalProperties": False,
        },
        policy=ToolPolicy(idempotent=True),
        fn=sleep,
    )
