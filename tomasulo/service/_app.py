"""The FastAPI app: state, authentication, tenancy, and the routes (versioned under ``/v1``).

>>> app = create_app(config, Database.open(url), tools=[StaticTools(builtin_toolset())])  # doctest: +SKIP

Every ``/v1`` route needs ``Authorization: Bearer <key>``; the key names a tenant and a role.
Objects are looked up within the caller's tenant only, so another tenant's object is a 404.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterable, Sequence

import anyio
from fastapi import FastAPI, Request
from sqlalchemy import exc as sa_exc
from starlette.responses import JSONResponse

from ..tools import Tool, Toolset, ToolSource
from ._config import ServiceConfig
from ._deps import ERRORS, CallerDep, ServiceState, tenant_out
from ._models import Health, Me, ModelList, ModelOut
from ._problems import (
    PROBLEM_JSON,
    BodyLimit,
    Problem,
    ProblemError,
    RequestId,
    install_problem_handlers,
    problem_response,
)
from ._runner import RunManager
from ._store import Database

__all__ = ["create_app", "open_tool_sources"]

_log = logging.getLogger("tomasulo.service")


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
            async with runs:  # leaving: runs end (or are cancelled) before the tools close
                yield

    app = FastAPI(
        title="tomasulo",
        version="1",
        summary="Parallel function calling as a service: runs with live events, tools, plans, grammars.",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.service = state
    runs = RunManager(state)
    app.state.runs = runs
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
    from ._batches_api import router as batches_router
    from ._runs_api import router as runs_router
    from ._tools_api import router as tools_router

    app.include_router(runs_router)
    app.include_router(tools_router)
    app.include_router(admin_router)
    app.include_router(batches_router)
    return app
