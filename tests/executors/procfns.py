"""Module-level tool functions for the process and Ray executor tests (they must pickle)."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

from tomasulo.tools import RunContext, Tool, Toolset, tool


def square(x: int) -> int:
    return x * x


def pid(x: int = 0) -> int:
    return os.getpid()


def fail(x: int = 0) -> int:
    raise ValueError(f"bad input {x}")


def crash(x: int = 0) -> int:
    os.kill(os.getpid(), signal.SIGKILL)
    return x


def hang(x: int = 0) -> int:
    threading.Event().wait()  # forever; only killing the worker ends it
    return x


def garbage(x: int = 0) -> Any:
    return threading.Lock()  # cannot be pickled


def slow_square(x: int) -> int:
    time.sleep(0.05)
    return x * x


def exit_worker(x: int = 0) -> int:
    os._exit(3)  # the worker process ends without a word


async def ahang(x: int = 0) -> int:
    await asyncio.Event().wait()  # forever; only cancelling the call ends it
    return x


async def nap(x: int = 0) -> int:
    """An async tool that sleeps 0.3 s and says which process it ran on."""
    await asyncio.sleep(0.3)
    return os.getpid()


def sync_nap(x: int = 0) -> int:
    """A sync tool that sleeps 0.3 s and says which process it ran on."""
    time.sleep(0.3)
    return os.getpid()


X = {"type": "object", "properties": {"x": {"type": "integer"}}}


def toolset(timeout: float | None = None) -> Toolset:
    """The tools above; ``timeout`` applies to ``hang`` and ``ahang`` only, so slow worker
    start-up under load cannot time out the others."""
    from tomasulo.tools import ToolPolicy

    return Toolset(
        Tool(
            name=f.__name__,
            input_schema=X,
            fn=f,
            policy=ToolPolicy(timeout=timeout) if f in (hang, ahang) else ToolPolicy(),
        )
        for f in (
            square,
            pid,
            fail,
            crash,
            hang,
            garbage,
            slow_square,
            exit_worker,
            ahang,
            nap,
            sync_nap,
        )
    )


@tool
def decorated_square(x: int) -> int:
    """A sync tool made with @tool (its module name now holds the Tool, not the function)."""
    return x * x


@tool(timeout=30)
async def decorated_pid(x: int = 0) -> int:
    """An async tool made with @tool that says which process it ran on."""
    await asyncio.sleep(0)
    return os.getpid()


@dataclass
class Settings:
    """Picklable deps."""

    greeting: str


@tool
def hello(ctx: RunContext[Settings], name: str) -> dict[str, object]:
    """Greet, and say where the call ran."""
    return {
        "text": f"{ctx.deps.greeting} {name}",
        "pid": os.getpid(),
        "run_id": ctx.run_id,
        "task_id": ctx.task_id,
        "attempt": ctx.attempt,
    }


@tool
async def ahello(ctx: RunContext[Settings], name: str) -> str:
    """The async version."""
    return f"{ctx.deps.greeting} {name}"
