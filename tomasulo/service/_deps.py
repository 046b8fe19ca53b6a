"""What every route depends on: the service state, the caller (key, tenant, rate limit), the
JSON and admin checks, and the error responses documented on every route."""

from __future__ import annotations

import fnmatch
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import anyio
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .._text import did_you_mean
from ..tools import Tool, Toolset, ToolSource
from ._config import DEFAULT_TENANT, ModelBackend, ServiceConfig
from ._keys import Principal, VerifiedKeys
from ._models import TenantOut
from ._problems import (
    PROBLEM_JSON,
    Problem,
    ProblemError,
)
from ._ratelimit import RateLimiter
from ._store import Database, NotFound, Tenant

__all__ = [
    "ERRORS",
    "Caller",
    "CallerDep",
    "ServiceState",
    "get_caller",
    "get_state",
    "granted",
    "require_admin",
    "require_json",
    "tenant_out",
]

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
    if caller.tenant.id != DEFAULT_TENANT:  # admin keys are made only there; never trust one elsewhere
        raise ProblemError(
            403, "forbidden", f"this endpoint needs an admin key of the {DEFAULT_TENANT!r} tenant"
        )
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
