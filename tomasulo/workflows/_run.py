"""Running a loaded workflow step by step, with the plan and query execution injected.

The Orchestrator (planner + dispatcher) plugs in as a :class:`StepRunner`; this module only
threads values between steps: inputs and earlier outputs reach a plan through the ``input`` tool,
as values, and each step's output is picked from its results.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..grammar import Plan
from ..tools import Toolset
from ._loader import LoadedWorkflow
from ._model import ModelConfig, RunLimits

if TYPE_CHECKING:
    from ..runtime import RunResult

__all__ = ["StepResult", "StepRunner", "WorkflowResult", "run_workflow"]


@dataclass
class StepResult:
    """What running one step gave.

    Attributes:
        values: the result of each task that succeeded, by task id.
        errors: a one-line reason for each task that failed, was skipped or cancelled.
        answer: for a ``query:`` step, the planner's final answer.
        failure: why the step as a whole failed (e.g. the LLM could not be reached), if it did.
    """

    values: dict[int, Any] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)
    answer: Any = None
    failure: str | None = None

    @classmethod
    def from_run(cls, run: RunResult) -> StepResult:
        """What a step run through the Orchestrator gave: its values, each task's error
        without the ``task N (tool)`` prefix, the answer of a run that went well, else why not."""
        out = cls(values=run.results, answer=run.answer if run.ok else None)
        for t in run.tasks:
            if t.status != "succeeded":
                out.errors[t.id] = (t.message or t.status).removeprefix(f"task {t.id} ({t.tool}) ")
        if not run.ok:
            out.failure = f"the run {run.status}: {run.reason}" if run.reason else f"the run {run.status}"
        return out


class StepRunner(Protocol):
    """Runs the steps of a workflow; the Orchestrator provides one."""

    async def run_plan(self, plan: Plan, toolset: Toolset, limits: RunLimits, *, step: str) -> StepResult:
        """Dispatch every task of ``plan`` (the step with id ``step``); report each value or error."""
        ...

    async def run_query(
        self, question: str, toolset: Toolset, model: ModelConfig | None, limits: RunLimits, *, step: str
    ) -> StepResult:
        """Plan and run ``question`` with the LLM; ``answer`` holds the final answer."""
        ...


@dataclass
class WorkflowResult:
    """The result of one run.

    Attributes:
        ok: every step gave its output.
        inputs: the bound inputs.
        steps: each finished step's output, by step id.
        outputs: the ``outputs`` section's values (when ok).
        error: why the run failed, naming the step and the tasks.
        failed_step: the id of the step that failed.
    """

    ok: bool
    inputs: dict[str, Any]
    steps: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    failed_step: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The result as JSON data (the shape batch output lines use)."""
        out: dict[str, Any] = {"ok": self.ok, "inputs": self.inputs}
        if self.ok:
            out["outputs"] = self.outputs
        else:
            out["error"] = self.error
            out["failed_step"] = self.failed_step
        return out


async def run_workflow(
    workflow: LoadedWorkflow, inputs: Mapping[str, Any], runner: StepRunner
) -> WorkflowResult:
    """Bind ``inputs`` and run the steps in order.

    Raises:
        WorkflowError: missing, unknown or mistyped inputs (before anything runs).
    """
    bound = workflow.bind_inputs(inputs)
    values: dict[str, Any] = dict(bound)
    result = WorkflowResult(ok=True, inputs=bound)
    limits = workflow.spec.limits
    for index, sid in enumerate(workflow.step_ids):
        step = workflow.spec.steps[index]
        toolset = workflow.toolset_for(index, values)
        if step.plan is not None:
            outcome = await runner.run_plan(workflow.plans[sid], toolset, limits, step=sid)
            ref = workflow.step_outputs[sid]
            if ref.task_id not in outcome.values:
                reasons = "; ".join(f"task {k}: {v}" for k, v in sorted(outcome.errors.items()))
                if outcome.failure and not reasons:
                    reasons = outcome.failure
                result.ok = False
                result.failed_step = sid
                result.error = f"step {sid!r} gave no output (task {ref.task_id} did not succeed)" + (
                    f": {reasons}" if reasons else ""
                )
                return result
            try:
                output = ref.select(outcome.values[ref.task_id])
            except (LookupError, TypeError) as exc:
                result.ok = False
                result.failed_step = sid
                result.error = f"step {sid!r}: its output {ref.to_text()} does not exist ({exc})"
                return result
        else:
            question = workflow.query_text(index, values)
            outcome = await runner.run_query(question, toolset, workflow.spec.model, limits, step=sid)
            output = outcome.answer
            if outcome.failure is not None or (output is None and outcome.errors):
                result.ok = False
                result.failed_step = sid
                result.error = f"step {sid!r}: " + (outcome.failure or "; ".join(outcome.errors.values()))
                return result
        values[sid] = output
        result.steps[sid] = output
    for name, wanted in workflow.outputs.items():
        try:
            result.outputs[name] = wanted.select(values)
        except (LookupError, TypeError) as exc:
            result.ok = False
            result.error = f"output {name!r} does not exist in the results ({exc})"
            return result
    return result
