"""Tools that ask for a RunContext: deps, ids and a bound logger, never in the schema or plan."""

from __future__ import annotations

import io
import json
import logging
import os
import runpy
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pytest

from tomasulo import Orchestrator, RunContext, Toolset, build_grammar, parse_plan, tool
from tomasulo.exceptions import PlanError, ToolDefinitionError
from tomasulo.planner import PlanContext, planner_messages

pytestmark = pytest.mark.anyio


@dataclass
class Deps:
    prefix: str
    seen: list[tuple[str, int, int]] = field(default_factory=list)


@tool
async def greet(ctx: RunContext[Deps], name: str) -> str:
    """Greet someone.

    Args:
        name: who to greet.
    """
    ctx.deps.seen.append((ctx.run_id, ctx.task_id, ctx.attempt))
    return f"{ctx.deps.prefix} {name}"


@tool
def shout(text: str, *, ctx: RunContext[Deps]) -> str:
    """Shout a text (a sync tool: runs on a worker thread)."""
    ctx.deps.seen.append((ctx.run_id, ctx.task_id, ctx.attempt))
    return f"{ctx.deps.prefix} {text.upper()}!"


def test_the_context_is_not_part_of_the_schema_or_the_plan_language() -> None:
    assert greet.signature() == "greet(name: string)"
    assert shout.signature() == "shout(text: string)"
    assert greet.context_param == "ctx" and shout.context_param == "ctx"
    assert list(greet.input_schema["properties"]) == ["name"]
    assert greet.input_schema["required"] == ["name"]
    tools = Toolset([greet, shout])
    grammar = build_grammar(tools)
    assert "ctx" not in grammar.gbnf() and "ctx" not in grammar.lark()
    plan = parse_plan('1. greet("Ada")\n2. shout($1)\n3. join()', tools)
    assert [t.tool for t in plan] == ["greet", "shout"]
    with pytest.raises(PlanError):
        parse_plan('1. greet(ctx="x", name="Ada")\n2. join()', tools)
    messages = planner_messages(tools, PlanContext(question="hi"), output="text")
    prompt = "\n".join(m["content"] for m in messages)
    assert "ctx" not in prompt and "RunContext" not in prompt


def test_a_tool_asks_for_the_context_once() -> None:
    def twice(a: RunContext[Deps], b: RunContext[Deps], x: int) -> int:
        return x

    with pytest.raises(ToolDefinitionError, match="already takes the RunContext as 'a'"):
        tool(twice)


async def test_sync_and_async_tools_get_the_orchestrators_deps_and_their_ids() -> None:
    deps = Deps("hello")
    orch = Orchestrator([greet, shout], deps=deps)
    with anyio.fail_after(10):
        result = await orch.execute_plan('1. greet("Ada")\n2. shout($1)\n3. join()')
    assert result.status == "finished", result.reason
    assert result.answer == "hello HELLO ADA!"
    assert deps.seen == [(result.run_id, 1, 1), (result.run_id, 2, 1)]


async def test_deps_per_run_replace_the_orchestrators() -> None:
    default, mine = Deps("default"), Deps("mine")
    orch = Orchestrator([greet], deps=default)
    with anyio.fail_after(10):
        result = await orch.execute_plan('1. greet("Bo")\n2. join()', deps=mine)
        plain = await orch.execute_plan('1. greet("Bo")\n2. join()')
    assert result.answer == "mine Bo"
    assert plain.answer == "default Bo"
    assert len(mine.seen) == 1 and len(default.seen) == 1


async def test_without_deps_the_context_still_has_the_ids() -> None:
    @tool
    def where(ctx: RunContext[None]) -> str:
        """Say where the call runs."""
        return f"{ctx.deps} {ctx.tool} {ctx.task_id}"

    with anyio.fail_after(10):
        result = await Orchestrator([where]).execute_plan("1. where()\n2. join()")
    assert result.answer == "None where 1"


async def test_each_retry_sees_its_attempt_number() -> None:
    attempts: list[int] = []

    @tool(retries=2, idempotent=True)
    async def flaky(ctx: RunContext[object]) -> int:
        """Fail twice, then succeed."""
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            raise ConnectionError("not yet")
        return ctx.attempt

    with anyio.fail_after(10):
        result = await Orchestrator([flaky]).execute_plan("1. flaky()\n2. join()")
    assert result.status == "finished", result.reason
    assert attempts == [1, 2, 3]


@pytest.fixture
def tool_logs() -> Iterator[io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    logger = logging.getLogger("tomasulo.tools")
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)


async def test_the_logger_is_bound_with_the_run_and_task(tool_logs: io.StringIO) -> None:
    @tool
    def logs(ctx: RunContext[None], n: int) -> int:
        """Log a line."""
        ctx.logger.info("working", n=n)
        return n

    with anyio.fail_after(10):
        result = await Orchestrator([logs]).execute_plan("1. logs(1)\n2. logs(2)\n3. join()")
    lines = sorted((json.loads(line) for line in tool_logs.getvalue().splitlines()), key=lambda r: r["n"])
    assert [(r["event"], r["run_id"], r["task_id"], r["tool"], r["attempt"]) for r in lines] == [
        ("working", result.run_id, 1, "logs", 1),
        ("working", result.run_id, 2, "logs", 1),
    ]
    assert lines[0]["logger"] == "tomasulo.tools.logs"


def test_the_context_pickles_without_its_logger() -> None:
    import pickle

    ctx = RunContext(Deps("p"), run_id="r1", task_id=3, attempt=2, tool="greet")
    ctx.logger.bind(x=1)
    back = pickle.loads(pickle.dumps(ctx))
    assert back == ctx


def test_the_decorated_tool_is_still_a_plain_function() -> None:
    ctx = RunContext(Deps("hi"), run_id="r", task_id=1)
    assert shout("x", ctx=ctx) == "hi X!"


ROOT = Path(__file__).resolve().parents[2]


def _docs_example() -> str:
    text = (ROOT / "docs" / "tools.md").read_text()
    section = text.split("## Dependencies: `RunContext`", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_docs_example_runs_and_prints_what_it_says(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = _docs_example()
    (tmp_path / "docs_example.py").write_text(code)
    runpy.run_path(str(tmp_path / "docs_example.py"), run_name="docs_example")
    printed = capsys.readouterr().out.splitlines()
    promised = [line.split("# ", 1)[1].strip() for line in code.splitlines() if "print(" in line]
    assert printed[0].startswith("greet(name: string)")
    assert printed[1:] == promised[1:]


def test_the_example_script_is_the_docs_example() -> None:
    script = (ROOT / "examples" / "deps.py").read_text()

    def words(text: str) -> str:
        return " ".join(text.split())

    assert words(_docs_example().replace("anyio.run(main)", "")) in words(script)
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "deps.py")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1:] == ["HELLO, ADA (TASK 1)!", "Hi, Bo (task 1)"]
