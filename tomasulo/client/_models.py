"""What the service answers, as typed values (pydantic models that mirror docs/service.md).

Every model keeps members it does not know (``extra="allow"``), so a newer server's additions
reach the caller instead of failing validation.

>>> run = Run.model_validate({"id": "r1", "status": "finished", "answer": "42"})
>>> run.done, run.answer
(True, '42')
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "Batch",
    "BatchItem",
    "PlanProblem",
    "PlanTask",
    "PlanValidation",
    "Run",
    "RunStatus",
    "TaskView",
    "ToolCallResult",
    "ToolInfo",
    "Usage",
]

#: A run's status; the last four are final.
RunStatus = Literal["queued", "running", "finished", "stopped", "failed", "cancelled"]
FINAL_STATUSES = frozenset({"finished", "stopped", "failed", "cancelled"})


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class Usage(_Out):
    """What a run used of the model."""

    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0


class TaskView(_Out):
    """One task of a run: its call, how it ended, when (seconds from the run's start)."""

    id: int
    tool: str
    args: dict[str, Any] = Field(default_factory=dict)
    status: str = ""
    value: Any = None
    error: Any = None
    start: float | None = None
    end: float | None = None
    attempts: int = 0
    plan: int | None = None


class Run(_Out):
    """A run as ``GET /v1/runs/{id}`` shows it (in a list's summaries ``tasks`` and ``plans``
    are empty)."""

    id: str
    object: Literal["run"] = "run"
    status: RunStatus
    created_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    query: str | None = None
    mode: str | None = None
    model: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    answer: str | None = None
    reason: str | None = None
    tasks: list[TaskView] = Field(default_factory=list)
    plans: list[str] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    last_seq: int = 0

    @field_validator("tasks", "plans", mode="before")
    @classmethod
    def _absent(cls, value: Any) -> Any:
        return [] if value is None else value

    @property
    def done(self) -> bool:
        """Whether the run has ended (finished, stopped, failed or cancelled)."""
        return self.status in FINAL_STATUSES


class BatchItem(_Out):
    """One input of a batch: its run and how it ended (``outputs`` for a workflow's outputs)."""

    index: int
    run_id: str | None = None
    status: str = "pending"
    answer: str | None = None
    outputs: dict[str, Any] | None = None
    error: str | None = None


class Batch(_Out):
    """A batch: one workflow over many inputs, with progress (and per-input results on GET)."""

    id: str
    object: Literal["batch"] = "batch"
    status: Literal["running", "finished", "cancelled"]
    created_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    total: int = 0
    done: int = 0
    failed: int = 0
    metadata: dict[str, str] = Field(default_factory=dict)
    results: list[BatchItem] = Field(default_factory=list)

    @property
    def ended(self) -> bool:
        """Whether every input has ended, or the batch was cancelled."""
        return self.status != "running"


class ToolInfo(_Out):
    """A tool the tenant may use: schemas, the signature the planner sees, its policy."""

    name: str
    description: str = ""
    signature: str = ""
    input_schema: dict[str, Any] = Field(default_factory=dict)
    output_schema: dict[str, Any] | None = None
    policy: dict[str, Any] = Field(default_factory=dict)


class ToolCallResult(_Out):
    """How one direct tool call ended (a tool that raised is ``ok=False``, not an exception)."""

    tool: str
    ok: bool
    status: str
    value: Any = None
    error: dict[str, Any] | None = None
    attempts: int = 0
    seconds: float | None = None


class PlanProblem(_Out):
    """One error in a plan: where (1-based line and column), the offending text, a hint."""

    type: str
    message: str
    line: int = 0
    column: int = 0
    text: str = ""
    hint: str = ""


class PlanTask(_Out):
    """One task of a valid plan and the tasks it depends on."""

    id: int
    tool: str
    deps: list[int] = Field(default_factory=list)
    text: str = ""


class PlanValidation(_Out):
    """The check of a plan: its errors, or its tasks and the waves that can run together."""

    ok: bool
    errors: list[PlanProblem] = Field(default_factory=list)
    tasks: list[PlanTask] = Field(default_factory=list)
    waves: list[list[int]] = Field(default_factory=list)
    joined: bool = False
