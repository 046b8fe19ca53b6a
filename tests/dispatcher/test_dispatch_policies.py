"""Limits, timeouts, retries, cancellation and deadlines."""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio
import pytest
from dtools import (
    Gate,
    Tracker,
    make_tool,
    on_both_backends,  # noqa: F401  (the anyio_backend fixture: asyncio and trio)
)

from tomasulo.dispatcher import DEFAULT_LIMITS, Dispatcher, Event, Limits, TaskRetrying
from tomasulo.exceptions import ConfigError, ToolHTTPError, ToolTimeout
from tomasulo.grammar import Ref, Task
from tomasulo.tools import Toolset

pytestmark = pytest.mark.anyio


def test_limits_are_validated() -> None:
    assert DEFAULT_LIMITS.max_concurrency is None and DEFAULT_LIMITS.deadline is None
    assert DEFAULT_LIMITS.cancel_grace == 0.1
    for bad in (
        {"max_concurrency": 0},
        {"max_concurrency": 2.5},
        {"max_concurrency": True},
        {"deadline": 0},
        {"deadline": float("inf")},
        {"cancel_grace": -1},
        {"retry_backoff": float("nan")},
    ):
        with pytest.raises(ConfigError):
            Limits(**bad)


async def test_run_and_tool_concurrency_limits_hold() -> None:
    tracker = Tracker()
    release = anyio.Event()

    def tracked(name: str) -> Any:
        async def fn(x: Any = None, y: Any = None) -> Any:
            tracker.enter(name)
            try:
                await release.wait()
            finally:
                tracker.leave(name)
            return x

        return fn

    tools = Toolset([make_tool("a", tracked("a"), max_concurrency=2), make_tool("b", tracked("b"))])
    with anyio.fail_after(5):
        async with Dispatcher(tools, limits=Limits(max_concurrency=3)) as d:
            for i in range(1, 13):
                d.submit(Task(i, "a" if i % 2 else "b", (i,)))
            # let everything that may start, start
            for _ in range(20):
                await anyio.lowlevel.checkpoint()
            assert tracker.total == 3
            assert tracker.active.get("a", 0) <= 2
            release.set()
            d.close_input()
            await d.wait()
    assert tracker.peak_total == 3
    assert tracker.peak["a"] == 2
    assert all(o.ok for o in d.outcomes.values())


async def test_sequential_tool_runs_one_at_a_time_in_plan_order() -> None:
    order: list[int] = []
    active = 0
    peak = 0
    gate = Gate()

    async def write(x: Any = None, y: Any = None) -> Any:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        order.append(x)
        await anyio.lowlevel.checkpoint()
        await anyio.lowlevel.checkpoint()
        active -= 1
        return x

    tools = Toolset([make_tool("write", write, sequential=True), make_tool("gate", gate)])
    with anyio.fail_after(5):
        async with Dispatcher(tools) as d:
            d.submit(Task(1, "gate", (0,)))
            d.submit(Task(2, "write", (Ref(1),)))  # waits for its input
            d.submit(Task(3, "write", (3,)))  # ready now, but must wait for task 2
            d.submit(Task(4, "write", (4,)))
            await gate.started.wait()
            for _ in range(10):
                await anyio.lowlevel.checkpoint()
            assert order == []
            gate.release.set()
            d.close_input()
            await d.wait()
    assert order == [0, 3, 4]
    assert peak == 1


async def test_timeouts_fail_hanging_async_and_sync_tools() -> None:
    async def hang_async(x: Any = None, y: Any = None) -> Any:
        await anyio.Event().wait()

    stop = threading.Event()

    def hang_sync(x: Any = None, y: Any = None) -> Any:
        stop.wait(10)

    tools = Toolset(
        [
            make_tool("ha", hang_async, timeout=0.05),
            make_tool("hs", hang_sync, timeout=0.05),
        ]
    )
    try:
        with anyio.fail_after(5):
            t0 = time.monotonic()
            out = await Dispatcher.run_plan(tools, [Task(1, "ha"), Task(2, "hs")])
            elapsed = time.monotonic() - t0
    finally:
        stop.set()
    for tid in (1, 2):
        assert out[tid].status == "failed"
        assert isinstance(out[tid].error, ToolTimeout)
        assert out[tid].error_type == "ToolTimeout"
        assert "timed out after 0.05 s" in (out[tid].message or "")
    assert elapsed < 1.0


class Flaky(Exception):
    retryable = True


async def test_retries_only_for_idempotent_tools_or_retryable_errors() -> None:
    calls: dict[str, int] = {}

    def failing(name: str, times: int, exc: type[Exception]) -> Any:
        async def fn(x: Any = None, y: Any = None) -> Any:
            calls[name] = calls.get(name, 0) + 1
            if calls[name] <= times:
                raise exc(f"{name} attempt {calls[name]}")
            return calls[name]

        return fn

    tools = Toolset(
        [
            make_tool("idem", failing("idem", 2, RuntimeError), retries=3, idempotent=True),
            make_tool("marked", failing("marked", 1, Flaky), retries=2),
            make_tool("unsafe", failing("unsafe", 1, RuntimeError), retries=3),
            make_tool("doomed", failing("doomed", 9, RuntimeError), retries=2, idempotent=True),
        ]
    )
    events: list[Event] = []
    limits = Limits(retry_backoff=0.001, retry_max_wait=0.01)
    tasks = [Task(1, "idem"), Task(2, "marked"), Task(3, "unsafe"), Task(4, "doomed")]
    with anyio.fail_after(5):
        out = await Dispatcher.run_plan(tools, tasks, limits=limits, on_event=events.append)
    assert (out[1].status, out[1].value, out[1].attempts) == ("succeeded", 3, 3)
    assert (out[2].status, out[2].attempts) == ("succeeded", 2)
    assert (out[3].status, out[3].attempts, calls["unsafe"]) == ("failed", 1, 1)
    assert (out[4].status, out[4].attempts, calls["doomed"]) == ("failed", 3, 3)
    assert "[attempt 3]" in (out[4].message or "")
    retrying = [e for e in events if isinstance(e, TaskRetrying)]
    assert sorted((e.task_id, e.attempt) for e in retrying) == [
        (1, 1),
        (1, 2),
        (2, 1),
        (4, 1),
        (4, 2),
    ]
    assert all(0 <= e.delay <= 0.01 for e in retrying)


async def test_a_servers_retry_after_replaces_the_backoff() -> None:
    """An error's ``retry_after`` (ToolHTTPError carries a 429's Retry-After) sets the wait,
    cut to the limits' ``retry_max_wait``; an error without one keeps the backoff."""
    calls = {"asks": 0, "huge": 0, "plain": 0}

    def failing_once(name: str, after: float | None) -> Any:
        async def fn(x: Any = None, y: Any = None) -> Any:
            calls[name] += 1
            if calls[name] == 1:
                raise ToolHTTPError("429", status_code=429, retryable=True, retry_after=after)
            return calls[name]

        return fn

    tools = Toolset(
        [
            make_tool("asks", failing_once("asks", 0.05), retries=1),
            make_tool("huge", failing_once("huge", 3600.0), retries=1),
            make_tool("plain", failing_once("plain", None), retries=1),
        ]
    )
    events: list[Event] = []
    limits = Limits(retry_backoff=0.001, retry_max_wait=0.2)
    with anyio.fail_after(5):
        out = await Dispatcher.run_plan(
            tools, [Task(1, "asks"), Task(2, "huge"), Task(3, "plain")], limits=limits, on_event=events.append
        )
    assert all(out[tid].status == "succeeded" for tid in (1, 2, 3))
    delays = {e.task_id: e.delay for e in events if isinstance(e, TaskRetrying)}
    assert delays[1] == pytest.approx(0.05)
    assert delays[2] == pytest.approx(0.2)  # an hour asked for, cut to retry_max_wait
    assert delays[3] <= 0.002


async def test_cancel_everything_returns_fast_even_with_hung_threads() -> None:
    stop = threading.Event()

    def hang_sync(x: Any = None, y: Any = None) -> Any:
        stop.wait(10)

    async def hang_async(x: Any = None, y: Any = None) -> Any:
        await anyio.Event().wait()

    async def quick(x: Any = None, y: Any = None) -> Any:
        return x

    tools = Toolset([make_tool("hs", hang_sync), make_tool("ha", hang_async), make_tool("q", quick)])
    try:
        with anyio.fail_after(5):
            async with Dispatcher(tools) as d:
                d.submit(Task(1, "q", (1,)))
                d.submit(Task(2, "hs"))
                d.submit(Task(3, "ha"))
                d.submit(Task(4, "q", (Ref(2),)))
                await d.wait([1])
                for _ in range(5):
                    await anyio.lowlevel.checkpoint()
                t0 = time.monotonic()
                d.cancel()
                await d.wait()
                latency = time.monotonic() - t0
            exit_time = time.monotonic() - t0
    finally:
        stop.set()
    assert d.outcomes[1].status == "succeeded"
    assert [d.outcomes[i].status for i in (2, 3, 4)] == ["cancelled"] * 3
    assert latency < 0.1
    assert exit_time < 0.5


async def test_cancel_some_tasks_skips_their_dependents() -> None:
    gate = Gate()
    tools = Toolset([make_tool("g", gate)])
    with anyio.fail_after(5):
        async with Dispatcher(tools) as d:
            d.submit(Task(1, "g", (1,)))
            d.submit(Task(2, "g", (Ref(1),)))
            d.submit(Task(3, "g", (3,)))
            await gate.started.wait()
            d.cancel([1])
            gate.release.set()
            d.close_input()
            await d.wait()
    assert d.outcomes[1].status == "cancelled"
    assert (d.outcomes[2].status, d.outcomes[2].skipped_because) == ("skipped", 1)
    assert d.outcomes[3].status == "succeeded"


async def test_deadline_cancels_the_run_and_raises_an_interrupt() -> None:
    events: list[Event] = []

    async def hang(x: Any = None, y: Any = None) -> Any:
        await anyio.Event().wait()

    async def quick(x: Any = None, y: Any = None) -> Any:
        return x

    tools = Toolset([make_tool("h", hang), make_tool("q", quick)])
    with anyio.fail_after(5):
        t0 = time.monotonic()
        async with Dispatcher(tools, limits=Limits(deadline=0.1), on_event=events.append) as d:
            d.submit(Task(1, "q", (1,)))
            d.submit(Task(2, "h"))
            d.submit(Task(3, "q", (Ref(2),)))
            await d.wait()
            d.submit(Task(4, "q", (4,)))  # after the deadline: cancelled at once
        elapsed = time.monotonic() - t0
    assert d.outcomes[1].ok
    assert [d.outcomes[i].status for i in (2, 3, 4)] == ["cancelled"] * 3
    assert "deadline" in (d.outcomes[2].message or "")
    assert 0.1 <= elapsed < 1.0
    deadline_events = [e for e in events if getattr(e, "source", None) == "deadline"]
    assert len(deadline_events) == 1 and deadline_events[0].task_id is None


async def test_leaving_with_an_exception_cancels_unfinished_tasks() -> None:
    gate = Gate()
    tools = Toolset([make_tool("g", gate)])
    with anyio.fail_after(5), pytest.raises(RuntimeError, match="caller broke"):
        async with Dispatcher(tools) as d:
            d.submit(Task(1, "g", (1,)))
            await gate.started.wait()
            raise RuntimeError("caller broke")
    assert d.outcomes[1].status == "cancelled"


def test_tools_and_llm_calls_share_one_retry_policy_type() -> None:
    import math

    import tomasulo.planner
    import tomasulo.tools

    assert tomasulo.planner.RetryPolicy is tomasulo.tools.RetryPolicy
    assert tomasulo.planner.DEFAULT_RETRY is tomasulo.tools.DEFAULT_RETRY
    policy = Limits(retry_backoff=0.2, retry_max_wait=1.0).retry_policy(3)
    assert isinstance(policy, tomasulo.tools.RetryPolicy)
    assert (policy.attempts, policy.initial, policy.maximum, policy.total) == (4, 0.2, 1.0, math.inf)
    # Waits double from the first, plus up to as much again of jitter, never past the maximum.
    assert [policy.backoff(n, rand=0.0) for n in (1, 2, 3, 4)] == [0.2, 0.4, 0.8, 1.0]
    assert policy.backoff(2, rand=0.99) == pytest.approx(0.796)
    assert policy.backoff(3, rand=0.99) == 1.0
    assert policy.backoff(1000) == 1.0  # no overflow
    assert policy.backoff(1, retry_after=9.0) == 1.0  # a Retry-After is cut to max_retry_after
    assert policy.backoff(1, retry_after=math.nan, rand=0.0) == 0.2  # a NaN one is ignored
    for bad in (
        {"attempts": 0},
        {"attempts": True},
        {"initial": -1},
        {"maximum": math.inf},
        {"jitter": math.nan},
    ):
        with pytest.raises(ConfigError, match="RetryPolicy"):
            tomasulo.tools.RetryPolicy(**bad)
