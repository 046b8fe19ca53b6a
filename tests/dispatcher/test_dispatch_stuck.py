"""An async tool that swallows cancellation cannot hold a run past its deadline or budget.

The tool here ignores every cancellation until the test lets it go, after the run has returned
(a tool that never stops would outlive the test's event loop too). On asyncio the run ends
within the cancel grace and names the abandoned call; trio's task groups wait for every task,
which is documented on ``Limits.cancel_grace``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from dtools import ident, make_tool

import tomasulo
from tomasulo.dispatcher import Dispatcher, Event, Limits, TaskAbandoned
from tomasulo.grammar import Task
from tomasulo.planner import LLM
from tomasulo.runtime import Budget, Orchestrator
from tomasulo.testing import Latency, SimulatedLLM
from tomasulo.tools import Toolset

pytestmark = pytest.mark.anyio


class Stubborn:
    """An async tool that catches every cancellation and carries on until ``release`` is set."""

    def __init__(self) -> None:
        self.release = anyio.Event()
        self.started = anyio.Event()
        self.swallowed = 0

    async def __call__(self, x: Any = None, y: Any = None) -> Any:
        self.started.set()
        while not self.release.is_set():
            try:
                await self.release.wait()
            except BaseException:  # the misbehaviour under test
                self.swallowed += 1
        return "finally"


async def test_a_tool_that_swallows_cancellation_cannot_hold_the_run_past_its_deadline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stubborn = Stubborn()
    tools = Toolset([make_tool("stubborn", stubborn), make_tool("ident", ident)])
    seen: list[Event] = []
    with anyio.fail_after(10):
        t0 = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="tomasulo.dispatcher"):
            out = await Dispatcher.run_plan(
                tools,
                [Task(1, "stubborn"), Task(2, "ident", (3,))],
                limits=Limits(deadline=0.3, cancel_grace=0.1),
                on_event=seen.append,
            )
        elapsed = time.monotonic() - t0
        assert stubborn.swallowed > 0  # it really ignored its cancellation
        stubborn.release.set()
    assert elapsed < 3.0
    assert out[2].value == 3
    assert out[1].status == "cancelled"
    assert out[1].error_type == "Abandoned"
    assert "abandoned, still running" in (out[1].message or "")
    abandoned = [e for e in seen if isinstance(e, TaskAbandoned)]
    assert len(abandoned) == 1 and abandoned[0].task_id == 1 and abandoned[0].tool == "stubborn"
    assert any(
        "task 1 (stubborn)" in r.getMessage() and "abandoned" in r.getMessage() for r in caplog.records
    )


async def run_stubborn(listen: bool) -> tuple[Dispatcher, list[Event]]:
    """Run a stubborn call past a 0.3 s deadline, with an event iterator (``listen``) or with
    nobody listening; return the dispatcher and what the iterator saw."""
    stubborn = Stubborn()
    tools = Toolset([make_tool("stubborn", stubborn), make_tool("ident", ident)])
    seen: list[Event] = []

    async def consume(d: Dispatcher) -> None:
        async for event in d.events():
            seen.append(event)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            async with Dispatcher(tools, limits=Limits(deadline=0.3, cancel_grace=0.1)) as d:
                if listen:
                    tg.start_soon(consume, d)
                d.submit(Task(1, "stubborn"))
                d.submit(Task(2, "ident", (3,)))
                d.close_input()
                await d.wait()
        assert stubborn.swallowed > 0
        stubborn.release.set()
    return d, seen


def task_one(events: Any) -> list[tuple[str, str | None]]:
    return [
        (type(e).__name__, e.outcome.error_type if getattr(e, "outcome", None) else None)
        for e in events
        if e.task_id == 1
    ]


async def test_an_event_iterator_sees_the_abandoned_call_and_the_timeline_agrees_with_the_outcome() -> None:
    d, seen = await run_stubborn(listen=True)
    assert d.outcomes[1].error_type == "Abandoned"
    expected = [
        ("TaskPlanned", None),
        ("TaskReady", None),
        ("TaskStarted", None),
        ("TaskCancelled", "Cancelled"),  # as it was when it was cancelled
        ("TaskAbandoned", "Abandoned"),  # as the run ends: the outcome the caller gets
    ]
    assert task_one(seen) == expected
    assert task_one(d.history) == expected
    quiet, _ = await run_stubborn(listen=False)  # history built later, from the same records
    assert task_one(quiet.history) == expected


async def test_abandoned_calls_left_in_asyncios_task_list_are_named_in_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A Python without the private hook the dispatcher uses: the call cannot be forgotten.
    monkeypatch.delattr(asyncio.tasks, "_unregister_task")
    with caplog.at_level(logging.WARNING, logger="tomasulo.dispatcher"):
        await run_stubborn(listen=False)
    assert any(
        "could not be taken out of asyncio's task list" in r.getMessage()
        and "may wait for them" in r.getMessage()
        for r in caplog.records
    )


PLAN = "Thought: one call\n1. stubborn()\n2. join()\n"


@pytest.mark.parametrize("bound", ["deadline", "max_seconds"])
async def test_a_run_with_a_stubborn_tool_ends_on_its_bound_with_the_call_reported(bound: str) -> None:
    stubborn = Stubborn()
    tools = Toolset([make_tool("stubborn", stubborn, schema={"type": "object", "properties": {}})])
    finish = json.dumps({"thought": "out of time", "action": "finish", "answer": "no answer in time"})
    sim = SimulatedLLM([PLAN, finish], latency=Latency(ttft=0.01, tokens_per_second=2000))
    kw: dict[str, Any] = (
        {"limits": Limits(deadline=3.0, cancel_grace=0.1)}
        if bound == "deadline"
        else {"budget": Budget(max_seconds=3.0), "limits": Limits(cancel_grace=0.1)}
    )
    with anyio.fail_after(20):
        async with sim.serve() as url:
            llm = LLM(url, model="sim", dialect="vllm")
            try:
                t0 = time.monotonic()
                result = await Orchestrator(tools, llm, **kw).run("anything?")
                elapsed = time.monotonic() - t0
            finally:
                await llm.aclose()
        assert stubborn.swallowed > 0
        stubborn.release.set()
    assert elapsed < 6.0  # the bound (3 s, planning included) and the 0.1 s grace, with room
    assert result.status == "stopped"
    expected = "deadline" if bound == "deadline" else "wall-time budget of 3 s reached"
    assert expected in (result.reason or "")
    (record,) = result.tasks
    assert record.status == "cancelled"
    assert "abandoned, still running" in (record.message or "")
    assert any(isinstance(e, TaskAbandoned) for e in result.timeline)


def test_a_script_whose_tool_never_stops_returns_and_exits_after_the_deadline(tmp_path: Path) -> None:
    script = """
import asyncio
import time

import anyio

from tomasulo.dispatcher import Dispatcher, Limits
from tomasulo.grammar import Task
from tomasulo.tools import Tool, Toolset


async def stubborn() -> None:
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            pass


async def main() -> None:
    tools = Toolset([Tool(name="stubborn", fn=stubborn)])
    out = await Dispatcher.run_plan(tools, [Task(1, "stubborn")], limits=Limits(deadline=0.5))
    print(out[1].status, out[1].error_type, flush=True)


anyio.run(main)
print("returned", flush=True)
"""
    (tmp_path / "script.py").write_text(script)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOMASULO_")}
    env["PYTHONPATH"] = str(Path(tomasulo.__file__).resolve().parents[1])
    try:
        done = subprocess.run(
            [sys.executable, "script.py"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=40
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the process did not exit: closing the event loop waited for the stubborn tool")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["cancelled Abandoned", "returned"]
    assert "task 1 (stubborn): its call ignored cancellation" in done.stderr
