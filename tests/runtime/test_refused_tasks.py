"""A task the dispatcher refuses is handled alike in every mode: a replan, or a clear PlanError.

The refused task names a schema-only tool: the planner may call it (the grammar allows it) but
the dispatcher has nothing to run, so it refuses the task when it is submitted.
"""

from __future__ import annotations

import anyio
import pytest

from tomasulo.dispatcher import Event
from tomasulo.exceptions import PlanError
from tomasulo.grammar import Plan, Ref, Task
from tomasulo.runtime import Budget, Orchestrator, RunFinished
from tomasulo.testing import RecordedRequest, Reply, SimulatedLLM
from tomasulo.tools import Tool, Toolset

from .rtools import Lab
from .test_orchestrator import FAST, continued_from, finish, served

pytestmark = pytest.mark.anyio

FORECAST = Tool(
    name="forecast",
    description="The weather forecast for a city (schema only: nothing can run it).",
    input_schema={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def with_forecast(lab: Lab) -> Toolset:
    return Toolset([*lab.tools, FORECAST])


PLAN_WITH_REFUSAL = (
    '1. search(query="everest")\n2. forecast(city="oslo")\n3. search(query="denali")\n4. join()\n'
)


# -- the LLM modes: a refused task is reported to the planner, which continues -------------------
# (the turn modes' plan-text turns, as on plain servers; native turns: test_native_turns.py)


@pytest.mark.parametrize("mode", ["stream", "react", "parallel_fc"])
async def test_a_refused_call_is_reported_to_the_planner_in_every_mode(mode: str) -> None:
    lab = Lab()

    def script(req: RecordedRequest) -> Reply | str:
        if req.index == 0:
            return '1. forecast(city="oslo")\n2. join()\n'
        if req.index == 1:
            assert "task 1 was refused" in req.prompt and "forecast" in req.prompt
            assert "Continue the plan from task 2" in req.prompt
            return '2. search(query="everest")\n3. join()\n'
        if req.index == 2 and mode != "stream":  # the turn modes end with an empty turn
            return "3. join()\n"
        return finish("8849")

    sim = SimulatedLLM(script, latency=FAST)
    with anyio.fail_after(20):
        async with served(sim, "vllm" if mode == "stream" else "plain") as llm:
            orch = Orchestrator(with_forecast(lab), llm, mode=mode)  # type: ignore[arg-type]
            result = await orch.run("height of everest?")
    assert result.status == "finished", result.reason
    assert result.answer == "8849"
    assert [t.id for t in result.tasks] == [2], "the refused task never ran"
    assert result.replans == 1
    assert "task 1 was refused" in result.interrupts[0]
    assert lab.calls["search:everest"] == 1


@pytest.mark.parametrize("mode", ["stream", "parallel_fc"])
async def test_calls_before_a_refused_one_run_and_later_ones_are_dropped(mode: str) -> None:
    lab = Lab()

    def script(req: RecordedRequest) -> Reply | str:
        if req.index == 0:
            return PLAN_WITH_REFUSAL
        if req.index == 1:
            assert "task 2 was refused" in req.prompt and "$1 = search" in req.prompt
            n = continued_from(req.prompt)
            assert n >= 3, "ids are never reused"
            return f'{n}. math(expression="${{1}} / 2")\n{n + 1}. join()\n'
        if req.index == 2 and mode != "stream":
            n = continued_from(req.prompt)
            return f"{n}. join()\n"
        return finish("4424.5")

    sim = SimulatedLLM(script, latency=FAST)
    with anyio.fail_after(20):
        async with served(sim, "vllm" if mode == "stream" else "plain") as llm:
            orch = Orchestrator(with_forecast(lab), llm, mode=mode)  # type: ignore[arg-type]
            result = await orch.run("half of everest?")
    assert result.status == "finished", result.reason
    assert lab.calls["search:everest"] == 1
    assert lab.calls["search:denali"] == 0, "the calls after the refused one were dropped"
    assert result.results[1] == 8849.0 and 4424.5 in result.results.values()
    assert result.replans == 1


@pytest.mark.parametrize("mode", ["stream", "react", "parallel_fc"])
async def test_refusals_count_against_the_replan_bound_in_every_mode(mode: str) -> None:
    lab = Lab()
    sim = SimulatedLLM(['1. forecast(city="oslo")\n2. join()\n', finish("no forecast")], latency=FAST)
    with anyio.fail_after(20):
        async with served(sim, "vllm" if mode == "stream" else "plain") as llm:
            orch = Orchestrator(with_forecast(lab), llm, mode=mode, budget=Budget(max_replans=0))  # type: ignore[arg-type]
            result = await orch.run("weather in oslo?")
    assert result.status == "stopped", result.reason
    assert "replan bound reached (0)" in (result.reason or "")
    assert "task 1 was refused" in (result.reason or "")
    assert result.tasks == []


# -- execute_plan: no LLM to replan, so a clear PlanError naming the task, and nothing runs -------


def everest(tid: int = 1) -> Task:
    return Task(tid, "search", kwargs={"query": "everest"})


@pytest.mark.parametrize(
    ("plan", "refused", "why"),
    [
        (Plan((everest(), Task(2, "weather", kwargs={"city": "oslo"}))), 1, "unknown tool 'weather'"),
        (
            Plan((Task(1, "math", kwargs={"expression": Ref(2)}), everest(2))),
            0,
            "references $2, which is not an earlier task",
        ),
        (Plan((everest(), everest(1))), 1, "task id 1 is already taken"),
        (Plan((everest(), Task(2, "forecast", kwargs={"city": "oslo"}))), 1, "no function to run"),
    ],
    ids=["unknown-tool", "forward-reference", "repeated-id", "schema-only-tool"],
)
async def test_execute_plan_refused_task_is_a_plan_error_and_nothing_runs(
    plan: Plan, refused: int, why: str
) -> None:
    lab = Lab()
    events: list[Event] = []
    orch = Orchestrator(with_forecast(lab), on_event=events.append)
    with anyio.fail_after(5), pytest.raises(PlanError) as info:
        await orch.execute_plan(plan)
    err, task = info.value, plan.tasks[refused]
    assert f"task {task.id} was refused" in err.message and why in err.message
    assert (err.line, err.text) == (refused + 1, task.to_text()), "placed in plan.to_text()"
    assert sum(lab.calls.values()) == 0, "no task of a refused plan ran"
    finished = [e for e in events if isinstance(e, RunFinished)]
    assert len(finished) == 1 and finished[0].status == "failed"


async def test_execute_plan_text_with_a_refused_task_points_at_its_line() -> None:
    lab = Lab()
    text = 'Thought: go\n1. search(query="everest")\n2. forecast(city="oslo")\n3. join()\n'
    with anyio.fail_after(5), pytest.raises(PlanError) as info:
        await Orchestrator(with_forecast(lab)).execute_plan(text)
    assert info.value.line == 3 and "task 2 was refused" in str(info.value)
    assert lab.calls["search:everest"] == 0


@pytest.mark.parametrize("mode", ["react", "parallel_fc"])
async def test_a_turn_invalid_before_its_first_call_is_retried_with_the_error(mode: str) -> None:
    lab = Lab()

    def script(req: RecordedRequest) -> Reply | str:
        if req.index == 0:  # no grammar in the plain dialect: a misspelt tool on the first line
            return "1. serch('everest')\n2. join()<END_OF_PLAN>"
        if req.index == 1:
            assert "unknown tool 'serch'" in req.prompt
            return "1. search('everest')\n2. join()<END_OF_PLAN>"
        if req.index == 2:
            return "2. join()<END_OF_PLAN>"
        return finish("8849")

    sim = SimulatedLLM(script, latency=FAST)
    with anyio.fail_after(20):
        async with served(sim, "plain") as llm:
            result = await Orchestrator(lab.tools, llm, mode=mode).run("height of everest?")  # type: ignore[arg-type]
    assert result.status == "finished", result.reason
    assert result.answer == "8849"
    assert lab.calls["search:everest"] == 1
    assert result.replans == 1
    assert "unknown tool 'serch'" in result.interrupts[0]
