"""The request and response bodies of ``/v1/runs`` (they make the OpenAPI schema)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "InterruptAccepted",
    "InterruptRequest",
    "RunBudget",
    "RunCreate",
    "RunLimitsIn",
    "RunList",
    "RunOut",
    "RunUsage",
]

RunMode = Literal["stream", "plan_then_execute", "react", "parallel_fc"]
RunState = Literal["queued", "running", "finished", "stopped", "failed", "cancelled"]

#: Most metadata keys on one run, and the longest key and value.
MAX_METADATA_KEYS = 16
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunLimitsIn(_In):
    """Bounds on one run (each at most the server's)."""

    max_tasks: int | None = Field(default=None, ge=1, description="most tasks in one plan")
    max_replans: int | None = Field(default=None, ge=0, le=100, description="new plans after the first")
    deadline_s: float | None = Field(default=None, gt=0, le=86_400, description="wall time of the whole run")


class RunBudget(_In):
    """The run's token and cost bounds (the tenant's day budget bounds them too)."""

    max_tokens: int | None = Field(default=None, ge=1, le=10**12)
    max_cost: float | None = Field(default=None, ge=0, le=10**9)


class RunCreate(_In):
    """A run: a question, a fixed plan, or a workflow file (exactly one)."""

    query: str | None = Field(default=None, min_length=1, description="a question for the planner")
    plan: str | None = Field(default=None, min_length=1, description="a fixed plan (no LLM)")
    dialect: Literal["text", "json"] = Field(default="text", description="how `plan` is written")
    workflow: str | None = Field(default=None, min_length=1, description="a workflow file's YAML text")
    inputs: dict[str, Any] = Field(default_factory=dict, description="the workflow's inputs")
    mode: RunMode = Field(default="stream", description="how a question is answered")
    model: str | None = Field(default=None, description="a model granted to the tenant (GET /v1/models)")
    tools: list[str] | None = Field(
        default=None, max_length=1000, description="a subset of the granted tools"
    )
    limits: RunLimitsIn | None = None
    budget: RunBudget | None = None
    metadata: dict[str, str] = Field(default_factory=dict, description="up to 16 short strings")

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_METADATA_KEYS:
            raise ValueError(f"at most {MAX_METADATA_KEYS} metadata keys, got {len(value)}")
        for key, text in value.items():
            if not 1 <= len(key) <= MAX_METADATA_KEY or len(text) > MAX_METADATA_VALUE:
                raise ValueError(
                    f"metadata keys are 1-{MAX_METADATA_KEY} characters and values at most "
                    f"{MAX_METADATA_VALUE}; {key[:40]!r} is not"
                )
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> RunCreate:
        given = [k for k in ("query", "plan", "workflow") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of query, plan or workflow"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self

    @property
    def kind(self) -> Literal["question", "plan", "workflow"]:
        """What the run is."""
        if self.query is not None:
            return "question"
        return "plan" if self.plan is not None else "workflow"


class RunUsage(BaseModel):
    """What a run's LLM calls used."""

    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0


class RunOut(BaseModel):
    """A run: its state, answer, tasks (with outcomes and timings), plans and usage."""

    id: str
    object: Literal["run"] = "run"
    status: RunState
    kind: Literal["question", "plan", "workflow"]
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    query: str | None = None
    mode: str
    model: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    answer: str | None = Field(default=None, description="a workflow's: its outputs as JSON text")
    outputs: dict[str, Any] | None = Field(
        default=None, description="a workflow run's outputs, once finished"
    )
    reason: str | None = Field(default=None, description="why it stopped, failed or was cancelled")
    tasks: list[dict[str, Any]] | None = Field(default=None, description="each task; omitted in lists")
    plans: list[str] | None = Field(default=None, description="each plan's text; omitted in lists")
    usage: RunUsage = Field(default_factory=RunUsage)
    last_seq: int = Field(description="the seq of its latest event")


class RunList(BaseModel):
    """A page of the tenant's runs, newest first."""

    object: Literal["list"] = "list"
    data: list[RunOut]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null: the last")


class InterruptRequest(_In):
    """A user's message into a running run: a plan still streaming is preempted, and it replans."""

    message: str = Field(min_length=1, max_length=10_000)


class InterruptAccepted(BaseModel):
    """The message reached the run."""

    id: str
    accepted: Literal[True] = True
