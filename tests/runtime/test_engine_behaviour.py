"""What real engines do that a faithful protocol alone does not: fields each server reads,
answers cut off at ``max_tokens``, replies that are not JSON, chatty models, late interrupts.

Each test drives a real run over HTTP against SimulatedLLM (uvicorn on loopback); the llama.cpp
server itself is exercised in ``tests/engines``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from typing import Any

import anyio
import pytest

from tomasulo.exceptions import LLMTruncated
from tomasulo.planner import JOINER_MAX_TOKENS, LLM, PLAN_TOKENS_PER_TASK, RetryPolicy
from tomasulo.runtime import Budget, Orchestrator, RunResult
from tomasulo.testing import Latency, RecordedRequest, Reply, SimulatedLLM

from .rtools import Lab

pytestmark = pytest.mark.anyio

PLAN = (
    '1. search(query="everest")\n2. search(query="kilimanjaro")\n'
    '3. math(expression="${1} / ${2}")\n4. join()\n'
)
JSON_PLAN = json.dumps(
    {
        "tasks": [
            {"id": 1, "tool": "search", "args": {"query": "everest"}},
            {"id": 2, "tool": "search", "args": {"query": "kilimanjaro"}},
            {"id": 3, "tool": "math", "args": {"expression": "${1} / ${2}"}},
        ]
    }
)
FAST = Latency(ttft=0.01, tokens_per_second=4000)
QUICK_RETRY = RetryPolicy(attempts=2, initial=0.01, maximum=0.02, total=5)
QUESTION = "How many times taller is Everest?"


def finish(answer: str) -> str:
    return json.dumps({"thought": "done", "action": "finish", "answer": answer})


@asynccontextmanager
async def served(sim: SimulatedLLM, dialect: str = "vllm", **kw: Any) -> AsyncIterator[LLM]:
    async with sim.serve() as url:
        llm = LLM(url, model="sim", dialect=dialect, retry=QUICK_RETRY, **kw)  # type: ignore[arg-type]
        try:
            yield llm
        finally:
            await llm.aclose()


async def run(sim: SimulatedLLM, dialect: str = "vllm", *, llm_kw: Any = None, **orch_kw: Any) -> RunResult:
    with anyio.fail_after(30):
        async with served(sim, dialect, **(llm_kw or {})) as llm:
            return await Orchestrator(Lab().tools, llm, **orch_kw).run(QUESTION)


def last_user(request: RecordedRequest) -> str:
    messages = request.body.get("messages") or request.body["input"]  # chat, or Responses
    return str(messages[-1]["content"])


# -- the joiner's schema goes where each server reads it -----------------------------------------

JOINER_FIELD = {
    "vllm": "structured_outputs.json",
    "llamacpp": "response_format",  # llama-cpp-python ignores the top-level json_schema
    "sglang": "response_format",
    "openai": "response_format",
    "ollama": "response_format",  # Ollama's /v1 endpoint ignores its native `format`
    "plain": None,
}


@pytest.mark.parametrize("dialect", sorted(JOINER_FIELD))
async def test_the_joiner_schema_goes_in_the_field_each_server_honours(dialect: str) -> None:
    plan = JSON_PLAN if dialect == "ollama" else PLAN
    sim = SimulatedLLM([plan, finish("1.5")], latency=FAST)
    result = await run(sim, dialect)
    assert result.status == "finished", result.reason
    joiner = sim.requests[1]
    assert joiner.grammar_field == JOINER_FIELD[dialect]
    if dialect == "llamacpp":  # the one form llama-server and llama-cpp-python both read
        fmt = joiner.body["response_format"]
        assert fmt["type"] == "json_object" and "oneOf" in fmt["schema"]
        assert "json_schema" not in joiner.body
    elif JOINER_FIELD[dialect] == "response_format":
        fmt = joiner.body["response_format"]
        assert fmt["type"] == "json_schema" and "oneOf" in fmt["json_schema"]["schema"]
        assert "json_schema" not in joiner.body and "format" not in joiner.body
    assert joiner.body["max_tokens"] == JOINER_MAX_TOKENS


# -- joiner replies that do not parse ------------------------------------------------------------


async def test_a_joiner_reply_that_is_not_json_gets_one_repair_round() -> None:
    sim = SimulatedLLM(
        [PLAN, Reply("The answer is 1.5, I think.", check_grammar=False), finish("1.5 times")], latency=FAST
    )
    result = await run(sim)
    assert result.status == "finished", result.reason
    assert result.answer == "1.5 times"
    assert len(sim.requests) == 3
    repair = sim.requests[2].body["messages"]
    assert repair[-2] == {"role": "assistant", "content": "The answer is 1.5, I think."}
    assert "could not be read" in repair[-1]["content"]


async def test_a_joiner_reply_cut_off_at_max_tokens_is_repaired_not_parsed() -> None:
    cut = Reply.truncated('{"thought": "both heights are known", "action": "fin')
    sim = SimulatedLLM([PLAN, cut, finish("1.5 times")], latency=FAST)
    result = await run(sim)
    assert result.status == "finished", result.reason
    assert result.answer == "1.5 times"
    assert "token limit" in last_user(sim.requests[2]) or "length" in last_user(sim.requests[2])


async def test_joiner_replies_unreadable_twice_stop_with_the_best_answer_and_keep_the_tasks() -> None:
    bad = Reply("no idea", check_grammar=False)
    sim = SimulatedLLM([PLAN, bad, bad], latency=FAST)
    result = await run(sim)
    assert result.status == "stopped", result.reason
    assert "repair round" in (result.reason or "")
    assert result.answer == "1.5011"
    assert result.results == {1: 8849.0, 2: 5895.0, 3: 1.5011}
    assert len(sim.requests) == 3


# -- plans cut off at the token limit ------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["vllm", "openai"])  # chat "length"; Responses "incomplete"
async def test_a_plan_cut_off_by_length_is_continued_by_a_replan_never_taken_as_complete(
    dialect: str,
) -> None:
    cut = Reply.truncated('1. search(query="everest")\n2. search(query="kilim')
    rest = '2. search(query="kilimanjaro")\n3. math(expression="${1} / ${2}")\n4. join()\n'
    sim = SimulatedLLM([cut, rest, finish("1.5")], latency=FAST)
    result = await run(sim, dialect)
    assert result.status == "finished", result.reason
    assert result.replans == 1
    assert any("cut off" in i and "token limit" in i for i in result.interrupts), result.interrupts
    assert result.results == {1: 8849.0, 2: 5895.0, 3: 1.5011}
    assert "cut off" in last_user(sim.requests[1])


async def test_a_plan_request_is_bounded_by_the_task_cap() -> None:
    sim = SimulatedLLM([PLAN, finish("1.5")], latency=FAST)
    result = await run(sim, max_tasks=5)
    assert result.status == "finished", result.reason
    assert sim.requests[0].body["max_tokens"] == PLAN_TOKENS_PER_TASK * 6
    assert "stop" not in sim.requests[0].body  # the grammar ends the plan


async def test_the_llm_cap_bounds_every_request() -> None:
    sim = SimulatedLLM([PLAN, finish("1.5")], latency=FAST)
    result = await run(sim, llm_kw={"max_tokens": 300})
    assert result.status == "finished", result.reason
    assert [r.body["max_tokens"] for r in sim.requests] == [300, 300]


async def test_sampling_settings_pass_through_on_every_request() -> None:
    sim = SimulatedLLM([PLAN, finish("1.5")], latency=FAST)
    result = await run(sim, llm_kw={"temperature": 0.3, "top_p": 0.9, "seed": 7})
    assert result.status == "finished", result.reason
    for request in sim.requests:
        assert (request.body["temperature"], request.body["top_p"], request.body["seed"]) == (0.3, 0.9, 7)


async def test_stream_and_complete_raise_truncated_with_the_text_when_the_server_says_length() -> None:
    sim = SimulatedLLM(["1. search(query=", "1. search(query="], latency=FAST)
    with anyio.fail_after(20):
        async with served(sim) as llm:
            got: list[str] = []
            with pytest.raises(LLMTruncated, match="max_tokens=3") as caught:
                async with aclosing(llm.stream("plan", max_tokens=3)) as chunks:
                    async for piece in chunks:
                        got.append(piece)
            assert caught.value.partial == "".join(got) and caught.value.max_tokens == 3
            with pytest.raises(LLMTruncated) as whole:
                await llm.complete("answer", max_tokens=2)
            assert whole.value.partial


# -- plain servers: prose is not a plan ----------------------------------------------------------


async def test_plain_prose_with_no_task_gets_a_repair_round_not_an_empty_plan() -> None:
    prose = "Everest is the tallest mountain; I would look both heights up."
    sim = SimulatedLLM([prose, PLAN, finish("1.5")], latency=FAST)
    result = await run(sim, "plain", budget=Budget(max_replans=0))
    assert result.status == "finished", result.reason
    assert result.replans == 0
    assert result.results[3] == 1.5011
    repair = sim.requests[1].body["messages"]
    assert repair[-2] == {"role": "assistant", "content": prose}
    assert "holds no plan" in repair[-1]["content"]
    assert sim.requests[0].body["stop"] == ["<END_OF_PLAN>"]


async def test_a_plain_plan_that_stops_before_join_is_detected_and_continued() -> None:
    first = '1. search(query="everest")\n2. search(query="kilimanjaro")\n'
    sim = SimulatedLLM([first, '3. math(expression="${1} / ${2}")\n4. join()', finish("1.5")], latency=FAST)
    result = await run(sim, "plain")
    assert result.status == "finished", result.reason
    assert result.replans == 1
    assert any("without join()" in i for i in result.interrupts), result.interrupts
    assert result.results == {1: 8849.0, 2: 5895.0, 3: 1.5011}


# -- interrupts that arrive while the joiner decides ---------------------------------------------


def joiner_interrupted(holder: dict[str, Any], message: str) -> Any:
    """Replies in order; the first joiner request delivers a user message to the run first."""

    async def source(record: RecordedRequest) -> Reply | str:
        if record.index == 0:
            return PLAN
        if record.index == 1:
            await holder["handle"].interrupt(message)
            return finish("8849 / 5895 = 1.5011")
        if record.index == 2:
            return "5. join()\n"
        return finish("1.5011 times (in feet too)")

    return source


async def _interrupted_run(budget: Budget) -> tuple[RunResult, SimulatedLLM]:
    holder: dict[str, Any] = {}
    sim = SimulatedLLM(joiner_interrupted(holder, "answer in feet too"), latency=FAST)
    with anyio.fail_after(30):
        async with served(sim) as llm:
            async with Orchestrator(Lab().tools, llm, budget=budget) as orch:
                holder["handle"] = orch.start(QUESTION)
                return await holder["handle"].result(), sim


async def test_a_user_message_during_the_joiner_call_replans_and_is_recorded() -> None:
    result, sim = await _interrupted_run(Budget())
    assert result.status == "finished", result.reason
    assert result.answer == "1.5011 times (in feet too)"
    assert result.interrupts == ["the user said: answer in feet too"]
    assert result.replans == 1 and len(result.plans) == 2
    assert "answer in feet too" in last_user(sim.requests[2])


async def test_a_user_message_during_the_last_allowed_joiner_call_is_answered_and_recorded() -> None:
    result, sim = await _interrupted_run(Budget(max_replans=0))
    assert result.status == "finished", result.reason
    assert result.answer == "8849 / 5895 = 1.5011"
    assert result.interrupts == ["the user said: answer in feet too"]
    assert len(sim.requests) == 2


# -- SimulatedLLM as a given server: only the fields that server reads count -----------------------

SERVERS = [
    ("vllm", "vllm"),
    ("llamacpp", "llama-server"),
    ("llamacpp", "llama-cpp-python"),
    ("sglang", "sglang"),
    ("openai", "openai"),
    ("ollama", "ollama"),
]


@pytest.mark.parametrize(("dialect", "server"), SERVERS)
async def test_every_request_of_a_dialect_is_constrained_by_its_server(dialect: str, server: str) -> None:
    plan = JSON_PLAN if dialect == "ollama" else PLAN
    sim = SimulatedLLM([plan, finish("1.5")], latency=FAST, server=server)
    result = await run(sim, dialect)
    assert result.status == "finished", result.reason
    assert [r.grammar_field is not None for r in sim.requests] == [True, True], [
        r.grammar_field for r in sim.requests
    ]


def test_a_server_profile_ignores_fields_its_server_does_not_read() -> None:
    from tomasulo.testing import InvalidGrammar, find_constraint

    schema = {"type": "object"}
    path = "/v1/chat/completions"
    # the joiner's old llamacpp request: llama-server reads it, llama-cpp-python does not
    assert find_constraint(path, {"json_schema": schema}, server="llama-server") is not None
    assert find_constraint(path, {"json_schema": schema}, server="llama-cpp-python") is None
    assert find_constraint(path, {"format": schema}, server="ollama") is None
    openai_form = {"response_format": {"type": "json_schema", "json_schema": {"schema": schema}}}
    with pytest.raises(InvalidGrammar, match="refuses"):
        find_constraint(path, openai_form, server="llama-cpp-python")
    with pytest.raises(ValueError, match="unknown server"):
        SimulatedLLM(server="tgi")
