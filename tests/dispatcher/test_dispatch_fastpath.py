"""What the dispatcher's fast paths must keep: events, cancellation, order and fairness."""

from __future__ import annotations

import dataclasses
import weakref
from typing import Any

import anyio
import pytest
from dtools import (
    ANY,
    Gate,
    ident,
    live_workers,
    make_tool,
)

from tomasulo.dispatcher import (
    Dispatcher,
    Event,
    Limits,
    Outcome,
    TaskPlanned,
    TaskReady,
    TaskStarted,
    TaskSucceeded,
)
from tomasulo.dispatcher._events import make_outcome, make_planned, make_terminal
from tomasulo.exceptions import DispatchError
from tomasulo.grammar import Ref, Task
from tomasulo.tools import Toolset

pytestmark = pytest.mark.anyio


def chain_plan() -> list[Task]:
    """1 <- 2 <- 3, a diamond 4 -> (5, 6) -> 7, and a lone 8 using 1."""
    return [
        Task(1, "ident", (1,)),
        Task(2, "ident", (Ref(1),)),
        Task(3, "ident", ([Ref(2), Ref(1)],)),
        Task(4, "ident", (4,)),
        Task(5, "ident", (Ref(4),)),
        Task(6, "ident", ({"v": Ref(4)},)),
        Task(7, "ident", ([Ref(5), Ref(6)],)),
        Task(8, "ident", (Ref(1),)),
    ]


def strip_ts(events: list[Event] | tuple[Event, ...]) -> list[Any]:
    """The events without their clock readings and run id."""
    out = []
    for e in events:
        e = dataclasses.replace(e, ts=0.0, run_id="")
        outcome = getattr(e, "outcome", None)
        if outcome is not None:
            times = dict.fromkeys(("planned_at", "ready_at", "started_at", "finished_at"), 0.0)
            e = dataclasses.replace(e, outcome=dataclasses.replace(outcome, **times))  # type: ignore[call-arg]
        out.append(e)
    return out


def test_fast_constructors_build_equal_events() -> None:
    slow = Outcome(task_id=3, tool="t", status="succeeded", value=[1], attempts=1, finished_at=2.0)
    fast = make_outcome(3, "t", "succeeded", [1], None, None, None, 1, None, None, None, 2.0, None)
    assert fast == slow
    assert make_planned("r", 1, 0.5, 3, "t", (1, 2), {}) == TaskPlanned(
        run_id="r", seq=1, ts=0.5, task_id=3, tool="t", deps=(1, 2)
    )
    done = make_terminal["succeeded"]("r", 2, 0.5, 3, "t", fast)
    assert done == TaskSucceeded(run_id="r", seq=2, ts=0.5, task_id=3, tool="t", outcome=slow)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.value = 2  # type: ignore[misc]
    assert dataclasses.replace(done, seq=9).seq == 9


async def test_history_built_later_equals_events_seen_live() -> None:
    tools = Toolset([make_tool("ident", ident)])
    seen: list[Event] = []
    with anyio.fail_after(5):
        async with Dispatcher(tools, on_event=seen.append, run_id="a") as live:
            live.submit_all(chain_plan())
        async with Dispatcher(tools, run_id="b") as quiet:
            quiet.submit_all(chain_plan())
    assert {k: o.value for k, o in live.outcomes.items()} == {k: o.value for k, o in quiet.outcomes.items()}
    history = quiet.history
    # Same kinds, tasks, seq numbers and fields in the same order; only the clock differs.
    assert strip_ts(history) == strip_ts(seen)
    assert [e.seq for e in history] == list(range(1, len(history) + 1))
    assert quiet.history == history  # built once, then kept
    for e in history:
        o = quiet.outcomes[e.task_id]
        expected = {
            TaskPlanned: o.planned_at,
            TaskReady: o.ready_at,
            TaskStarted: o.started_at,
            TaskSucceeded: o.finished_at,
        }[type(e)]
        assert e.ts == expected


async def test_iterator_joining_mid_run_gets_backlog_then_live_events() -> None:
    release = anyio.Event()

    async def gate(x: Any = None, y: Any = None) -> Any:
        await release.wait()
        return x

    tools = Toolset([make_tool("ident", ident), make_tool("gate", gate)])
    got: list[Event] = []
    with anyio.fail_after(5):
        async with Dispatcher(tools) as d, anyio.create_task_group() as tg:
            d.submit(Task(1, "ident", (1,)))
            d.submit(Task(2, "gate", (Ref(1),)))
            await d.wait([1])

            async def consume() -> None:
                async for ev in d.events():
                    got.append(ev)

            tg.start_soon(consume)
            await anyio.wait_all_tasks_blocked()
            release.set()
            d.submit(Task(3, "ident", (Ref(2),)))
            d.close_input()
    assert got == list(d.history)
    assert [e.seq for e in got] == list(range(1, len(got) + 1))
    assert (type(got[-1]), got[-1].task_id) == (TaskSucceeded, 3)


async def test_a_worker_whose_call_was_cancelled_runs_later_tasks_normally() -> None:
    started = anyio.Event()

    async def stubborn(x: Any = None, y: Any = None) -> Any:
        started.set()
        try:
            await anyio.sleep_forever()
        except BaseException:
            pass  # swallows the cancellation and returns anyway
        return "late"

    calls: list[Any] = []

    async def after(x: Any = None, y: Any = None) -> Any:
        calls.append(x)
        await anyio.lowlevel.checkpoint()  # would raise if the worker were still cancelled
        return x

    tools = Toolset([make_tool("stubborn", stubborn), make_tool("after", after)])
    with anyio.fail_after(5):
        async with Dispatcher(tools, limits=Limits(max_concurrency=1)) as d:
            d.submit(Task(1, "stubborn"))
            await started.wait()
            d.cancel([1])
            for i in range(2, 6):
                d.submit(Task(i, "after", (i,)))
            d.close_input()
            await d.wait()
    assert d.outcomes[1].status == "cancelled"
    assert [d.outcomes[i].status for i in range(2, 6)] == ["succeeded"] * 4
    assert calls == [2, 3, 4, 5]


async def test_whole_plan_starts_the_longest_chain_first() -> None:
    order: list[int] = []

    async def rec(x: Any = None, y: Any = None) -> Any:
        order.append(x)
        return x

    tools = Toolset([make_tool("rec", rec)])
    plan = [
        Task(1, "rec", (1,)),  # alone
        Task(2, "rec", (2,)),  # heads 2 -> 4 -> 5
        Task(3, "rec", (3,)),  # alone
        Task(4, "rec", (4, Ref(2))),
        Task(5, "rec", (5, Ref(4))),
    ]
    with anyio.fail_after(5):
        await Dispatcher.run_plan(tools, plan, limits=Limits(max_concurrency=1))
    assert order[0] == 2
    assert order.index(1) < order.index(3)  # equal chains keep plan order


async def test_a_burst_of_instant_calls_leaves_room_for_other_tasks() -> None:
    n = 2000
    tools = Toolset([make_tool("ident", ident, ANY)])
    with anyio.fail_after(10):
        async with Dispatcher(tools) as d:

            async def cancel_after_first() -> None:
                await d.wait([1])
                d.cancel()

            d.submit_all(Task(i, "ident", (i,)) for i in range(1, n + 1))
            async with anyio.create_task_group() as tg:
                tg.start_soon(cancel_after_first)
    statuses = [o.status for o in d.outcomes.values()]
    # The cancel got in during the burst: a worker running calls that never suspend still yields.
    assert statuses.count("succeeded") < n // 2
    assert statuses.count("cancelled") > n // 2
    assert statuses.count("succeeded") + statuses.count("cancelled") == n


async def test_a_failing_worker_ends_the_run_with_a_dispatch_error() -> None:
    class Broken(Dispatcher):
        def _fail(self, node: Any, error: BaseException, kind: Any) -> None:
            raise RuntimeError("bug")  # a bug in the dispatcher itself, met while running a task

    async def fails(x: Any = None, y: Any = None) -> Any:
        raise ValueError("the tool's own error")

    tools = Toolset([make_tool("fails", fails)])
    with anyio.fail_after(5), pytest.raises(DispatchError, match="a dispatcher worker failed") as info:
        async with Broken(tools) as d:
            d.submit(Task(1, "fails", (1,)))
            await d.wait()
    assert isinstance(info.value.__cause__, RuntimeError)
    assert d.outcomes[1].status == "cancelled"  # the task it held still ends, once


async def test_worker_tasks_are_gone_when_the_run_ends_even_after_a_cancel() -> None:
    gate = Gate(expect=20)
    tools = Toolset([make_tool("hold", gate)])
    with anyio.fail_after(5):
        async with Dispatcher(tools, run_id="gone") as d:
            for i in range(1, 21):
                d.submit(Task(i, "hold", (i,)))
            await gate.all_started.wait()
            assert live_workers("gone") == 20
            d.cancel()
        assert live_workers("gone") == 0
        assert all(o.status == "cancelled" for o in d.outcomes.values())


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_run_plan_leaves_nothing_of_the_run_alive_after_a_loop_step(anyio_backend: str) -> None:
    # run_plan returns the outcomes before the run's state is freed (on asyncio the loop's next
    # step frees it); then nothing may keep the dispatcher alive: no cycle, no stray reference.
    seen: list[weakref.ref[Dispatcher]] = []

    class Watched(Dispatcher):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            seen.append(weakref.ref(self))

    with anyio.fail_after(5):
        out = await Watched.run_plan(Toolset([make_tool("ident", ident)]), chain_plan())
        assert [out[i].value for i in range(1, 9)] == [1, 1, [1, 1], 4, 4, {"v": 4}, [4, {"v": 4}], 1]
        await anyio.lowlevel.checkpoint()
    assert len(seen) == 1 and seen[0]() is None


async def test_a_failing_slot_release_still_ends_its_call_and_the_run_at_once() -> None:
    class Broken(Dispatcher):
        def _release_tool_slot(self, node: Any) -> None:
            raise RuntimeError("bug")  # a bug in the dispatcher itself, after a limited call

    tools = Toolset([make_tool("lim", ident, max_concurrency=1)])
    with anyio.fail_after(2), pytest.raises(DispatchError, match="a dispatcher worker failed"):
        # Were the call still counted as running, closing would wait out the 5 s grace.
        async with Broken(tools, limits=Limits(cancel_grace=5.0)) as d:
            d.submit(Task(1, "lim", (1,)))
            d.submit(Task(2, "lim", (2,)))
            await d.wait()
    assert d.statistics().busy == 0 and d.outcomes[1].status == "succeeded"


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_a_parked_worker_holds_nothing_of_its_last_call(anyio_backend: str) -> None:
    # The run keeps the JSON value of a result, not the object the tool returned; a worker that
    # parks after the call must not keep that object (or the call's arguments) alive either.
    returned: list[weakref.ref[Big]] = []

    async def make_big(x: Any = None, y: Any = None) -> Big:
        big = Big(x)
        returned.append(weakref.ref(big))
        return big

    with anyio.fail_after(5):
        async with Dispatcher(Toolset([make_tool("big", make_big)])) as d:
            d.submit(Task(1, "big", ("x" * 100_000,)))
            await d.wait()
            for _ in range(3):
                await anyio.lowlevel.checkpoint()  # the worker lingers a step, then parks
            stats = d.statistics()
            assert (stats.parked, stats.busy, stats.finished) == (1, 0, 1)
            assert d.results[1] == {"data": "x" * 100_000}
            assert returned and returned[0]() is None


@dataclasses.dataclass
class Big:
    """A tool's result object that the run converts to JSON (a dict)."""

    data: Any
