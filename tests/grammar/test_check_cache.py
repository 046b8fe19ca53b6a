"""The schema validators built while checking plans live exactly as long as their tools."""

from __future__ import annotations

import gc
import weakref

import pytest

from tomasulo.exceptions import ArgumentTypeError
from tomasulo.grammar import parse_plan
from tomasulo.tools import Tool, Toolset
from tomasulo.tools._jsonschema import _validators

PLAN = '1. search(query="everest", limit=3)\n2. join()\n'


def fresh_toolset() -> Toolset:
    schema = {
        "type": "object",
        "properties": {"query": {"type": "string"}, "limit": {"type": "integer", "minimum": 1}},
        "required": ["query"],
    }
    return Toolset([Tool(name="search", input_schema=schema)])


def test_validators_are_built_once_per_tool_and_parameter() -> None:
    tools = fresh_toolset()
    parse_plan(PLAN, tools)
    cache = _validators[tools["search"]]  # the one cache of tomasulo.tools
    first = dict(cache)
    assert set(first) == {("param", "query"), ("param", "limit")}
    parse_plan(PLAN, tools)
    assert all(cache[p][1] is first[p][1] for p in first), "a live tool reuses its validators"
    with pytest.raises(ArgumentTypeError, match="limit"):
        parse_plan('1. search(query="x", limit=0)\n2. join()\n', tools)


def test_dropping_toolsets_frees_their_validators() -> None:
    gc.collect()
    before = len(_validators)
    alive: list[weakref.ref[Tool]] = []
    for _ in range(50):
        tools = fresh_toolset()
        parse_plan(PLAN, tools)
        alive.append(weakref.ref(tools["search"]))
    assert len(_validators) >= before + 1
    del tools
    gc.collect()
    assert all(ref() is None for ref in alive), "the cache does not keep tools alive"
    assert len(_validators) == before, "validators die with their tools"
