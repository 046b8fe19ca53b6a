"""ProcessExecutor against real worker processes: values, errors, crashes, hangs, garbage."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import anyio
import procfns
import pytest

import tomasulo
from tomasulo.dispatcher import Dispatcher, Limits
from tomasulo.exceptions import ToolCrashed, ToolExecutionError, ToolOutputError, ToolTimeout
from tomasulo.executors import Executor, LocalExecutor, ProcessExecutor
from tomasulo.grammar import Ref, Task
from tomasulo.tools import Tool, Toolset

pytestmark = pytest.mark.anyio


def test_executors_follow_the_protocol() -> None:
    assert isinstance(LocalExecutor(), Executor)
    assert isinstance(ProcessExecutor(), Executor)


async def test_values_and_errors_come_back_from_worker_processes() -> None:
    tasks = [
        Task(1, "square", (7,)),
        Task(2, "square", (Ref(1),)),
        Task(3, "pid"),
        Task(4, "fail", (3,)),
    ]
    with anyio.fail_after(60):
        async with ProcessExecutor(max_workers=2) as ex:
            out = await Dispatcher.run_plan(procfns.toolset(), tasks, executor=ex)
    assert out[2].value == 49 * 49
    assert out[3].value != os.getpid()
    assert out[4].status == "failed"
    assert out[4].error_type == "ValueError"
    assert isinstance(out[4].error, ToolExecutionError)
    assert "bad input 3" in (out[4].message or "")


async def test_crash_hang_and_garbage_fail_their_tasks_only() -> None:
    tasks = [
        Task(1, "crash"),
        Task(2, "hang"),
        Task(3, "garbage"),
        Task(4, "square", (3,)),
        Task(5, "square", (Ref(1),)),
    ]
    with anyio.fail_after(60):
        async with ProcessExecutor(max_workers=4) as ex:
            t0 = time.monotonic()
            out = await Dispatcher.run_plan(procfns.toolset(timeout=3.0), tasks, executor=ex)
            elapsed = time.monotonic() - t0
            # the pool still works after a worker died
            again = await Dispatcher.run_plan(procfns.toolset(), [Task(1, "square", (5,))], executor=ex)
    assert isinstance(out[1].error, ToolCrashed)
    assert "worker process" in (out[1].message or "")
    assert isinstance(out[2].error, ToolTimeout)
    assert isinstance(out[3].error, ToolOutputError)
    assert "cannot be sent back" in (out[3].message or "")
    assert out[4].value == 9
    assert out[5].status == "skipped"
    assert again[1].value == 25
    assert elapsed < 30


async def test_cancelling_a_run_kills_a_hung_worker_quickly() -> None:
    with anyio.fail_after(60):
        async with ProcessExecutor(max_workers=1) as ex, Dispatcher(procfns.toolset(), ex) as d:
            d.submit(Task(1, "square", (2,)))
            await d.wait([1])  # the worker is up
            d.submit(Task(2, "hang"))
            for _ in range(20):
                await anyio.lowlevel.checkpoint()
            t0 = time.monotonic()
            d.cancel()
            await d.wait()
            latency = time.monotonic() - t0
    assert d.outcomes[2].status == "cancelled"
    assert latency < 0.1


async def test_unpicklable_tool_fails_with_a_clear_message() -> None:
    local = Tool(name="local", fn=lambda: 1)
    with anyio.fail_after(60):
        async with ProcessExecutor(max_workers=1) as ex:
            out = await Dispatcher.run_plan(Toolset([local]), [Task(1, "local")], executor=ex)
    assert out[1].status == "failed"
    assert "module-level functions" in (out[1].message or "")


async def test_deadline_applies_to_process_calls() -> None:
    with anyio.fail_after(60):
        async with ProcessExecutor(max_workers=1) as ex:
            out = await Dispatcher.run_plan(
                procfns.toolset(), [Task(1, "hang")], executor=ex, limits=Limits(deadline=0.5)
            )
    assert out[1].status == "cancelled"


async def test_tool_decorated_sync_and_async_functions_run_on_worker_processes() -> None:
    tools = Toolset([procfns.decorated_square, procfns.decorated_pid])
    tasks = [
        Task(1, "decorated_square", (7,)),
        Task(2, "decorated_square", (Ref(1),)),
        Task(3, "decorated_pid"),
    ]
    with anyio.fail_after(60):
        async with ProcessExecutor(max_workers=2) as ex:
            out = await Dispatcher.run_plan(tools, tasks, executor=ex)
    assert [o.status for o in out.values()] == ["succeeded"] * 3, [o.message for o in out.values()]
    assert out[2].value == 49 * 49
    assert out[3].value != os.getpid()


SCRIPT = """
import os

import anyio

from tomasulo.dispatcher import Dispatcher
from tomasulo.executors import ProcessExecutor
from tomasulo.grammar import Task
from tomasulo.tools import Toolset, tool


@tool
def where(x: int = 0) -> int:
    return os.getpid()


async def main() -> None:
    async with ProcessExecutor(max_workers=1) as ex:
        out = await Dispatcher.run_plan(Toolset([where]), [Task(1, "where")], executor=ex)
    o = out[1]
    print(o.status, o.value != os.getpid() if o.ok else o.message)

"""


def run_script(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "script.py").write_text(body)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOMASULO_")}
    env["PYTHONPATH"] = str(Path(tomasulo.__file__).resolve().parents[1])
    return subprocess.run(
        [sys.executable, "script.py"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=90,
        check=False,
    )


def test_a_script_with_a_main_guard_runs_its_own_tools_on_worker_processes(tmp_path: Path) -> None:
    done = run_script(tmp_path, SCRIPT + 'if __name__ == "__main__":\n    anyio.run(main)\n')
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "succeeded True"


def test_a_script_without_a_main_guard_is_told_to_add_one(tmp_path: Path) -> None:
    done = run_script(tmp_path, SCRIPT + "anyio.run(main)\n")
    assert done.returncode == 0, done.stderr
    status, message = done.stdout.strip().split(" ", 1)
    assert status == "failed"
    assert 'no `if __name__ == "__main__":` guard' in message
    assert "script.py" in message
