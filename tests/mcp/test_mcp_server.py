"""`tomasulo mcp` driven by the SDK's client, over stdio and streamable HTTP."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters

from tomasulo.planner import resolve_model
from tomasulo.service import build_mcp_server
from tomasulo.testing import SimulatedLLM
from tomasulo.tools import Toolset
from tomasulo.tools.builtins import builtin_toolset

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
PLAN = (
    "1. sleep(seconds=0.2, value=6)\n"
    "2. sleep(seconds=0.2, value=7)\n"
    '3. math(expression="a * b", variables={"a": $1, "b": $2})\n'
    "4. join()\n"
)
FINISH = json.dumps({"thought": "task 3 has it", "action": "finish", "answer": "42"})


def env() -> dict[str, str]:
    return {"PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


def stdio(*args: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable, args=["-m", "tomasulo.cli", "mcp", *args], env=env(), cwd=str(ROOT)
    )


def data(result: Any) -> Any:
    assert not result.is_error, result.content
    return result.structured_content


async def test_stdio_tools_run_plan_with_progress_and_validate_plan() -> None:
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    with anyio.fail_after(60):
        async with Client(stdio(), mode="legacy") as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert names == {"ask", "run_plan", "validate_plan"}
            out = data(await client.call_tool("run_plan", {"plan": PLAN}, progress_callback=on_progress))
            assert out["ok"] is True and out["answer"] == "42"
            assert [(t["id"], t["status"]) for t in out["tasks"]] == [
                (1, "succeeded"),
                (2, "succeeded"),
                (3, "succeeded"),
            ]
            first, second = out["tasks"][0], out["tasks"][1]
            assert first["started"] < second["finished"] and second["started"] < first["finished"], (
                "tasks 1 and 2 ran at once: their [started, finished] intervals overlap"
            )
            checked = data(
                await client.call_tool("validate_plan", {"plan": '1. math(expresion="1")\n2. join()\n'})
            )
            bad = await client.call_tool("run_plan", {"plan": "1. nope()\n2. join()\n"})
            no_model = await client.call_tool("ask", {"question": "What is 6 * 7?"})
            failing = data(
                await client.call_tool("run_plan", {"plan": '1. math(expression="1 / 0")\n2. join()\n'})
            )
            still = data(await client.call_tool("run_plan", {"plan": '1. echo(value="up")\n2. join()\n'}))
    assert [p[0] for p in progress] == [1, 2, 3] and {p[1] for p in progress} == {3}
    assert progress[-1][2] == "task 3 (math) succeeded"
    assert checked["ok"] is False
    [error] = checked["errors"]
    assert (error["line"], error["type"]) == (1, "UnknownKeywordError") and error["column"] > 1
    assert error["hint"]
    assert bad.is_error and "unknown tool" in bad.content[0].text.lower()
    assert no_model.is_error and "--base-url" in no_model.content[0].text
    assert failing["ok"] is False and failing["tasks"][0]["status"] == "failed"
    assert still["answer"] == "up", "errors never take the server down"


@pytest.fixture
def serve_http() -> Iterator[Any]:
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str) -> str:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tomasulo.cli", "mcp", "--http", "--port", "0", *args],
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**{k: v for k, v in os.environ.items() if not k.startswith("TOMASULO_")}, **env()},
        )
        procs.append(proc)
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "tomasulo MCP server on " in line, line
        return line.split(" on ", 1)[1].strip()

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


async def test_http_ask_answers_with_the_model_and_run_plan_works(serve_http: Any) -> None:
    sim = SimulatedLLM([PLAN, FINISH])
    with anyio.fail_after(60):
        async with sim.serve() as base_url:
            url = await anyio.to_thread.run_sync(
                serve_http, "--base-url", base_url, "--model", "sim", "--dialect", "vllm"
            )
            assert url.startswith("http://127.0.0.1:")
            async with Client(url, mode="legacy") as client:
                answered = data(await client.call_tool("ask", {"question": "What is 6 * 7?"}))
                ran = data(await client.call_tool("run_plan", {"plan": PLAN}))
                refused = await client.call_tool("run_plan", {"plan": "not a plan"})
    assert answered["ok"] is True and answered["answer"] == "42"
    assert [t["tool"] for t in answered["tasks"]] == ["sleep", "sleep", "math"]
    assert ran["answer"] == "42"
    assert refused.is_error and "not valid" in refused.content[0].text


# -- bounds and unexpected failures, on the server in-process (the SDK's in-memory transport) ---


class _BrokenToolset(Toolset):
    """Tools whose lookup breaks: an internal failure no handler expects."""

    def get(self, name: str) -> Any:
        raise RuntimeError("secret internal detail /srv/private")


class _BrokenModel:
    def llm(self) -> Any:
        raise RuntimeError("secret internal detail /srv/private")


def text(result: Any) -> str:
    assert result.is_error, result.structured_content
    return str(result.content[0].text)


async def test_an_unexpected_failure_is_an_internal_error_and_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = build_mcp_server(_BrokenToolset(builtin_toolset()), model=_BrokenModel())
    caplog.set_level(logging.ERROR, logger="tomasulo.service.mcp")
    with anyio.fail_after(30):
        async with Client(server) as client:
            answers = [
                await client.call_tool("validate_plan", {"plan": '1. echo(value="x")\n2. join()\n'}),
                await client.call_tool("run_plan", {"plan": '1. echo(value="x")\n2. join()\n'}),
                await client.call_tool("ask", {"question": "hi"}),
            ]
            still = await client.call_tool("validate_plan", {"plan": "1. join()\n"})
    for answer in answers:
        assert "internal error: RuntimeError" in text(answer)
        assert "secret" not in text(answer) and "Traceback" not in text(answer)
    assert not still.is_error, "the server stays up"
    records = [r for r in caplog.records if r.name == "tomasulo.service.mcp"]
    assert [r.getMessage().split(":")[0] for r in records] == ["validate_plan", "run_plan", "ask"]
    assert all(r.exc_info is None and "\n" not in r.getMessage() for r in records), "one line each"


async def test_plans_over_the_task_and_size_caps_are_refused() -> None:
    server = build_mcp_server(builtin_toolset(), max_tasks=3, max_plan_chars=500)
    five = "".join(f"{i}. echo(value={i})\n" for i in range(1, 6)) + "6. join()\n"
    huge = '1. echo(value="' + "x" * 600 + '")\n2. join()\n'
    with anyio.fail_after(30):
        async with Client(server) as client:
            checked = data(await client.call_tool("validate_plan", {"plan": five}))
            ran = await client.call_tool("run_plan", {"plan": five})
            too_long = await client.call_tool("validate_plan", {"plan": huge})
            too_long_run = await client.call_tool("run_plan", {"plan": huge})
    assert checked["ok"] is False and checked["errors"][0]["type"] == "TooManyTasksError"
    assert "not valid" in text(ran) and "3" in text(ran)
    for answer in (too_long, too_long_run):
        assert "at most 500" in text(answer) and "--max-plan-chars" in text(answer)


async def test_run_plan_and_ask_end_within_the_timeout() -> None:
    slow = "1. sleep(seconds=60)\n2. join()\n"
    sim = SimulatedLLM([slow, FINISH])
    started = time.monotonic()
    with anyio.fail_after(60):
        async with sim.serve() as base_url:
            model = resolve_model(base_url=base_url, model="sim", dialect="vllm", environ={})
            server = build_mcp_server(builtin_toolset(), model=model, timeout=1)
            async with Client(server) as client:
                ran = data(await client.call_tool("run_plan", {"plan": slow}))
                asked = await client.call_tool("ask", {"question": "wait"})
    assert time.monotonic() - started < 40, "neither waited for the 60 s sleep"
    assert ran["ok"] is False and ran["tasks"][0]["status"] == "cancelled"
    assert "wall-time budget of 1 s" in text(asked)


async def test_a_request_cancelled_by_the_client_ends_its_run_without_observer_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = build_mcp_server(builtin_toolset())
    caplog.set_level(logging.WARNING)
    with anyio.fail_after(30):
        async with Client(server) as client:
            with anyio.move_on_after(1):
                await client.call_tool("run_plan", {"plan": "1. sleep(seconds=30)\n2. join()\n"})
            after = data(await client.call_tool("run_plan", {"plan": '1. echo(value="up")\n2. join()\n'}))
    assert after["answer"] == "up"
    assert [r.getMessage() for r in caplog.records if "observer failed" in r.getMessage()] == []
