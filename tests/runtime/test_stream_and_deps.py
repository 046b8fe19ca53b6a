"""orch.stream() outside `async with` says how to use it; deps given to a streamed run reach tools."""

from __future__ import annotations

import json

import anyio
import pytest

from tomasulo import LLM, Orchestrator, RunContext, tool
from tomasulo.exceptions import UserError
from tomasulo.testing import Latency, SimulatedLLM

pytestmark = pytest.mark.anyio

FAST = Latency(ttft=0.01, tokens_per_second=2000)
FINISH = json.dumps({"thought": "done", "action": "finish", "answer": "ok"})


@tool
def whoami(ctx: RunContext[str]) -> str:
    """Say who is asking."""
    return f"{ctx.deps} in {ctx.run_id}"


async def test_stream_outside_async_with_says_how_to_use_it() -> None:
    orch = Orchestrator([whoami])
    with anyio.fail_after(5), pytest.raises(UserError, match=r"inside `async with orchestrator:`"):
        async for _ in orch.stream("who?"):
            pass


async def test_deps_given_to_stream_reach_the_tools() -> None:
    sim = SimulatedLLM(["1. whoami()\n2. join()\n", FINISH], latency=FAST)
    with anyio.fail_after(20):
        async with sim.serve() as url:
            llm = LLM(url, model="sim", dialect="vllm")
            try:
                async with Orchestrator([whoami], llm, deps="default") as orch:
                    events = [e async for e in orch.stream("who?", deps="alice")]
            finally:
                await llm.aclose()
    done = [e for e in events if type(e).__name__ == "TaskSucceeded"]
    assert len(done) == 1
    assert done[0].outcome.value == f"alice in {events[0].run_id}"  # type: ignore[attr-defined]
