"""The dispatcher: references, outcomes, events, submission rules."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from dtools import (
    ANY,
    Gate,
    ident,
    make_tool,
    on_both_backends,  # noqa: F401  (the anyio_backend fixture: asyncio and trio)
)

from tomasulo.dispatcher import (
    Dispatcher,
    Event,
    InterruptRaised,
    TaskFailed,
    TaskPlanned,
    TaskReady,
    TaskSkipped,
    TaskStarted,
    TaskSucceeded,
)
from tomasulo.exceptions import (
    DispatchError,
    Interrupt,
    ReferenceResolutionError,
    ToolArgumentError,
    ToolExecutionError,
    ToolOutputError,
)
from tomasulo.grammar import Plan, Ref, Task, Template
from tomasulo.tools import Tool, Toolset

pytestmark = pytest.mark.anyio

NUM = {
    "type": "object",
    "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}},
    "required": ["x"],
}


async def add(x: int, y: int = 0) -> int:
    return x + y


def mul(x: int, y: int = 1) -> int:  # sync: runs on a worker thread
    return x * y


async def boom(x: Any = None, y: Any = None) -> Any:
    raise ValueError(f"boom on {x!r}")


async def interrupt(x: Any = None, y: Any = None) -> Any:
    raise Interrupt("need the user's city", value={"partial": True})


def toolset(*extra: Tool) -> Toolset:
    return Toolset(
        [
            make_tool("add", add, NUM),
            make_tool("mul", mul, NUM),
            make_tool("ident", ident),
            make_tool("boom", boom),
            make_tool("interrupt", interrupt),
            make_tool(
                "text",
                ident,
                {"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]},
            ),
            *extra,
        ]
    )


async def test_values_flow_through_references_paths_and_templates() -> None:
    tasks = [
        Task(1, "ident", ({"items": [{"n": 4}, {"n": 5}], "name": "ev"},)),
        Task(2, "add", (Ref(1, ("items", 0, "n")), Ref(1, ("items", 1, "n")))),
        Task(3, "mul", (Ref(2),), {"y": 3}),
        Task(4, "text", (Template(("name=", Ref(1, ("name",)), " total=", Ref(3))),)),
        Task(5, "ident", ([Ref(2), {"deep": Ref(3)}, Template((Ref(1, ("items",)),))],)),
    ]
    with anyio.fail_after(5):
        outcomes = await Dispatcher.run_plan(toolset(), Plan(tuple(tasks)))
    assert [o.status for o in outcomes.values()] == ["succeeded"] * 5
    assert outcomes[2].value == 9
    assert outcomes[3].value == 27
    assert outcomes[4].value == "name=ev total=27"
    assert outcomes[5].value == [9, {"deep": 27}, '[{"n":4},{"n":5}]']


async def test_failure_skips_transitive_dependents_and_raises_interrupt() -> None:
    events: list[Event] = []
    tasks = [
        Task(1, "boom", (1,)),
        Task(2, "ident", (Ref(1),)),
        Task(3, "ident", (Ref(2),)),
        Task(4, "add", (5,)),  # independent: must still run
    ]
    with anyio.fail_after(5):
        out = await Dispatcher.run_plan(toolset(), tasks, on_event=events.append)
    assert out[1].status == "failed"
    assert out[1].error_type == "ValueError"
    assert isinstance(out[1].error, ToolExecutionError)
    assert "boom on 1" in (out[1].message or "")
    assert (out[2].status, out[2].skipped_because) == ("skipped", 1)
    assert (out[3].status, out[3].skipped_because) == ("skipped", 1)
    assert "task 1 failed" in (out[3].message or "")
    assert out[4].value == 5
    interrupts = [e for e in events if isinstance(e, InterruptRaised)]
    assert [(e.task_id, e.source) for e in interrupts] == [(1, "failure")]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert all(e.ts <= f.ts for e, f in itertools.pairwise(events))


async def test_a_task_whose_inputs_already_failed_names_the_first_of_them() -> None:
    # Submitted after both inputs failed: the skip names the lower id, whatever order a set of
    # ids iterates in ({1, 8} iterates 8 first).
    with anyio.fail_after(5):
        async with Dispatcher(toolset()) as d:
            d.submit(Task(1, "boom", (1,)))
            for i in range(2, 8):
                d.submit(Task(i, "add", (i,)))
            d.submit(Task(8, "boom", (8,)))
            await d.wait()
            d.submit(Task(9, "ident", ([Ref(1), Ref(8)],)))
    assert (d.outcomes[9].status, d.outcomes[9].skipped_because) == ("skipped", 1)


async def test_tool_interrupt_keeps_partial_value_and_is_reported() -> None:
    events: list[Event] = []
    tasks = [Task(1, "interrupt"), Task(2, "ident", (Ref(1),))]
    with anyio.fail_after(5):
        out = await Dispatcher.run_plan(toolset(), tasks, on_event=events.append)
    assert out[1].status == "failed"
    assert out[1].error_type == "Interrupt"
    assert out[1].value == {"partial": True}
    assert out[2].status == "skipped"
    (raised,) = [e for e in events if isinstance(e, InterruptRaised)]
    assert raised.source == "interrupt"
    assert "need the user's city" in raised.reason


async def test_bad_upstream_value_fails_the_task_naming_field() -> None:
    tasks = [
        Task(1, "ident", ("not a number",)),
        Task(2, "add", (Ref(1),)),
        Task(3, "ident", ({"a": 1},)),
        Task(4, "add", (Ref(3, ("b",)),)),
        Task(5, "add", ("literal",)),
    ]
    with anyio.fail_after(5):
        out = await Dispatcher.run_plan(toolset(), tasks)
    err2 = out[2].error
    assert isinstance(err2, ReferenceResolutionError)
    assert "task 2" in str(err2) and "x: expected integer" in str(err2) and "$1" in str(err2)
    err4 = out[4].error
    assert isinstance(err4, ReferenceResolutionError)
    assert "argument 'x'" in str(err4) and "$3.b" in str(err4) and "there is no field 'b'" in str(err4)
    assert out[4].attempts == 0 and out[4].started_at is None
    assert isinstance(out[5].error, ToolArgumentError)
    assert "task 5" in (out[5].message or "")


async def test_output_schema_mismatch_is_tool_output_error() -> None:
    liar = Tool(
        name="liar",
        input_schema=ANY,
        output_schema={"type": "object", "required": ["temp"]},
        fn=ident,
    )
    tasks = [Task(1, "liar", ({"temp": 3},)), Task(2, "liar", ("nonsense",))]
    with anyio.fail_after(5):
        out = await Dispatcher.run_plan(toolset(liar), tasks)
    assert out[1].ok
    assert isinstance(out[2].error, ToolOutputError)
    assert "output schema" in str(out[2].error)


async def test_events_iterator_sees_every_event_in_order_and_ends() -> None:
    gate = Gate()
    tools = toolset(make_tool("gate", gate))
    seen: list[Event] = []

    async def consume(stream: AsyncIterator[Event]) -> None:
        async for ev in stream:
            seen.append(ev)

    with anyio.fail_after(5):
        async with Dispatcher(tools, run_id="r1") as d, anyio.create_task_group() as tg:
            tg.start_soon(consume, d.events())
            d.submit(Task(1, "gate", (1,)))
            d.submit(Task(2, "add", (Ref(1),)))
            await gate.started.wait()
            gate.release.set()
            d.close_input()
            await d.wait()
    kinds = [(type(e).__name__, e.task_id) for e in seen]
    assert kinds == [
        ("TaskPlanned", 1),
        ("TaskReady", 1),
        ("TaskPlanned", 2),
        ("TaskStarted", 1),
        ("TaskSucceeded", 1),
        ("TaskReady", 2),
        ("TaskStarted", 2),
        ("TaskSucceeded", 2),
    ]
    assert {e.run_id for e in seen} == {"r1"}
    assert [e.seq for e in seen] == sorted({e.seq for e in seen})
    assert d.history == tuple(seen)
    planned = seen[2]
    assert isinstance(planned, TaskPlanned) and planned.deps == (1,)


async def test_task_starts_while_plan_still_streams() -> None:
    """Task 1 must run before the stream yields task 2."""
    order: list[str] = []

    async def record(x: Any = None, y: Any = None) -> Any:
        order.append(f"run {x}")
        return x

    tools = toolset(make_tool("rec", record))
    step = anyio.Event()

    async def stream() -> AsyncIterator[Task]:
        order.append("emit 1")
        yield Task(1, "rec", (1,))
        with anyio.fail_after(2):
            await step.wait()  # the "model" is still generating
        order.append("emit 2")
        yield Task(2, "rec", (Ref(1),))

    def on_event(ev: Event) -> None:
        if isinstance(ev, TaskSucceeded) and ev.task_id == 1:
            step.set()

    with anyio.fail_after(5):
        out = await Dispatcher.run_plan(tools, stream(), on_event=on_event)
    assert order == ["emit 1", "run 1", "emit 2", "run 1"]
    assert out[2].value == 1


async def test_late_tasks_use_results_of_finished_ones() -> None:
    with anyio.fail_after(5):
        async with Dispatcher(toolset()) as d:
            d.submit(Task(1, "add", (2, 3)))
            await d.wait()
            d.submit(Task(2, "boom", ()))
            await d.wait([2])
            # a "replan": continues numbering, uses old results, one input failed
            d.submit(Task(3, "mul", (Ref(1), 10)))
            d.submit(Task(4, "ident", (Ref(2),)))
            d.close_input()
            await d.wait()
    assert d.results[3] == 50
    assert d.outcomes[4].status == "skipped"
    assert d.outcomes[4].skipped_because == 2


async def test_submit_rejects_bad_tasks_with_clear_errors() -> None:
    with anyio.fail_after(5):
        async with Dispatcher(toolset()) as d:
            d.submit(Task(1, "add", (1,)))
            with pytest.raises(DispatchError, match="already taken"):
                d.submit(Task(1, "add", (1,)))
            with pytest.raises(DispatchError, match=r"\$7, which is not an earlier task"):
                d.submit(Task(3, "add", (Ref(7),)))
            with pytest.raises(DispatchError, match=r"\$2, which was never submitted"):
                d.submit(Task(3, "add", (Ref(2),)))
            with pytest.raises(DispatchError, match="unknown tool 'nope'"):
                d.submit(Task(3, "nope"))
            d.close_input()
            with pytest.raises(DispatchError, match="after close_input"):
                d.submit(Task(9, "add", (1,)))
    with pytest.raises(DispatchError, match="running dispatcher"):
        Dispatcher(toolset()).submit(Task(1, "add", (1,)))
    schema_only = Tool(name="remote_only", input_schema=ANY)
    with anyio.fail_after(5):
        async with Dispatcher(toolset(schema_only)) as d:
            with pytest.raises(DispatchError, match="no function"):
                d.submit(Task(1, "remote_only"))


async def test_every_event_type_carries_run_fields() -> None:
    events: list[Event] = []
    with anyio.fail_after(5):
        await Dispatcher.run_plan(
            toolset(), [Task(1, "boom"), Task(2, "ident", (Ref(1),))], on_event=events.append
        )
    types = {type(e) for e in events}
    assert {TaskPlanned, TaskReady, TaskStarted, TaskFailed, TaskSkipped, InterruptRaised} <= types
    for e in events:
        assert e.run_id and e.seq > 0 and e.ts > 0


async def test_on_event_errors_do_not_break_the_run(caplog: pytest.LogCaptureFixture) -> None:
    def bad(ev: Event) -> None:
        raise RuntimeError("listener bug")

    with anyio.fail_after(5):
        out = await Dispatcher.run_plan(toolset(), [Task(1, "add", (1,))], on_event=bad)
    assert out[1].value == 1
    assert "listener bug" in caplog.text
