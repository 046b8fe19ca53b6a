"""The react and parallel_fc baselines over native tool calls, as their peers run them."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from typing import Any

import anyio
import pytest

from tomasulo.dispatcher import Limits, TaskStarted
from tomasulo.planner import LLM, Prices, RetryPolicy
from tomasulo.runtime import Budget, Orchestrator
from tomasulo.testing import Latency, RecordedRequest, Reply, SimulatedLLM, ToolCall

from .rtools import Lab

pytestmark = pytest.mark.anyio

FAST = Latency(ttft=0.01, tokens_per_second=2000)
QUICK_RETRY = RetryPolicy(attempts=2, initial=0.01, maximum=0.05, total=5)
EVEREST = ToolCall("search", {"query": "everest"}, id="c1")
KILI = ToolCall("search", {"query": "kilimanjaro"}, id="c2")


@asynccontextmanager
async def served(sim: SimulatedLLM, **kw: Any) -> AsyncIterator[LLM]:
    async with sim.serve() as url:
        llm = LLM(url, model="sim", dialect="vllm", retry=QUICK_RETRY, **kw)
        try:
            yield llm
        finally:
            await llm.aclose()


def tool_results(req: RecordedRequest) -> dict[str, str]:
    return {m["tool_call_id"]: m["content"] for m in req.body["messages"] if m.get("role") == "tool"}


async def test_react_makes_one_native_call_per_turn_and_answers_in_its_last_turn() -> None:
    lab = Lab()
    seen: list[dict[str, str]] = []

    def script(req: RecordedRequest) -> Reply:
        results = tool_results(req)
        seen.append(results)
        if not results:
            return Reply.calls(EVEREST)
        if len(results) == 1:
            return Reply.calls(KILI)
        if len(results) == 2:  # the model copies the values it read into the arguments
            return Reply.calls(
                ToolCall("math", {"expression": f"{results['c1']} / {results['c2']}"}, id="c3")
            )
        return Reply(f"Everest is {results['c3']} times as tall.")

    sim = SimulatedLLM(script, latency=FAST)
    with anyio.fail_after(20):
        async with served(sim) as llm:
            result = await Orchestrator(lab.tools, llm, mode="react").run("ratio?")
    assert result.status == "finished", result.reason
    assert result.answer == "Everest is 1.5011 times as tall."
    assert result.llm_calls == 4, "three calls and the answering turn: no joiner call"
    assert result.results == {1: 8849.0, 2: 5895.0, 3: 1.5011}
    first = sim.requests[0].body
    assert [t["function"]["name"] for t in first["tools"]] == ["search", "math", "ask_human"]
    assert first["parallel_tool_calls"] is False and first["tool_choice"] == "auto"
    assert seen[1] == {"c1": "8849.0"}
    # each turn's prompt is the conversation so far: it extends the one before (prefix caches)
    prompts = [r.prompt for r in sim.requests]
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(prompts))
    assert result.plans[0] == '1. search(query="everest")\n'


async def test_parallel_fc_runs_a_turns_calls_at_once_then_answers() -> None:
    lab = Lab(delay=0.2)
    both_started = anyio.Event()
    started: list[int] = []

    def on_event(event: Any) -> None:
        if isinstance(event, TaskStarted):
            started.append(event.task_id)
            if len(started) == 2:
                both_started.set()

    def script(req: RecordedRequest) -> Reply:
        results = tool_results(req)
        if not results:
            return Reply.calls(EVEREST, KILI)
        return Reply("8849 m and 5895 m")

    sim = SimulatedLLM(script, latency=FAST)
    with anyio.fail_after(20):
        async with served(sim) as llm:
            orch = Orchestrator(lab.tools, llm, mode="parallel_fc", on_event=on_event)
            result = await orch.run("heights?")
    assert result.status == "finished", result.reason
    assert result.answer == "8849 m and 5895 m" and result.llm_calls == 2
    assert sim.requests[0].body["parallel_tool_calls"] is True
    one, two = result.task(1), result.task(2)
    assert one.started is not None and two.started is not None and one.finished is not None
    assert two.started < one.finished, "the turn's two calls overlapped"


async def test_a_refused_call_gets_an_error_result_and_counts_as_a_replan() -> None:
    lab = Lab()

    def script(req: RecordedRequest) -> Reply:
        results = tool_results(req)
        if not results:  # a tool the toolset lacks, and a call after it that is dropped
            return Reply(
                tool_calls=(ToolCall("forecast", {"city": "oslo"}, id="f"), EVEREST), check_grammar=False
            )
        if "again" not in results:
            assert "task 1 was refused" in results["f"] and "not run" in results["c1"]
            return Reply.calls(ToolCall("search", {"query": "everest"}, id="again"))
        return Reply("8849")

    sim = SimulatedLLM(script, latency=FAST)
    with anyio.fail_after(20):
        async with served(sim) as llm:
            result = await Orchestrator(lab.tools, llm, mode="parallel_fc").run("everest?")
    assert result.status == "finished", result.reason
    assert result.answer == "8849" and result.replans == 1
    assert [t.id for t in result.tasks] == [3], "the refused call and the one after it never ran"
    assert "task 1 was refused" in result.interrupts[0]


async def test_arguments_that_are_not_json_are_refused_with_the_reason() -> None:
    lab = Lab()

    def script(req: RecordedRequest) -> Reply:
        results = tool_results(req)
        if not results:
            return Reply(tool_calls=(ToolCall("search", '{"query": ', id="bad"),), check_grammar=False)
        assert "not JSON" in results["bad"]
        return Reply("no idea")

    sim = SimulatedLLM(script, latency=FAST)
    with anyio.fail_after(20):
        async with served(sim) as llm:
            result = await Orchestrator(lab.tools, llm, mode="react", budget=Budget(max_replans=1)).run("q")
    assert result.status == "finished" and result.answer == "no idea" and result.tasks == []


async def test_a_user_message_during_a_turn_reaches_the_next_turn_as_a_user_message() -> None:
    lab = Lab()
    lab.gate = anyio.Event()
    heard: list[Any] = []

    def script(req: RecordedRequest) -> Reply:
        if not tool_results(req):
            return Reply.calls(EVEREST)
        heard.append(req.body["messages"][-1])
        return Reply("denali is lower")

    sim = SimulatedLLM(script, latency=FAST)
    with anyio.fail_after(20):
        async with served(sim) as llm, Orchestrator(lab.tools, llm, mode="react") as orch:
            run = orch.start("how high?")
            async with aclosing(run.events()) as stream:
                async for event in stream:
                    if isinstance(event, TaskStarted) and event.task_id == 1:
                        break
            await run.interrupt("use denali")
            lab.gate.set()
            result = await run.result()
    assert result.status == "finished", result.reason
    assert heard == [{"role": "user", "content": "The user said: use denali"}]
    assert "the user said: use denali" in result.interrupts


async def test_a_cost_budget_cuts_a_turn_while_its_calls_stream_and_none_runs() -> None:
    lab = Lab()
    calls = tuple(ToolCall("search", {"query": "everest"}, id=f"c{i}") for i in range(10))
    sim = SimulatedLLM([Reply.calls(*calls)], latency=FAST)
    prices = Prices(prompt=0.0, completion=1_000_000.0)  # a dollar a token
    with anyio.fail_after(20):
        async with served(sim, prices=prices) as llm:
            orch = Orchestrator(lab.tools, llm, mode="parallel_fc", budget=Budget(max_cost=20.0))
            result = await orch.run("q")
    assert result.status == "stopped"
    assert "cost budget reached" in (result.reason or "") and "turn 1" in (result.reason or "")
    assert result.tasks == [] and sum(lab.calls.values()) == 0, "a turn's calls run only once it is whole"


@pytest.mark.parametrize("dialect", ["vllm", "plain"])
@pytest.mark.parametrize("mode", ["react", "parallel_fc"])
async def test_the_tools_deadline_ends_the_turns_with_a_final_answer(mode: str, dialect: str) -> None:
    """Once the tools' deadline has passed no call can run: the turns stop and the joiner
    answers with what exists (as in streaming mode), instead of turn after turn of calls
    cancelled at once until the turn bound."""
    lab = Lab()
    lab.gate = anyio.Event()  # never released: the calls hang past the deadline

    def script(req: RecordedRequest) -> Reply:
        if req.prompt.startswith("You are the joiner"):
            return Reply(json.dumps({"thought": "late", "action": "finish", "answer": "no data in time"}))
        if dialect == "plain":
            return Reply('1. search(query="everest")\n')
        return Reply.calls(EVEREST)

    sim = SimulatedLLM(script, latency=FAST)
    with anyio.fail_after(20):
        async with sim.serve() as url:
            llm = LLM(url, model="sim", dialect=dialect, retry=QUICK_RETRY)  # type: ignore[arg-type]
            try:
                orch = Orchestrator(lab.tools, llm, mode=mode, limits=Limits(deadline=0.3), max_turns=8)
                result = await orch.run("how tall is everest?")
            finally:
                await llm.aclose()
    assert result.status == "stopped" and "deadline" in (result.reason or ""), result.reason
    assert result.answer == "no data in time"
    assert len(result.plans) == 1, "no turn after the deadline"
    assert [t.status for t in result.tasks] == ["cancelled"]
