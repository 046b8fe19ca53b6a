"""HTTP tools: one request per call, through the SSRF check, with bounds, typed errors and retries.

:func:`http_tool` declares a tool from a URL template, a method and an argument schema::

    weather = http_tool(
        "weather",
        "https://api.example.com/v1/weather/{city}",
        schema={"type": "object", "properties": {"city": {"type": "string"},
                                                  "units": {"enum": ["metric", "imperial"]}},
                "required": ["city"]},
    )

``{city}`` is filled from the argument of that name (percent-encoded); the other arguments go in
the query for GET, HEAD, DELETE and OPTIONS and in a JSON body (or a form, ``body="form"``)
otherwise. OpenAPI operations (:class:`~tomasulo.tools.OpenAPITools`) send their requests through
the same :func:`send_request`.

Every request goes through :func:`~tomasulo.tools._net.guarded_transport`: each hop of a redirect
is checked against the :class:`NetPolicy` after resolution and pinned to the checked address.
Redirects are followed here, not by httpx. A hop that leaves the first request's origin (scheme,
host, port) carries only the headers in :data:`CROSS_ORIGIN_HEADERS` (``Accept``, ``User-Agent``,
``Accept-Encoding``, and ``Content-Type`` when the body is sent again): every other header (an
auth scheme's API key or token, a fixed ``headers=`` value, a header argument) stays with the
origin it was meant for. Fixed header values are scrubbed from error messages and logs like
secrets.

Bounds (:class:`HttpLimits`): ``timeout`` seconds for one attempt, body included (a server that
trickles bytes cannot pass it); ``max_response_bytes`` of (decompressed) body. Errors are typed:
:class:`~tomasulo.exceptions.ToolHTTPError` with the status; a 4xx is never retried; 429 and 5xx
(and a connection that failed) are retried up to ``retries`` times only when the request is
idempotent (GET, HEAD, PUT, DELETE, OPTIONS, or an operation marked so), waiting what the
server's ``Retry-After`` asks (seconds or an HTTP date, capped at ``max_retry_after``; a value
that is neither is ignored), otherwise an exponential backoff with jitter.

The answer is parsed by its media type: JSON (``application/json``, ``*+json``) to a value,
text (``text/*``, XML, form-encoded) to a string, an empty body to ``None``, anything else to a
bytes summary ``{"kind": "bytes", "media_type": ..., "size": ..., "sha256": ...}``.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote, unquote

import anyio
import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from ..exceptions import (
    ConfigError,
    FieldError,
    ToolArgumentError,
    ToolHTTPError,
    ToolOutputError,
    ToolTimeout,
)
from ._net import NetPolicy, guarded_transport
from ._retry import RetryPolicy
from ._schemas import check_tool_name, normalize_parameters
from ._tool import DEFAULT_POLICY, Tool, ToolPolicy

__all__ = [
    "IDEMPOTENT_METHODS",
    "HttpLimits",
    "HttpRequest",
    "RequestAuth",
    "http_tool",
    "parse_retry_after",
    "send_request",
]

#: Methods whose requests may be repeated without changing more than one request would.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
_QUERY_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})
_REDIRECTS = (301, 302, 303, 307, 308)
#: The only headers a redirect to another origin carries (``content-type`` only with the body).
CROSS_ORIGIN_HEADERS = frozenset({"accept", "user-agent", "accept-encoding", "content-type"})
#: Fixed header names whose values are not secret (they are not scrubbed from messages).
_PLAIN_HEADERS = frozenset({"accept", "user-agent", "accept-encoding", "content-type", "accept-language"})
_TEMPLATE = re.compile(r"\{([^{}]+)\}")


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """Bounds and retries for an HTTP tool's requests.

    Attributes:
        timeout: seconds one attempt may take, from connecting to the last byte of the body.
        max_response_bytes: the most body bytes read (after decompression); more is an error.
        retries: extra attempts after a 429, a 5xx or a failed connection, for idempotent
            requests only.
        backoff: the first wait between attempts, in seconds, doubled each time (with jitter).
        max_backoff: the longest wait between attempts.
        max_retry_after: the longest ``Retry-After`` honoured; a longer one is cut to this.
    """

    timeout: float = 30.0
    max_response_bytes: int = 10 * 1024 * 1024
    retries: int = 2
    backoff: float = 0.5
    max_backoff: float = 10.0
    max_retry_after: float = 30.0

    def __post_init__(self) -> None:
        for name in ("timeout", "backoff", "max_backoff", "max_retry_after"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ConfigError(f"HttpLimits.{name} must be a number of seconds, got {value!r}")
            if value < 0 or (name == "timeout" and value == 0):
                raise ConfigError(f"HttpLimits.{name} must be positive, got {value!r}")
        if self.max_response_bytes < 1:
            raise ConfigError(
                f"HttpLimits.max_response_bytes must be at least 1, got {self.max_response_bytes!r}"
            )
        if self.retries < 0:
            raise ConfigError(f"HttpLimits.retries must be 0 or more, got {self.retries!r}")

    def retry_policy(self) -> RetryPolicy:
        """These limits' retries as the project's one :class:`RetryPolicy`: ``retries + 1``
        attempts, each wait between half of and the whole doubling ``backoff``, never longer
        than ``max_backoff``, a server's ``Retry-After`` cut to ``max_retry_after``.

        >>> HttpLimits(retries=1, backoff=0.4).retry_policy()
        RetryPolicy(attempts=2, initial=0.2, maximum=10.0, jitter=1.0, total=inf, max_retry_after=30.0)
        """
        return RetryPolicy(
            attempts=self.retries + 1,
            initial=self.backoff / 2,
            maximum=self.max_backoff,
            jitter=1.0,
            total=math.inf,
            max_retry_after=self.max_retry_after,
        )


DEFAULT_LIMITS = HttpLimits()


@dataclass(slots=True)
class HttpRequest:
    """One request, before auth: what :func:`send_request` sends."""

    method: str
    url: str
    params: list[tuple[str, str]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    cookies: dict[str, str] = field(default_factory=dict)
    json: Any = None
    data: dict[str, Any] | None = None
    files: list[tuple[str, Any]] | None = None
    has_json: bool = False
    content: bytes | None = None
    #: values to scrub from messages, besides the auth's (fixed header values)
    secrets: list[str] = field(default_factory=list)


class RequestAuth:
    """How a request is authenticated; subclasses add headers, query parameters or cookies.

    ``secrets`` are the values that must never appear in an error message.
    """

    async def apply(self, request: HttpRequest, client: httpx.AsyncClient, policy: NetPolicy) -> None:
        """Add credentials to ``request`` (fetching a token first where needed)."""

    def unauthorized(self) -> bool:
        """A 401 came back: forget what may be stale; ``True`` when one new attempt may succeed."""
        return False

    def secrets(self) -> list[str]:
        """The secret values in use, to be scrubbed from messages."""
        return []


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: a number of seconds or an HTTP date; ``None`` for a
    value that is neither (it is ignored, not an error).

    >>> parse_retry_after("3"), parse_retry_after("soon")
    (3.0, None)
    """
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    try:
        parsed = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None or parsed.tzinfo is None:
        return None
    return max(parsed.timestamp() - (time.time() if now is None else now), 0.0)


class _SecretFilter(logging.Filter):
    """Scrubs known secrets from httpx's request log lines (an API key may sit in a query)."""

    def __init__(self) -> None:
        super().__init__("tomasulo-secrets")
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            text = record.getMessage()
            clean = _scrub(text, sorted(self.secrets, key=len, reverse=True))
            if clean != text:
                record.msg, record.args = clean, None
        return True


_LOG_FILTER = _SecretFilter()
logging.getLogger("httpx").addFilter(_LOG_FILTER)


def register_secrets(secrets: Sequence[str]) -> None:
    """Keep ``secrets`` out of httpx's log lines from now on."""
    _LOG_FILTER.secrets.update(s for s in secrets if s and len(s) >= 3)


def _scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, "***")
    return text


def _shown_url(url: httpx.URL | str) -> str:
    """``url`` as messages show it: no user, password, query or fragment (any may be secret)."""
    try:
        parsed = httpx.URL(url) if isinstance(url, str) else url
        return str(parsed.copy_with(userinfo=b"", query=None, fragment=None))
    except (httpx.InvalidURL, TypeError, ValueError):
        text = str(url).split("?")[0].split("#")[0]
        return re.sub(r"//[^/@]*@", "//", text)


def _media_type(response: httpx.Response) -> str:
    return str(response.headers.get("content-type", "")).split(";")[0].strip().lower()


def parse_body(response: httpx.Response, body: bytes, *, tool: str) -> Any:
    """The body as a value, by its media type (see the module docstring)."""
    media = _media_type(response)
    if not body:
        return None
    if media == "application/json" or media.endswith("+json") or media.endswith("/json"):
        try:
            return json.loads(body)
        except RecursionError:
            raise ToolOutputError(
                f"the JSON answer from {_shown_url(response.request.url)} is nested too deeply to read",
                tool=tool,
            ) from None
        except ValueError as exc:
            raise ToolOutputError(
                f"the answer from {_shown_url(response.request.url)} says it is JSON but is not: {exc}",
                tool=tool,
            ) from None
    if (
        media.startswith("text/")
        or media.endswith("+xml")
        or media in ("application/xml", "application/x-www-form-urlencoded", "")
    ):
        return body.decode(response.encoding or "utf-8", errors="replace")
    return {
        "kind": "bytes",
        "media_type": media,
        "size": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
    }


async def read_bounded(response: httpx.Response, limits: HttpLimits, tool: str, shown: str) -> bytes:
    """The body of a streamed ``response``, at most ``limits.max_response_bytes`` after
    decompression (more is a :class:`~tomasulo.exceptions.ToolOutputError`)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limits.max_response_bytes:
            raise ToolOutputError(
                f"the answer from {shown} is larger than {limits.max_response_bytes} bytes "
                "(max_response_bytes); raise the bound or ask for less",
                tool=tool,
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _redirect(request: httpx.Request, response: httpx.Response) -> tuple[str, httpx.URL] | None:
    location = response.headers.get("location")
    if response.status_code not in _REDIRECTS or not location:
        return None
    method = request.method
    if response.status_code == 303 and method != "HEAD":
        method = "GET"
    if response.status_code in (301, 302) and method == "POST":
        method = "GET"
    return method, request.url.join(location)


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


async def _attempt(
    client: httpx.AsyncClient,
    req: HttpRequest,
    *,
    auth: RequestAuth | None,
    policy: NetPolicy,
    limits: HttpLimits,
    idempotent: bool,
    tool: str,
) -> Any:
    fixed = list(req.secrets)
    register_secrets(fixed)
    secrets = [*fixed, *(auth.secrets() if auth is not None else [])]
    for refreshed in (False, True):
        sent = HttpRequest(
            req.method,
            req.url,
            list(req.params),
            dict(req.headers),
            dict(req.cookies),
            req.json,
            req.data,
            req.files,
            req.has_json,
            req.content,
            list(req.secrets),
        )
        if auth is not None:
            await auth.apply(sent, client, policy)
            secrets = [*fixed, *auth.secrets()]
            register_secrets(secrets)
        request = client.build_request(
            sent.method,
            sent.url,
            params=list(sent.params) or None,
            headers=sent.headers,
            cookies=sent.cookies or None,
            json=sent.json if sent.has_json else None,
            data=sent.data,
            files=sent.files,
            content=sent.content,
        )
        first = request.url
        for _hop in range(policy.max_redirects + 1):
            shown = f"{request.method} {_shown_url(request.url)}"
            try:
                response = await client.send(request, stream=True)
            except httpx.TimeoutException:
                raise ToolTimeout(
                    f"{shown} did not answer within {limits.timeout:g} s (timeout)", tool=tool
                ) from None
            except httpx.TransportError as exc:
                raise ToolHTTPError(
                    f"{shown} failed: {_scrub(str(exc) or type(exc).__name__, secrets)}",
                    tool=tool,
                    method=request.method,
                    url=_shown_url(request.url),
                    retryable=idempotent,
                ) from None
            try:
                nxt = _redirect(request, response)
                if nxt is None:
                    body = await read_bounded(response, limits, tool, shown)
                    break
            finally:
                await response.aclose()
            method, url = nxt
            headers = request.headers.copy()
            for name in ("content-length", "content-type", "transfer-encoding", "host", "cookie"):
                headers.pop(name, None)
            keep_body = method == request.method and response.status_code in (307, 308)
            if _origin(url) != _origin(first):
                # only harmless headers cross origins: never auth, fixed or argument headers
                for name in list(headers.keys()):
                    if name.lower() not in CROSS_ORIGIN_HEADERS:
                        del headers[name]
            if keep_body and "content-type" in request.headers:
                headers["content-type"] = request.headers["content-type"]
            request = client.build_request(
                method,
                url,
                headers=headers,
                content=request.content if keep_body else None,
            )
        else:
            raise ToolHTTPError(
                f"{shown} redirected more than {policy.max_redirects} times (max_redirects)",
                tool=tool,
                method=request.method,
                url=_shown_url(request.url),
            )
        status = response.status_code
        if status == 401 and not refreshed and auth is not None and auth.unauthorized():
            continue
        if status < 400:
            return parse_body(response, body, tool=tool)
        raise _status_error(response, body, shown, idempotent, tool, secrets)
    raise AssertionError("unreachable")  # pragma: no cover


def _status_error(
    response: httpx.Response, body: bytes, shown: str, idempotent: bool, tool: str, secrets: list[str]
) -> ToolHTTPError:
    status = response.status_code
    detail = body[:300].decode("utf-8", errors="replace").strip()
    retryable = idempotent and (status == 429 or status >= 500)
    if status == 401:
        hint = "check the credentials (auth=...)"
    elif status == 403:
        hint = "the credentials do not allow this"
    elif status == 404:
        hint = "check the path parameters"
    elif status in (400, 422):
        hint = "check the arguments"
    elif status == 429:
        hint = "rate limited; " + ("retried" if retryable else "not retried: the request is not idempotent")
    elif status >= 500:
        hint = "the server failed; " + (
            "retried" if retryable else "not retried: the request is not idempotent"
        )
    else:
        hint = ""
    message = f"{shown} answered {status} {response.reason_phrase}"
    if detail:
        message += f": {detail}"
    if hint:
        message += f" ({hint})"
    return ToolHTTPError(
        _scrub(message, secrets),
        tool=tool,
        status_code=status,
        method=response.request.method,
        url=_shown_url(response.request.url),
        retryable=retryable,
        retry_after=parse_retry_after(response.headers.get("retry-after")),
    )


async def send_request(
    req: HttpRequest,
    *,
    client: httpx.AsyncClient | None = None,
    auth: RequestAuth | None = None,
    policy: NetPolicy,
    limits: HttpLimits = DEFAULT_LIMITS,
    idempotent: bool | None = None,
    tool: str = "",
) -> Any:
    """Send ``req`` (with ``auth``) and return the parsed answer, retrying as the module says.

    ``client`` is used when given (a source's shared client, whose transport must be guarded);
    otherwise a client with a :func:`guarded_transport` for ``policy`` is made for this call.

    Raises:
        ToolHTTPError: an error status, or no answer, after the retries allowed.
        ToolTimeout: an attempt ran past ``limits.timeout``.
        ToolOutputError: the answer passed ``limits.max_response_bytes`` or is not what it says.
        DestinationRefused: the SSRF check refused the URL or a redirect hop.
    """
    safe = req.method.upper() in IDEMPOTENT_METHODS if idempotent is None else idempotent

    retry = limits.retry_policy()

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        after = exc.retry_after if isinstance(exc, ToolHTTPError) else None
        return retry.backoff(state.attempt_number, after)

    async def run(c: httpx.AsyncClient) -> Any:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(retry.attempts),
            wait=wait,
            retry=retry_if_exception(lambda e: isinstance(e, ToolHTTPError) and e.retryable),
            sleep=anyio.sleep,
            reraise=True,
        )
        value: Any = None
        async for attempt in retrying:
            with attempt:
                try:
                    with anyio.fail_after(limits.timeout):
                        value = await _attempt(
                            c, req, auth=auth, policy=policy, limits=limits, idempotent=safe, tool=tool
                        )
                except TimeoutError as exc:
                    if isinstance(exc, ToolTimeout):
                        raise
                    raise ToolTimeout(
                        f"{req.method} {_shown_url(req.url)} took more than {limits.timeout:g} s "
                        "(timeout), the body included",
                        tool=tool,
                    ) from None
        return value

    if client is not None:
        return await run(client)
    async with new_client(policy, limits) as own:
        return await run(own)


def new_client(policy: NetPolicy, limits: HttpLimits = DEFAULT_LIMITS) -> httpx.AsyncClient:
    """A client for tool requests: every request checked and pinned, no proxies from the environment,
    redirects left to :func:`send_request` (which checks each hop through the transport)."""
    return httpx.AsyncClient(
        transport=guarded_transport(policy),
        timeout=limits.timeout,
        follow_redirects=False,
        trust_env=False,
    )


def fixed_secrets(headers: Mapping[str, str]) -> list[str]:
    """The values of fixed headers to scrub from messages (all but plain ones such as ``Accept``)."""
    return [str(v) for k, v in headers.items() if k.lower() not in _PLAIN_HEADERS]


def template_names(url_template: str) -> list[str]:
    """The ``{name}`` placeholders of a URL template, in order."""
    return [m.group(1) for m in _TEMPLATE.finditer(url_template)]


def fill_template(url_template: str, values: Mapping[str, Any], *, tool: str = "") -> str:
    """``url_template`` with each ``{name}`` replaced by its value, percent-encoded (``/`` too).

    Raises:
        ToolArgumentError: a value that is or holds a dot segment (``.``, ``..``, ``../x``, or
            one percent-encoded), which would move the request to another path.
    """

    def one(m: re.Match[str]) -> str:
        value = values[m.group(1)]
        text = json.dumps(value) if isinstance(value, bool) else str(value)
        decoded = unquote(unquote(text))
        if any(seg.strip() in (".", "..") for seg in re.split(r"[/\\]", decoded)):
            raise ToolArgumentError(
                tool,
                [FieldError(m.group(1), "a path segment other than '.' or '..'", repr(text))],
            )
        return quote(text, safe="")

    return _TEMPLATE.sub(one, url_template)


_BAD_HEADER_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_BAD_COOKIE_VALUE = re.compile(r"[\x00-\x20\x7f;,\"\\]")


def check_header_value(name: str, value: str, *, tool: str, argument: str) -> None:
    """Refuse a header argument with a line break or another control character (it could add
    headers to the request)."""
    if _BAD_HEADER_VALUE.search(value):
        raise ToolArgumentError(
            tool,
            [
                FieldError(
                    argument, f"a {name} header value without line breaks or control characters", repr(value)
                )
            ],
        )


def check_cookie_value(name: str, value: str, *, tool: str, argument: str) -> None:
    """Refuse a cookie argument with ``;``, ``,``, a quote, a backslash, whitespace or a control
    character (it could add or override cookies)."""
    if _BAD_COOKIE_VALUE.search(value):
        raise ToolArgumentError(
            tool,
            [
                FieldError(
                    argument,
                    f"a {name} cookie value without ';', ',', quotes, spaces or control characters",
                    repr(value),
                )
            ],
        )


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return "" if value is None else str(value)


def query_pairs(name: str, value: Any) -> list[tuple[str, str]]:
    """Query pairs for one argument: a list repeats the name (``tag=a&tag=b``)."""
    if isinstance(value, list):
        return [(name, _query_value(v)) for v in value]
    return [(name, _query_value(value))]


def http_tool(
    name: str,
    url_template: str,
    method: str = "GET",
    schema: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    policy: NetPolicy | None = None,
    *,
    description: str = "",
    body: Literal["json", "form"] = "json",
    limits: HttpLimits = DEFAULT_LIMITS,
    tool_policy: ToolPolicy = DEFAULT_POLICY,
    output_schema: Mapping[str, Any] | None = None,
    idempotent: bool | None = None,
) -> Tool:
    """A tool that makes one HTTP request per call.

    Args:
        name: the tool's name in plans.
        url_template: the URL, with ``{param}`` placeholders filled from the arguments.
        method: the HTTP method.
        schema: the arguments' JSON schema (an object); by default every placeholder is a
            required string. Every placeholder must be a required property.
        headers: sent with every request (not arguments: a plan cannot change them).
        policy: where requests may go (the SSRF check); by default public addresses only.
        body: how arguments that are not placeholders travel for methods with a body.
        limits: timeout, response size and retries.
        tool_policy: the dispatcher's policy for the tool (concurrency, timeout of the whole call).
        idempotent: whether a 429 or 5xx may be retried; by default, whether the method is
            idempotent (GET, HEAD, PUT, DELETE, OPTIONS).

    Raises:
        ConfigError: a placeholder that is not a required property, or a bad name or method.

    >>> t = http_tool("weather", "https://api.example.com/weather/{city}")
    >>> t.signature()
    'weather(city: string)'
    """
    why = check_tool_name(name)
    if why is not None:
        raise ConfigError(why)
    verb = method.upper()
    if not re.fullmatch(r"[A-Z]+", verb):
        raise ConfigError(f"http_tool {name!r}: {method!r} is not an HTTP method")
    placeholders = template_names(url_template)
    if schema is None:
        raw: dict[str, Any] = {
            "type": "object",
            "properties": {p: {"type": "string"} for p in placeholders},
            "required": list(placeholders),
        }
    else:
        raw = dict(schema)
    input_schema = normalize_parameters(raw, tool=name)
    props = input_schema["properties"]
    required = set(input_schema.get("required", ()))
    for p in placeholders:
        if p not in props or p not in required:
            raise ConfigError(
                f"http_tool {name!r}: the URL placeholder {{{p}}} must be a required property of "
                "the schema; add it to 'properties' and 'required'"
            )
    fixed = dict(headers or {})
    net = policy if policy is not None else NetPolicy()
    safe = verb in IDEMPOTENT_METHODS if idempotent is None else idempotent

    async def call_endpoint(**args: Any) -> Any:
        url = fill_template(url_template, args, tool=name)
        rest = {k: v for k, v in args.items() if k not in placeholders}
        req = HttpRequest(verb, url, headers=dict(fixed), secrets=fixed_secrets(fixed))
        if verb in _QUERY_METHODS:
            for key, value in rest.items():
                req.params.extend(query_pairs(key, value))
        elif body == "form":
            req.data = {k: _query_value(v) for k, v in rest.items()}
        else:
            req.json, req.has_json = rest, True
        return await send_request(req, policy=net, limits=limits, idempotent=safe, tool=name)

    return Tool(
        name=name,
        description=description or f"{verb} {url_template}",
        input_schema=input_schema,
        output_schema=dict(output_schema) if output_schema is not None else None,
        policy=tool_policy,
        fn=call_endpoint,
    )
