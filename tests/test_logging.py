"""Library logging: structured, carries the run id, JSON when not on a terminal, no prints."""

from __future__ import annotations

import ast
import io
import json
import pathlib

import anyio
import pytest

import tomasulo
from tomasulo import Orchestrator, configure_logging
from tomasulo.planner import LLM, RetryPolicy
from tomasulo.testing import Latency, Reply, SimulatedLLM
from tomasulo.tools import tool

pytestmark = pytest.mark.anyio


@tool
def echo(text: str) -> str:
    """Say it back."""
    return text


async def test_log_lines_are_json_and_carry_the_run_id() -> None:
    buf = io.StringIO()
    configure_logging("INFO", stream=buf)
    try:
        sim = SimulatedLLM(
            [
                Reply.server_error(500),
                '1. echo(text="hi")\n2. join()\n',
                '{"thought": "", "action": "finish", "answer": "hi"}',
            ],
            latency=Latency(ttft=0.0, tokens_per_second=5000),
        )
        with anyio.fail_after(20):
            async with sim.serve() as url:
                llm = LLM(url, model="m", retry=RetryPolicy(initial=0.01, maximum=0.02))
                result = await Orchestrator([echo], llm).run("say hi")
                await llm.aclose()
    finally:
        configure_logging("WARNING")
    lines = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert lines, "something was logged"
    assert all(line.get("run_id") == result.run_id for line in lines), lines
    events = [line["event"] for line in lines]
    assert "run started" in events and "run finished" in events
    assert any(line["level"] == "warning" and "retry" in line["event"] for line in lines)


def test_no_print_statements_in_the_library() -> None:
    root = pathlib.Path(tomasulo.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        if path.name in ("cli.py", "__main__.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                offenders.append(f"{path.relative_to(root)}:{node.lineno}")
    assert offenders == []
