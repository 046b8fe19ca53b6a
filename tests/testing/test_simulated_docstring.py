"""SimulatedLLM's docstring example is a reply its own grammar enforcement lets through."""

from __future__ import annotations

import ast
import re
from contextlib import aclosing

import anyio
import httpx
import pytest

from tomasulo import build_grammar, parse_plan, tool
from tomasulo.planner import LLM, GrammarSpec
from tomasulo.testing import SimulatedLLM

pytestmark = pytest.mark.anyio


@tool
def search(query: str) -> str:
    """Search."""
    return query


def _example_replies() -> list[str]:
    doc = SimulatedLLM.__doc__ or ""
    found = re.search(r"SimulatedLLM\((\[.*?\])", doc)
    assert found is not None, "the docstring shows SimulatedLLM([...])"
    replies = ast.literal_eval(found.group(1))
    assert isinstance(replies, list) and all(isinstance(r, str) for r in replies)
    return replies


def test_the_example_reply_is_a_whole_plan() -> None:
    (reply,) = _example_replies()
    plan = parse_plan(reply, [search])
    assert plan.joined and [t.tool for t in plan] == ["search"]


@pytest.mark.parametrize("dialect", ["vllm", "llamacpp", "sglang"])
async def test_the_example_reply_passes_the_servers_grammar_check(dialect: str) -> None:
    (reply,) = _example_replies()
    grammar = build_grammar([search])
    spec = GrammarSpec(gbnf=grammar.gbnf(), lark=grammar.lark())
    sim = SimulatedLLM(_example_replies())
    with anyio.fail_after(20):
        async with httpx.AsyncClient(transport=sim.transport()) as http:
            async with LLM("http://sim/v1", model="m", dialect=dialect, http_client=http) as llm:  # type: ignore[arg-type]
                async with aclosing(llm.stream("plan it", grammar=spec)) as chunks:
                    text = "".join([c async for c in chunks])
    assert text == reply
    assert sim.requests[0].grammar_field is not None, "the grammar was sent and checked"
    assert sim.requests[0].status == 200
