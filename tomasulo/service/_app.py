"""The FastAPI app: state, authentication, tenancy, and the routes (versioned under ``/v1``).

>>> app = create_app(config, Database.open(url), tools=[StaticTools(builtin_toolset())])  # doctest: +SKIP

Every ``/v1`` route needs ``Authorization: Bearer <key>``; the key names a tenant and a role.
Objects are looked up within the caller's tenant only, so another tenant's object is a 404.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import exc as sa_exc
from starlette.responses import JSONResponse

from ..tools import Tool, Toolset, ToolSource
from ..workflows._tools import did_you_mean
from ._config import ModelBackend, ServiceConfig
from ._keys import Principal, VerifiedKeys
from ._models import Health, Me, ModelList, ModelOut, TenantOut
from ._problems import (
    PROBLEM_JSON,
    BodyLimit,
    Problem,
    ProblemError,
    RequestId,
    install_problem_handlers,
    problem_response,
)
from ._ratelimit import RateLimiter
from ._store import Database, NotFound, Tenant

__all__ = ["Caller", "ServiceState", "create_app", "open_tool_sources"]

_log = logging.getLogger("tomasulo.service")

#: The error responses every authenticated route may give (documented in the OpenAPI schema).
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": text}
    for status, text in (
        (400, "Malformed request (bad JSON)"),
        (401, "Missing or invalid API key"),
        (404, "No such object for this tenant"),
        (413, "Body too large"),
        (415, "Body is not JSON"),
        (422, "Invalid request"),
        (429, "Too many requests (see Retry-After)"),
        (503, "The database does not answer (see Retry-After)"),
    )
}


def granted(name: str, patterns: Sequence[str]) -> bool:
    """Whether ``name`` matches one of the grant patterns (``*``, ``pets_*``, ``math``)."""
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


@dataclass
class ServiceState:
    """What the routes share: configuration, database, tools, models, caches."""

    config: ServiceConfig
    db: Database
    sources: list[ToolSource] = field(default_factory=list)
    toolset: Toolset = field(default_factory=lambda: Toolset([]))
    models: dict[str, ModelBackend] = field(default_factory=dict)
    default_model: str | None = None
    model_problem: str | None = None
    keys: VerifiedKeys = field(default_factory=VerifiedKeys)
    rates: RateLimiter = field(default_factory=RateLimiter)
    calls: anyio.CapacityLimiter | None = None
    grammars: anyio.CapacityLimiter | None = None
    tenant_ttl: float = 5.0
    sources_open: bool = False
    _tenants: dict[str, tuple[float, Tenant]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def tenant(self, tenant_id: str) -> Tenant:
        """The tenant, cached for :attr:`tenant_ttl` seconds; :class:`NotFound` if none."""
        now = time.monotonic()
        with self._lock:
            cached = self._tenants.get(tenant_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        tenant = self.db.tenant(tenant_id)
        with self._lock:
            self._tenants[tenant_id] = (now + self.tenant_ttl, tenant)
        return tenant

    def forget_tenant(self, tenant_id: str) -> None:
        """Drop the cached tenant (after a change), its verified keys and its rate bucket."""
        with self._lock:
            self._tenants.pop(tenant_id, None)
        self.keys.forget(tenant_id=tenant_id)
        self.rates.forget(tenant_id)


@dataclass(frozen=True)
class Caller:
    """The authenticated caller: key, tenant, and what the tenant may use."""

    principal: Principal
    tenant: Tenant
    state: ServiceState

    @property
    def tools(self) -> list[Tool]:
        """The tools granted to the tenant, in toolset order."""
        return [t for t in self.state.toolset if granted(t.name, self.tenant.tools)]

    def tool(self, name: str) -> Tool:
        """A granted tool by name; a 404 problem (never a 403) otherwise."""
        tools = {t.name: t for t in self.tools}
        if name not in tools:
            raise ProblemError(
                404,
                "not-found",
                f"no tool {name!r} for this tenant{did_you_mean(name, list(tools))}; "
                "GET /v1/tools lists them",
            )
        return tools[name]

    def toolset(self, names: Iterable[str] | None = None) -> Toolset:
        """The granted tools, or the named subset of them (a 422 naming unknown ones)."""
        tools = self.tools
        if names is None:
            return Toolset(tools)
        by_name = {t.name: t for t in tools}
        wanted = list(dict.fromkeys(names))
        missing = [n for n in wanted if n not in by_name]
        if missing:
            hint = did_you_mean(missing[0], list(by_name))
            raise ProblemError(
                422,
                "unknown-tools",
                f"tools: no tool {', '.join(map(repr, missing))} for this tenant{hint}; "
                "GET /v1/tools lists them",
                title="Unknown tools",
            )
        return Toolset([by_name[n] for n in wanted])

    @property
    def models(self) -> dict[str, ModelBackend]:
        """The models granted to the tenant."""
        return {k: v for k, v in self.state.models.items() if granted(k, self.tenant.models)}


_bearer = HTTPBearer(auto_error=False, description="an API key: `tomasulo keys create`")


def get_state(request: Request) -> ServiceState:
    """The app's :class:`ServiceState`."""
    state: ServiceState = request.app.state.service
    return state


def get_caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    """Authenticate the request, find its tenant, apply the tenant's rate limit."""
    state = get_state(request)
    challenge = {"WWW-Authenticate": 'Bearer realm="tomasulo"'}
    if credentials is None:
        raise ProblemError(
            401,
            "unauthorized",
            "this endpoint needs an API key: send `Authorization: Bearer <key>` "
            "(create one with `tomasulo keys create`)",
            title="Unauthorized",
            headers=challenge,
        )
    token = credentials.credentials
    principal = state.keys.get(token)
    if principal is None:
        principal = state.db.authenticate(token)
        if principal is None:
            raise ProblemError(
                401,
                "unauthorized",
                "the API key is not valid (unknown, revoked, malformed, or its tenant is disabled)",
                title="Unauthorized",
                headers=challenge,
            )
        state.keys.put(token, principal)
    try:
        tenant = state.tenant(principal.tenant_id)
    except NotFound:
        raise ProblemError(
            401, "unauthorized", "the key's tenant no longer exists", headers=challenge
        ) from None
    if tenant.disabled:
        raise ProblemError(401, "unauthorized", "the key's tenant is disabled", headers=challenge)
    per_minute = tenant.limits.requests_per_minute or state.config.limits.requests_per_minute
    wait = state.rates.check(tenant.id, per_minute)
    if wait is not None:
        raise ProblemError(
            429,
            "rate-limited",
            f"tenant {tenant.id!r} sent more than {per_minute} requests a minute; retry in {wait} s",
            title="Too many requests",
            headers={"Retry-After": str(wait)},
        )
    request.state.tenant_id = tenant.id
    return Caller(principal, tenant, state)


CallerDep = Annotated[Caller, Depends(get_caller)]


def require_admin(caller: CallerDep) -> Caller:
    """The caller, if its key is an admin key; a 403 problem otherwise."""
    if not caller.principal.is_admin:
        raise ProblemError(403, "forbidden", "this endpoint needs an admin key; the key used is a member key")
    return caller


def require_json(request: Request) -> None:
    """Refuse a body that is not JSON (415), before the route reads it."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json" and not kind.endswith("+json"):
        shown = kind or "none"
        raise ProblemError(
            415,
            "unsupported-media-type",
            f"the body must be JSON (Content-Type: application/json), not {shown}",
            title="Unsupported media type",
        )


def tenant_out(tenant: Tenant) -> TenantOut:
    """The API form of a tenant."""
    return TenantOut.model_validate(tenant.to_json())


async def open_tool_sources(state: ServiceState, stack: contextlib.AsyncExitStack) -> None:
    """Open the tool sources on ``stack`` and add their tools to the app's toolset.

    Raises:
        TomasuloError: a source that cannot be opened or listed (``ToolSourceError``,
            ``OpenAPIError``), or two tools of one name (``ToolsetError``).
    """
    if state.sources_open:
        return
    tools: list[Tool] = list(state.toolset)
    for source in state.sources:
        opened = await stack.enter_async_context(source)
        tools.extend(await opened.list_tools())
    state.toolset = Toolset(tools)
    state.sources_open = True


async def _database_down(request: Request, exc: Exception) -> JSONResponse:
    _log.warning("database error on %s: %s", request.url.path, type(exc).__name__)
    return problem_response(
        request.scope,
        503,
        "unavailable",
        "the database does not answer; retry shortly",
        title="Service unavailable",
        headers={"Retry-After": "5"},
    )


def create_app(
    config: ServiceConfig,
    db: Database,
    *,
    tools: Toolset | Iterable[Tool] = (),
    sources: Sequence[ToolSource] = (),
) -> FastAPI:
    """The service as an ASGI app.

    Args:
        config: the configuration (limits, tenants, models).
        db: the database, migrated (``db.upgrade()``).
        tools: tools that exist already.
        sources: tool sources (MCP servers, OpenAPI specs...), opened when the app starts
            and closed when it stops; their tools join ``tools``.
    """
    models, default_model, model_problem = config.resolved_models()
    state = ServiceState(
        config=config,
        db=db,
        sources=list(sources),
        toolset=tools if isinstance(tools, Toolset) else Toolset(tools),
        models=models,
        default_model=default_model,
        model_problem=model_problem,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        state.calls = anyio.CapacityLimiter(config.limits.max_concurrent_calls)
        state.grammars = anyio.CapacityLimiter(2)
        async with contextlib.AsyncExitStack() as stack:
            await open_tool_sources(state, stack)  # unless serve() opened them already
            yield

    app = FastAPI(
        title="tomasulo",
        version="1",
        summary="Parallel function calling as a service: tools, plans, grammars (runs to come).",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.service = state
    install_problem_handlers(app)
    app.add_exception_handler(sa_exc.OperationalError, _database_down)
    app.add_exception_handler(sa_exc.InterfaceError, _database_down)
    app.add_middleware(BodyLimit, max_bytes=config.limits.max_body_bytes)
    app.add_middleware(RequestId)

    @app.get("/healthz", tags=["health"], summary="The process is up")
    def healthz() -> Health:
        return Health()

    @app.get(
        "/readyz",
        tags=["health"],
        summary="The database answers",
        responses={503: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": "Not ready"}},
    )
    def readyz() -> Health:
        try:
            db.ping()
        except Exception as exc:
            raise ProblemError(
                503, "unavailable", f"the database does not answer: {type(exc).__name__}", title="Not ready"
            ) from None
        return Health(database=db.engine.dialect.name)

    @app.get("/v1/me", tags=["tenants"], summary="The caller's key, role and tenant", responses=ERRORS)
    def me(caller: CallerDep) -> Me:
        return Me(
            key_id=caller.principal.key_id, role=caller.principal.role, tenant=tenant_out(caller.tenant)
        )

    @app.get("/v1/models", tags=["models"], summary="The models the tenant may use", responses=ERRORS)
    def list_models(caller: CallerDep) -> ModelList:
        return ModelList(
            models=[
                ModelOut(
                    name=name,
                    model=m.model,
                    dialect=m.dialect,
                    prices=dict(m.prices),
                    default=name == state.default_model,
                )
                for name, m in caller.models.items()
            ]
        )

    from ._admin_api import router as admin_router
    from ._tools_api import router as tools_router

    app.include_router(tools_router)
    app.include_router(admin_router)
    return app
