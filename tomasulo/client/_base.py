"""What both clients share: settings, the requests they make, and how answers become values.

The clients differ only in how they send (``httpx.Client`` or ``httpx.AsyncClient``); every
request is first described by a :class:`Call`, and every answer read by the functions here.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
from tenacity import RetryCallState, wait_exponential, wait_random

from ..dispatcher import Event
from ..exceptions import (
    ConfigError,
    ServiceConnectionError,
    ServiceError,
    ServiceNotFound,
    ServiceRateLimited,
    UserError,
)
from ._sse import ServerSentEvent

__all__ = [
    "DEFAULT_TIMEOUT",
    "DEFAULT_URL",
    "Call",
    "Retries",
    "batch_body",
    "decode_event",
    "error_for",
    "run_body",
    "validate_body",
]

#: Where ``tomasulo serve`` listens by default (``TOMASULO_URL`` overrides it).
DEFAULT_URL = "http://127.0.0.1:8080"
#: Seconds for a request (connect: 10 s). An event stream reads with ``Retries.stream_read_timeout``.
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
_UA = "tomasulo-client"

Mode = Literal["stream", "plan_then_execute", "react", "parallel_fc"]


@dataclass(frozen=True, slots=True)
class Retries:
    """How a client retries: bounded attempts with exponential backoff and jitter.

    Args:
        attempts: tries of one request in all (1: no retry). A 429, a 502/503/504 and a
            connection that could not be made are retried; a request that may have reached the
            server (a dropped answer) only when it is safe to repeat (GET, DELETE, cancel, and a
            POST with an idempotency key, which :meth:`create_run` always sends).
        backoff: the first wait in seconds; it doubles, with jitter, up to ``max_backoff``.
        max_retry_after: the longest ``Retry-After`` the client waits; a longer one raises
            :class:`~tomasulo.exceptions.ServiceRateLimited` at once.
        stream_reconnects: how many times an event stream reconnects (with ``Last-Event-ID``)
            without receiving an event in between.
        stream_read_timeout: seconds an event stream may stay silent (the server sends a
            heartbeat every 15 s by default) before it counts as dropped.
    """

    attempts: int = 4
    backoff: float = 0.2
    max_backoff: float = 5.0
    max_retry_after: float = 30.0
    stream_reconnects: int = 5
    stream_read_timeout: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.stream_reconnects < 0:
            raise ConfigError(
                f"Retries: attempts must be >= 1 and stream_reconnects >= 0 "
                f"(got {self.attempts}, {self.stream_reconnects})"
            )
        for name in ("backoff", "max_backoff", "max_retry_after", "stream_read_timeout"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"Retries: {name} must be a finite number >= 0 (got {value!r})")

    def wait(self, state: RetryCallState) -> float:
        """Seconds before the next attempt: the server's ``Retry-After``, else the backoff."""
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, ServiceError) and exc.retry_after is not None:
            return min(exc.retry_after, self.max_retry_after)
        exponential = wait_exponential(multiplier=self.backoff, max=self.max_backoff)
        backoff = exponential + wait_random(0, self.backoff)
        return min(float(backoff(state)), self.max_backoff)

    def should_retry(self, exc: BaseException, safe: bool) -> bool:
        """Whether ``exc``, raised by a request that is ``safe`` to repeat, is worth another try."""
        if isinstance(exc, ServiceConnectionError):
            return safe or exc.unsent
        if isinstance(exc, ServiceRateLimited):
            return exc.retry_after is None or exc.retry_after <= self.max_retry_after
        if isinstance(exc, ServiceError):
            return safe and exc.status in (502, 503, 504)
        return False


@dataclass(frozen=True, slots=True)
class Call:
    """One request, before it is sent: what, where, and whether repeating it is safe."""

    method: str
    path: str
    params: list[tuple[str, str]] = field(default_factory=list)
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    timeout: httpx.Timeout | None = None
    safe: bool = False

    def request(self, client: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        """The request, built by ``client`` (its base URL, key and default headers)."""
        extensions = {"timeout": self.timeout.as_dict()} if self.timeout is not None else None
        return client.build_request(
            self.method,
            self.path,
            params=tuple(self.params) if self.params else None,
            json=self.body,
            headers=self.headers or None,
            extensions=extensions,
        )


def base_url(url: str | None) -> str:
    """The service's URL: ``url``, else ``TOMASULO_URL``, else :data:`DEFAULT_URL`."""
    chosen = (url or os.environ.get("TOMASULO_URL") or DEFAULT_URL).rstrip("/")
    if not chosen.startswith(("http://", "https://")):
        raise ConfigError(f"the service URL must start with http:// or https:// (got {chosen!r})")
    return chosen


def client_headers(api_key: str | None) -> dict[str, str]:
    """The headers every request carries: the key (``api_key``, else ``TOMASULO_API_KEY``)."""
    key = api_key if api_key is not None else os.environ.get("TOMASULO_API_KEY")
    headers = {"User-Agent": _UA, "Accept": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return headers


def transport_error(exc: httpx.TransportError, what: str) -> ServiceConnectionError:
    """A transport failure as a :class:`ServiceConnectionError` (``unsent``: it never left)."""
    return ServiceConnectionError(
        f"{what}: cannot reach the service: {type(exc).__name__}: {exc or 'no detail'}",
        unsent=isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout),
    )


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:  # an HTTP date
            from email.utils import parsedate_to_datetime

            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = (when - dt.datetime.now(dt.UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def error_for(response: httpx.Response, what: str) -> ServiceError:
    """The exception for an error answer (its body read): a problem's members, else the text."""
    problem: dict[str, Any] = {}
    if "json" in response.headers.get("content-type", ""):
        try:
            loaded = json.loads(response.content)
        except ValueError:
            loaded = None
        if isinstance(loaded, dict):
            problem = loaded
    status = response.status_code
    title = str(problem.get("title") or response.reason_phrase or "")
    detail = str(problem.get("detail") or response.text[:300].strip() or title)
    request_id = problem.get("request_id") or response.headers.get("x-request-id")
    message = f"{what}: {status} {title}: {detail}"
    if request_id:
        message += f" (request {request_id})"
    kwargs: dict[str, Any] = {
        "status": status,
        "type": str(problem.get("type") or "about:blank"),
        "title": title,
        "detail": detail,
        "request_id": str(request_id) if request_id else None,
        "problem": problem,
        "retry_after": _retry_after(response),
    }
    if status == 404:
        return ServiceNotFound(message, **kwargs)
    if status == 429:
        return ServiceRateLimited(message, **kwargs)
    return ServiceError(message, **kwargs)


def decode_event(sse: ServerSentEvent, run_id: str) -> Event:
    """The library event an SSE event carries (its ``data`` is the event's JSON form)."""
    try:
        data = json.loads(sse.data)
        return Event.from_json(data)
    except (ValueError, TypeError, KeyError) as exc:
        raise ServiceError(
            f"events of run {run_id!r}: the service sent an event (id {sse.id}) that is not an "
            f"event's JSON form: {exc}"
        ) from None


def _workflow_text(workflow: str | os.PathLike[str]) -> str:
    if isinstance(workflow, os.PathLike):
        path = Path(workflow)
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read the workflow file {path}: {exc}") from None
    return workflow


def run_body(
    *,
    query: str | None,
    plan: str | None,
    workflow: str | os.PathLike[str] | None,
    dialect: Literal["text", "json"],
    inputs: Mapping[str, Any] | None,
    mode: Mode,
    model: str | None,
    tools: Sequence[str] | None,
    limits: Mapping[str, Any] | None,
    budget: Mapping[str, Any] | None,
    metadata: Mapping[str, str] | None,
) -> dict[str, Any]:
    """The body of ``POST /v1/runs`` (exactly one of ``query``, ``plan``, ``workflow``)."""
    given = [name for name, v in (("query", query), ("plan", plan), ("workflow", workflow)) if v is not None]
    if len(given) != 1:
        raise UserError(
            "create_run: give exactly one of query=, plan= or workflow= "
            f"(got {', '.join(given) if given else 'none'})"
        )
    if isinstance(tools, str):
        raise UserError("create_run: tools= is a list of tool names, not one string")
    body: dict[str, Any] = {"mode": mode}
    if query is not None:
        body["query"] = query
    if plan is not None:
        body["plan"] = plan
        body["dialect"] = dialect
    if workflow is not None:
        body["workflow"] = _workflow_text(workflow)
        body["inputs"] = dict(inputs or {})
    elif inputs:
        raise UserError("create_run: inputs= go with workflow= only")
    for name, value in (("model", model), ("limits", limits), ("budget", budget)):
        if value is not None:
            body[name] = value if isinstance(value, str) else dict(value)
    if tools is not None:
        body["tools"] = list(tools)
    if metadata:
        body["metadata"] = dict(metadata)
    return body


def batch_body(
    workflow: str | os.PathLike[str],
    inputs: Sequence[Mapping[str, Any]],
    model: str | None,
    metadata: Mapping[str, str] | None,
) -> dict[str, Any]:
    """The body of ``POST /v1/batches``."""
    if isinstance(inputs, Mapping) or not all(isinstance(i, Mapping) for i in inputs):
        raise UserError("create_batch: inputs= is a list of input objects (dicts), one per run")
    body: dict[str, Any] = {"workflow": _workflow_text(workflow), "inputs": [dict(i) for i in inputs]}
    if model is not None:
        body["model"] = model
    if metadata:
        body["metadata"] = dict(metadata)
    return body


def validate_body(
    plan: str, dialect: str, compat: bool, tools: Sequence[str] | None, max_tasks: int | None
) -> dict[str, Any]:
    """The body of ``POST /v1/plans:validate``."""
    body: dict[str, Any] = {"plan": plan, "dialect": dialect, "compat": compat}
    if tools is not None:
        body["tools"] = list(tools)
    if max_tasks is not None:
        body["max_tasks"] = max_tasks
    return body


def new_idempotency_key() -> str:
    """A fresh idempotency key (so that a retried POST cannot start a second run)."""
    return uuid.uuid4().hex


def list_params(
    *,
    status: str | None,
    created_after: dt.datetime | str | None,
    created_before: dt.datetime | str | None,
    metadata: Mapping[str, str] | None,
    limit: int | None,
) -> list[tuple[str, str]]:
    """The query of ``GET /v1/runs``."""
    params: list[tuple[str, str]] = []
    if status is not None:
        params.append(("status", status))
    for name, when in (("created_after", created_after), ("created_before", created_before)):
        if when is not None:
            params.append((name, when.isoformat() if isinstance(when, dt.datetime) else when))
    params += [(f"metadata[{k}]", v) for k, v in (metadata or {}).items()]
    if limit is not None:
        params.append(("limit", str(limit)))
    return params


def stream_timeout(retries: Retries) -> httpx.Timeout:
    """The timeouts of an event stream: silence past ``stream_read_timeout`` is a drop."""
    return httpx.Timeout(30.0, connect=10.0, read=retries.stream_read_timeout)


def wait_timeout(wait: float | None) -> httpx.Timeout | None:
    """The timeouts of a POST that waits up to ``wait`` seconds for the result."""
    return None if not wait else httpx.Timeout(wait + 30.0, connect=10.0)
