"""RFC 9457 problem details: every error the API answers is ``application/problem+json``.

::

    HTTP/1.1 404 Not Found
    Content-Type: application/problem+json

    {"type": "https://tomasulo.dev/problems/not-found", "title": "Not found", "status": 404,
     "detail": "no tool 'serch' for this tenant (did you mean 'search'?)",
     "instance": "/v1/tools/serch:call", "request_id": "9f1c..."}

A failure nobody expected (a bug) is a 500 whose detail names only the request id; its
traceback goes to the log, never to the client. The middlewares here give each request an id
(``X-Request-ID``, taken from the client when it is sane) and refuse bodies over the server's
limit before the app reads them.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "PROBLEM_BASE",
    "BodyLimit",
    "Problem",
    "ProblemError",
    "RequestId",
    "install_problem_handlers",
    "problem_response",
]

_log = logging.getLogger("tomasulo.service")

#: Where the problem types live (each type is this plus a slug, documented in docs/service.md).
PROBLEM_BASE = "https://tomasulo.dev/problems/"
PROBLEM_JSON = "application/problem+json"
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class Problem(BaseModel):
    """An RFC 9457 problem detail (the body of every error response)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="a URI naming the kind of problem")
    title: str = Field(description="a short summary of the kind")
    status: int = Field(description="the HTTP status code")
    detail: str = Field(description="what was wrong, and where")
    instance: str | None = Field(default=None, description="the request's path")
    request_id: str | None = Field(default=None, description="quote it when reporting a problem")


class ProblemError(Exception):
    """Raise inside a route to answer with a problem.

    >>> raise ProblemError(404, "not-found", "no run 'r1'")  # doctest: +SKIP
    """

    def __init__(
        self,
        status: int,
        slug: str,
        detail: str,
        *,
        title: str | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        self.status = status
        self.slug = slug
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase
        self.headers = dict(headers or {})
        self.extra = extra
        super().__init__(detail)


def _request_id(scope: Scope) -> str | None:
    state = scope.get("state") or {}
    value = state.get("request_id")
    return value if isinstance(value, str) else None


def problem_response(
    scope: Scope,
    status: int,
    slug: str,
    detail: str,
    *,
    title: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """A ``application/problem+json`` response for the request in ``scope``."""
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + slug,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": scope.get("path"),
        "request_id": _request_id(scope),
    }
    body.update(extra)
    return JSONResponse(body, status_code=status, headers=dict(headers or {}), media_type=PROBLEM_JSON)


_SLUGS = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    409: "conflict",
    413: "body-too-large",
    415: "unsupported-media-type",
    422: "invalid-request",
    429: "rate-limited",
    503: "unavailable",
}


def _where(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        head, rest = parts[0], parts[1:]
        return f"{head} field {'.'.join(rest)!r}" if rest else f"the {head}"
    return ".".join(parts) or "the request"


def _validation_problem(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        first = next(e for e in errors if e.get("type") == "json_invalid")
        ctx = first.get("ctx") or {}
        where = first.get("loc", ("body", 0))
        position = where[1] if len(where) > 1 else 0
        detail = f"the body is not valid JSON at character {position}: {ctx.get('error', 'invalid JSON')}"
        return problem_response(request.scope, 400, "malformed-json", detail, title="Malformed JSON")
    fields = [
        {"where": _where(tuple(e.get("loc", ()))), "message": str(e.get("msg", "invalid"))}
        for e in errors[:20]
    ]
    detail = "; ".join(f"{f['where']}: {f['message']}" for f in fields[:5])
    if len(errors) > 5:
        detail += f"; and {len(errors) - 5} more"
    return problem_response(
        request.scope, 422, "invalid-request", detail, title="Invalid request", errors=fields
    )


def install_problem_handlers(app: FastAPI) -> None:
    """Answer every error with a problem, and nothing with a traceback."""

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ProblemError)
        return problem_response(
            request.scope, exc.status, exc.slug, exc.detail, title=exc.title, headers=exc.headers, **exc.extra
        )

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        status = exc.status_code
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(status).phrase
        if status == 404 and detail == "Not Found":
            detail = f"there is no endpoint {request.url.path}; see /docs for the API"
        elif status == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
        return problem_response(
            request.scope, status, _SLUGS.get(status, "error"), detail, headers=exc.headers
        )

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return _validation_problem(request, exc)

    async def on_bug(request: Request, exc: Exception) -> JSONResponse:
        rid = _request_id(request.scope)
        _log.error("request %s %s failed", rid, request.url.path, exc_info=exc)
        return problem_response(
            request.scope,
            500,
            "internal",
            f"the server failed on this request (a bug); quote request id {rid} when reporting it",
            headers={"X-Request-ID": rid} if rid else None,
        )

    app.add_exception_handler(ProblemError, on_problem)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(Exception, on_bug)


class RequestId:
    """ASGI middleware: each request gets an id (the client's ``X-Request-ID`` when it is sane),
    kept in ``request.state.request_id`` and sent back in ``X-Request-ID``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "")
        rid = given if _SANE_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_id)


class BodyLimit:
    """ASGI middleware: a body over ``max_bytes`` is a 413 before the app sees any of it.

    A declared ``Content-Length`` over the limit is refused at once; a chunked body is read up
    to the limit and handed on whole (bodies are small: JSON requests, plans).
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self, scope: Scope, size: str) -> JSONResponse:
        return problem_response(
            scope,
            413,
            "body-too-large",
            f"the request body is {size}; this server reads at most {self.max_bytes} bytes "
            "(limits.max_body_bytes)",
            title="Body too large",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                response = problem_response(scope, 400, "bad-request", "Content-Length is not a number")
                await response(scope, receive, send)
                return
            if length > self.max_bytes:
                await self._too_large(scope, f"{length} bytes")(scope, receive, send)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(scope, f"over {self.max_bytes} bytes")(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
