"""Tool sources: where a toolset's tools come from, with a lifecycle.

A source is an async context manager that lists tools once it is open::

    async with source:
        tools = await source.list_tools()

Local functions and raw schemas are sources that need no set-up (:class:`StaticTools`); MCP servers
and OpenAPI specs are sources whose ``__aenter__`` starts a process or loads a spec and whose
``__aexit__`` releases it. Calls go through each :class:`~tomasulo.tools.Tool` as for any tool, so a
source's tools get the same typing, limits and retries.

Names from outside are not always legal plan names (``get weather``, ``2fa/verify``), and two sources
may both offer ``search``. :func:`prefixed` renames a source's tools (a prefix and an explicit map),
makes each name legal, and :func:`collect` opens several sources and refuses a name clash with an
error that names both sources.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from ..exceptions import ToolsetError
from ._schemas import legal_name
from ._tool import Tool
from ._toolset import Toolset

__all__ = ["StaticTools", "ToolSource", "collect", "legal_name", "prefixed"]


@runtime_checkable
class ToolSource(Protocol):
    """An async source of tools: open it, list its tools, close it.

    ``list_tools`` may be called more than once while the source is open (an MCP server's list can
    change); each call returns the tools as they are now.
    """

    @property
    def label(self) -> str:
        """A short name for errors and logs (``mcp:weather``, ``openapi:petstore.yaml``)."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None: ...

    async def list_tools(self) -> list[Tool]:
        """The source's tools, with legal, unique names."""
        ...


class StaticTools:
    """Tools that exist already (``@tool`` functions, ``Toolset.from_schemas``) as a source.

    >>> import anyio
    >>> from tomasulo.tools import tool
    >>> @tool
    ... def echo(text: str) -> str:
    ...     return text
    >>> async def main():
    ...     async with StaticTools([echo]) as source:
    ...         return [t.name for t in await source.list_tools()]
    >>> anyio.run(main)
    ['echo']
    """

    def __init__(self, tools: Iterable[Tool], *, label: str = "local") -> None:
        self._tools = list(Toolset(tools))
        self._label = label

    @property
    def label(self) -> str:
        return self._label

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    async def list_tools(self) -> list[Tool]:
        return list(self._tools)


class prefixed:  # lower case: it reads as a function, prefixed(source, "gh_")
    """A source whose tools are renamed: ``rename`` first (outside name -> plan name), then
    ``prefix`` in front, then :func:`legal_name`. Two outside names that end up equal are refused.

    An outside name is the name the tool had where it came from (:attr:`Tool.source_name
    <tomasulo.tools.Tool.source_name>`, ``get weather``; else its name). A ``rename`` key is
    an outside name (the tool's current name works too); a key that names no tool of the source
    is refused, so a typo does not pass unnoticed.

    >>> import anyio
    >>> from tomasulo.tools import tool
    >>> @tool
    ... def search(query: str) -> str:
    ...     return query
    >>> async def main():
    ...     async with prefixed(StaticTools([search]), "web_") as source:
    ...         return [t.name for t in await source.list_tools()]
    >>> anyio.run(main)
    ['web_search']
    """

    def __init__(self, source: ToolSource, prefix: str = "", rename: Mapping[str, str] | None = None):
        self._source = source
        self._prefix = prefix
        self._rename = dict(rename or {})

    @property
    def label(self) -> str:
        return self._source.label

    async def __aenter__(self) -> Self:
        await self._source.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        return await self._source.__aexit__(exc_type, exc, tb)

    def plan_name(self, outside: str) -> str:
        """The name a tool called ``outside`` has in plans."""
        return legal_name(self._prefix + self._rename.get(outside, outside))

    async def list_tools(self) -> list[Tool]:
        out: dict[str, Tool] = {}
        origin: dict[str, str] = {}
        listed = await self._source.list_tools()
        outside_names = [t.source_name or t.name for t in listed]
        known = {*outside_names, *(t.name for t in listed)}
        unknown = [k for k in self._rename if k not in known]
        if unknown:
            raise ToolsetError(
                f"{self.label}: rename={{...}} names {', '.join(map(repr, unknown))}, which the "
                f"source does not have (its tools: {', '.join(map(repr, outside_names)) or 'none'}); "
                "use the tools' own names as keys"
            )
        for t, outside in zip(listed, outside_names, strict=True):
            name = self.plan_name(outside if outside in self._rename else t.name)
            if name in out:
                raise ToolsetError(
                    f"{self.label}: the tools {origin[name]!r} and {outside!r} would both be named "
                    f"{name!r} in plans; rename one of them (rename={{...}})"
                )
            origin[name] = outside
            out[name] = t if name == t.name else dataclasses.replace(t, name=name, source_name=outside)
        return list(out.values())


async def collect(sources: Sequence[ToolSource], stack: AsyncExitStack) -> Toolset:
    """Open every source on ``stack`` (so the caller decides when they close) and gather their
    tools into one :class:`Toolset`; a name offered by two sources is an error naming both."""
    tools = Toolset()
    owner: dict[str, str] = {}
    for source in sources:
        await stack.enter_async_context(source)
        for t in await source.list_tools():
            if t.name in owner:
                raise ToolsetError(
                    f"the tool name {t.name!r} comes from both {owner[t.name]} and {source.label}; "
                    "give one source a prefix"
                )
            owner[t.name] = source.label
            tools.add(t)
    return tools
