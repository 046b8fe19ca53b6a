"""Tool sources: lifecycle, prefixing, legal names and clashes between sources."""

from __future__ import annotations

from contextlib import AsyncExitStack
from types import TracebackType
from typing import Self

import anyio
import pytest

from tomasulo.exceptions import ToolsetError
from tomasulo.tools import (
    StaticTools,
    Tool,
    ToolSource,
    collect,
    legal_name,
    prefixed,
    tool,
    tools_from_schemas,
)

pytestmark = pytest.mark.anyio


@tool
def search(query: str) -> str:
    """Search."""
    return f"found {query}"


class Opened:
    """A source that records its lifecycle, like a server process would."""

    def __init__(self, tools: list[Tool], label: str = "opened") -> None:
        self.tools = tools
        self.label = label
        self.state = "new"

    async def __aenter__(self) -> Self:
        self.state = "open"
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.state = "closed"

    async def list_tools(self) -> list[Tool]:
        assert self.state == "open", "list_tools called on a source that is not open"
        return list(self.tools)


def test_sources_satisfy_the_protocol() -> None:
    assert isinstance(StaticTools([search]), ToolSource)
    assert isinstance(prefixed(StaticTools([search]), "x_"), ToolSource)
    assert isinstance(Opened([search]), ToolSource)


def test_legal_names() -> None:
    assert legal_name("get weather") == "get_weather"
    assert legal_name("2fa/verify") == "_2fa_verify"
    assert legal_name("join") == "join_"
    assert legal_name("math.factorial") == "math.factorial"
    assert legal_name("!!!") == "tool"
    assert legal_name("get weather!") == "get_weather"
    assert legal_name("café-au-lait") == "cafe-au-lait", "accents are dropped, not the letter"
    assert legal_name("_x_") == "_x_", "a legal name stays as it is"


def test_schemas_and_sources_map_names_the_same_way() -> None:
    names = ["get weather!", "a  b", "über", "_x_", "ns/tool", "2fa"]
    tools = tools_from_schemas([{"name": n} for n in names])
    assert [t.name for t in tools] == [legal_name(n) for n in names]
    assert [t.source_name for t in tools] == ["get weather!", "a  b", "über", None, "ns/tool", "2fa"]


async def test_prefixed_rename_keys_are_the_tools_own_names() -> None:
    [t] = tools_from_schemas([{"name": "get weather!"}], functions={"get weather!": lambda: "sunny"})
    with anyio.fail_after(5):
        async with prefixed(StaticTools([t]), "w_", rename={"get weather!": "weather"}) as source:
            [renamed] = await source.list_tools()
    assert (renamed.name, renamed.source_name) == ("w_weather", "get weather!")
    assert renamed.call({}) == "sunny"


async def test_prefixed_refuses_a_rename_key_that_names_no_tool() -> None:
    with anyio.fail_after(5):
        async with prefixed(StaticTools([search]), rename={"serach": "find"}) as source:
            with pytest.raises(ToolsetError, match="'serach', which the source does not have"):
                await source.list_tools()


async def test_prefixed_renames_and_the_renamed_tool_still_calls() -> None:
    with anyio.fail_after(5):
        async with prefixed(StaticTools([search]), "web_") as source:
            [t] = await source.list_tools()
    assert t.name == "web_search"
    assert t.call({"query": "x"}) == "found x"
    assert search.name == "search", "the original tool is not changed"


async def test_prefixed_refuses_two_outside_names_that_become_one() -> None:
    a = Tool(name="get weather", input_schema={"type": "object", "properties": {}})
    b = Tool(name="get_weather", input_schema={"type": "object", "properties": {}})
    with anyio.fail_after(5):
        async with prefixed(Opened([a, b])) as source:
            with pytest.raises(ToolsetError, match="'get weather' and 'get_weather'"):
                await source.list_tools()


async def test_collect_opens_sources_on_the_stack_and_refuses_clashes() -> None:
    first, second = Opened([search], "mcp:one"), Opened([search], "mcp:two")
    with anyio.fail_after(5):
        async with AsyncExitStack() as stack:
            with pytest.raises(ToolsetError, match="both mcp:one and mcp:two"):
                await collect([first, second], stack)
        assert first.state == second.state == "closed"

        third = Opened([search], "mcp:three")
        async with AsyncExitStack() as stack:
            tools = await collect([third, prefixed(Opened([search], "mcp:four"), "four_")], stack)
            assert tools.names == ("search", "four_search")
            assert third.state == "open"
        assert third.state == "closed"
