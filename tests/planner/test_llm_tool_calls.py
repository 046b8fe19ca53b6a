"""LLM.stream_calls: native tool calls over real HTTP against SimulatedLLM's tool-call protocol."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest

from tomasulo.exceptions import LLMConnectionError, LLMResponseError, LLMStatusError, LLMTruncated
from tomasulo.planner import LLM, FunctionCall, RetryPolicy, Usage, tool_specs
from tomasulo.testing import Disconnect, Reply, SimulatedLLM, ToolCall, count_tokens
from tomasulo.tools import Toolset, tool

pytestmark = pytest.mark.anyio


@tool
def search(entity: str) -> str:
    """Search an encyclopedia.

    Args:
        entity: what to look up.
    """
    return entity


SPECS = tool_specs(Toolset([search]))
ASK = [{"role": "user", "content": "Everest or K2?"}]
EVEREST = ToolCall("search", {"entity": "Everest"}, id="call_everest")
K2 = ToolCall("search", {"entity": "K2"}, id="call_k2")


@asynccontextmanager
async def served(sim: SimulatedLLM) -> AsyncIterator[LLM]:
    retry = RetryPolicy(attempts=2, initial=0.01, maximum=0.02, total=5)
    async with sim.serve() as url, httpx.AsyncClient() as http:
        async with LLM(url, model="m", dialect="vllm", http_client=http, retry=retry) as llm:
            yield llm


async def turn(llm: LLM, **kwargs: Any) -> list[str | FunctionCall]:
    kwargs.setdefault("tools", SPECS)
    async with aclosing(llm.stream_calls(ASK, **kwargs)) as items:
        return [item async for item in items]


async def test_parallel_calls_arrive_whole_and_in_order_with_the_request_fields() -> None:
    sim = SimulatedLLM([Reply.calls(EVEREST, K2)])
    usage = Usage()
    with anyio.fail_after(20):
        async with served(sim) as llm:
            got = await turn(llm, parallel_tool_calls=True, usage=usage)
    assert got == [
        FunctionCall("call_everest", "search", EVEREST.arguments_json()),
        FunctionCall("call_k2", "search", K2.arguments_json()),
    ]
    assert [c.args() for c in got if isinstance(c, FunctionCall)] == [{"entity": "Everest"}, {"entity": "K2"}]
    body = sim.requests[0].body
    assert body["tools"] == SPECS and body["tool_choice"] == "auto" and body["parallel_tool_calls"] is True
    assert body["stream"] is True
    expected = (
        2 * count_tokens("search")
        + count_tokens(EVEREST.arguments_json())
        + count_tokens(K2.arguments_json())
    )
    assert usage.completion_tokens == expected and usage.requests == 1


async def test_a_text_answer_is_the_answer_and_no_call() -> None:
    sim = SimulatedLLM([Reply("Everest is taller.")])
    with anyio.fail_after(20):
        async with served(sim) as llm:
            got = await turn(llm, parallel_tool_calls=False)
    assert "".join(x for x in got if isinstance(x, str)) == "Everest is taller."
    assert not [x for x in got if isinstance(x, FunctionCall)]
    assert sim.requests[0].body["parallel_tool_calls"] is False


async def test_one_call_per_turn_is_enforced_by_the_server() -> None:
    """parallel_tool_calls=False reaches the server: a reply with two calls is refused there."""
    sim = SimulatedLLM([Reply.calls(EVEREST, K2)])
    with anyio.fail_after(20):
        async with served(sim) as llm:
            with pytest.raises(LLMStatusError, match="parallel_tool_calls"):
                await turn(llm, parallel_tool_calls=False)


async def test_a_call_is_handed_over_when_the_next_one_starts_not_at_the_end() -> None:
    """The stream breaks inside the second call: the first one was already yielded."""
    cut = count_tokens("search") + count_tokens(EVEREST.arguments_json()) + count_tokens("search") + 1
    sim = SimulatedLLM([Reply(tool_calls=(EVEREST, K2), fault=Disconnect(after_tokens=cut))])
    got: list[str | FunctionCall] = []
    with anyio.fail_after(20):
        async with served(sim) as llm:
            with pytest.raises(LLMConnectionError):
                async with aclosing(llm.stream_calls(ASK, tools=SPECS)) as items:
                    async for item in items:
                        got.append(item)
    assert got == [FunctionCall("call_everest", "search", EVEREST.arguments_json())]


async def test_a_call_cut_off_at_max_tokens_is_truncated() -> None:
    sim = SimulatedLLM([Reply.calls(EVEREST)])
    with anyio.fail_after(20):
        async with served(sim) as llm:
            with pytest.raises(LLMTruncated):
                await turn(llm, max_tokens=3)


async def test_the_follow_up_turn_carries_the_calls_and_their_results() -> None:
    sim = SimulatedLLM([Reply.calls(EVEREST), Reply("8849 m")])
    with anyio.fail_after(20):
        async with served(sim) as llm:
            (call,) = await turn(llm)
            assert isinstance(call, FunctionCall)
            history = [
                *ASK,
                {"role": "assistant", "content": None, "tool_calls": [call.wire()]},
                call.result_message("Everest: 8849 m"),
            ]
            async with aclosing(llm.stream_calls(history, tools=SPECS)) as items:
                answer = "".join([x async for x in items if isinstance(x, str)])
    assert answer == "8849 m"
    sent = sim.requests[1].body["messages"]
    assert sent[1]["tool_calls"][0]["function"] == {"name": "search", "arguments": EVEREST.arguments_json()}
    assert sent[2] == {"role": "tool", "tool_call_id": "call_everest", "content": "Everest: 8849 m"}
    # the second prompt extends the first: the conversation so far is its prefix
    assert sim.requests[1].prompt.startswith(sim.requests[0].prompt)


@pytest.mark.parametrize("arguments", ['{"entity": ', "[1, 2]"])
def test_arguments_that_are_not_a_json_object_are_a_clear_error(arguments: str) -> None:
    call = FunctionCall("call_1", "search", arguments)
    with pytest.raises(LLMResponseError, match="'search' \\(id 'call_1'\\)"):
        call.args()


def test_empty_arguments_are_an_empty_object() -> None:
    assert FunctionCall("c", "search", "").args() == {}
    assert json.loads(FunctionCall("c", "s", '{"a": 1}').wire()["function"]["arguments"]) == {"a": 1}
