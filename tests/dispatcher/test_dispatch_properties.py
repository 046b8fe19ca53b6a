"""Property tests over random DAGs with random latencies and failures (instrumented, not assumed)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from dtools import (
    Tracker,
    make_tool,
    on_both_backends,  # noqa: F401  (the anyio_backend fixture: asyncio and trio)
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tomasulo.dispatcher import Dispatcher, Event, Limits, TaskEvent, TaskStarted
from tomasulo.grammar import Ref, Task
from tomasulo.tools import Toolset

pytestmark = pytest.mark.anyio

TOOLS = ("fast", "slow", "fail", "lim", "seq", "sync")


@st.composite
def dags(draw: st.DrawFn) -> tuple[list[Task], list[int], int | None]:
    n = draw(st.integers(1, 25))
    tasks = []
    latencies = []
    for i in range(1, n + 1):
        deps = draw(st.lists(st.integers(1, i - 1), max_size=3, unique=True)) if i > 1 else []
        tool = draw(st.sampled_from(TOOLS))
        latencies.append(draw(st.integers(0, 6)))
        tasks.append(Task(i, tool, ([Ref(d) for d in deps], i)))
    limit = draw(st.one_of(st.none(), st.integers(1, 4)))
    return tasks, latencies, limit


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=dags())
async def test_random_dags_keep_every_invariant(
    case: tuple[list[Task], list[int], int | None],
) -> None:
    tasks, latencies, limit = case
    tracker = Tracker()
    seq_order: list[int] = []
    violations: list[str] = []

    def tool(name: str) -> Any:
        async def fn(x: Any = None, y: Any = None) -> Any:
            tracker.enter(name)
            if name == "seq":
                seq_order.append(y)
            try:
                for _ in range(latencies[y - 1]):
                    await anyio.lowlevel.checkpoint()
                if name == "fail":
                    raise RuntimeError(f"task {y} fails")
                return y
            finally:
                tracker.leave(name)

        return fn

    def sync_fn(x: Any = None, y: Any = None) -> Any:
        return y

    tools = Toolset(
        [
            make_tool("fast", tool("fast")),
            make_tool("slow", tool("slow")),
            make_tool("fail", tool("fail")),
            make_tool("lim", tool("lim"), max_concurrency=2),
            make_tool("seq", tool("seq"), sequential=True),
            make_tool("sync", sync_fn),
        ]
    )
    terminal: dict[int, int] = {}
    d: Dispatcher

    def on_event(ev: Event) -> None:
        if isinstance(ev, TaskStarted):
            for dep in by_id[ev.task_id].deps:
                o = d.outcomes.get(dep)
                if o is None or o.status != "succeeded":
                    violations.append(f"task {ev.task_id} started before input {dep} succeeded")
        if isinstance(ev, TaskEvent) and type(ev).__name__ in (
            "TaskSucceeded",
            "TaskFailed",
            "TaskSkipped",
            "TaskCancelled",
        ):
            terminal[ev.task_id] = terminal.get(ev.task_id, 0) + 1

    by_id = {t.id: t for t in tasks}
    with anyio.fail_after(10):
        d = Dispatcher(tools, limits=Limits(max_concurrency=limit), on_event=on_event)
        async with d:
            for t in tasks:
                d.submit(t)
            d.close_input()
            await d.wait()

    assert violations == []
    assert terminal == {t.id: 1 for t in tasks}
    assert set(d.outcomes) == set(by_id)
    if limit is not None:
        assert tracker.peak_total <= limit
    assert tracker.peak.get("lim", 0) <= 2
    assert tracker.peak.get("seq", 0) <= 1
    assert seq_order == sorted(seq_order)
    for t in tasks:
        o = d.outcomes[t.id]
        inputs_ok = all(d.outcomes[dep].ok for dep in t.deps)
        if not inputs_ok:
            assert o.status == "skipped"
            root = o.skipped_because
            assert root is not None and d.outcomes[root].status == "failed"
        elif t.tool == "fail":
            assert o.status == "failed" and o.error_type == "RuntimeError"
        else:
            assert o.status == "succeeded" and o.value == t.id
            assert o.started_at is not None and o.ready_at is not None
            for dep in t.deps:
                finished = d.outcomes[dep].finished_at
                assert finished is not None and finished <= o.started_at
