"""End to end over real HTTP: Orchestrator -> LLM client -> SimulatedLLM (uvicorn on loopback)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager

import anyio
import pytest

from tomasulo.dispatcher import Limits, TaskStarted
from tomasulo.planner import LLM, RetryPolicy, Timeouts
from tomasulo.runtime import Budget, Orchestrator, PlanStarted, RunFinished, RunStarted, UserMessage
from tomasulo.testing import Latency, RecordedRequest, Reply, SimulatedLLM, count_tokens

from .rtools import Lab

pytestmark = pytest.mark.anyio

PLAN = (
    "Thought: both heights are independent\n"
    '1. search(query="everest")\n'
    '2. search(query="kilimanjaro")\n'
    '3. math(expression="${1} / ${2}")\n'
    "4. join()\n"
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


def finish(answer: str) -> str:
    return json.dumps({"thought": "the results answer it", "action": "finish", "answer": answer})


def continued_from(prompt: str) -> int:
    """The task id a replan prompt asks the planner to continue from."""
    m = re.search(r"Continue the plan from task (\d+)", prompt)
    assert m is not None, "the replan prompt names the next task id"
    return int(m.group(1))


#: tokens up to and including task 1's line: a stream cut there has dispatched task 1 only
TASK1_TOKENS = count_tokens(PLAN[: PLAN.index("2. search")])
FAST = Latency(ttft=0.01, tokens_per_second=2000)
QUICK_RETRY = RetryPolicy(attempts=4, initial=0.01, maximum=0.5, total=10)


@asynccontextmanager
async def served(sim: SimulatedLLM, dialect: str = "vllm", **llm_kw: object) -> AsyncIterator[LLM]:
    async with sim.serve() as url:
        kw = {"retry": QUICK_RETRY, **llm_kw}
        llm = LLM(url, model="sim", dialect=dialect, **kw)  # type: ignore[arg-type]
        try:
            yield llm
        finally:
            await llm.aclose()


@pytest.mark.parametrize("dialect", ["vllm", "llamacpp", "sglang", "openai", "ollama", "plain"])
async def test_every_dialect_end_to_end(dialect: str) -> None:
    lab = Lab()
    plan = JSON_PLAN if dialect == "ollama" else PLAN
    sim = SimulatedLLM([plan, finish("8849 m is 1.5011 times 5895 m")], latency=FAST)
    with anyio.fail_after(20):
        async with served(sim, dialect) as llm:
            result = await Orchestrator(lab.tools, llm).run("How many times taller is Everest?")
    assert result.status == "finished", result.reason
    assert result.answer == "8849 m is 1.5011 times 5895 m"
    assert result.results == {1: 8849.0, 2: 5895.0, 3: 1.5011}
    assert result.llm_calls == 2 and result.usage.requests == 2
    if dialect != "plain":  # the plan stream is read to its end, so the server's usage counts
        assert result.usage.estimated == 0
    assert result.usage.prompt_tokens > 0 and result.usage.completion_tokens > 0
    fields = [r.grammar_field for r in sim.requests]
    expected = {
        "vllm": "structured_outputs.grammar",
        "llamacpp": "grammar",
        "sglang": "ebnf",
        "openai": "tools[plan].format",
        "ollama": "response_format",
        "plain": None,
    }[dialect]
    assert fields[0] == expected
    assert all(r.status == 200 for r in sim.requests)


async def test_grammar_sent_refuses_a_plan_with_an_unknown_tool() -> None:
    """The server enforces the grammar we send: a plan naming another tool is refused (400)."""
    lab = Lab()
    sim = SimulatedLLM(['1. weather(city="Oslo")\n2. join()\n'], latency=FAST)
    with anyio.fail_after(20):
        async with served(sim) as llm:
            result = await Orchestrator(lab.tools, llm).run("weather?")
    assert result.status == "failed"
    assert "400" in (result.reason or "") or "grammar" in (result.reason or "")
    assert sim.requests[0].status == 400


async def test_rate_limit_and_server_error_are_retried() -> None:
    lab = Lab()
    sim = SimulatedLLM(
        [Reply.rate_limited(retry_after=0.05), Reply.server_error(500), PLAN, finish("1.5011")],
        latency=FAST,
    )
    with anyio.fail_after(20):
        async with served(sim) as llm:
            result = await Orchestrator(lab.tools, llm).run("ratio?")
    assert result.status == "finished" and result.answer == "1.5011"
    assert [r.status for r in sim.requests] == [429, 500, 200, 200]
    assert result.usage.retries == 2


async def test_disconnect_mid_plan_resumes_without_running_tasks_twice() -> None:
    lab = Lab()

    def script(req: RecordedRequest) -> Reply | str:
        if req.index == 0:  # the stream drops after task 1's line
            return Reply.disconnect(PLAN, after_tokens=TASK1_TOKENS)
        if req.index == 1:
            assert "Continue the plan from task 2" in req.prompt
            assert "broke off" in req.prompt
            return '2. search(query="kilimanjaro")\n3. math(expression="${1} / ${2}")\n4. join()\n'
        return finish("1.5011")

    sim = SimulatedLLM(script, latency=FAST)
    with anyio.fail_after(20):
        async with served(sim) as llm:
            result = await Orchestrator(lab.tools, llm).run("ratio?")
    assert result.status == "finished", result.reason
    assert lab.calls["search:everest"] == 1, "task 1 was dispatched before the drop and not again"
    assert lab.calls["search:kilimanjaro"] == 1
    assert result.replans == 1
    assert [t.plan for t in result.tasks] == [1, 2, 2]


async def test_replan_after_failure_reuses_old_results() -> None:
    lab = Lab(delay=0.2)  # the whole plan is read before kilimanjaro fails (no preemption race)
    lab.broken.add("kilimanjaro")

    def script(req: RecordedRequest) -> Reply | str:
        if req.index == 0:
            return PLAN
        if req.index == 1:
            assert "search backend down" in req.prompt
            assert "$1 = search" in req.prompt and "-> 8849.0" in req.prompt
            return '5. search(query="denali")\n6. math(expression="${1} / ${5}")\n7. join()\n'
        return finish("Everest is 1.4296 times Denali")

    sim = SimulatedLLM(script, latency=FAST)
    with anyio.fail_after(20):
        async with served(sim) as llm:
            result = await Orchestrator(lab.tools, llm).run("ratio?")
    assert result.status == "finished", result.reason
    statuses = {t.id: t.status for t in result.tasks}
    assert statuses == {1: "succeeded", 2: "failed", 3: "skipped", 5: "succeeded", 6: "succeeded"}
    assert result.task(6).value == 1.4296
    assert lab.calls["search:everest"] == 1, "the old result was reused, not recomputed"
    assert result.replans == 1 and "search backend down" in result.interrupts[0]


async def test_tool_interrupt_triggers_a_replan() -> None:
    lab = Lab()

    def script(req: RecordedRequest) -> Reply | str:
        if req.index == 0:
            return '1. ask_human(question="which mountain?")\n2. join()\n'
        if req.index == 1:
            assert "need the user: which mountain?" in req.prompt
            # the interrupt may preempt the plan before or after its join() line was read
            n = continued_from(req.prompt)
            return f'{n}. search(query="everest")\n{n + 1}. join()\n'
        return finish("8849")

    sim = SimulatedLLM(script, latency=FAST)
    with anyio.fail_after(20):
        async with served(sim) as llm:
            result = await Orchestrator(lab.tools, llm).run("height?")
    assert result.status == "finished" and result.answer == "8849"
    assert result.replans == 1


async def test_user_interrupt_while_the_plan_streams() -> None:
    lab = Lab()
    lab.gate = anyio.Event()  # searches wait until released
    slow = Latency(ttft=0.01, tokens_per_second=20)

    def script(req: RecordedRequest) -> Reply | str:
        if req.index == 0:
            return Reply(PLAN, latency=slow)
        if req.index == 1:
            assert "the user said: use denali instead of kilimanjaro" in req.prompt
            return '2. search(query="denali")\n3. math(expression="${1} / ${2}")\n4. join()\n'
        return finish("1.4296")

    sim = SimulatedLLM(script, latency=FAST)
    events = []
    with anyio.fail_after(20):
        async with served(sim) as llm, Orchestrator(lab.tools, llm, on_event=events.append) as orch:
            run = orch.start("ratio?")
            async with aclosing(run.events()) as stream:
                async for event in stream:
                    if isinstance(event, TaskStarted) and event.task_id == 1:
                        break
            await run.interrupt("use denali instead of kilimanjaro")
            lab.gate.set()
            result = await run.result()
    assert result.status == "finished", result.reason
    assert lab.calls["search:kilimanjaro"] == 0, "the preempted plan's later tasks never ran"
    assert lab.calls["search:everest"] == 1
    assert result.task(3).value == 1.4296
    kinds = [type(e).__name__ for e in events]
    assert "UserMessage" in kinds and kinds[-1] == "RunFinished"
    preempted = [e for e in events if type(e).__name__ == "PlanFinished"]
    assert preempted[0].preempted and preempted[0].tasks == 1
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert any(isinstance(e, UserMessage) for e in result.timeline)


async def test_replan_bound_stops_cleanly_with_the_best_answer() -> None:
    lab = Lab()
    lab.broken.add("kilimanjaro")
    sim = SimulatedLLM([PLAN, finish("best guess: Everest is 8849 m; Kilimanjaro unknown")], latency=FAST)
    with anyio.fail_after(20):
        async with served(sim) as llm:
            result = await Orchestrator(lab.tools, llm, budget=Budget(max_replans=0)).run("ratio?")
    assert result.status == "stopped"
    assert "replan bound reached (0)" in (result.reason or "")
    assert result.answer is not None and "8849" in result.answer


async def test_token_budget_spent_by_the_prompt_cuts_the_plan_at_its_first_chunk() -> None:
    """The planner's prompt alone is far over 50 tokens: the stream is cut at once (the bound
    holds during a stream, within one chunk), and no joiner call follows."""
    lab = Lab()
    sim = SimulatedLLM([PLAN, finish("x")], latency=FAST)
    with anyio.fail_after(20):
        async with served(sim) as llm:
            result = await Orchestrator(lab.tools, llm, budget=Budget(max_tokens=50)).run("ratio?")
    assert result.status == "stopped" and "token budget" in (result.reason or "")
    assert len(sim.requests) == 1, "no joiner call once the budget is spent"
    assert result.tasks == [] and sum(lab.calls.values()) == 0
    assert result.usage.completion_tokens <= 2, "only the first chunk was read ('Thought')"


async def test_wall_time_budget_cancels_everything_quickly() -> None:
    lab = Lab()
    lab.gate = anyio.Event()  # never released: tools hang
    sim = SimulatedLLM([PLAN, finish("x")], latency=FAST)
    with anyio.fail_after(20):
        async with served(sim) as llm:
            t0 = anyio.current_time()
            result = await Orchestrator(lab.tools, llm, budget=Budget(max_seconds=0.5)).run("ratio?")
            elapsed = anyio.current_time() - t0
    assert result.status == "stopped" and "wall-time budget" in (result.reason or "")
    assert elapsed < 2.0
    assert {t.status for t in result.tasks} <= {"cancelled", "skipped"}


async def test_tool_deadline_interrupt_asks_for_a_final_answer() -> None:
    lab = Lab()
    lab.gate = anyio.Event()
    sim = SimulatedLLM([PLAN, finish("no data in time")], latency=FAST)
    with anyio.fail_after(20):
        async with served(sim) as llm:
            orch = Orchestrator(lab.tools, llm, limits=Limits(deadline=0.3))
            result = await orch.run("ratio?")
    assert result.status == "stopped" and "deadline" in (result.reason or "")
    assert result.answer == "no data in time"


async def test_llm_down_fails_the_run_with_a_clear_reason() -> None:
    lab = Lab()
    sim = SimulatedLLM([Reply.server_error(503)] * 10, latency=FAST)
    with anyio.fail_after(20):
        async with served(sim, retry=RetryPolicy(attempts=2, initial=0.01, maximum=0.05, total=5)) as llm:
            result = await Orchestrator(lab.tools, llm).run("ratio?")
    assert result.status == "failed"
    assert "503" in (result.reason or "")
    assert len(sim.requests) == 2


async def test_stall_hits_the_read_timeout_then_replans() -> None:
    lab = Lab()
    sim = SimulatedLLM(
        [
            Reply.stall(PLAN, after_tokens=TASK1_TOKENS, seconds=5),
            '2. search(query="kilimanjaro")\n3. join()\n',
            finish("ok"),
        ],
        latency=FAST,
    )
    with anyio.fail_after(20):
        async with served(sim, timeouts=Timeouts(connect=2, read=1.5, total=15)) as llm:
            result = await Orchestrator(lab.tools, llm).run("heights?")
    assert result.status == "finished", result.reason
    assert lab.calls["search:everest"] == 1 and lab.calls["search:kilimanjaro"] == 1


async def test_stream_yields_events_until_the_run_ends() -> None:
    lab = Lab()
    sim = SimulatedLLM([PLAN, finish("1.5011")], latency=FAST)
    with anyio.fail_after(20):
        async with served(sim) as llm, Orchestrator(lab.tools, llm) as orch:
            kinds = [type(e).__name__ async for e in orch.stream("ratio?")]
    assert kinds[:2] == ["RunStarted", "PlanStarted"] and kinds[-1] == "RunFinished"
    assert kinds.count("TaskSucceeded") == 3


async def test_tasks_start_while_the_plan_is_still_streaming() -> None:
    lab = Lab()
    slow = Latency(ttft=0.01, tokens_per_second=40)
    sim = SimulatedLLM([Reply(PLAN, latency=slow), finish("1.5011")], latency=FAST)
    events = []
    with anyio.fail_after(20):
        async with served(sim) as llm:
            await Orchestrator(lab.tools, llm, on_event=events.append).run("ratio?")
    started = next(e for e in events if isinstance(e, TaskStarted) and e.task_id == 1)
    plan_done = next(e for e in events if type(e).__name__ == "PlanFinished")
    assert started.seq < plan_done.seq
    assert plan_done.ts - started.ts > 0.1, "task 1 ran well before the plan's last token"
    assert isinstance(events[0], RunStarted) and isinstance(events[1], PlanStarted)
    assert isinstance(events[-1], RunFinished)


async def test_execute_plan_needs_no_llm() -> None:
    lab = Lab()
    result = await Orchestrator(lab.tools).execute_plan(PLAN)
    assert result.status == "finished" and result.answer == "1.5011"
    assert result.llm_calls == 0


@pytest.mark.parametrize("mode", ["react", "parallel_fc", "plan_then_execute"])
async def test_baseline_modes(mode: str) -> None:
    lab = Lab()
    turns = {
        "react": [
            '1. search(query="everest")\n2. join()\n',
            '2. search(query="kilimanjaro")\n3. join()\n',
            '3. math(expression="${1} / ${2}")\n4. join()\n',
            "4. join()\n",
        ],
        "parallel_fc": [
            '1. search(query="everest")\n2. search(query="kilimanjaro")\n3. join()\n',
            '3. math(expression="${1} / ${2}")\n4. join()\n',
            "4. join()\n",
        ],
        "plan_then_execute": [PLAN],
    }[mode]
    sim = SimulatedLLM([*turns, finish("1.5011")], latency=FAST)
    # the turn modes' plan-text turns are for plain servers (native tool calls elsewhere:
    # tests/runtime/test_native_turns.py)
    dialect = "vllm" if mode == "plan_then_execute" else "plain"
    with anyio.fail_after(20):
        async with served(sim, dialect) as llm:
            result = await Orchestrator(lab.tools, llm, mode=mode).run("ratio?")  # type: ignore[arg-type]
    assert result.status == "finished", result.reason
    assert result.results[3] == 1.5011
    assert result.llm_calls == len(turns) + 1


def test_run_sync() -> None:
    lab = Lab()
    result = Orchestrator(lab.tools).run_sync("q")  # no LLM: a clear failure, not a hang
    assert result.status == "failed" and "needs an LLM" in (result.reason or "")


async def test_plain_dialect_repair_round_shows_the_model_its_error() -> None:
    lab = Lab()

    def script(req: RecordedRequest) -> Reply | str:
        if req.index == 0:  # LLMCompiler style, with a misspelt tool on line 2
            return "1. search('everest')\n2. serch('kilimanjaro')\n3. join()<END_OF_PLAN>"
        if req.index == 1:
            assert "the plan was invalid at line 2, column 4: unknown tool 'serch'" in req.prompt
            assert "Continue the plan from task 2" in req.prompt
            return "2. search('kilimanjaro')\n3. math('${1} / ${2}')\n4. join()<END_OF_PLAN>"
        return finish("1.5011")

    sim = SimulatedLLM(script, latency=FAST)
    with anyio.fail_after(20):
        async with served(sim, "plain") as llm:
            result = await Orchestrator(lab.tools, llm).run("ratio?")
    assert result.status == "finished", result.reason
    assert result.results == {1: 8849.0, 2: 5895.0, 3: 1.5011}
    assert lab.calls["search:everest"] == 1
    assert result.replans == 1


async def test_a_task_the_dispatcher_refuses_is_replanned_not_fatal() -> None:
    """$4 is the first plan's join(), not a task: the dispatcher refuses it and the run replans."""
    lab = Lab(delay=0.2)
    lab.broken.add("kilimanjaro")

    def script(req: RecordedRequest) -> Reply | str:
        if req.index == 0:
            return PLAN
        if req.index == 1:
            return '5. math(expression="${4} / 2")\n6. join()\n'
        if req.index == 2:
            assert "task 5 was refused" in req.prompt and "never submitted" in req.prompt
            assert "Continue the plan from task 6" in req.prompt, "ids are never reused"
            return '6. search(query="denali")\n7. math(expression="${1} / ${6}")\n8. join()\n'
        return finish("1.4296")

    sim = SimulatedLLM(script, latency=FAST)
    with anyio.fail_after(20):
        async with served(sim) as llm:
            result = await Orchestrator(lab.tools, llm).run("ratio?")
    assert result.status == "finished", result.reason
    assert result.task(7).value == 1.4296
    assert 5 not in {t.id for t in result.tasks}
    assert result.replans == 2


async def test_cancel_through_the_handle_ends_the_run_quickly() -> None:
    lab = Lab()
    lab.gate = anyio.Event()  # tools hang until cancelled
    sim = SimulatedLLM([PLAN, finish("x")], latency=FAST)
    with anyio.fail_after(20):
        async with served(sim) as llm, Orchestrator(lab.tools, llm) as orch:
            run = orch.start("ratio?")
            async with aclosing(run.events()) as stream:
                async for event in stream:
                    if isinstance(event, TaskStarted):
                        break
            t0 = anyio.current_time()
            run.cancel()
            result = await run.result()
            elapsed = anyio.current_time() - t0
    assert result.status == "cancelled"
    assert elapsed < 0.5
    assert all(t.status in ("cancelled", "skipped") for t in result.tasks)


async def test_execute_plan_starts_the_critical_path_first_under_a_concurrency_limit() -> None:
    from tomasulo.grammar import Plan, Ref, Task
    from tomasulo.tools import Tool, Toolset

    started: list[int] = []

    async def step(n: int, prev: int | None = None) -> int:
        started.append(n)
        return n

    schema = {"type": "object", "properties": {"n": {"type": "integer"}, "prev": {"type": "integer"}}}
    tools = Toolset([Tool(name="step", input_schema=schema, fn=step)])
    # Tasks 1-3 stand alone; 4 heads the chain 4 -> 5 -> 6 though it is listed after them.
    plan = Plan(
        (
            Task(1, "step", (1,)),
            Task(2, "step", (2,)),
            Task(3, "step", (3,)),
            Task(4, "step", (4,)),
            Task(5, "step", (5, Ref(4))),
            Task(6, "step", (6, Ref(5))),
        )
    )
    with anyio.fail_after(10):
        result = await Orchestrator(tools, limits=Limits(max_concurrency=1)).execute_plan(plan)
    assert result.status == "finished" and result.answer == "6"
    assert started == [4, 5, 6, 1, 2, 3]  # in plan order it would be 1, 2, 3, 4, 5, 6


@pytest.mark.parametrize("mode", ["react", "parallel_fc"])
async def test_a_user_message_during_a_turn_reaches_the_next_turn_and_the_result(mode: str) -> None:
    """The plan-text turns of plain servers (native turns: tests/runtime/test_native_turns.py)."""
    lab = Lab()
    lab.gate = anyio.Event()  # the first turn's call waits until the message has been sent
    heard: list[bool] = []

    def script(req: RecordedRequest) -> Reply | str:
        if req.index == 0:
            return '1. search(query="everest")\n2. join()\n'
        if req.index == 1:
            heard.append("the user said: use denali" in req.prompt)
            return '2. search(query="denali")\n3. join()\n'
        if req.index == 2:
            return "3. join()\n"
        return finish("denali is lower")

    sim = SimulatedLLM(script, latency=FAST)
    with anyio.fail_after(20):
        async with served(sim, "plain") as llm, Orchestrator(lab.tools, llm, mode=mode) as orch:  # type: ignore[arg-type]
            run = orch.start("how high?")
            async with aclosing(run.events()) as stream:
                async for event in stream:
                    if isinstance(event, TaskStarted) and event.task_id == 1:
                        break
            await run.interrupt("use denali")
            lab.gate.set()
            result = await run.result()
    assert result.status == "finished", result.reason
    assert heard == [True], "the second turn's prompt carries the user's message"
    assert "the user said: use denali" in result.interrupts
