"""Instrumented tools for the dispatcher tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from tomasulo.tools import Tool, ToolPolicy

ANY = {"type": "object", "properties": {"x": {}, "y": {}}}


def make_tool(
    name: str,
    fn: Callable[..., Any],
    schema: dict[str, Any] | None = None,
    **policy: Any,
) -> Tool:
    return Tool(name=name, input_schema=schema or ANY, fn=fn, policy=ToolPolicy(**policy))


async def ident(x: Any = None, y: Any = None) -> Any:
    """An instant async tool that returns its first argument."""
    return x


class Recorder:
    """An instant async tool that returns its first argument and records it in ``calls``."""

    def __init__(self) -> None:
        self.calls: list[Any] = []

    async def __call__(self, x: Any = None, y: Any = None) -> Any:
        self.calls.append(x)
        return x


class Gate:
    """An async tool that blocks until released, recording what runs when.

    ``started`` is set by the first call, ``all_started`` once ``expect`` calls have begun.
    """

    def __init__(self, expect: int = 1) -> None:
        self.release = anyio.Event()
        self.started = anyio.Event()
        self.all_started = anyio.Event()
        self.expect = expect
        self.calls: list[Any] = []

    async def __call__(self, x: Any = None, y: Any = None) -> Any:
        self.calls.append(x)
        self.started.set()
        if len(self.calls) >= self.expect:
            self.all_started.set()
        await self.release.wait()
        return x


def live_workers(run_id: str) -> int:
    """How many worker tasks of the dispatcher run ``run_id`` exist right now."""
    return sum(1 for t in asyncio.all_tasks() if t.get_name() == f"tomasulo dispatcher {run_id}")


class Tracker:
    """Counts concurrent calls per tool and overall, to check limits by instrumentation."""

    def __init__(self) -> None:
        self.active: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.total = 0
        self.peak_total = 0
        self.spans: dict[int, tuple[float, float]] = {}

    def enter(self, name: str) -> None:
        self.active[name] = self.active.get(name, 0) + 1
        self.peak[name] = max(self.peak.get(name, 0), self.active[name])
        self.total += 1
        self.peak_total = max(self.peak_total, self.total)

    def leave(self, name: str) -> None:
        self.active[name] -= 1
        self.total -= 1


def now() -> float:
    return time.monotonic()


@pytest.fixture(name="anyio_backend", params=["asyncio", "trio"])
def on_both_backends(request: pytest.FixtureRequest) -> str:
    """Imported by a test module, runs its async tests on asyncio and on trio: the dispatcher runs
    its workers as plain asyncio tasks on asyncio and in an anyio task group elsewhere."""
    return str(request.param)
