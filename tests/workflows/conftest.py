"""A plain step runner for workflow tests, until the Orchestrator drives workflows.

It runs a plan's tasks one after another with real tools: references are resolved by the
dispatcher's ``resolve_args``, idempotent tools are retried per their policy, and a task whose
input failed is skipped with the cause. (Concurrency is the dispatcher's business, tested there.)
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from tomasulo.dispatcher._resolve import resolve_args
from tomasulo.grammar import Plan
from tomasulo.tools import Toolset
from tomasulo.workflows import ModelConfig, RunLimits, StepResult

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class SequentialRunner:
    def __init__(self) -> None:
        self.plans: list[Plan] = []
        self.questions: list[str] = []

    async def run_plan(self, plan: Plan, toolset: Toolset, limits: RunLimits, *, step: str) -> StepResult:
        self.plans.append(plan)
        out = StepResult()
        for task in plan.tasks:
            failed = sorted(d for d in task.deps if d not in out.values)
            if failed:
                out.errors[task.id] = f"skipped because task {failed[0]} did not succeed"
                continue
            tool = toolset[task.tool]
            try:
                args = resolve_args(task, tool, out.values.__getitem__)
            except Exception as exc:
                out.errors[task.id] = str(exc)
                continue
            if tool.convert is not None:
                args = tool.convert(args)
            attempts = 1 + (tool.policy.retries if tool.policy.idempotent else 0)
            for attempt in range(1, attempts + 1):
                assert tool.fn is not None
                try:
                    value = tool.fn(**args)
                    if inspect.isawaitable(value):
                        value = await value
                except Exception as exc:
                    if attempt == attempts:
                        out.errors[task.id] = f"{type(exc).__name__}: {exc}"
                else:
                    out.values[task.id] = value
                    break
        return out

    async def run_query(
        self, question: str, toolset: Toolset, model: ModelConfig | None, limits: RunLimits, *, step: str
    ) -> StepResult:
        self.questions.append(question)
        return StepResult(answer=f"answered: {question}")


@pytest.fixture
def runner() -> SequentialRunner:
    return SequentialRunner()
