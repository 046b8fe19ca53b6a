"""The plan functions take a list of tools, as Orchestrator does, or a Toolset."""

from __future__ import annotations

import pytest

from tomasulo import PlanStream, Toolset, build_grammar, parse_plan, tool
from tomasulo.exceptions import ToolsetError, UnknownToolError
from tomasulo.grammar import JsonPlanStream, parse_json_plan


@tool
def search(query: str) -> str:
    """Search."""
    return query


@tool
def double(x: int) -> int:
    """Double a number."""
    return 2 * x


PLAN = '1. search("a")\n2. double(2)\n3. join()'


@pytest.mark.parametrize("tools", [[search, double], (search, double), Toolset([search, double])])
def test_parse_plan_and_plan_stream_take_a_list_of_tools(tools: object) -> None:
    plan = parse_plan(PLAN, tools)  # type: ignore[arg-type]
    assert [t.tool for t in plan] == ["search", "double"]
    stream = PlanStream(tools)  # type: ignore[arg-type]
    assert [t.tool for t in stream.feed(PLAN)] == ["search", "double"]
    assert isinstance(stream.tools, Toolset)
    with pytest.raises(UnknownToolError, match="did you mean 'search'"):
        parse_plan('1. serch("a")\n2. join()', tools)  # type: ignore[arg-type]


def test_the_json_dialect_takes_a_list_too() -> None:
    text = '{"tasks": [{"id": 1, "tool": "double", "args": {"x": 3}}]}'
    assert [t.tool for t in parse_json_plan(text, [search, double])] == ["double"]
    assert isinstance(JsonPlanStream([double]).tools, Toolset)


def test_build_grammar_takes_a_list_and_matches_the_toolsets_grammar() -> None:
    from_list = build_grammar([search, double])
    from_set = build_grammar(Toolset([search, double]))
    assert from_list.gbnf() == from_set.gbnf()
    assert from_list.tool_names == ("search", "double")


def test_a_list_with_something_else_in_it_says_what_to_do() -> None:
    def plain(x: int) -> int:
        return x

    with pytest.raises(ToolsetError, match="decorate the function with @tool"):
        parse_plan(PLAN, [search, plain])  # type: ignore[list-item]
