"""A workflow file as one service run: its steps run in order, and their events make one journal.

::

    workflow = load_for_tenant(text, granted)         # a 422 problem when it cannot run here
    handle = WorkflowHandle("r1", workflow, inputs, llm=llm, store=store, budget=budget)
    tg.start_soon(handle.drive)                      # like a RunHandle: events(), cancel(), result()

Each step is a run of the library's Orchestrator (a plan step with no LLM, a query step with the
run's model); its events, but for its own ``run_started`` and ``run_finished``, are numbered again
into the workflow run's journal, which starts with one ``run_started`` (mode ``workflow``) and
ends with one ``run_finished`` whose ``answer`` is the workflow's outputs as JSON text. Task ids
are each step's own, so two steps may both have a task 1; the run's ``tasks`` name their step.

A workflow sent to the service uses the tenant's tools: its ``tools`` section may only name
built-in tools that are granted to the tenant (no ``import:``, HTTP, MCP or OpenAPI entries, which
would run code or reach hosts on the server's behalf), and its ``model`` section is not used (the
run's model is).
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Mapping
from typing import Any

import anyio
import yaml

from ..dispatcher import Event, Limits, RunJournal, Subscription
from ..exceptions import UserError, WorkflowError
from ..grammar import Plan
from ..planner import LLM, Usage
from ..runtime import Budget, Orchestrator, RunFinished, RunResult, RunStarted
from ..tools import Toolset
from ..views import dumps_json, task_json
from ..workflows import (
    LoadedWorkflow,
    ModelConfig,
    RunLimits,
    StepResult,
    YamlDocument,
    loads_workflow,
    run_workflow,
)
from ._problems import ProblemError
from ._runs_store import SqlRunStore

__all__ = ["WorkflowHandle", "load_for_tenant"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _invalid(detail: str) -> ProblemError:
    return ProblemError(422, "invalid-workflow", f"body field 'workflow': {detail}", title="Invalid workflow")


def load_for_tenant(text: str, granted: Toolset) -> LoadedWorkflow:
    """Load a workflow file sent by a tenant, with the tenant's own tools.

    Raises:
        ProblemError: a 422 naming the line and column of what is wrong, or the ``tools`` entry
            that the service does not run.
    """
    try:
        data = YamlDocument(text).data
    except WorkflowError as exc:
        raise _invalid(str(exc)) from None
    except yaml.YAMLError as exc:  # what the YAML reader refuses before parsing (odd characters)
        raise _invalid(f"not YAML: {str(exc).splitlines()[0][:200]}") from None
    except RecursionError:
        raise _invalid("the YAML nests too deeply to read") from None
    entries = data.get("tools") if isinstance(data, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, str) or not _NAME.match(entry):
            raise _invalid(
                f"tools entry {str(entry)[:80]!r}: a workflow sent to the service names granted tools "
                "by name only (no import, http, mcp or openapi entries)"
            )
        if entry not in granted:
            raise _invalid(
                f"tools entry {entry!r}: no tool {entry!r} for this tenant; GET /v1/tools lists them"
            )
    try:
        loaded = loads_workflow(text)
    except WorkflowError as exc:
        raise _invalid(str(exc)) from None
    except yaml.YAMLError as exc:
        raise _invalid(f"not YAML: {str(exc).splitlines()[0][:200]}") from None
    except RecursionError:
        raise _invalid("the workflow nests too deeply to read") from None
    return dataclasses.replace(loaded, toolset=granted.subset(list(loaded.toolset.names)))


class WorkflowHandle:
    """A workflow run in progress; it offers what the service uses of a ``RunHandle``."""

    def __init__(
        self,
        run_id: str,
        workflow: LoadedWorkflow,
        inputs: Mapping[str, Any],
        *,
        llm: LLM | None,
        store: SqlRunStore,
        budget: Budget,
        max_tasks: int,
    ) -> None:
        self.run_id = run_id
        self.workflow = workflow
        self.inputs = dict(inputs)
        self.llm = llm
        self.store = store
        self.budget = budget
        self.max_tasks = max_tasks
        self.journal = RunJournal(run_id)
        self.usage = Usage()
        self.llm_calls = 0
        self.plans: list[str] = []
        self.tasks: list[dict[str, Any]] = []
        self.outputs: dict[str, Any] | None = None
        self._result: RunResult | None = None
        self._done = anyio.Event()
        self._scope: anyio.CancelScope | None = None
        self._cancelled = False

    # -- what a RunHandle offers ----------------------------------------------------------------

    @property
    def done(self) -> bool:
        """Whether the run has ended (and its result is stored)."""
        return self._done.is_set()

    def events(self, *, after: int = 0) -> Subscription:
        """The run's events after ``after``, then live ones, until it ends."""
        return self.journal.events(after=after)

    def cancel(self) -> None:
        """Cancel the step running now and the steps after it."""
        self._cancelled = True
        if self._scope is not None:
            self._scope.cancel()

    async def interrupt(self, message: str) -> None:
        """Workflow runs take no messages."""
        raise UserError(f"run {self.run_id} runs a workflow, which takes no messages")

    async def result(self) -> RunResult:
        """Wait for the run's result."""
        await self._done.wait()
        assert self._result is not None
        return self._result

    # -- running --------------------------------------------------------------------------------

    def _forward(self, step: str) -> Any:
        journal = self.journal

        def on_event(event: Event) -> None:
            if isinstance(event, RunStarted | RunFinished):
                return
            journal.emit(dataclasses.replace(event, run_id=self.run_id, seq=journal.next_seq()))

        return on_event

    def _keep(self, step: str, result: RunResult) -> StepResult:
        self.plans.extend(result.plans)
        self.usage.add(result.usage)
        self.llm_calls += result.llm_calls
        self.tasks.extend({**task_json(t, step=step), "plan": t.plan} for t in result.tasks)
        return StepResult.from_run(result)

    def _left(self) -> Budget:
        budget = self.budget
        tokens = None if budget.max_tokens is None else max(1, budget.max_tokens - self.usage.total_tokens)
        cost = None if budget.max_cost is None else max(0.0, budget.max_cost - self.usage.cost)
        return dataclasses.replace(budget, max_tokens=tokens, max_cost=cost)

    async def run_plan(self, plan: Plan, toolset: Toolset, limits: RunLimits, *, step: str) -> StepResult:
        """A plan step: dispatched with no LLM."""
        orch = Orchestrator(
            toolset,
            limits=Limits(max_concurrency=limits.max_concurrency, deadline=limits.timeout),
            max_tasks=min(limits.max_tasks, self.max_tasks),
            on_event=self._forward(step),
            store=None,
        )
        return self._keep(step, await orch.execute_plan(plan))

    async def run_query(
        self, question: str, toolset: Toolset, model: ModelConfig | None, limits: RunLimits, *, step: str
    ) -> StepResult:
        """A query step: planned and run with the run's model (the file's ``model`` is not used)."""
        if self.llm is None:
            return StepResult(failure="this server has no model for the tenant")
        budget = dataclasses.replace(self._left(), max_replans=limits.max_replans, max_seconds=limits.timeout)
        orch = Orchestrator(
            toolset,
            self.llm,
            limits=Limits(max_concurrency=limits.max_concurrency),
            budget=budget,
            max_tasks=min(limits.max_tasks, self.max_tasks),
            on_event=self._forward(step),
            store=None,
        )
        return self._keep(step, await orch.run(question))

    async def drive(self) -> None:
        """Run the workflow to its end; the journal and the result go to the store."""
        sub = self.journal.events(quiet=True)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._persist, sub)
                try:
                    await self._run()
                finally:
                    self.journal.close()
            assert self._result is not None
            with anyio.CancelScope(shield=True):
                await self.store.save_result(self._result, view=self._view(), last_seq=self.journal.last_seq)
        finally:
            self._done.set()

    async def _persist(self, sub: Subscription) -> None:
        while batch := await sub.batch():
            await self.store.append(self.run_id, batch)

    def _view(self) -> dict[str, Any]:
        result = self._result
        assert result is not None
        return {
            "answer": result.answer,
            "status": result.status,
            "reason": result.reason,
            "outputs": self.outputs,
            "tasks": self.tasks,
            "plans": self.plans,
            "usage": {
                "llm_calls": self.llm_calls,
                "prompt_tokens": self.usage.prompt_tokens,
                "completion_tokens": self.usage.completion_tokens,
                "cost": self.usage.cost,
            },
        }

    async def _run(self) -> None:
        t0, wall = time.monotonic(), time.time()
        name = self.workflow.spec.name or "workflow"
        self.journal.record(RunStarted, ts=t0, query=name, mode="workflow", wall_time=wall)
        status = "failed"
        reason: str | None = "the run ended before its result was decided"
        answer: str | None = None
        try:
            with anyio.CancelScope() as scope:
                self._scope = scope
                if self._cancelled:
                    scope.cancel()
                done = await run_workflow(self.workflow, self.inputs, self)
            if scope.cancelled_caught:
                status, reason = "cancelled", "the run was cancelled"
            elif done.ok:
                self.outputs = done.outputs
                status, reason, answer = "finished", None, dumps_json(done.outputs)
            else:
                reason = done.error
        except WorkflowError as exc:
            reason = str(exc)
        finally:
            event = self.journal.record(
                RunFinished,
                status=status,
                reason=reason,
                answer=answer,
                plans=list(self.plans),
                llm_calls=self.llm_calls,
                usage=dataclasses.replace(self.usage),
                makespan=time.monotonic() - t0,
            )
            self._result = RunResult(
                run_id=self.run_id,
                query=name,
                answer=answer,
                status=status,  # type: ignore[arg-type]
                reason=reason,
                plans=list(self.plans),
                usage=dataclasses.replace(self.usage),
                llm_calls=self.llm_calls,
                makespan=event.makespan if isinstance(event, RunFinished) else 0.0,
            )
