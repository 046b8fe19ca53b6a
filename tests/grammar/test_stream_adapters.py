"""aiter_tasks and aiter_json_tasks: one adapter, same behaviour for both dialects."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest

from tomasulo.exceptions import IncompletePlanError
from tomasulo.grammar import JsonPlanStream, PlanStream, aiter_json_tasks, aiter_tasks

from .plan_tools import plan_tools

pytestmark = pytest.mark.anyio

TOOLS = plan_tools()
TEXT = '1. search(query="a")\n2. search(query="b")\n3. math(expression="${1} + ${2}")\n4. join()\n'
JSON = json.dumps(
    {
        "tasks": [
            {"id": 1, "tool": "search", "args": {"query": "a"}},
            {"id": 2, "tool": "search", "args": {"query": "b"}},
            {"id": 3, "tool": "math", "args": {"expression": "${1} + ${2}"}},
        ]
    }
)
DIALECTS: dict[str, tuple[str, Callable[..., AsyncIterator[Any]], Callable[..., Any]]] = {
    "text": (TEXT, aiter_tasks, PlanStream),
    "json": (JSON, aiter_json_tasks, JsonPlanStream),
}


async def chunked(text: str, size: int = 7) -> AsyncIterator[str]:
    for i in range(0, len(text), size):
        yield text[i : i + size]


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_adapter_yields_every_task_and_closes_the_parser(dialect: str) -> None:
    text, adapter, parser_cls = DIALECTS[dialect]
    parser = parser_cls(TOOLS)
    with anyio.fail_after(5):
        ids = [t.id async for t in adapter(chunked(text), stream=parser)]
    assert ids == [1, 2, 3]
    assert parser.joined and parser.plan.tasks[2].deps == {1, 2}
    assert parser.close() == [], "the adapter closed the parser"


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_adapter_reports_a_cut_off_plan_after_the_complete_tasks(dialect: str) -> None:
    text, adapter, _ = DIALECTS[dialect]
    cut = text[: text.index("math") + 8]  # inside task 3
    got: list[int] = []
    with anyio.fail_after(5), pytest.raises(IncompletePlanError):
        async for task in adapter(chunked(cut), TOOLS, start_id=1):
            got.append(task.id)
    assert got == [1, 2]
