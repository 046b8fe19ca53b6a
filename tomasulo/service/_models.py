"""The request and response bodies of the API (they make the OpenAPI schema at ``/openapi.json``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..planner import Dialect
from ._config import TenantLimits

__all__ = [
    "GrammarOut",
    "KeyCreate",
    "KeyCreated",
    "KeyList",
    "KeyOut",
    "Me",
    "ModelList",
    "ModelOut",
    "PlanProblem",
    "PlanTask",
    "PlanValidateRequest",
    "PlanValidation",
    "TenantCreate",
    "TenantList",
    "TenantOut",
    "TenantUpdate",
    "ToolCallRequest",
    "ToolCallResult",
    "ToolInfo",
    "ToolList",
]

_TENANT_ID = r"^[a-z0-9][a-z0-9_-]{0,62}$"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Health(BaseModel):
    """``/healthz`` and ``/readyz``."""

    status: Literal["ok"] = "ok"
    database: str | None = Field(default=None, description="readyz: the database answered")


class ToolPolicyOut(BaseModel):
    """How the dispatcher runs the tool."""

    timeout: float | None
    retries: int
    max_concurrency: int | None
    sequential: bool
    idempotent: bool


class ToolInfo(BaseModel):
    """A tool the caller's tenant may use."""

    name: str
    description: str
    signature: str = Field(description="as the planner's prompt shows it")
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None
    policy: ToolPolicyOut


class ToolList(BaseModel):
    """The tools granted to the caller's tenant."""

    tools: list[ToolInfo]


class ToolCallRequest(_In):
    """One direct call of a tool."""

    args: dict[str, Any] = Field(default_factory=dict, description="the arguments, by name")
    timeout: float | None = Field(
        default=None, gt=0, le=86_400, description="seconds (at most the server's tool_call_timeout)"
    )


class ToolCallError(BaseModel):
    """Why the call did not succeed."""

    type: str | None
    message: str | None


class ToolCallResult(BaseModel):
    """How the call ended. A tool that raised is ``status: failed`` (still a 200: the call ran)."""

    tool: str
    ok: bool
    status: str = Field(description="succeeded, failed, cancelled or skipped")
    value: Any = Field(default=None, description="the result, when it succeeded")
    error: ToolCallError | None = None
    attempts: int
    seconds: float | None = Field(description="how long the call took")


class PlanValidateRequest(_In):
    """A plan to check against the caller's tools (or a subset of them)."""

    plan: str = Field(description="the plan text (text dialect) or JSON (json dialect)")
    dialect: Literal["text", "json"] = "text"
    compat: bool = Field(default=False, description="read LLMCompiler-style text plans")
    tools: list[str] | None = Field(default=None, description="only these tools (default: all granted)")
    max_tasks: int | None = Field(default=None, ge=1, description="at most the server's max_tasks")


class PlanProblem(BaseModel):
    """One error of a plan: where it is and what to do."""

    type: str
    message: str
    line: int = Field(description="1-based; 0 when the error is not at a place in the text")
    column: int
    text: str = Field(description="the offending line")
    hint: str


class PlanTask(BaseModel):
    """One task of a valid plan."""

    id: int
    tool: str
    deps: list[int]
    text: str


class PlanValidation(BaseModel):
    """The verdict on a plan (a 200 either way: an invalid plan is an answer, not an error)."""

    ok: bool
    errors: list[PlanProblem]
    tasks: list[PlanTask] = Field(default_factory=list)
    waves: list[list[int]] = Field(default_factory=list, description="tasks that can run together")
    joined: bool = False


GrammarFormat = Literal["gbnf", "lark", "llguidance", "json_schema"]


class GrammarOut(BaseModel):
    """The plan grammar for a tool subset, in the form a dialect's server takes."""

    dialect: Dialect
    format: GrammarFormat | None = Field(description="null: this dialect takes no grammar")
    grammar: str | None = Field(description="GBNF or Lark text")
    json_schema: dict[str, Any] | None = Field(description="the JSON dialect's schema")
    request_field: str | None = Field(description="where the server takes it")
    tools: list[str]
    max_tasks: int
    start_id: int
    note: str = ""


class ModelOut(BaseModel):
    """A model the caller's tenant may use."""

    name: str
    model: str
    dialect: Dialect
    prices: dict[str, float]
    default: bool


class ModelList(BaseModel):
    """The models granted to the caller's tenant."""

    models: list[ModelOut]


class TenantOut(BaseModel):
    """A tenant."""

    id: str
    name: str
    tools: list[str]
    models: list[str]
    limits: TenantLimits
    source: Literal["config", "api"]
    disabled: bool
    created_at: str | None


class TenantList(BaseModel):
    """Every tenant."""

    tenants: list[TenantOut]


class TenantCreate(_In):
    """A new tenant."""

    id: str = Field(pattern=_TENANT_ID, description="lowercase letters, digits, _ and -")
    name: str = Field(default="", max_length=200)
    tools: list[str] = Field(default_factory=lambda: ["*"], max_length=1000)
    models: list[str] = Field(default_factory=lambda: ["*"], max_length=1000)
    limits: TenantLimits = Field(default_factory=TenantLimits)


class TenantUpdate(_In):
    """Changes to a tenant (keys left out stay as they are)."""

    name: str | None = Field(default=None, max_length=200)
    tools: list[str] | None = Field(default=None, max_length=1000)
    models: list[str] | None = Field(default=None, max_length=1000)
    limits: TenantLimits | None = None
    disabled: bool | None = None


class KeyCreate(_In):
    """A new API key."""

    role: Literal["admin", "member"] = "member"
    name: str = Field(default="", max_length=200, description="what the key is for")


class KeyOut(BaseModel):
    """An API key (never its secret)."""

    id: str
    tenant_id: str
    role: Literal["admin", "member"]
    name: str
    created_at: str | None
    last_used_at: str | None
    revoked_at: str | None


class KeyCreated(KeyOut):
    """A new key: ``key`` is shown this once and never again."""

    key: str = Field(description="Authorization: Bearer <key>")


class KeyList(BaseModel):
    """A tenant's keys."""

    keys: list[KeyOut]


class Me(BaseModel):
    """Who the caller is."""

    key_id: str
    role: Literal["admin", "member"]
    tenant: TenantOut
