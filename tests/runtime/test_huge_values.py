"""A value no plan text can hold (an integer past Python's 4300-digit str limit) never crashes a run.

Such an integer is written ``<integer of about N digits>`` wherever a value becomes text (a
``${k}`` interpolation, the joiner's prompt, the answer); a task built by hand cannot hold one.
"""

from __future__ import annotations

import json

import anyio
import pytest

from tomasulo.exceptions import ArgumentTypeError
from tomasulo.grammar import Task, stringify
from tomasulo.planner import LLM
from tomasulo.runtime import Orchestrator
from tomasulo.testing import Latency, SimulatedLLM
from tomasulo.tools import Toolset, tool

pytestmark = pytest.mark.anyio

HUGE = 16**4000  # 4817 digits: past the 4300-digit limit of int -> str
SEEN: list[str] = []


@tool
def big() -> int:
    """A huge number."""
    return HUGE


@tool
def echo(text: str) -> str:
    """Say it back."""
    SEEN.append(text)
    return text


TOOLS = Toolset([big, echo])


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (HUGE, "<integer of about 4817 digits>"),
        (-HUGE, "<negative integer of about 4817 digits>"),
        ([1, {"n": HUGE}], '[1,{"n":"<integer of about 4817 digits>"}]'),
        (10**4299, "1" + "0" * 4299),  # the longest that Python still writes is written in full
    ],
    ids=["huge", "negative", "nested", "longest-written"],
)
def test_stringify_writes_a_huge_integer_bounded_and_never_raises(value: object, text: str) -> None:
    assert stringify(value) == text


def test_a_task_built_by_hand_cannot_hold_an_integer_no_plan_can_write() -> None:
    with pytest.raises(ArgumentTypeError, match=r"argument 'x'\[1\]: an integer of about 4817 digits"):
        Task(1, "echo", kwargs={"x": [1, HUGE]})


async def test_execute_plan_answers_with_a_huge_result_instead_of_raising() -> None:
    with anyio.fail_after(10):
        result = await Orchestrator(TOOLS).execute_plan("1. big()\n2. join()\n")
    assert result.status == "finished", result.reason
    assert result.answer == "<integer of about 4817 digits>"
    assert result.tasks[0].value == HUGE, "the value itself is kept"


async def test_a_run_with_a_huge_result_interpolated_and_reported_ends_with_a_result() -> None:
    plan = '1. big()\n2. echo(text="n = ${1}")\n3. join()\n'
    answer = json.dumps({"thought": "t", "action": "finish", "answer": "a big number"})
    sim = SimulatedLLM([plan, answer], latency=Latency())
    SEEN.clear()
    with anyio.fail_after(30):
        async with sim.serve() as url:
            async with LLM(url, model="sim") as llm:
                result = await Orchestrator(TOOLS, llm).run("q")
    assert result.status == "finished", result.reason
    assert SEEN == ["n = <integer of about 4817 digits>"]
    assert "<integer of about 4817 digits>" in sim.requests[1].prompt, "the joiner sees it bounded"
    assert result.answer == "a big number"


async def test_a_run_that_stops_with_a_huge_last_result_still_returns() -> None:
    """The best answer at hand (the last result) is written bounded when the run stops early."""
    sim = SimulatedLLM(["1. big()\n2. join()\n", "not json"], latency=Latency())
    with anyio.fail_after(30):
        async with sim.serve() as url:
            async with LLM(url, model="sim") as llm:
                result = await Orchestrator(TOOLS, llm).run("q")
    assert result.status == "failed", result.reason
    assert result.answer == "<integer of about 4817 digits>"
