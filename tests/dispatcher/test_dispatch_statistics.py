"""Dispatcher.statistics(): where a run's tasks and workers are, as a frozen value."""

from __future__ import annotations

import dataclasses
from typing import Any

import anyio
import pytest
from dtools import (
    Gate,
    ident,
    make_tool,
    on_both_backends,  # noqa: F401  (the anyio_backend fixture: asyncio and trio)
)

import tomasulo.dispatcher
from tomasulo.dispatcher import Dispatcher, DispatcherStatistics, Limits, Outcome
from tomasulo.grammar import Ref, Task
from tomasulo.tools import Toolset

pytestmark = pytest.mark.anyio


def test_statistics_is_an_exported_frozen_value() -> None:
    assert "DispatcherStatistics" in tomasulo.dispatcher.__all__
    stats = DispatcherStatistics(submitted=4, finished=1, waiting=1, ready=1, running=1)
    assert stats.pending == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.busy = 2  # type: ignore[misc]
    assert stats == DispatcherStatistics(submitted=4, finished=1, waiting=1, ready=1, running=1)


async def test_a_new_dispatcher_has_nothing_anywhere() -> None:
    d = Dispatcher(Toolset([make_tool("ident", ident)]))
    assert d.statistics() == DispatcherStatistics()


async def test_statistics_count_waiting_ready_running_and_finished_tasks() -> None:
    gate = Gate(expect=1)
    tools = Toolset([make_tool("gate", gate, max_concurrency=1), make_tool("ident", ident)])
    with anyio.fail_after(5):
        async with Dispatcher(tools) as d:
            d.submit(Task(1, "ident", (1,)))
            await d.wait([1])
            d.submit(Task(2, "gate", (2,)))  # runs, holding the tool's only slot
            d.submit(Task(3, "gate", (3,)))  # ready, waiting for that slot
            d.submit(Task(4, "ident", (Ref(2),)))  # waits for task 2
            d.submit(Task(5, "ident", ([Ref(3), Ref(4)],)))  # waits for two inputs
            await gate.started.wait()
            await anyio.wait_all_tasks_blocked()
            stats = d.statistics()
            assert (stats.submitted, stats.finished, stats.running, stats.ready, stats.waiting) == (
                5,
                1,
                1,
                1,
                2,
            )
            assert stats.pending == d.pending == 4
            assert stats.busy == 1  # one worker runs task 2; none can take task 3 yet
            assert stats.workers == stats.busy + stats.parked + stats.waking
            gate.release.set()
    stats = d.statistics()
    assert (stats.submitted, stats.finished, stats.pending) == (5, 5, 0)
    assert (stats.running, stats.ready, stats.waiting, stats.busy) == (0, 0, 0, 0)


async def test_statistics_count_tasks_over_the_run_limit_as_ready(anyio_backend: str) -> None:
    gate = Gate(expect=2)
    tools = Toolset([make_tool("gate", gate)])
    with anyio.fail_after(5):
        async with Dispatcher(tools, limits=Limits(max_concurrency=2)) as d:
            for i in range(1, 6):
                d.submit(Task(i, "gate", (i,)))
            await gate.all_started.wait()
            await anyio.wait_all_tasks_blocked()
            stats = d.statistics()
            assert (stats.running, stats.ready, stats.busy) == (2, 3, 2)
            gate.release.set()
    assert d.statistics().finished == 5
    assert d.statistics().workers == 0  # every worker returned when the run ended


async def test_statistics_count_restored_and_cancelled_tasks() -> None:
    restored = Outcome(task_id=1, tool="ident", status="succeeded", value=7)

    async def hang(x: Any = None, y: Any = None) -> Any:
        await anyio.sleep_forever()

    tools = Toolset([make_tool("ident", ident), make_tool("hang", hang)])
    with anyio.fail_after(5):
        async with Dispatcher(tools, restore=[restored]) as d:
            d.submit(Task(2, "hang", (Ref(1),)))
            await anyio.wait_all_tasks_blocked()
            assert d.statistics().running == 1
            d.cancel([2])
            stats = d.statistics()
            assert (stats.restored, stats.submitted, stats.finished, stats.running) == (1, 1, 1, 0)
    assert d.outcomes[2].status == "cancelled"
