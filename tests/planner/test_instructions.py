"""Planner instructions and few-shot examples, per Orchestrator and per run."""

from __future__ import annotations

import json

import anyio
import pytest

from tomasulo import LLM, Orchestrator, tool
from tomasulo.exceptions import ConfigError
from tomasulo.planner import PlanContext, planner_messages
from tomasulo.testing import Latency, SimulatedLLM
from tomasulo.tools import Toolset

pytestmark = pytest.mark.anyio

FAST = Latency(ttft=0.01, tokens_per_second=5000)
FINISH = json.dumps({"thought": "done", "action": "finish", "answer": "Paris"})
EXAMPLE = 'Question: Capital of Peru?\n1. lookup(country="Peru")\n2. join()'


@tool
def lookup(country: str) -> str:
    """Look up a country's capital."""
    return {"France": "Paris"}.get(country, "?")


TOOLS = Toolset([lookup])


def system_prompt(ctx: PlanContext, output: str = "text") -> str:
    return planner_messages(TOOLS, ctx, output=output)[0]["content"]  # type: ignore[arg-type]


@pytest.mark.parametrize("output", ["text", "json"])
def test_instructions_and_examples_end_the_system_prompt(output: str) -> None:
    plain = system_prompt(PlanContext("q"), output)
    told = system_prompt(PlanContext("q", instructions="Prefer lookup.", examples=[EXAMPLE]), output)
    assert told.startswith(plain)
    assert told[len(plain) :] == f"\n\nExample 2:\n{EXAMPLE}\n\nInstructions:\nPrefer lookup."


def test_without_instructions_the_prompt_is_unchanged() -> None:
    assert system_prompt(PlanContext("q", instructions="  ", examples=["", " "])) == system_prompt(
        PlanContext("q")
    )


async def test_orchestrator_and_run_instructions_reach_the_planner_in_order() -> None:
    sim = SimulatedLLM(['1. lookup("France")\n2. join()\n', FINISH], latency=FAST)
    with anyio.fail_after(20):
        async with sim.serve() as url, LLM(url, model="sim", dialect="vllm") as llm:
            orch = Orchestrator([lookup], llm, instructions="Answer in one word.", examples=[EXAMPLE])
            result = await orch.run("Capital of France?", instructions="Use lookup, never guess.")
    assert result.status == "finished", result.reason
    assert result.answer == "Paris"
    planner_request = sim.requests[0].body["messages"][0]["content"]
    assert planner_request.endswith(
        f"Example 2:\n{EXAMPLE}\n\nInstructions:\nAnswer in one word.\n\nUse lookup, never guess."
    )


def test_instructions_and_examples_are_checked() -> None:
    with pytest.raises(ConfigError, match="examples must be a list of texts"):
        Orchestrator([lookup], examples=EXAMPLE)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="instructions must be text"):
        Orchestrator([lookup], instructions=["x"])  # type: ignore[arg-type]
