"""Sync tools on the local executor's daemon threads behave as under ``anyio.to_thread``."""

from __future__ import annotations

import contextvars

import anyio
import pytest

from tomasulo.dispatcher import Dispatcher
from tomasulo.grammar import Task
from tomasulo.tools import Tool, Toolset

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Each test runs on asyncio and on trio: the pool hands results back differently on each."""
    return str(request.param)


REQUEST = contextvars.ContextVar("REQUEST", default="<unset>")


def who(x: object = None) -> str:
    """A sync tool that reads the caller's context variable, then sets it for itself."""
    seen = REQUEST.get()
    REQUEST.set("set by the tool")
    return seen


async def test_a_sync_tool_sees_the_callers_context_variables_and_cannot_change_them() -> None:
    tools = Toolset([Tool(name="who", input_schema={"type": "object", "properties": {"x": {}}}, fn=who)])
    token = REQUEST.set("request-42")
    try:
        with anyio.fail_after(10):
            out = await Dispatcher.run_plan(tools, [Task(1, "who"), Task(2, "who")])
        assert [out[1].value, out[2].value] == ["request-42", "request-42"]
        assert REQUEST.get() == "request-42"  # what a call sets stays with the call
    finally:
        REQUEST.reset(token)
