"""Submission order of a whole plan: critical path first, first calls early, lanes in order."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from dtools import Gate, Recorder, ident, live_workers, make_tool

from tomasulo.dispatcher import Dispatcher, Limits
from tomasulo.exceptions import DispatchError
from tomasulo.grammar import Ref, Task
from tomasulo.tools import Toolset

pytestmark = pytest.mark.anyio


def late_long_chain(n_short: int, chain: int) -> list[Task]:
    """``n_short`` independent tasks, then a root (listed last) heading a chain of ``chain``."""
    tasks = [Task(i, "ident", (i,)) for i in range(1, n_short + 1)]
    head = n_short + 1
    tasks.append(Task(head, "ident", (head,)))
    tasks += [Task(head + k, "ident", (Ref(head + k - 1),)) for k in range(1, chain)]
    return tasks


async def test_the_head_of_the_longest_chain_starts_first() -> None:
    record = Recorder()
    tools = Toolset([make_tool("ident", record)])
    plan = late_long_chain(20, 5)
    with anyio.fail_after(5):
        out = await Dispatcher.run_plan(tools, plan, limits=Limits(max_concurrency=1))
    assert all(o.ok for o in out.values())
    assert record.calls[0] == 21  # listed after 20 ready tasks, yet it heads the critical path


async def test_a_big_plan_starts_calling_before_it_is_all_submitted() -> None:
    tools = Toolset([make_tool("ident", ident)])
    plan = late_long_chain(2000, 3)
    with anyio.fail_after(10):
        out = await Dispatcher.run_plan(tools, plan)
    first_start = min(o.started_at for o in out.values() if o.started_at is not None)
    last_planned = max(o.planned_at for o in out.values() if o.planned_at is not None)
    assert first_start < last_planned
    # The plan's first task starts at once (it cannot wait for any other); of the rest, the
    # head of the longest chain starts first, though it is listed last.
    assert out[1].started_at == first_start
    assert out[2001].started_at == min(o.started_at for k, o in out.items() if k != 1 and o.started_at)


async def test_sequential_calls_keep_plan_order_when_a_later_one_heads_a_long_chain() -> None:
    calls: list[Any] = []

    def seq(x: Any = None, y: Any = None) -> Any:
        calls.append(x)
        return x

    tools = Toolset([make_tool("ident", ident), make_tool("seq", seq, sequential=True)])
    plan = [
        Task(1, "ident", ("a",)),
        Task(2, "seq", ("first", Ref(1))),  # the lane's first call waits for an input
        Task(3, "seq", ("second",)),  # ready at once and heads the longest chain
        *[Task(k, "ident", (Ref(k - 1),)) for k in range(4, 10)],
    ]
    with anyio.fail_after(5):
        out = await Dispatcher.run_plan(tools, plan)
    assert all(o.ok for o in out.values())
    assert calls == ["first", "second"]


async def test_a_bad_reference_fails_at_the_same_task_as_in_plan_order() -> None:
    tools = Toolset([make_tool("ident", ident)])
    plan = [Task(1, "ident", (1,)), Task(2, "ident", (Ref(3),)), Task(3, "ident", (3,))]
    with anyio.fail_after(5):
        async with Dispatcher(tools) as d:
            with pytest.raises(DispatchError, match=r"task 2 references \$3"):
                d.submit_all(plan)
            await d.wait()
            assert sorted(d.outcomes) == [1]  # task 3 was not moved ahead of the error


async def test_each_of_a_plans_first_ready_tasks_starts_before_the_next_is_submitted() -> None:
    gate = anyio.Event()

    async def held(x: Any = None, y: Any = None) -> Any:
        await gate.wait()
        return x

    seen: list[tuple[str, int]] = []

    def on_event(event: Any) -> None:
        if type(event).__name__ in ("TaskPlanned", "TaskStarted"):
            seen.append((type(event).__name__, event.task_id))
            if len([1 for kind, _ in seen if kind == "TaskStarted"]) == 10:
                gate.set()

    tools = Toolset([make_tool("ident", held)])
    plan = [Task(i, "ident", (i,)) for i in range(1, 11)]
    with anyio.fail_after(5):
        out = await Dispatcher.run_plan(tools, plan, on_event=on_event)
    assert all(o.ok for o in out.values())
    for k in range(1, 10):
        assert seen.index(("TaskStarted", k)) < seen.index(("TaskPlanned", k + 1)), seen


async def test_after_a_burst_only_a_few_idle_workers_stay_and_none_outlive_the_run() -> None:
    gate = Gate(expect=50)
    tools = Toolset([make_tool("ident", gate)])
    with anyio.fail_after(5):
        async with Dispatcher(tools, run_id="burst") as d:
            for i in range(1, 51):
                d.submit(Task(i, "ident", (i,)))
            await gate.all_started.wait()
            assert live_workers("burst") == 50  # a blocking call holds a worker each
            gate.release.set()
            await d.wait()
            for _ in range(5):  # idle workers linger a loop step, then park or return
                await anyio.lowlevel.checkpoint()
            assert 1 <= live_workers("burst") <= 8, "the rest of the burst's workers returned"
            d.submit(Task(51, "ident", (51,)))  # a parked worker serves a later task
            await d.wait([51])
            assert d.outcomes[51].value == 51
        assert live_workers("burst") == 0


async def test_a_forward_reference_to_a_task_listed_earlier_keeps_plan_order() -> None:
    record = Recorder()
    tools = Toolset([make_tool("ident", record)])
    # Task 3 is listed after task 5 but references it: the dispatcher refuses task 3, and no
    # root listed after it (task 4) may have been moved ahead and submitted first.
    plan = [Task(5, "ident", (5,)), Task(3, "ident", (Ref(5),)), Task(4, "ident", (4,))]
    with anyio.fail_after(5):
        async with Dispatcher(tools) as d:
            with pytest.raises(DispatchError, match=r"task 3 references \$5"):
                d.submit_all(plan)
    assert set(d.outcomes) == {5}
    assert record.calls == [5]


async def test_a_ready_task_on_the_critical_path_starts_before_ready_tasks_with_slack() -> None:
    record = Recorder()
    tools = Toolset([make_tool("ident", record)])
    # 1 heads the chain 1 -> 2 -> 3 -> 4; 5 and 6 stand alone. With one call at a time, 5 and 6
    # are ready from the start, yet 2 (ready only once 1 ends) goes before them: it is on the
    # longest chain, they are not. A first-in-first-out queue would run 1, 5, 6, 2, 3, 4.
    plan = [
        Task(1, "ident", (1,)),
        Task(2, "ident", (2, Ref(1))),
        Task(3, "ident", (3, Ref(2))),
        Task(4, "ident", (4, Ref(3))),
        Task(5, "ident", (5,)),
        Task(6, "ident", (6,)),
    ]
    with anyio.fail_after(5):
        async with Dispatcher(tools, limits=Limits(max_concurrency=1)) as d:
            d.submit_all(plan)  # nothing starts before the whole plan is in
    assert all(o.ok for o in d.outcomes.values())
    assert record.calls == [1, 2, 3, 4, 5, 6]


async def test_submit_ranks_only_reorder_what_waits() -> None:
    started: list[int] = []
    gate = anyio.Event()
    holding = anyio.Event()

    async def record(x: Any = None, y: Any = None) -> Any:
        if x == 0:
            holding.set()
            await gate.wait()
        started.append(x)
        return x

    tools = Toolset([make_tool("ident", record)])
    with anyio.fail_after(5):
        async with Dispatcher(tools, limits=Limits(max_concurrency=1)) as d:
            d.submit(Task(1, "ident", (0,)))
            await holding.wait()  # task 1 holds the only slot
            d.submit(Task(2, "ident", (2,)))
            d.submit(Task(3, "ident", (3,)), rank=1)
            d.submit(Task(4, "ident", (4,)), rank=5)
            d.submit(Task(5, "ident", (5,)), rank=5)
            d.submit_all([Task(6, "ident", (6,))])  # a batch of one is ranked too (1)
            with pytest.raises(DispatchError, match="rank must be 0 or more"):
                d.submit(Task(7, "ident", (7,)), rank=-1)
            gate.set()
    # Ranked first, the higher rank first, then by id; the unranked task last.
    assert started == [0, 4, 5, 3, 6, 2]


async def test_a_plan_with_two_unknown_tools_fails_at_the_first_in_plan_order() -> None:
    tools = Toolset([make_tool("ident", ident)])
    # Level by level, task 4 (one level down) would be submitted before task 3 (two down); the
    # error must still name task 3, as submitting in plan order would.
    plan = [
        Task(1, "ident", (1,)),
        Task(2, "ident", (Ref(1),)),
        Task(3, "nope_a", (Ref(2),)),
        Task(4, "nope_b", (Ref(1),)),
    ]
    with anyio.fail_after(5):
        async with Dispatcher(tools) as d:
            with pytest.raises(DispatchError, match="task 3 calls unknown tool 'nope_a'"):
                d.submit_all(plan)
    with anyio.fail_after(5), pytest.raises(DispatchError, match="task 3 calls unknown tool"):
        await Dispatcher.run_plan(tools, plan)


async def test_the_rest_of_a_plan_is_submitted_level_by_level() -> None:
    planned: list[int] = []

    def on_event(event: Any) -> None:
        if type(event).__name__ == "TaskPlanned":
            planned.append(event.task_id)

    tools = Toolset([make_tool("ident", ident)])
    plan = [
        Task(1, "ident", (1,)),
        Task(2, "ident", (Ref(1),)),
        Task(3, "ident", (Ref(2),)),  # two levels down: after 5, which is one level down
        Task(4, "ident", (4,)),
        Task(5, "ident", (Ref(4),)),
    ]
    with anyio.fail_after(5):
        async with Dispatcher(tools, on_event=on_event) as d:
            d.submit_all(plan)
    assert planned == [1, 4, 2, 5, 3]


async def test_idle_workers_return_once_every_task_left_is_running() -> None:
    gate = anyio.Event()

    async def held(x: Any = None, y: Any = None) -> Any:
        if x == 1:
            await gate.wait()
        else:
            await anyio.sleep(0.01)
        return x

    tools = Toolset([make_tool("ident", held)])
    with anyio.fail_after(5):
        async with Dispatcher(tools, run_id="tail") as d:
            d.submit_all([Task(i, "ident", (i,)) for i in range(1, 11)])
            d.close_input()
            await d.wait(range(2, 11))
            for _ in range(5):
                await anyio.lowlevel.checkpoint()
            # Nine calls ended, one still runs: with the input closed nothing else can start,
            # so only that call's worker is left, before the run ends.
            assert live_workers("tail") == 1
            gate.set()
        assert live_workers("tail") == 0


def test_ranks_count_the_whole_longest_chain_through_each_task() -> None:
    from tomasulo.dispatcher._order import plan_order

    plan = [
        Task(2, "ident", (Ref(1),)),  # 1 was submitted (and started) before the rest was ordered
        Task(3, "ident", (Ref(2),)),
        Task(4, "ident", (4,)),
        Task(5, "ident", (Ref(4),)),
    ]
    order = [(t.id, rank) for t, rank in plan_order(plan, {1}, lambda name: False, {1: 1})]
    # The root, then level by level; 1 -> 2 -> 3 is the longest chain.
    assert order == [(4, 2), (2, 3), (5, 2), (3, 3)]
    unhinted = dict((t.id, rank) for t, rank in plan_order(plan, {1}, lambda name: False))
    assert unhinted[2] == 2  # without the hint the chain is counted from 2
