"""The :class:`StepRunner` backed by the Orchestrator, and where a ``query:`` step's model comes from.

Plan steps run through :meth:`Orchestrator.execute_plan` (no LLM); query steps through
:meth:`Orchestrator.run` with an :class:`~tomasulo.planner.LLM` built from the workflow's
``model`` section, overridden by flags and environment variables.

>>> runner = OrchestratorRunner(on_event=lambda step, event: print(step, event))  # doctest: +SKIP
>>> result = await run_workflow(load_workflow("examples/research.yaml"), {}, runner)  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import httpx

from ..dispatcher import Event, Limits
from ..executors import Executor
from ..grammar import Plan
from ..planner import resolve_model
from ..runtime import Budget, Orchestrator, RunResult
from ..tools import Toolset
from ..views import GanttBar, bars_from
from ._model import ModelConfig, RunLimits
from ._run import StepResult

__all__ = ["OrchestratorRunner", "StepRun"]


@dataclass(frozen=True, slots=True)
class StepRun:
    """One step's run: its id, the Orchestrator's result, and when it started (seconds from the first)."""

    step: str
    result: RunResult
    offset: float


@dataclass
class OrchestratorRunner:
    """Runs workflow steps with the Orchestrator.

    Args:
        on_event: called with ``(step id, event)`` for every event of every step, in order.
        model: flags that override the workflow's ``model`` (``base_url``, ``model``,
            ``dialect``, ``api_key``); environment variables are read too.
        executor: where tool calls run (default: local).
        http_client: an ``httpx.AsyncClient`` for the LLM (tests may inject one).
        keep_runs: keep each step's :class:`StepRun` in ``runs`` (for reports and Gantt charts);
            batch mode turns it off.
    """

    on_event: Callable[[str, Event], None] | None = None
    model: Mapping[str, str | None] = field(default_factory=dict)
    executor: Executor | None = None
    http_client: httpx.AsyncClient | None = None
    keep_runs: bool = True
    runs: list[StepRun] = field(default_factory=list)
    _t0: float | None = None

    def _callback(self, step: str) -> Callable[[Event], None] | None:
        on_event = self.on_event
        if on_event is None:
            return None
        return lambda event: on_event(step, event)

    def _offset(self) -> float:
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
        return now - self._t0

    def _keep(self, step: str, result: RunResult, offset: float) -> None:
        if self.keep_runs:
            self.runs.append(StepRun(step, result, offset))

    def gantt_bars(self) -> list[GanttBar]:
        """Every kept step's tasks as Gantt bars on one time axis (labelled by step when several)."""
        several = len({r.step for r in self.runs}) > 1
        bars: list[GanttBar] = []
        for run in self.runs:
            bars += bars_from(run.result, offset=run.offset, group=run.step if several else "")
        return bars

    async def run_plan(self, plan: Plan, toolset: Toolset, limits: RunLimits, *, step: str) -> StepResult:
        """Dispatch ``plan`` with no LLM, at most ``limits.max_concurrency`` tasks at once."""
        orch = Orchestrator(
            toolset,
            executor=self.executor,
            limits=Limits(max_concurrency=limits.max_concurrency, deadline=limits.timeout),
            max_tasks=limits.max_tasks,
            on_event=self._callback(step),
        )
        offset = self._offset()
        result = await orch.execute_plan(plan)
        self._keep(step, result, offset)
        return StepResult.from_run(result)

    async def run_query(
        self, question: str, toolset: Toolset, model: ModelConfig | None, limits: RunLimits, *, step: str
    ) -> StepResult:
        """Plan ``question`` with the LLM and run it; ``answer`` is the joiner's answer.

        Raises:
            ConfigError: no model is configured (see :func:`~tomasulo.planner.resolve_model`).
        """
        given = self.model
        settings = resolve_model(
            model,
            base_url=given.get("base_url"),
            model=given.get("model"),
            dialect=given.get("dialect"),
            api_key=given.get("api_key"),
        )
        async with settings.llm(self.http_client) as llm:
            orch = Orchestrator(
                toolset,
                llm,
                executor=self.executor,
                limits=Limits(max_concurrency=limits.max_concurrency),
                budget=Budget(max_replans=limits.max_replans, max_seconds=limits.timeout),
                max_tasks=limits.max_tasks,
                on_event=self._callback(step),
            )
            offset = self._offset()
            result = await orch.run(question)
        self._keep(step, result, offset)
        return StepResult.from_run(result)
