"""A set of tools with unique names."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from ..exceptions import ToolsetError
from ._schemas import tools_from_schemas
from ._tool import RESERVED_NAMES, Tool

__all__ = ["Toolset"]


#: Names the plan language keeps for itself.
class Toolset:
    """Tools by name, in the order they were added.

    >>> from tomasulo.tools import Toolset, tool
    >>> @tool
    ... def echo(text: str) -> str:
    ...     return text
    >>> ts = Toolset([echo])
    >>> ts["echo"].name
    'echo'
    """

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for t in tools:
            self.add(t)

    def add(self, tool: Tool) -> Tool:
        """Add a tool; a second tool with the same name is an error."""
        if not isinstance(tool, Tool):
            raise ToolsetError(
                f"Toolset.add takes a Tool, got {type(tool).__name__}; decorate the function with @tool"
            )
        if tool.name in RESERVED_NAMES:
            raise ToolsetError(f"the tool name {tool.name!r} is reserved by the plan language")
        if tool.name in self._tools:
            raise ToolsetError(
                f"a tool named {tool.name!r} is already in the toolset; give one of them another name"
            )
        self._tools[tool.name] = tool
        return tool

    def get(self, name: str) -> Tool | None:
        """The tool called ``name``, or ``None``."""
        return self._tools.get(name)

    def __getitem__(self, name: str) -> Tool:
        try:
            return self._tools[name]
        except KeyError:
            known = ", ".join(self._tools) or "none"
            raise ToolsetError(f"no tool named {name!r} (known tools: {known})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def __repr__(self) -> str:
        return f"Toolset([{', '.join(self._tools)}])"

    @property
    def names(self) -> tuple[str, ...]:
        """Tool names in order."""
        return tuple(self._tools)

    def subset(self, names: Iterable[str]) -> Toolset:
        """A new toolset with only the named tools (each must exist), in the given order."""
        return Toolset(self[n] for n in names)

    def merge(self, *others: Toolset | Iterable[Tool]) -> Toolset:
        """A new toolset with this one's tools and then the others'; a name clash is an error."""
        out = Toolset(self)
        for other in others:
            for t in other:
                out.add(t)
        return out

    def __or__(self, other: Toolset) -> Toolset:
        return self.merge(other)

    def fingerprint(self) -> str:
        """A hash of every tool's name, description and schemas: equal toolsets share it."""
        h = hashlib.sha256()
        for t in self._tools.values():
            blob = json.dumps(
                [t.name, t.description, t.input_schema, t.output_schema],
                sort_keys=True,
                default=str,
            )
            h.update(blob.encode())
        return h.hexdigest()[:16]

    @classmethod
    def from_schemas(
        cls,
        schemas: Sequence[Mapping[str, Any]],
        functions: Mapping[str, Callable[..., Any]] | None = None,
    ) -> Toolset:
        """Tools from raw schemas (OpenAI, Anthropic or MCP format), normalized.

        ``functions`` maps tool names to callables; tools without one can be planned but not run.
        Raises :class:`~tomasulo.exceptions.SchemaError` naming the tool and the field for a
        schema that cannot be normalized.
        """
        return cls(tools_from_schemas(schemas, functions or {}))
