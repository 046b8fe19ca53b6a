"""The run's journal: events that travel as JSON, readers that resume, runs rebuilt from their
events, stores, restored work and typed run errors."""

from __future__ import annotations

import dataclasses
import json
import random
import sys
import types
import typing
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import tomasulo
from tomasulo import Orchestrator, RunResult
from tomasulo.dispatcher import (
    Dispatcher,
    Event,
    InterruptRaised,
    Outcome,
    RunJournal,
    TaskPlanned,
    TaskRestored,
    TaskSucceeded,
    event_kinds,
    json_value,
    outcomes_of,
)
from tomasulo.exceptions import (
    BudgetExceeded,
    DispatchError,
    RecordedError,
    RunCancelled,
    RunFailed,
    ToolExecutionError,
    UnknownToolError,
    UserError,
)
from tomasulo.grammar import Plan, Ref, Task
from tomasulo.planner import LLM, RetryPolicy, Usage
from tomasulo.runtime import (
    Budget,
    InMemoryRunStore,
    LLMCallFinished,
    LLMCallStarted,
    PlanDelta,
    RunFinished,
    RunStarted,
    RunStore,
)
from tomasulo.testing import Latency, Reply, SimulatedLLM, count_tokens
from tomasulo.tools import Tool, Toolset

from .rtools import Lab

pytestmark = pytest.mark.anyio

PLAN = (
    "Thought: both heights are independent\n"
    '1. search(query="everest")\n'
    '2. search(query="kilimanjaro")\n'
    '3. math(expression="${1} / ${2}")\n'
    "4. join()\n"
)
FIXED = '1. search(query="everest")\n2. search(query="kilimanjaro")\n3. math(expression="${1} / ${2}")\n'
FAST = Latency(ttft=0.01, tokens_per_second=2000)
QUICK_RETRY = RetryPolicy(attempts=2, initial=0.01, maximum=0.05, total=10, max_retry_after=0.05)


def finish(answer: str) -> str:
    return json.dumps({"thought": "done", "action": "finish", "answer": answer})


@asynccontextmanager
async def served(sim: SimulatedLLM) -> AsyncIterator[LLM]:
    async with sim.serve() as url:
        llm = LLM(url, model="sim", dialect="vllm", retry=QUICK_RETRY)
        try:
            yield llm
        finally:
            await llm.aclose()


def through_json(events: list[Event]) -> list[Event]:
    """The events as a remote reader gets them: JSON text, parsed back."""
    return [Event.from_json(json.loads(json.dumps(e.to_json()))) for e in events]


# -- the JSON form of every event kind ----------------------------------------------------------


def _all_event_classes() -> set[type[Event]]:
    out: set[type[Event]] = set()
    todo = list(Event.__subclasses__())
    while todo:
        cls = todo.pop()
        # (a slotted dataclass replaces the class first built: only the one its module holds counts)
        if (
            cls.__module__.startswith("tomasulo")
            and getattr(sys.modules[cls.__module__], cls.__name__, None) is cls
        ):
            out.add(cls)
        todo.extend(cls.__subclasses__())
    return out


SAMPLE_OUTCOME = Outcome(
    task_id=3,
    tool="search",
    status="failed",
    value={"partial": [1, 2.5, None]},
    error=ValueError("bad input"),
    error_type="ValueError",
    message="task 3 (search) failed",
    attempts=2,
    planned_at=1.25,
    ready_at=1.5,
    started_at=1.75,
    finished_at=2.0,
)


def _sample(hint: Any, name: str) -> Any:
    """A value of type ``hint`` that is not its default; raises for a type with no JSON form."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        return _sample(next(a for a in args if a is not type(None)), name)
    if origin is typing.Literal:
        return args[-1]
    if hint is Outcome:
        return SAMPLE_OUTCOME
    if isinstance(hint, type) and issubclass(hint, BaseException):
        return ToolExecutionError("it broke", tool="search", task_id=3, attempt=1)
    if origin is tuple:
        return (1, 2)
    if origin is list:
        return ["one", "two"]
    if origin is dict or hint is dict:
        return {"query": "everest", "n": [1, 2]}
    if hint is Usage:
        return Usage(prompt_tokens=10, completion_tokens=5, requests=1, cost=0.25)
    if hint is Any:
        return {"any": [1, "value"]}
    for t, v in ((bool, True), (int, 7), (float, 2.5), (str, f"some {name}")):
        if hint is t:
            return v
    raise AssertionError(f"no JSON form is known for a field of type {hint!r} ({name})")


def _instance(cls: type[Event]) -> Event:
    hints = typing.get_type_hints(cls)
    return cls(**{f.name: _sample(hints[f.name], f.name) for f in dataclasses.fields(cls)})


def test_every_event_kind_is_registered_once() -> None:
    classes = _all_event_classes()
    kinds = event_kinds()
    assert classes <= set(kinds.values()), "every event class can be read back by its kind"
    assert len({cls.kind for cls in classes}) == len(classes), "kinds are distinct"
    assert {"run_started", "llm_call_started", "llm_call_finished", "plan_delta", "task_restored"} <= set(
        kinds
    )
    assert TaskSucceeded.kind == "task_succeeded" and LLMCallFinished.kind == "llm_call_finished"


@pytest.mark.parametrize("cls", sorted(_all_event_classes(), key=lambda c: c.kind), ids=lambda c: c.kind)
def test_the_json_form_of_every_event_kind_round_trips(cls: type[Event]) -> None:
    event = _instance(cls)
    data = event.to_json()
    assert data["kind"] == cls.kind
    back = Event.from_json(json.loads(json.dumps(data)))
    assert type(back) is cls
    assert back == event
    assert back.to_json() == data


def test_values_that_are_not_json_get_a_type_and_a_repr_never_an_error() -> None:
    class Opaque:
        def __repr__(self) -> str:
            return "<opaque thing>"

    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    outcome = dataclasses.replace(SAMPLE_OUTCOME, value={"a": Opaque()})
    data = json.loads(json.dumps(outcome.to_json()))
    assert data["value"] == {"$type": "dict", "$repr": "{'a': <opaque thing>}"}
    assert json_value(Broken()) == {"$type": "Broken", "$repr": "<Broken whose repr() raised RuntimeError>"}
    assert json_value((1, {2, 3})) == [1, [2, 3]], "what to_json_value converts is converted"
    back = Outcome.from_json(data)
    assert isinstance(back.error, RecordedError)
    assert (back.error.type_name, back.error.message) == ("ValueError", "bad input")
    assert back.error == ValueError("bad input") and back.error != ValueError("other")


def test_an_unknown_kind_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="no event class has kind 'nope'"):
        Event.from_json({"kind": "nope", "run_id": "r", "seq": 1, "ts": 0.0, "task_id": None})


# -- readers that resume ------------------------------------------------------------------------


def _dag_plan(n: int, seed: int) -> list[Task]:
    rng = random.Random(seed)
    tasks = []
    for i in range(1, n + 1):
        deps = sorted(rng.sample(range(max(1, i - 8), i), k=min(i - 1, rng.randint(0, 2)))) if i > 1 else []
        tasks.append(Task(i, "step", (i, [Ref(d) for d in deps])))
    return tasks


async def step(i: int, xs: Any = None) -> int:
    if i % 3 == 0:
        await anyio.lowlevel.checkpoint()
    return i


STEP = Tool(
    name="step",
    description="a step",
    input_schema={"type": "object", "properties": {"i": {"type": "integer"}, "xs": {"type": "array"}}},
    fn=step,
)


async def test_a_reader_that_reconnects_with_after_misses_and_repeats_nothing_in_a_1000_task_run() -> None:
    tools = Toolset([STEP])
    seen: list[Event] = []
    reconnects = 0
    with anyio.fail_after(30):
        async with Dispatcher(tools) as d, anyio.create_task_group() as tg:

            async def reader() -> None:
                nonlocal reconnects
                last = 0
                while True:
                    sub = d.events(after=last)
                    got = 0
                    async for event in sub:
                        seen.append(event)
                        last = event.seq
                        got += 1
                        if got == 97:  # the connection drops; the reader comes back with after=
                            break
                    else:
                        return
                    await sub.aclose()
                    reconnects += 1
                    await anyio.lowlevel.checkpoint()  # events keep coming while it is away

            tg.start_soon(reader)
            await anyio.wait_all_tasks_blocked()
            for task in _dag_plan(1000, seed=5):
                d.submit(task)
                if task.id % 50 == 0:
                    await anyio.lowlevel.checkpoint()
            d.close_input()
    history = list(d.history)
    assert reconnects > 10
    assert len(history) >= 4000, "planned, ready, started and ended for each task"
    assert [e.seq for e in seen] == list(range(1, len(history) + 1)), "no gap, no duplicate"
    assert seen == history


async def test_events_after_a_seq_past_the_end_start_after_it() -> None:
    journal = RunJournal("r")
    journal.record(RunStarted, query="q", mode="stream", wall_time=0.0)
    sub = journal.events(after=2)
    for i in range(3):
        journal.record(PlanDelta, plan=1, text=str(i))
    journal.close()
    assert [e.seq async for e in sub] == [3, 4]


async def test_plan_text_is_made_only_for_watchers_and_a_store_is_no_watcher() -> None:
    journal = RunJournal("r")
    assert not journal.listening
    quiet = journal.events(quiet=True)
    assert not journal.listening, "a store reading quietly makes no PlanDelta appear"
    loud = journal.events()
    assert journal.listening
    await loud.aclose()
    assert not journal.listening
    await quiet.aclose()


# -- observers ----------------------------------------------------------------------------------


def _shape(result: RunResult) -> Any:
    """What a user reads of a result, without its clock readings."""
    return (
        result.status,
        result.reason,
        result.answer,
        [(t.id, t.tool, t.args, t.plan, t.status, t.value, t.error_type, t.message) for t in result.tasks],
        result.plans,
        [type(e).__name__ for e in result.timeline],
    )


async def test_an_observer_that_raises_does_not_change_the_result() -> None:
    def observer(event: Event) -> None:
        raise RuntimeError(f"observer broke on {event.kind}")

    with anyio.fail_after(20):
        quiet = await Orchestrator(Lab().tools).execute_plan(FIXED)
        watched = await Orchestrator(Lab().tools, on_event=observer).execute_plan(FIXED)
    assert quiet.status == "finished" and quiet.answer == "1.5011"
    assert _shape(watched) == _shape(quiet)
    assert quiet.warnings == []
    assert len(watched.warnings) == 6, "five failures listed, then a count"
    assert "raised on RunStarted (seq 1): RuntimeError: observer broke on run_started" in watched.warnings[0]
    assert "more events (not listed)" in watched.warnings[-1]


# -- runs rebuilt from their journal ------------------------------------------------------------


def _assert_rebuilt(result: RunResult, events: list[Event]) -> None:
    """The result rebuilt from the live events, and from their JSON form, is the live one."""
    assert RunResult.from_events(events) == result
    remote = RunResult.from_events(through_json(events))
    # References in arguments come back in their JSON form (see the events' JSON rule).
    assert [t.args for t in remote.tasks] == [json_value(t.args) for t in result.tasks]
    assert dataclasses.replace(remote, tasks=[], timeline=[]) == dataclasses.replace(
        result, tasks=[], timeline=[]
    )
    live = [dataclasses.replace(t, args={}) for t in result.tasks]
    assert [dataclasses.replace(t, args={}) for t in remote.tasks] == live
    assert [e.to_json() for e in remote.timeline] == [e.to_json() for e in events]


async def test_a_planned_run_rebuilt_from_its_journal_equals_the_live_result() -> None:
    store = InMemoryRunStore()
    seen: list[Event] = []
    sim = SimulatedLLM([PLAN, finish("1.5011")], latency=FAST)
    with anyio.fail_after(20):
        async with served(sim) as llm:
            result = await Orchestrator(Lab().tools, llm, store=store, on_event=seen.append).run("ratio?")
    assert result.status == "finished" and result.answer == "1.5011"
    stored = await store.load_events(result.run_id)
    assert stored == result.timeline == seen
    assert await store.load_result(result.run_id) is result
    _assert_rebuilt(result, stored)
    # the LLM calls are in the journal, with what they used
    calls = [e for e in result.timeline if isinstance(e, LLMCallStarted | LLMCallFinished)]
    assert [(type(e).__name__, e.call, e.purpose) for e in calls] == [
        ("LLMCallStarted", 1, "plan"),
        ("LLMCallFinished", 1, "plan"),
        ("LLMCallStarted", 2, "join"),
        ("LLMCallFinished", 2, "join"),
    ]
    plan_call, join_call = calls[1], calls[3]
    assert isinstance(plan_call, LLMCallFinished) and isinstance(join_call, LLMCallFinished)
    assert plan_call.model == "sim" and plan_call.error is None
    assert plan_call.completion_tokens > 0 and plan_call.prompt_tokens > 0
    assert plan_call.ttft is not None and 0 < plan_call.ttft <= plan_call.duration
    assert join_call.ttft is None
    assert plan_call.prompt_tokens + join_call.prompt_tokens == result.usage.prompt_tokens
    # the plan's text as it streamed: the model's output, line by line
    deltas = [e for e in result.timeline if isinstance(e, PlanDelta)]
    assert "".join(d.text for d in deltas) == PLAN
    assert len(deltas) >= 4
    start = result.timeline[0]
    assert isinstance(start, RunStarted) and start.query == "ratio?" and start.mode == "stream"
    assert start.wall_time > 1.7e9


async def test_plan_text_costs_nothing_when_nobody_watches() -> None:
    sim = SimulatedLLM([PLAN, finish("1.5011")], latency=FAST)
    with anyio.fail_after(20):
        async with served(sim) as llm:
            result = await Orchestrator(Lab().tools, llm).run("ratio?")  # the default store only
    assert result.status == "finished"
    assert not any(isinstance(e, PlanDelta) for e in result.timeline)
    _assert_rebuilt(result, result.timeline)


async def test_failed_stopped_and_cancelled_runs_rebuild_equal() -> None:
    lab = Lab()
    lab.broken.add("kilimanjaro")
    failed = await Orchestrator(lab.tools).execute_plan(FIXED)
    assert failed.status == "failed"
    _assert_rebuilt(failed, failed.timeline)

    sim = SimulatedLLM([PLAN, PLAN], latency=FAST)
    with anyio.fail_after(20):
        async with served(sim) as llm:
            stopped = await Orchestrator(lab.tools, llm, budget=Budget(max_replans=0)).run("ratio?")
    assert stopped.status == "stopped"
    assert any(isinstance(e, InterruptRaised) and e.error is not None for e in stopped.timeline)
    _assert_rebuilt(stopped, stopped.timeline)

    held = Lab()
    held.gate = anyio.Event()
    store = InMemoryRunStore()
    slow = SimulatedLLM([PLAN, finish("x")], latency=FAST)
    with anyio.fail_after(20):
        async with served(slow) as llm, Orchestrator(held.tools, llm, store=store) as orch:
            handle = orch.start("ratio?")
            async for event in handle.events():
                if isinstance(event, TaskSucceeded) or event.kind == "task_started":
                    handle.cancel()
            cancelled = await handle.result()
    assert cancelled.status == "cancelled"
    assert await store.load_events(cancelled.run_id) == cancelled.timeline
    _assert_rebuilt(cancelled, cancelled.timeline)


async def test_a_cut_journal_is_refused() -> None:
    result = await Orchestrator(Lab().tools).execute_plan(FIXED)
    with pytest.raises(ValueError, match="no RunFinished"):
        RunResult.from_events(result.timeline[:-1])


# -- the store ----------------------------------------------------------------------------------


async def test_the_in_memory_store_lists_the_latest_runs_and_keeps_a_bounded_number() -> None:
    store = InMemoryRunStore(max_runs=2)
    assert isinstance(store, RunStore)
    orch = Orchestrator(Lab().tools, store=store)
    ids = [(await orch.execute_plan(FIXED)).run_id for _ in range(3)]
    runs = await store.list_runs()
    assert [r.run_id for r in runs] == ids[:0:-1], "most recent first; the oldest was dropped"
    assert all(r.status == "finished" and r.mode == "plan_then_execute" and r.events > 10 for r in runs)
    with pytest.raises(KeyError):
        await store.load_events(ids[0])
    assert (await store.load_events(ids[2], after=5))[0].seq == 6


async def test_a_store_that_fails_does_not_stop_the_run_and_is_reported() -> None:
    class Failing(InMemoryRunStore):
        async def append(self, run_id: str, events: Any) -> None:
            raise OSError("disk full")

    result = await Orchestrator(Lab().tools, store=Failing()).execute_plan(FIXED)
    assert result.status == "finished" and result.answer == "1.5011"
    assert any("run store Failing failed: OSError: disk full" in w for w in result.warnings)


# -- restoring finished work --------------------------------------------------------------------


async def test_a_seeded_dispatcher_does_not_call_restored_tools_and_resolves_references() -> None:
    lab = Lab()
    earlier = [
        Outcome(task_id=1, tool="search", status="succeeded", value=8849.0, attempts=1),
        Outcome(task_id=2, tool="search", status="failed", error_type="ConnectionError", message="down"),
    ]
    with anyio.fail_after(10):
        async with Dispatcher(lab.tools, restore=earlier) as d:
            assert d.results == {1: 8849.0}
            d.submit(Task(3, "search", ("kilimanjaro",)))
            d.submit(Task(4, "math", kwargs={"expression": _template(1, 3)}))
            d.submit(Task(5, "math", kwargs={"expression": _template(1, 2)}))
            with pytest.raises(DispatchError, match="already taken"):
                d.submit(Task(1, "search", ("everest",)))
    assert lab.calls["search:everest"] == 0, "the restored task did not run again"
    assert lab.calls["search:kilimanjaro"] == 1
    assert d.outcomes[4].value == 1.5011, "${1} resolved to the recorded value"
    assert (d.outcomes[5].status, d.outcomes[5].skipped_because) == ("skipped", 2)
    restored = [e for e in d.history if isinstance(e, TaskRestored)]
    assert [(e.task_id, e.outcome) for e in restored] == [(1, earlier[0]), (2, earlier[1])]


def _template(a: int, b: int) -> Any:
    from tomasulo.grammar import Template

    return Template((Ref(a), " / ", Ref(b)))


async def test_a_failed_run_resumes_from_its_journal_and_redoes_only_what_did_not_succeed() -> None:
    lab = Lab()
    lab.broken.add("kilimanjaro")
    store = InMemoryRunStore()
    orch = Orchestrator(lab.tools, store=store)
    first = await orch.execute_plan(FIXED)
    assert first.status == "failed"
    lab.broken.clear()
    kept = {tid: o for tid, o in outcomes_of(await store.load_events(first.run_id)).items() if o.ok}
    assert list(kept) == [1]
    resumed = await orch.execute_plan(FIXED, restore=kept)
    assert resumed.status == "finished" and resumed.answer == "1.5011"
    assert lab.calls == {"search:everest": 1, "search:kilimanjaro": 2, "math": 1}
    assert [(t.id, t.plan) for t in resumed.tasks] == [(1, 0), (2, 1), (3, 1)]
    _assert_rebuilt(resumed, resumed.timeline)


# -- errors -------------------------------------------------------------------------------------


async def test_raise_for_status_raises_what_ended_the_run() -> None:
    ok = await Orchestrator(Lab().tools).execute_plan(FIXED)
    assert ok.raise_for_status() is ok
    lab = Lab()
    lab.broken.add("everest")
    failed = await Orchestrator(lab.tools).execute_plan(FIXED)
    with pytest.raises(RunFailed, match="failed: 2 of 3 tasks did not succeed") as info:
        failed.raise_for_status()
    assert info.value.result is failed
    stopped = dataclasses.replace(ok, status="stopped", reason="token budget reached (10 of 5 tokens)")
    with pytest.raises(BudgetExceeded) as bound:
        stopped.raise_for_status()
    assert bound.value.bound == "tokens" and bound.value.result is stopped
    with pytest.raises(RunCancelled):
        dataclasses.replace(ok, status="cancelled", reason="the run was cancelled").raise_for_status()


async def test_a_plan_naming_an_unknown_tool_is_a_plan_error_and_misuse_is_a_user_error() -> None:
    plan = Plan((Task(1, "search", ("everest",)), Task(2, "teleport", ())))
    with pytest.raises(UnknownToolError, match="unknown tool 'teleport'") as info:
        await Orchestrator(Lab().tools).execute_plan(plan)
    assert info.value.line == 2
    assert issubclass(DispatchError, UserError)
    assert tomasulo.exceptions.RunFailed is RunFailed


async def test_a_journal_and_a_run_id_of_its_own_are_refused_together() -> None:
    with pytest.raises(DispatchError, match="not both"):
        Dispatcher(Toolset([STEP]), journal=RunJournal("a"), run_id="b")


def test_task_planned_carries_the_arguments_by_name() -> None:
    e = TaskPlanned(run_id="r", seq=1, ts=0.0, task_id=2, tool="search", args={"query": "x"})
    assert Event.from_json(e.to_json()) == e


def test_run_finished_carries_its_usage() -> None:
    e = RunFinished(run_id="r", seq=9, ts=1.0, task_id=None, status="finished", usage=Usage(prompt_tokens=3))
    back = Event.from_json(json.loads(json.dumps(e.to_json())))
    assert isinstance(back, RunFinished) and back.usage == Usage(prompt_tokens=3)


async def test_an_llm_call_that_breaks_off_is_recorded_with_its_error_and_the_run_rebuilds() -> None:
    cut = PLAN.index("2. search")
    rest = PLAN[cut:]  # the replan continues the numbering
    sim = SimulatedLLM(
        [Reply.disconnect(PLAN, after_tokens=count_tokens(PLAN[:cut])), rest, finish("1.5011")], latency=FAST
    )
    with anyio.fail_after(20):
        async with served(sim) as llm:
            result = await Orchestrator(Lab().tools, llm).run("ratio?")
    finished = [e for e in result.timeline if isinstance(e, LLMCallFinished)]
    assert [e.purpose for e in finished][:2] == ["plan", "plan"]
    assert finished[0].error is not None and finished[0].error.startswith("LLMConnectionError")
    assert finished[1].error is None
    assert result.status == "finished" and result.replans == 1
    assert "".join(e.text for e in result.timeline if isinstance(e, PlanDelta)) == ""  # nobody watched
    _assert_rebuilt(result, result.timeline)


def test_a_second_class_cannot_take_an_event_kind() -> None:
    with pytest.raises(
        TypeError, match=r"'task_ready' .* is already taken by tomasulo\.dispatcher\._events\.TaskReady"
    ):

        @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
        class TaskReady(Event):  # a class of the same name elsewhere
            pass

    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class Mine(Event):
        kind: typing.ClassVar[str] = "test_mine_kind"
        note: str = ""

    e = Mine(run_id="r", seq=1, ts=0.0, task_id=None, note="hi")
    assert Event.from_json(e.to_json()) == e
