"""Prompts laid out for prefix caches: what a run sends, with and without LLM(prefix_cache=True)."""

from __future__ import annotations

import json
import re

import anyio
import pytest

from tomasulo.planner import LLM, RetryPolicy
from tomasulo.runtime import Orchestrator
from tomasulo.testing import Latency, RecordedRequest, Reply, SimulatedLLM, split_tokens

from .rtools import Lab

pytestmark = pytest.mark.anyio

FAST = Latency(ttft=0.01, tokens_per_second=4000)
CACHED = Latency(
    ttft=0.01, tokens_per_second=4000, prefill_tokens_per_second=10_000, prefix_cache_tokens=100_000
)
PLAN = '1. search(query="everest")\n2. search(query="denali")\n3. join()\n'


def finish(answer: str) -> str:
    return json.dumps({"thought": "ok", "action": "finish", "answer": answer})


async def run(sim: SimulatedLLM, *, prefix_cache: bool, question: str = "which is higher?") -> None:
    async with sim.serve() as url:
        llm = LLM(url, model="sim", dialect="vllm", prefix_cache=prefix_cache, retry=RetryPolicy(attempts=1))
        async with llm:
            result = await Orchestrator(Lab().tools, llm).run(question)
    assert result.status == "finished", result.reason


@pytest.mark.parametrize("prefix_cache", [True, False])
async def test_the_joiner_extends_the_planners_prompt_only_on_a_caching_server(prefix_cache: bool) -> None:
    sim = SimulatedLLM([PLAN, finish("everest")], latency=CACHED if prefix_cache else FAST)
    with anyio.fail_after(20):
        await run(sim, prefix_cache=prefix_cache)
    plan, join = (r.body["messages"] for r in sim.requests)
    if prefix_cache:
        assert join[:2] == plan and join[2] == {"role": "assistant", "content": PLAN.rstrip()}
        assert "You are now the joiner" in join[-1]["content"] and "$2 = " in join[-1]["content"]
        # every full block of the planner's prompt but the last (where the texts part) is served
        assert sim.requests[1].cached_tokens >= len(split_tokens(sim.requests[0].prompt)) // 16 * 16 - 16
    else:
        assert join[0]["content"].startswith("You are the joiner") and len(join) == 2


async def test_a_replan_prompt_extends_the_first_plans_and_the_cache_serves_it() -> None:
    lab_fail = '1. search(query="atlantis")\n2. join()\n'

    def script(req: RecordedRequest) -> Reply | str:
        if req.index == 0:
            return lab_fail
        m = re.search(r"Continue the plan from task (\d+)", req.prompt)
        if req.index == 1 and m is not None:
            n = int(m.group(1))
            return f'{n}. search(query="everest")\n{n + 1}. join()\n'
        return finish("8849")

    sim = SimulatedLLM(script, latency=CACHED)
    with anyio.fail_after(20):
        await run(sim, prefix_cache=True)  # atlantis is not a key of the heights: the task fails
    first, replan = sim.requests[0], sim.requests[1]
    assert replan.body["messages"][:2] == first.body["messages"]
    assert first.cached_tokens == 0
    assert replan.cached_tokens >= len(split_tokens(first.prompt)) // 16 * 16 - 16
