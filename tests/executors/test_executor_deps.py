"""RunContext deps travel to worker processes by pickle; deps that cannot are named (Ray: in
test_executor_ray.py, which owns the Ray instance)."""

from __future__ import annotations

import os
import threading

import anyio
import procfns
import pytest

from tomasulo.dispatcher import Dispatcher
from tomasulo.exceptions import ToolExecutionError
from tomasulo.executors import ProcessExecutor
from tomasulo.grammar import Task
from tomasulo.tools import Toolset

pytestmark = pytest.mark.anyio

TASKS = [Task(1, "hello", ("Ada",)), Task(2, "ahello", ("Bo",))]
TOOLS = Toolset([procfns.hello, procfns.ahello])


class Unpicklable:
    """Deps holding a lock: a client or a pool is like this."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.greeting = "hi"


async def test_picklable_deps_reach_worker_processes() -> None:
    with anyio.fail_after(60):
        async with ProcessExecutor(max_workers=2) as ex:
            out = await Dispatcher.run_plan(
                TOOLS, TASKS, executor=ex, run_id="r-proc", deps=procfns.Settings("hello")
            )
    assert out[1].status == "succeeded", out[1].message
    value = out[1].value
    assert value["text"] == "hello Ada"
    assert value["pid"] != os.getpid()
    assert (value["run_id"], value["task_id"], value["attempt"]) == ("r-proc", 1, 1)
    assert out[2].value == "hello Bo"


async def test_deps_that_cannot_be_pickled_fail_with_a_message_naming_them() -> None:
    with anyio.fail_after(60):
        async with ProcessExecutor(max_workers=1) as ex:
            out = await Dispatcher.run_plan(TOOLS, TASKS, executor=ex, deps=Unpicklable())
    for tid in (1, 2):
        assert out[tid].status == "failed"
        assert isinstance(out[tid].error, ToolExecutionError)
        message = out[tid].message or ""
        assert "the run's deps (a Unpicklable) cannot be pickled" in message
        assert "LocalExecutor" in message


async def test_unpicklable_deps_are_fine_on_the_local_executor() -> None:
    deps = Unpicklable()
    with anyio.fail_after(10):
        out = await Dispatcher.run_plan(TOOLS, TASKS, deps=deps)
    assert out[1].value["text"] == "hi Ada"
    assert out[1].value["pid"] == os.getpid()
