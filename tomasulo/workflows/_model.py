"""The workflow file as pydantic models; ``workflow.schema.json`` is generated from :class:`Workflow`.

A workflow file (YAML)::

    name: mountains
    tools:
      - math                                   # a built-in by name
      - builtin: sql                           # a built-in with options
        db: facts.sql
      - import: mytools:search                 # module:function (a Tool) or module:toolset
        policy: {retries: 2, timeout: 5}
      - http: {name: weather, url: "https://api.example.com/weather/{city}", method: GET, input_schema: {...}}
      - openapi: {spec: petstore.yaml, base_url: "https://petstore.example.com/v1", prefix: pets_,
                  auth: {api_key: {key_env: PETSTORE_KEY}}, include: ["tag:pets"]}
      - mcp: {command: uvx, args: [mcp-server-time], prefix: time_}
    model: {base_url: "http://127.0.0.1:11434/v1", model: qwen2.5, dialect: ollama}
    limits: {max_concurrency: 8, timeout: 60}
    inputs:
      country: {type: string, default: Nepal}
    steps:
      - id: tallest
        plan: |
          1. input("country")
          2. sql(query="SELECT name FROM mountains WHERE country = ?", params=[$1])
          3. join()
    outputs:
      name: tallest.rows[0].name
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..planner import Dialect

__all__ = [
    "HttpToolSpec",
    "InputSpec",
    "MCPSourceSpec",
    "ModelConfig",
    "NetSpec",
    "OpenAPISourceSpec",
    "PolicySpec",
    "RunLimits",
    "Step",
    "ToolSpec",
    "Workflow",
]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
InputType = Literal["string", "integer", "number", "boolean", "array", "object"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class PolicySpec(_Strict):
    """Overrides of a tool's policy (see :class:`~tomasulo.tools.ToolPolicy`)."""

    timeout: float | None = Field(default=None, gt=0, description="seconds per attempt")
    retries: int | None = Field(default=None, ge=0, description="extra attempts after a failure")
    max_concurrency: int | None = Field(default=None, ge=1)
    sequential: bool | None = None
    idempotent: bool | None = Field(default=None, description="failures may always be retried")


class NetSpec(_Strict):
    """Where a source's requests may go (the SSRF check, :class:`~tomasulo.tools._net.NetPolicy`)."""

    allow_hosts: list[str] = Field(default_factory=lambda: ["*"], description="host patterns")
    allow_private: bool = Field(default=False, description="private and loopback addresses too")
    allow_private_hosts: list[str] = Field(
        default_factory=list, description="hosts allowed to resolve to private addresses"
    )
    max_redirects: int = Field(default=5, ge=0)


class HttpToolSpec(_Strict):
    """A tool that calls an HTTP endpoint: ``{name}`` placeholders in ``url`` come from the
    arguments; the other arguments go in the query (GET, HEAD, DELETE, OPTIONS) or the body."""

    name: str = Field(description="the tool name plans use")
    url: str = Field(description="the URL, with {param} placeholders filled from the arguments")
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] = "POST"
    description: str = ""
    input_schema: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="JSON schema of the arguments",
    )
    output_schema: dict[str, Any] | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: float = Field(default=30.0, gt=0)
    body: Literal["json", "form"] = Field(default="json", description="how a body is sent")
    prefix: str = Field(default="", description="put in front of the tool's name")
    idempotent: bool | None = Field(default=None, description="429/5xx may be retried (default: by method)")
    net: NetSpec = Field(default_factory=NetSpec)


class OpenAPISourceSpec(_Strict):
    """Tools from an OpenAPI (3.0, 3.1) or Swagger 2.0 spec: one per operation."""

    spec: str = Field(description="a file (relative to the workflow file) or an http(s) URL")
    base_url: str | None = Field(default=None, description="default: the spec's first server")
    auth: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="per security scheme: where its secrets are, e.g. {api_key: {key_env: MY_KEY}}",
    )
    include: list[str] | None = Field(default=None, description="tag:x, path:/glob, id:glob or a glob")
    exclude: list[str] = Field(default_factory=list)
    prefix: str = Field(default="", description="put in front of every tool name")
    idempotent: list[str] = Field(default_factory=list, description="operationIds whose 5xx may be retried")
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: float = Field(default=30.0, gt=0, description="seconds per request")
    max_response_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    retries: int = Field(default=2, ge=0, description="retries of a 429/5xx (idempotent requests only)")
    net: NetSpec = Field(default_factory=NetSpec)


class MCPSourceSpec(_Strict):
    """Tools from an MCP server: a command run over stdio, or a URL (streamable HTTP or SSE)."""

    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    transport: Literal["streamable-http", "sse"] = "streamable-http"
    prefix: str = Field(default="", description="put in front of every tool name")
    timeout: float | None = Field(default=None, gt=0, description="seconds per call")
    net: NetSpec = Field(default_factory=NetSpec, description="where a `url` may point")

    @model_validator(mode="after")
    def _command_or_url(self) -> MCPSourceSpec:
        if (self.command is None) == (self.url is None):
            raise ValueError("an mcp entry needs exactly one of `command` (stdio) or `url` (HTTP)")
        return self


class ToolSpec(BaseModel):
    """One entry of ``tools``: exactly one of ``builtin``, ``import``, ``http``, ``openapi`` or ``mcp``.

    A bare string is shorthand: ``math`` is ``{builtin: math}``, ``pkg.mod:name`` is
    ``{import: pkg.mod:name}``. A built-in's options sit beside ``builtin`` (``db: facts.sql``).
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    builtin: str | None = Field(default=None, description="a built-in tool: " + "math, sql, ...")
    import_: str | None = Field(default=None, alias="import", description="module:function or module:toolset")
    http: HttpToolSpec | None = None
    openapi: OpenAPISourceSpec | None = None
    mcp: MCPSourceSpec | None = None
    policy: PolicySpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"import": data} if ":" in data else {"builtin": data}
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> ToolSpec:
        kinds = [k for k in ("builtin", "import_", "http", "openapi", "mcp") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(
                "a tool entry needs exactly one of `builtin`, `import`, `http`, `openapi` or `mcp`"
            )
        if self.builtin is None and self.model_extra:
            key = next(iter(self.model_extra))
            raise ValueError(f"unknown key {key!r} (options are only for built-in tools)")
        return self

    @property
    def options(self) -> dict[str, Any]:
        """A built-in's options (the extra keys)."""
        return dict(self.model_extra or {})


class ModelConfig(_Strict):
    """The LLM used by ``query:`` steps.

    Flags (``--base-url``, ``--model``, ``--dialect``, ``--api-key``) and environment variables
    (``TOMASULO_BASE_URL``, ``TOMASULO_MODEL``, ``TOMASULO_DIALECT``, ``TOMASULO_API_KEY``) override
    these, in that order.
    """

    base_url: str | None = Field(default=None, description="OpenAI-compatible server, e.g. .../v1")
    model: str | None = None
    dialect: Dialect | None = Field(
        default=None,
        description="where the server takes the plan grammar: vllm, llamacpp, sglang, openai, "
        "ollama, or plain (no grammar; the default)",
    )
    api_key_env: str | None = Field(default=None, description="env var holding the API key")
    temperature: float | None = Field(default=None, ge=0)


class RunLimits(_Strict):
    """Bounds for each run of the workflow."""

    max_concurrency: int = Field(default=8, ge=1, description="tasks running at once")
    timeout: float | None = Field(default=None, gt=0, description="seconds each step may take")
    max_tasks: int = Field(default=64, ge=1, description="tasks in one plan")
    max_replans: int = Field(default=2, ge=0)


class InputSpec(_Strict):
    """One input: its type, an optional default and a description."""

    type: InputType = "string"
    default: Any = None
    description: str = ""
    enum: list[Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"type": data} if isinstance(data, str) else data

    @property
    def required(self) -> bool:
        """Whether a value must be given (there is no default)."""
        return "default" not in self.model_fields_set

    def json_schema(self) -> dict[str, Any]:
        """The input as a JSON schema."""
        schema: dict[str, Any] = {"type": self.type}
        if self.enum is not None:
            schema["enum"] = self.enum
        if self.description:
            schema["description"] = self.description
        return schema


class Step(_Strict):
    """One step: a ``plan:`` in the plan language (no LLM) or a ``query:`` for the planner.

    A plan reads inputs and earlier steps' outputs with the ``input`` tool
    (``1. input("country")``), which returns the value itself: values are never spliced into the
    plan's text. ``output`` picks the step's result (``$3`` or ``$3.rows[0]``; default: the last
    task's result).
    """

    id: str | None = Field(default=None, description="name later steps and outputs use")
    plan: str | None = None
    query: str | None = None
    output: str | None = Field(default=None, description="$k or $k.path: the step's result")
    tools: list[str] | None = Field(default=None, description="only these tools (query steps)")

    @model_validator(mode="after")
    def _plan_or_query(self) -> Step:
        if (self.plan is None) == (self.query is None):
            raise ValueError("a step needs exactly one of `plan` or `query`")
        return self

    @field_validator("id")
    @classmethod
    def _id_is_a_name(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.match(value):
            raise ValueError(f"step id {value!r} must be a name (letters, digits, _)")
        return value


class Workflow(_Strict):
    """A workflow file."""

    name: str | None = None
    description: str = ""
    tools: list[ToolSpec] = Field(default_factory=list)
    model: ModelConfig | None = None
    limits: RunLimits = Field(default_factory=RunLimits)
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    steps: list[Step] = Field(min_length=1)
    outputs: dict[str, str] = Field(
        default_factory=dict, description="name: step or input, with an optional .path"
    )

    @field_validator("inputs")
    @classmethod
    def _input_names(cls, value: dict[str, InputSpec]) -> dict[str, InputSpec]:
        for key in value:
            if not _NAME.match(key):
                raise ValueError(f"input name {key!r} must be a name (letters, digits, _)")
        return value

    def step_ids(self) -> list[str]:
        """Each step's id (``step1``, ``step2``... where none is given)."""
        return [s.id or f"step{i}" for i, s in enumerate(self.steps, 1)]
