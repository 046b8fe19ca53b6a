"""LLM over real HTTP against SimulatedLLM: dialects, retries, timeouts, usage and cost."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from toy_grammar import GBNF, LARK, SCHEMA

from tomasulo.exceptions import (
    ConfigError,
    LLMConnectionError,
    LLMRateLimitError,
    LLMStatusError,
    LLMTimeout,
)
from tomasulo.planner import (
    DIALECTS,
    LLM,
    Dialect,
    GrammarSpec,
    Prices,
    RetryPolicy,
    Timeouts,
    Usage,
)
from tomasulo.testing import Latency, Reply, SimulatedLLM, count_tokens

pytestmark = pytest.mark.anyio

SPEC = GrammarSpec(gbnf=GBNF, lark=LARK, json_schema=SCHEMA)
PLAN = "1. search()\n2. math()\njoin()"
BAD_PLAN = "1. search()\n2. maths()\njoin()"
JSON_PLAN = '{"tasks": [{"tool": "search"}, {"tool": "math"}]}'
BAD_JSON = '{"tasks": [{"tool": "google"}]}'
FAST_RETRY = RetryPolicy(attempts=4, initial=0.01, maximum=0.05, jitter=0.1, total=10)

# dialect -> (field SimulatedLLM finds the grammar in, endpoint, output format)
EXPECTED: dict[str, tuple[str | None, str, str]] = {
    "vllm": ("structured_outputs.grammar", "/v1/chat/completions", "text"),
    "llamacpp": ("grammar", "/v1/chat/completions", "text"),
    "sglang": ("ebnf", "/v1/chat/completions", "text"),
    "openai": ("tools[plan].format", "/v1/responses", "text"),
    "ollama": ("response_format", "/v1/chat/completions", "json"),
    "plain": (None, "/v1/chat/completions", "text"),
}


@asynccontextmanager
async def served(sim: SimulatedLLM, **options: Any) -> AsyncIterator[LLM]:
    """An LLM talking to ``sim`` over real HTTP on loopback."""
    options.setdefault("retry", FAST_RETRY)
    options.setdefault("model", "test-model")
    async with sim.serve() as base_url, httpx.AsyncClient() as http:
        async with LLM(base_url, http_client=http, **options) as llm:
            yield llm


async def collect(llm: LLM, **kwargs: Any) -> str:
    async with aclosing(llm.stream("plan it", **kwargs)) as chunks:
        return "".join([chunk async for chunk in chunks])


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_every_dialect_sends_its_grammar_and_the_server_enforces_it(dialect: Dialect) -> None:
    field, path, output = EXPECTED[dialect]
    good, bad = (JSON_PLAN, BAD_JSON) if output == "json" else (PLAN, BAD_PLAN)
    sim = SimulatedLLM([good, bad])
    with anyio.fail_after(20):
        async with served(sim, dialect=dialect) as llm:
            assert llm.output_format(SPEC) == output
            assert await collect(llm, grammar=SPEC) == good
            if field is None:  # plain: no grammar, so nothing refuses the bad text
                assert await collect(llm, grammar=SPEC) == bad
            else:
                with pytest.raises(LLMStatusError, match="offset") as caught:
                    await collect(llm, grammar=SPEC)
                assert caught.value.status_code == 400
    assert [r.grammar_field for r in sim.requests] == [field, field]
    assert {r.path for r in sim.requests} == {path}
    assert len(sim.requests) == 2  # a 400 is not retried


async def test_openai_without_custom_tools_uses_the_strict_json_schema() -> None:
    sim = SimulatedLLM([JSON_PLAN])
    with anyio.fail_after(10):
        async with served(sim, dialect="openai", custom_tools=False) as llm:
            assert llm.output_format(SPEC) == "json"
            assert await collect(llm, grammar=SPEC) == JSON_PLAN
    fmt = sim.requests[0].body["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"] == SCHEMA


@pytest.mark.parametrize("dialect", ["vllm", "llamacpp", "sglang", "openai", "ollama"])
async def test_complete_with_a_json_schema_goes_in_the_json_field(dialect: Dialect) -> None:
    sim = SimulatedLLM(['{"tasks": []}', BAD_JSON])
    with anyio.fail_after(10):
        async with served(sim, dialect=dialect) as llm:
            assert await llm.complete("answer", json_schema=SCHEMA) == '{"tasks": []}'
            with pytest.raises(LLMStatusError, match="grammar"):
                await llm.complete("answer", json_schema=SCHEMA)
    assert sim.requests[0].grammar_field is not None
    assert sim.requests[0].body.get("stream") is not True


def test_a_dialect_without_a_usable_form_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="ollama"):
        LLM("http://127.0.0.1:1/v1", model="m", dialect="ollama").output_format(GrammarSpec(gbnf=GBNF))
    with pytest.raises(ConfigError, match="unknown LLM dialect"):
        LLM("http://127.0.0.1:1/v1", model="m", dialect="bogus")  # type: ignore[arg-type]


async def test_rate_limit_is_retried_after_retry_after() -> None:
    sim = SimulatedLLM([Reply.rate_limited(retry_after=0.3), PLAN])
    usage = Usage()
    with anyio.fail_after(10):
        async with served(sim, dialect="llamacpp") as llm:
            assert await collect(llm, grammar=SPEC, usage=usage) == PLAN
    first, second = sim.requests
    assert second.time - first.time >= 0.3  # the server's Retry-After, not our 10 ms backoff
    assert (usage.requests, usage.retries) == (2, 1)


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_are_retried(status: int) -> None:
    sim = SimulatedLLM([Reply.server_error(status), Reply.server_error(status), PLAN])
    with anyio.fail_after(10):
        async with served(sim, dialect="vllm") as llm:
            assert await llm.complete("plan it", grammar=SPEC) == PLAN
    assert [r.status for r in sim.requests] == [status, status, 200]


async def test_retries_are_bounded() -> None:
    sim = SimulatedLLM([Reply.rate_limited(0.01)] * 5)
    with anyio.fail_after(10):
        async with served(sim, dialect="vllm", retry=FAST_RETRY) as llm:
            with pytest.raises(LLMRateLimitError, match="429"):
                await collect(llm)
    assert len(sim.requests) == FAST_RETRY.attempts


async def test_a_disconnect_mid_stream_raises_with_the_partial_text() -> None:
    sim = SimulatedLLM([Reply.disconnect(PLAN, after_tokens=count_tokens("1. search()\n")), PLAN])
    received: list[str] = []
    with anyio.fail_after(10):
        async with served(sim, dialect="llamacpp") as llm:
            with pytest.raises(LLMConnectionError) as caught:
                async with aclosing(llm.stream("plan it", grammar=SPEC)) as chunks:
                    async for chunk in chunks:
                        received.append(chunk)
            usage = llm.usage
    assert caught.value.partial == "1. search()\n" == "".join(received)
    assert len(sim.requests) == 1  # never retried once text was produced
    assert sim.pending == 1
    assert usage.estimated == 1 and usage.completion_tokens > 0


async def test_a_disconnect_before_any_text_is_retried() -> None:
    sim = SimulatedLLM([Reply.disconnect(PLAN, after_tokens=0), PLAN])
    with anyio.fail_after(10):
        async with served(sim, dialect="sglang") as llm:
            assert await collect(llm, grammar=SPEC) == PLAN
    assert len(sim.requests) == 2


async def test_a_stall_hits_the_read_timeout() -> None:
    sim = SimulatedLLM([Reply.stall(PLAN, after_tokens=count_tokens("1. search()\n"), seconds=30)])
    timeouts = Timeouts(read=0.3)
    with anyio.fail_after(10):
        async with served(sim, dialect="vllm", timeouts=timeouts) as llm:
            start = anyio.current_time()
            with pytest.raises(LLMTimeout, match="read timeout") as caught:
                await collect(llm, grammar=SPEC)
            elapsed = anyio.current_time() - start
    assert caught.value.partial == "1. search()\n"
    assert 0.3 <= elapsed < 2
    assert len(sim.requests) == 1


async def test_a_silent_server_times_out_and_is_retried() -> None:
    sim = SimulatedLLM([Reply.stall(PLAN, after_tokens=0, seconds=30), PLAN])
    with anyio.fail_after(10):
        async with served(sim, dialect="vllm", timeouts=Timeouts(read=0.2)) as llm:
            assert await llm.complete("plan it", grammar=SPEC) == PLAN
    assert len(sim.requests) == 2


async def test_usage_and_cost_add_up_across_calls() -> None:
    answer = '{"answer": "Paris"}'
    sim = SimulatedLLM([PLAN, Reply.rate_limited(0.01), answer, PLAN])
    prices = Prices(prompt=2.0, completion=10.0)
    run = Usage()
    with anyio.fail_after(10):
        async with served(sim, dialect="openai", prices=prices) as llm:
            await collect(llm, grammar=SPEC, usage=run)
            await llm.complete("what now?", json_schema={"type": "object"}, usage=run)
            await llm.complete("plan it")  # not part of the run
            total = llm.usage
    prompt = 2 * count_tokens("plan it") + count_tokens("what now?")
    completion = 2 * count_tokens(PLAN) + count_tokens(answer)
    assert (total.prompt_tokens, total.completion_tokens) == (prompt, completion)
    assert (total.requests, total.retries, total.estimated) == (4, 1, 0)
    assert total.cost == pytest.approx((prompt * 2.0 + completion * 10.0) / 1e6)
    run_prompt = count_tokens("plan it") + count_tokens("what now?")
    assert (run.prompt_tokens, run.completion_tokens) == (
        run_prompt,
        count_tokens(PLAN) + count_tokens(answer),
    )
    assert run.requests == 3
    stream_request = sim.requests[0]
    assert stream_request.path == "/v1/responses"
    chat = sim.requests[2].body
    assert chat["stream_options"] if chat.get("stream") else chat["response_format"]


async def test_in_process_transport_works_too() -> None:
    sim = SimulatedLLM([PLAN, json.dumps({"tasks": []})])
    with anyio.fail_after(10):
        async with (
            httpx.AsyncClient(transport=sim.transport()) as http,
            LLM("http://sim/v1", model="m", dialect="vllm", http_client=http) as llm,
        ):
            assert await collect(llm, grammar=SPEC) == PLAN
            assert await llm.complete("x", json_schema=SCHEMA) == '{"tasks": []}'
    assert sim.requests[0].body["stream_options"] == {"include_usage": True}
    assert sim.requests[1].body["structured_outputs"] == {"json": SCHEMA}


async def test_preempting_a_stream_releases_it_promptly() -> None:
    words = " ".join(f"w{i}" for i in range(200))
    sim = SimulatedLLM([words, words], latency=Latency(ttft=0.05, tokens_per_second=20))
    with anyio.fail_after(10):
        async with served(sim, dialect="plain") as llm:
            start = anyio.current_time()
            got: list[str] = []
            async with aclosing(llm.stream("plan it")) as chunks:
                async for chunk in chunks:
                    got.append(chunk)
                    if len(got) == 3:
                        break  # preempted, as the planner does on an interrupt
            assert anyio.current_time() - start < 1.0  # not the 10 s the whole reply takes
            assert "".join(got) == "w0 w1 w2"[: len("".join(got))]
            assert llm.usage.requests == 1
            with anyio.move_on_after(0.2) as scope:  # a caller's deadline cancels the wait
                await llm.complete("plan it")
            assert scope.cancelled_caught


async def test_closing_an_llm_leaves_an_injected_http_client_open_for_the_next_one() -> None:
    sim = SimulatedLLM(["1. search()\n2. join()", "1. math()\n2. join()"])
    with anyio.fail_after(20):
        async with sim.serve() as base_url, httpx.AsyncClient() as http:
            for expected in ("search", "math"):  # one LLM per workflow step, one shared client
                async with LLM(base_url, model="m", http_client=http, retry=FAST_RETRY) as llm:
                    assert expected in await llm.complete("plan it")
            assert not http.is_closed
