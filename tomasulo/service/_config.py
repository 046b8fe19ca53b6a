"""The service's configuration file (``tomasulo serve --config service.yaml``) as pydantic models.

::

    host: 127.0.0.1
    port: 8080
    data_dir: ./tomasulo-data            # SQLite database and other state (default ~/.tomasulo)
    database_url: postgresql+psycopg://tomasulo@db/tomasulo   # default: SQLite in data_dir
    tools:                               # as in workflow files; default: the built-in tools
      - math
      - builtin: sql
        db: facts.sql
      - import: mytools:search
      - http: {name: weather, url: "https://api.example.com/weather/{city}", method: GET}
      - openapi: {spec: petstore.yaml, prefix: pets_}
      - mcp: {command: uvx, args: [mcp-server-time], prefix: time_}
    models:                              # default: one model, `default`, from TOMASULO_* variables
      fast:
        base_url: http://127.0.0.1:8000/v1
        model: qwen2.5-7b
        dialect: vllm
        api_key_env: VLLM_KEY
        prices: {prompt: 0.1, completion: 0.3}
    default_model: fast
    tenants:
      acme:
        name: Acme Corp
        tools: ["math", "pets_*"]        # names or glob patterns; default: every tool
        models: [fast]
        limits: {requests_per_minute: 120, concurrent_runs: 4}
    limits:
      max_body_bytes: 1048576
      requests_per_minute: 600           # for tenants that set none

Errors name the file, line and column (:class:`~tomasulo.exceptions.WorkflowError`, a
``UserError``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from .._text import did_you_mean
from ..exceptions import ConfigError, WorkflowError
from ..planner import Dialect, ModelSettings, Prices, resolve_model
from ..workflows import ModelConfig, ToolSpec, YamlDocument, decode_utf8, validation_error

__all__ = [
    "DEFAULT_DATA_DIR",
    "DEFAULT_TENANT",
    "ModelBackend",
    "ServerLimits",
    "ServiceConfig",
    "TenantLimits",
    "TenantSpec",
    "load_service_config",
    "loads_service_config",
]

#: Where state goes when neither ``--data-dir`` nor the file names a folder.
DEFAULT_DATA_DIR = Path("~/.tomasulo")
#: The tenant that always exists: the first admin key belongs to it.
DEFAULT_TENANT = "default"

_TENANT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class TenantLimits(_Strict):
    """Bounds on one tenant (``None``: the server's default, or no bound)."""

    requests_per_minute: int | None = Field(default=None, ge=1, description="API requests per minute")
    concurrent_runs: int | None = Field(default=None, ge=1, description="runs in flight at once")
    tokens_per_day: int | None = Field(default=None, ge=1, description="LLM tokens per UTC day")
    cost_per_day: float | None = Field(default=None, ge=0, description="LLM cost per UTC day")


class TenantSpec(_Strict):
    """A tenant: who it is and what it may use."""

    name: str = ""
    tools: list[str] = Field(default_factory=lambda: ["*"], description="tool names or glob patterns")
    models: list[str] = Field(default_factory=lambda: ["*"], description="model names or glob patterns")
    limits: TenantLimits = Field(default_factory=TenantLimits)


class ModelBackend(_Strict):
    """A named LLM backend: an OpenAI-compatible server, a model on it, its dialect and prices."""

    base_url: str = Field(description="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    model: str
    dialect: Dialect = "plain"
    api_key_env: str | None = Field(default=None, description="the environment variable with the key")
    temperature: float | None = Field(default=None, ge=0)
    prices: dict[str, float] = Field(
        default_factory=dict, description="per million tokens: {prompt: 0.15, completion: 0.6}"
    )

    @field_validator("prices")
    @classmethod
    def _prices(cls, value: dict[str, float]) -> dict[str, float]:
        for key in value:
            if key not in ("prompt", "completion"):
                raise ValueError(f"unknown price {key!r}; prices are `prompt` and `completion`")
        Prices(**value)  # finite and >= 0, or a ConfigError (a ValueError) with the field
        return value

    def settings(self, environ: Mapping[str, str] | None = None) -> ModelSettings:
        """The resolved settings (the key read from ``api_key_env`` now)."""
        env = os.environ if environ is None else environ
        key = env.get(self.api_key_env, "") if self.api_key_env else ""
        return ModelSettings(self.base_url, self.model, self.dialect, key or "EMPTY", self.temperature)

    def price_table(self) -> Prices:
        """The prices as a :class:`~tomasulo.planner.Prices`."""
        return Prices(**self.prices)


class ServerLimits(_Strict):
    """The server's own bounds."""

    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, description="largest request body")
    requests_per_minute: int | None = Field(
        default=600, ge=1, description="per tenant, unless the tenant sets its own (null: no bound)"
    )
    max_plan_chars: int = Field(default=100_000, ge=1, description="longest plan text read")
    max_tasks: int = Field(default=64, ge=1, le=1024, description="most tasks in one plan")
    tool_call_timeout: float = Field(default=60.0, gt=0, description="seconds one direct tool call may take")
    max_concurrent_calls: int = Field(default=64, ge=1, description="direct tool calls at once, server-wide")
    max_concurrent_runs: int = Field(default=64, ge=1, description="runs at once, server-wide")
    max_sse_connections: int = Field(default=1000, ge=1, description="open event streams, server-wide")
    max_wait: float = Field(default=60.0, gt=0, le=3600, description="longest `Prefer: wait=N` honoured")
    sse_heartbeat_s: float = Field(default=15.0, gt=0, description="seconds between SSE keep-alive comments")
    shutdown_grace: float = Field(
        default=10.0, ge=0, description="seconds runs get to end on shutdown before they are cancelled"
    )
    run_lease_s: float = Field(
        default=30.0, ge=1, description="a run whose server stops renewing its lease this long is failed"
    )


class ServiceConfig(_Strict):
    """The whole file; every key is optional."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    data_dir: str | None = Field(default=None, description="state folder (default ~/.tomasulo)")
    database_url: str | None = Field(default=None, description="default: SQLite in data_dir")
    tools: list[ToolSpec] | None = Field(default=None, description="default: the built-in tools")
    models: dict[str, ModelBackend] | None = Field(
        default=None, description="default: `default`, from the TOMASULO_* environment variables"
    )
    default_model: str | None = None
    tenants: dict[str, TenantSpec] = Field(default_factory=dict)
    limits: ServerLimits = Field(default_factory=ServerLimits)

    _doc: YamlDocument | None = PrivateAttr(default=None)
    _folder: Path | None = PrivateAttr(default=None)

    @property
    def folder(self) -> Path | None:
        """The configuration file's folder: relative paths in it are relative to this."""
        return self._folder

    def error_at(self, message: str, loc: tuple[str | int, ...], *, key: bool = False) -> WorkflowError:
        """A :class:`WorkflowError` at the value ``loc`` of the file (or with no position)."""
        if self._doc is None:
            return WorkflowError(message)
        return self._doc.error(message, self._doc.node_at(loc, key=key))

    @field_validator("tenants")
    @classmethod
    def _tenant_ids(cls, value: dict[str, TenantSpec]) -> dict[str, TenantSpec]:
        for key in value:
            if not _TENANT_ID.match(key):
                raise ValueError(
                    f"tenant id {key!r} must be 1-63 lowercase letters, digits, _ or -, starting with "
                    "a letter or digit"
                )
        return value

    @field_validator("models")
    @classmethod
    def _model_names(cls, value: dict[str, ModelBackend] | None) -> dict[str, ModelBackend] | None:
        for key in value or {}:
            if not _MODEL_NAME.match(key):
                raise ValueError(f"model name {key!r} must be letters, digits, _ . : or - (1-63)")
        return value

    @model_validator(mode="after")
    def _default_model_exists(self) -> ServiceConfig:
        if (
            self.default_model is not None
            and self.models is not None
            and self.default_model not in self.models
        ):
            names = list(self.models)
            raise ValueError(
                f"default_model {self.default_model!r} is not one of models: {', '.join(names) or 'none'}"
                f"{did_you_mean(self.default_model, names)}"
            )
        return self

    def resolved_models(self) -> tuple[dict[str, ModelBackend], str | None, str | None]:
        """The named models, the default one's name, and why there is none (env models only).

        Without a ``models`` section the model comes from the TOMASULO_* environment variables,
        as for ``tomasulo ask``; when they name none, the service still starts (tool calls,
        plans and grammars need no model) and the reason is returned.
        """
        if self.models is not None:
            default = self.default_model or next(iter(self.models), None)
            return dict(self.models), default, None
        try:
            found = resolve_model(ModelConfig())
        except ConfigError as exc:
            return {}, None, str(exc).splitlines()[-1]
        backend = ModelBackend(
            base_url=found.base_url,
            model=found.model,
            dialect=found.dialect,
            api_key_env="TOMASULO_API_KEY",
            temperature=found.temperature,
        )
        return {"default": backend}, "default", None


def loads_service_config(text: str, *, path: str | None = None) -> ServiceConfig:
    """Read a service configuration from YAML text.

    Raises:
        WorkflowError: with the file, line and column of the problem.
    """
    doc = YamlDocument(text, path=path)
    if doc.data is None:
        return ServiceConfig()
    if not isinstance(doc.data, dict):
        raise WorkflowError("a service configuration file is a mapping (host, tools, tenants...)", path=path)
    try:
        config = ServiceConfig.model_validate(doc.data)
    except ValidationError as exc:
        raise validation_error(doc, exc, ServiceConfig, whole="the file") from None
    config._doc = doc
    config._folder = Path(path).resolve().parent if path is not None else None
    return config


def load_service_config(path: str | os.PathLike[str]) -> ServiceConfig:
    """Read ``service.yaml``.

    >>> config = load_service_config("service.yaml")  # doctest: +SKIP

    Raises:
        WorkflowError: the file cannot be read, or a value at a line and column is wrong.
    """
    where = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise WorkflowError(f"cannot read the configuration: {exc.strerror}", path=where) from None
    return loads_service_config(decode_utf8(data, path=where, what="the configuration"), path=where)
