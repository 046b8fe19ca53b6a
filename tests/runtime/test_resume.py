"""Resuming a run from its journal: ``Orchestrator.run(query, resume=run_id | events)``.

The earlier run is real (SimulatedLLM over HTTP, the default InMemoryRunStore) and is cancelled
while a task is still running; the resumed run must not call the tools of the tasks that ended
again, must run the ones that did not, and must resolve references to the old results."""

from __future__ import annotations

import json
from collections import Counter

import anyio
import pytest

from tomasulo.dispatcher import Event, TaskRestored, TaskStarted, TaskSucceeded
from tomasulo.exceptions import UserError
from tomasulo.planner import LLM
from tomasulo.runtime import (
    InMemoryRunStore,
    Orchestrator,
    PlanFinished,
    PlanStarted,
    RunHandle,
    RunResult,
    RunStarted,
)
from tomasulo.testing import Latency, Reply, SimulatedLLM, count_tokens
from tomasulo.tools import Toolset, tool

pytestmark = pytest.mark.anyio

FAST = Latency(ttft=0.01, tokens_per_second=2000)
QUESTION = "What do a and b make?"
PLAN_HEAD = '1. fetch(key="a")\n2. slow(key="b")\n'
PLAN = PLAN_HEAD + '3. pair(left=$1, right="${2}!")\n4. join()\n'


def finish(answer: str) -> str:
    return json.dumps({"thought": "done", "action": "finish", "answer": answer})


class Tools:
    """Tools that count their calls; ``slow`` waits for ``release`` (set it to let it end)."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.release = anyio.Event()
        bench = self

        @tool
        def fetch(key: str) -> str:
            """Fetch a value."""
            bench.calls["fetch"] += 1
            return f"<{key}>"

        @tool
        async def slow(key: str) -> str:
            """Fetch a value slowly."""
            bench.calls["slow"] += 1
            await bench.release.wait()
            return f"[{key}]"

        @tool
        def pair(left: str, right: str) -> str:
            """Put two values together."""
            bench.calls["pair"] += 1
            return f"{left}+{right}"

        self.tools = Toolset([fetch, slow, pair])


async def cancel_once_slow_runs(handle: RunHandle, *, whole: bool = True) -> RunResult:
    """Cancel the run once task 1 has succeeded and task 2 (``slow``) has started (and, if
    ``whole``, the plan was read to its join())."""
    seen: set[str] = set()
    want = {"1 ended", "2 started"} | ({"joined"} if whole else set())
    async for event in handle.events():
        if isinstance(event, TaskSucceeded) and event.task_id == 1:
            seen.add("1 ended")
        if isinstance(event, TaskStarted) and event.task_id == 2:
            seen.add("2 started")
        if isinstance(event, PlanFinished) and event.joined:
            seen.add("joined")
        if seen >= want:
            handle.cancel()
            break
    return await handle.result()


async def test_a_cancelled_run_resumes_running_only_what_had_not_ended() -> None:
    bench = Tools()
    sim = SimulatedLLM([PLAN, finish("<a>+[b]!")], latency=FAST)
    with anyio.fail_after(30):
        async with sim.serve() as url, LLM(url, model="sim", dialect="vllm") as llm:
            orch = Orchestrator(bench.tools, llm)
            async with orch:
                first = await cancel_once_slow_runs(orch.start(QUESTION))
            assert first.status == "cancelled"
            assert bench.calls == {"fetch": 1, "slow": 1}
            bench.release.set()
            resumed = await orch.run(QUESTION, resume=first.run_id)
    assert resumed.status == "finished", resumed.reason
    assert resumed.answer == "<a>+[b]!"
    assert bench.calls == {"fetch": 1, "slow": 2, "pair": 1}, "task 1 did not run again"
    assert resumed.results == {1: "<a>", 2: "[b]", 3: "<a>+[b]!"}, "$1 resolved to the old result"
    assert len(sim.requests) == 2, "the whole plan was not asked for again: only the joiner was"
    start = resumed.timeline[0]
    assert isinstance(start, RunStarted) and start.resumed_from == first.run_id
    assert resumed.run_id != first.run_id
    assert [e.task_id for e in resumed.timeline if isinstance(e, TaskRestored)] == [1]
    assert resumed.plans == [PLAN]
    assert RunResult.from_events(resumed.timeline) == resumed


async def test_a_run_cut_mid_plan_resumes_with_a_plan_that_continues_it() -> None:
    bench = Tools()
    # the stream goes quiet after both lines, before task 3: the run is cancelled there
    cut = Reply.stall(PLAN_HEAD + '3. fetch(key="c")\n4. join()\n', count_tokens(PLAN_HEAD), seconds=30)
    continuation = '3. pair(left=$1, right="${2}!")\n4. join()\n'
    sim = SimulatedLLM([cut, continuation, finish("<a>+[b]!")], latency=FAST)
    with anyio.fail_after(30):
        async with sim.serve() as url, LLM(url, model="sim", dialect="vllm") as llm:
            orch = Orchestrator(bench.tools, llm)
            async with orch:
                first = await cancel_once_slow_runs(orch.start(QUESTION), whole=False)
            assert first.status == "cancelled"
            bench.release.set()
            events = await orch.store.load_events(first.run_id)  # type: ignore[union-attr]
            # the journal as a remote store gives it back: references in their JSON form
            remote = [Event.from_json(json.loads(json.dumps(e.to_json()))) for e in events]
            resumed = await orch.run(QUESTION, resume=remote)
    assert resumed.status == "finished", resumed.reason
    assert bench.calls == {"fetch": 1, "slow": 2, "pair": 1}
    assert resumed.results[3] == "<a>+[b]!"
    replan = sim.requests[1].prompt
    assert "Continue the plan from task 3" in replan, "the new plan continues the numbering"
    assert "had no join()" in replan
    plans = [e for e in resumed.timeline if isinstance(e, PlanStarted)]
    assert [(p.plan, p.start_id) for p in plans] == [(1, 2), (2, 3)]


class CancelOnSlow:
    """An observer that cancels the run it watches once task 1 has ended and ``slow`` started."""

    def __init__(self) -> None:
        self.scope: anyio.CancelScope | None = None
        self.run_ids: list[str] = []
        self.seen: set[str] = set()

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.run_ids.append(event.run_id)
            self.seen = set()
        if isinstance(event, (TaskSucceeded, TaskRestored)) and event.task_id == 1:
            self.seen.add("1 ended")
        if isinstance(event, TaskStarted) and event.task_id == 2:
            self.seen.add("2 started")
        if isinstance(event, PlanFinished) and event.joined:
            self.seen.add("joined")
        if self.seen == {"1 ended", "2 started", "joined"} and self.scope is not None:
            self.scope.cancel()

    async def run(self, orch: Orchestrator, **kw: object) -> str:
        """Run until cancelled; the run's id."""
        with anyio.CancelScope() as self.scope:
            await orch.run(QUESTION, **kw)  # type: ignore[arg-type]
        assert self.scope.cancelled_caught, "the run was cancelled while slow ran"
        self.scope = None
        return self.run_ids[-1]


async def test_a_resumed_run_can_be_resumed_again_through_the_store() -> None:
    bench = Tools()
    cancel = CancelOnSlow()
    sim = SimulatedLLM([PLAN, finish("<a>+[b]!")], latency=FAST)
    with anyio.fail_after(30):
        async with sim.serve() as url, LLM(url, model="sim", dialect="vllm") as llm:
            orch = Orchestrator(bench.tools, llm, store=InMemoryRunStore(), on_event=cancel)
            first = await cancel.run(orch)
            second = await cancel.run(orch, resume=first)  # resumed, and cancelled again
            assert bench.calls == {"fetch": 1, "slow": 2}
            # cancelled by its caller, the run still left its whole journal and its result
            saved = await orch.store.load_result(second)  # type: ignore[union-attr]
            assert saved is not None and saved.status == "cancelled"
            assert saved == RunResult.from_events(await orch.store.load_events(second))  # type: ignore[union-attr]
            bench.release.set()
            third = await orch.run(QUESTION, resume=second)
    assert third.status == "finished", third.reason
    assert bench.calls == {"fetch": 1, "slow": 3, "pair": 1}
    assert third.results == {1: "<a>", 2: "[b]", 3: "<a>+[b]!"}
    assert len(sim.requests) == 2, "one plan and one join in all three runs"
    start = third.timeline[0]
    assert isinstance(start, RunStarted) and start.resumed_from == second


async def test_a_run_started_in_the_background_resumes_from_events() -> None:
    bench = Tools()
    sim = SimulatedLLM([PLAN, finish("<a>+[b]!")], latency=FAST)
    with anyio.fail_after(30):
        async with sim.serve() as url, LLM(url, model="sim", dialect="vllm") as llm:
            orch = Orchestrator(bench.tools, llm)
            async with orch:
                first = await cancel_once_slow_runs(orch.start(QUESTION))
                bench.release.set()
                events = await orch.store.load_events(first.run_id)  # type: ignore[union-attr]
                with pytest.raises(UserError, match="takes resume=events"):
                    orch.start(QUESTION, resume=first.run_id)  # type: ignore[arg-type]
                resumed = await orch.start(QUESTION, resume=events).result()
    assert resumed.status == "finished", resumed.reason
    assert bench.calls == {"fetch": 1, "slow": 2, "pair": 1}


async def test_resuming_what_cannot_be_resumed_says_why() -> None:
    bench = Tools()
    orch = Orchestrator(bench.tools, LLM("http://127.0.0.1:9/v1", model="m"))
    with anyio.fail_after(10):
        with pytest.raises(UserError, match="does not hold it"):
            await orch.run(QUESTION, resume="nope")
        with pytest.raises(UserError, match="not a run's journal"):
            await orch.run(QUESTION, resume=[])
        first = await orch.execute_plan('1. fetch(key="a")\n2. join()\n')
        with pytest.raises(UserError, match="resume a run with its own question"):
            await orch.run("another question", resume=first.run_id)
        with pytest.raises(UserError, match="a react run cannot be resumed"):
            await orch.run("", resume=first.run_id, mode="react")
        with pytest.raises(UserError, match="has none"):
            await Orchestrator(bench.tools, store=None).run(QUESTION, resume="x")
