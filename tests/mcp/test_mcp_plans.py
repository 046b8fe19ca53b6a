"""MCP tools in plans: a published server, a 10-way fan-out, and failures as task outcomes."""

from __future__ import annotations

import sys
import time

import anyio
import pytest
from mcp_helpers import server

from tomasulo.runtime import Orchestrator
from tomasulo.tools import MCPTools, Toolset

pytestmark = pytest.mark.anyio


async def test_a_published_server_mcp_server_time_from_pypi() -> None:
    with anyio.fail_after(40):
        async with MCPTools.stdio(
            sys.executable, ["-m", "mcp_server_time", "--local-timezone", "UTC"], prefix="time_"
        ) as source:
            tools = Toolset(await source.list_tools())
            assert {"time_get_current_time", "time_convert_time"} <= set(tools.names)
            assert tools["time_get_current_time"].policy.idempotent, "readOnlyHint makes it idempotent"
            result = await Orchestrator(tools).execute_plan(
                '1. time_get_current_time(timezone="Europe/Paris")\n'
                '2. time_convert_time(source_timezone="UTC", time="12:00", target_timezone="Asia/Tokyo")\n'
                "3. join()\n"
            )
    assert result.ok, result.reason
    assert result.results[1]["timezone"] == "Europe/Paris"
    assert result.results[2]["target"]["datetime"].startswith(result.results[2]["source"]["datetime"][:8])


async def test_a_plan_that_fans_out_to_ten_mcp_calls_runs_them_at_once() -> None:
    seconds = 1.0
    plan = "".join(f"{i}. slow(seconds={seconds})\n" for i in range(1, 11)) + "11. join()\n"
    with anyio.fail_after(60):
        async with MCPTools.stdio(sys.executable, server("basic")) as source:
            orch = Orchestrator(await source.list_tools())
            started = time.monotonic()
            result = await orch.execute_plan(plan)
            elapsed = time.monotonic() - started
    assert result.ok, result.reason
    assert [result.results[i] for i in range(1, 11)] == [seconds] * 10
    assert result.makespan < 0.5 * 10 * seconds, f"makespan {result.makespan:.2f} s: calls ran one by one"
    assert elapsed < 0.5 * 10 * seconds


async def test_failures_are_task_outcomes_and_a_crash_does_not_sink_later_plans() -> None:
    with anyio.fail_after(60):
        async with MCPTools.stdio(sys.executable, server("basic"), timeout=2) as source:
            orch = Orchestrator(await source.list_tools())
            result = await orch.execute_plan('1. fail(reason="bad")\n2. hang()\n3. join()\n')
            statuses = {t.id: (t.status, t.error_type) for t in result.tasks}
            assert statuses == {1: ("failed", "MCPToolError"), 2: ("failed", "ToolTimeout")}
            assert "refused: bad" in (result.task(1).message or "")
            # the crash fails every call in flight on that server, then the server is started again
            crashed = await orch.execute_plan("1. crash()\n2. slow(seconds=30)\n3. join()\n")
            assert {t.status for t in crashed.tasks} == {"failed"}
            assert {t.error_type for t in crashed.tasks} == {"ToolCrashed"}
            again = await orch.execute_plan('1. echo(text="still here")\n2. join()\n')
    assert again.ok and again.results[1] == "still here"
