"""`tomasulo mcp` driven by the SDK's client, over stdio and streamable HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters

from tomasulo.testing import SimulatedLLM

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
            assert out["makespan"] < 0.4 + 0.3, "tasks 1 and 2 ran at once"
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
