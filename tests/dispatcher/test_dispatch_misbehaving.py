"""Tools that misbehave end as typed failed tasks, never a crash; paths that do not fit say why."""

from __future__ import annotations

import dataclasses
import enum
import logging
import sys
import threading
import time
from typing import Any

import anyio
import pydantic
import pytest
from dtools import (
    ident,
    make_tool,
    on_both_backends,  # noqa: F401  (the anyio_backend fixture: asyncio and trio)
)

from tomasulo.dispatcher import Dispatcher, InterruptRaised, Outcome
from tomasulo.exceptions import ReferenceResolutionError, ToolExecutionError, ToolOutputError, ToolTimeout
from tomasulo.grammar import Ref, Task, Template
from tomasulo.tools import Toolset, tool

pytestmark = pytest.mark.anyio


async def run(tools: list[Any], tasks: list[Task], **kw: Any) -> dict[int, Outcome]:
    with anyio.fail_after(10):
        return await Dispatcher.run_plan(Toolset([*tools, make_tool("ident", ident)]), tasks, **kw)


class BadStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


async def raise_bad_str(x: Any = None, y: Any = None) -> Any:
    raise BadStr()


async def return_bad_repr(x: Any = None, y: Any = None) -> Any:
    return BadRepr()


async def test_an_exception_whose_str_raises_fails_its_task_only() -> None:
    out = await run(
        [make_tool("bad", raise_bad_str)],
        [Task(1, "bad"), Task(2, "ident", (5,)), Task(3, "ident", (Ref(1),))],
    )
    assert out[1].status == "failed"
    assert isinstance(out[1].error, ToolExecutionError)
    assert out[1].error_type == "BadStr"
    assert "BadStr whose str() raised RuntimeError" in (out[1].message or "")
    assert out[2].value == 5
    assert out[3].status == "skipped"


async def test_a_result_whose_repr_raises_fails_its_task_with_its_type() -> None:
    out = await run([make_tool("bad", return_bad_repr)], [Task(1, "bad"), Task(2, "ident", (Ref(1),))])
    assert out[1].status == "failed"
    assert isinstance(out[1].error, ToolOutputError)
    assert "a BadRepr is not a JSON value" in (out[1].message or "")
    assert out[2].status == "skipped"


async def test_a_huge_error_message_is_bounded_in_the_outcome_and_the_reason() -> None:
    size = 10 * 1024 * 1024

    async def shout(x: Any = None, y: Any = None) -> Any:
        raise ValueError("x" * size)

    seen: list[InterruptRaised] = []

    def on_event(e: Any) -> None:
        if isinstance(e, InterruptRaised):
            seen.append(e)

    out = await run([make_tool("shout", shout)], [Task(1, "shout")], on_event=on_event)
    message = out[1].message or ""
    assert out[1].error_type == "ValueError"
    assert len(message) < 5000
    assert f"{size:,} characters in all" in message
    assert len(seen) == 1 and len(seen[0].reason) < 5000


async def test_an_async_tool_that_blocks_the_loop_past_its_timeout_is_reported_late(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def blocker(x: Any = None, y: Any = None) -> Any:
        time.sleep(0.3)  # noqa: ASYNC251 - blocks the event loop: its timeout cannot fire meanwhile
        return "done"

    with caplog.at_level(logging.WARNING, logger="tomasulo.dispatcher"):
        out = await run([make_tool("blocker", blocker, timeout=0.05)], [Task(1, "blocker")])
    assert out[1].status == "failed"
    assert isinstance(out[1].error, ToolTimeout)
    assert "past its 0.05 s timeout" in (out[1].message or "")
    assert "blocked the event loop" in (out[1].message or "")
    assert any("'blocker' blocked the event loop" in r.getMessage() for r in caplog.records)


async def test_a_sync_call_that_returned_on_time_keeps_its_value_while_another_tool_holds_the_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # No timing race: once the victim's thread runs, the hog holds the loop, lets the victim
    # return, and goes on holding the loop for longer than the victim's timeout, so the victim's
    # timer always fires after it returned (and its result waits for the loop meanwhile).
    entered, go = threading.Event(), threading.Event()

    def victim(x: Any = None, y: Any = None) -> Any:
        entered.set()
        go.wait(10)
        return 42

    async def hog(x: Any = None, y: Any = None) -> Any:
        await anyio.to_thread.run_sync(entered.wait, 10)  # without holding the loop
        go.set()
        time.sleep(0.5)  # noqa: ASYNC251 - holds the loop past the victim's 0.3 s timeout
        return 1

    with caplog.at_level(logging.WARNING, logger="tomasulo.dispatcher"):
        out = await run(
            [make_tool("victim", victim, timeout=0.3), make_tool("hog", hog)],
            [Task(1, "victim"), Task(2, "hog")],
        )
    assert out[1].status == "succeeded", out[1].message
    assert out[1].value == 42
    assert any(
        "task 1 (victim)" in r.getMessage() and "its value is kept" in r.getMessage() for r in caplog.records
    )


async def test_an_async_call_woken_on_time_keeps_its_value_while_another_tool_holds_the_loop() -> None:
    # The hog wakes the victim, then holds the loop past the victim's timeout: the victim's
    # last step runs after its deadline through no fault of its own (it neither blocked nor
    # was cancelled).
    started, go = anyio.Event(), anyio.Event()

    async def victim(x: Any = None, y: Any = None) -> Any:
        started.set()
        await go.wait()
        return 42

    async def hog(x: Any = None, y: Any = None) -> Any:
        await started.wait()
        go.set()
        time.sleep(0.5)  # noqa: ASYNC251 - holds the loop past the victim's 0.3 s timeout
        return 1

    out = await run(
        [make_tool("victim", victim, timeout=0.3), make_tool("hog", hog)], [Task(1, "victim"), Task(2, "hog")]
    )
    assert out[1].status == "succeeded", out[1].message
    assert out[1].value == 42


async def test_an_async_tool_that_swallows_its_timeouts_cancellation_loses_its_value() -> None:
    swallowed = 0

    async def stubborn(x: Any = None, y: Any = None) -> Any:
        nonlocal swallowed
        end = time.monotonic() + 0.5  # the tool's own behaviour: it carries on for 0.5 s
        while time.monotonic() < end:
            try:
                await anyio.sleep(0.05)
            except BaseException:  # the misbehaviour under test
                swallowed += 1
        return "late"

    out = await run([make_tool("stubborn", stubborn, timeout=0.1)], [Task(1, "stubborn")])
    assert swallowed > 0
    assert out[1].status == "failed"
    assert isinstance(out[1].error, ToolTimeout)
    assert "ignored its cancellation" in (out[1].message or "")


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int
    y: tuple[int, int]


class Model(pydantic.BaseModel):
    name: str
    tags: list[str]


async def test_results_become_json_values_by_the_documented_rule() -> None:
    values: dict[str, Any] = {
        "tuple": (1, (2, 3)),
        "set": {3, 1, 2},
        "model": Model(name="a", tags=["x"]),
        "dataclass": Point(1, (2, 3)),
        "enum": Color.RED,
        "int keys": {1: "a", 2: (4,)},
    }
    tools = []
    tasks = []
    for i, value in enumerate(values.values(), start=1):

        async def give(x: Any = None, y: Any = None, value: Any = value) -> Any:
            return value

        tools.append(make_tool(f"give{i}", give))
        tasks.append(Task(i, f"give{i}"))
    tasks.append(Task(len(tasks) + 1, "ident", (Ref(1, (1, 0)),)))  # a path into the tuple
    out = await run(tools, tasks)
    assert [out[i].value for i in range(1, len(values) + 1)] == [
        [1, [2, 3]],
        [1, 2, 3],
        {"name": "a", "tags": ["x"]},
        {"x": 1, "y": [2, 3]},
        "red",
        {"1": "a", "2": [4]},
    ]
    assert out[len(values) + 1].value == 2


@tool
def pair(x: int = 0) -> tuple[int, int]:
    """A tool whose output schema (from its return annotation) is an array of two integers."""
    return (x, x + 1)


async def test_a_tuple_result_fits_its_array_output_schema() -> None:
    out = await run([pair], [Task(1, "pair", (4,))])
    assert out[1].ok, out[1].message
    assert out[1].value == [4, 5]


async def test_results_that_are_not_json_values_are_refused_with_the_reason() -> None:
    cycle: list[Any] = [1]
    cycle.append(cycle)
    values: dict[str, tuple[Any, str]] = {
        "nan": (float("nan"), "nan is not a JSON number"),
        "inf": ({"a": [float("inf")]}, "at a[0]: inf is not a JSON number"),
        "bytes": (b"\x00", "bytes is not a JSON value; decode it to text, or base64-encode it"),
        "cycle": (cycle, "at [1]: the value contains itself (a cycle)"),
        "object": ({"k": object()}, "at k: a object is not a JSON value"),
        "key collision": ({1: "a", "1": "b"}, "the keys 1 and '1' both become the JSON key '1'"),
    }
    tools = []
    tasks = []
    for i, (value, _) in enumerate(values.values(), start=1):

        async def give(x: Any = None, y: Any = None, value: Any = value) -> Any:
            return value

        tools.append(make_tool(f"give{i}", give))
        tasks.append(Task(i, f"give{i}"))
    out = await run(tools, tasks)
    for i, (name, (_, expected)) in enumerate(values.items(), start=1):
        assert out[i].status == "failed", name
        assert isinstance(out[i].error, ToolOutputError), name
        assert expected in (out[i].message or ""), (name, out[i].message)


def sync_exit(x: Any = None, y: Any = None) -> Any:
    sys.exit(3)


async def async_exit(x: Any = None, y: Any = None) -> Any:
    sys.exit("bye")


def sync_interrupt(x: Any = None, y: Any = None) -> Any:
    raise KeyboardInterrupt


async def async_interrupt(x: Any = None, y: Any = None) -> Any:
    raise KeyboardInterrupt


@pytest.mark.parametrize("retries", [0, 1])
async def test_sys_exit_anywhere_and_keyboard_interrupt_on_a_thread_fail_their_task_not_the_process(
    retries: int,
) -> None:
    fns = [sync_exit, async_exit, sync_interrupt]
    tools = [make_tool(f.__name__, f, retries=retries) for f in fns]
    tasks = [Task(i, f.__name__) for i, f in enumerate(fns, start=1)]
    tasks.append(Task(len(fns) + 1, "ident", (7,)))
    out = await run(tools, tasks)
    assert [out[i].error_type for i in range(1, len(fns) + 1)] == [
        "SystemExit",
        "SystemExit",
        "KeyboardInterrupt",
    ]
    assert all(isinstance(out[i].error, ToolExecutionError) for i in range(1, len(fns) + 1))
    assert "the tool called sys.exit(3)" in (out[1].message or "")
    assert "SystemExit: bye" in (out[2].message or "")
    assert "the tool raised KeyboardInterrupt" in (out[3].message or "")  # a thread gets no Ctrl-C
    assert out[len(fns) + 1].value == 7


@pytest.mark.parametrize("retries", [0, 1])
async def test_a_keyboard_interrupt_on_the_event_loop_cancels_the_run_and_reaches_the_caller(
    retries: int,
) -> None:
    # A Ctrl-C lands in whatever runs on the main thread: an async tool's code, here.
    gate = anyio.Event()

    async def wait_forever(x: Any = None, y: Any = None) -> Any:
        await gate.wait()

    tools = Toolset(
        [make_tool("async_interrupt", async_interrupt, retries=retries), make_tool("wait", wait_forever)]
    )
    with anyio.fail_after(10):
        with pytest.raises(KeyboardInterrupt):
            async with Dispatcher(tools) as d:
                d.submit(Task(1, "wait"))
                d.submit(Task(2, "async_interrupt"))
                d.close_input()
                await d.wait()
    out = d.outcomes
    assert out[2].status == "failed" and out[2].error_type == "KeyboardInterrupt"
    assert out[2].attempts == 1  # never retried
    assert "the run is cancelled and the KeyboardInterrupt passed on" in (out[2].message or "")
    assert out[1].status == "cancelled"
    assert "interrupted (KeyboardInterrupt in task 2)" in (out[1].message or "")


async def give_record(x: Any = None, y: Any = None) -> Any:
    return {"name": "Everest", "height_m": 8849, "peaks": [1, 2, 3]}


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        (
            Ref(1, ("missing",)),
            "cannot take $1.missing from the result of task 1: there is no field 'missing': the result "
            "is an object with fields 'name', 'height_m', 'peaks': "
            '{"name":"Everest","height_m":8849,"peaks":[1,2,3]}',
        ),
        (
            Ref(1, ("peaks", 5)),
            "cannot take $1.peaks[5] from the result of task 1: there is no item [5] (index out of "
            "range): at $1.peaks the value is an array of 3 items (indexes 0 to 2): [1,2,3]",
        ),
        (
            Ref(1, (0,)),
            "[0] needs an array, but the result is an object with fields 'name', 'height_m', 'peaks'",
        ),
        (
            Template(("h=", Ref(1, ("name", "first")))),
            "the field 'first' needs an object, but at $1.name the value is a string: \"Everest\"",
        ),
    ],
)
async def test_a_path_that_does_not_fit_the_value_says_what_the_value_is(arg: Any, expected: str) -> None:
    out = await run([make_tool("give", give_record)], [Task(1, "give"), Task(2, "ident", (arg,))])
    assert out[1].ok
    assert out[2].status == "failed"
    assert isinstance(out[2].error, ReferenceResolutionError)
    assert expected in (out[2].message or ""), out[2].message
