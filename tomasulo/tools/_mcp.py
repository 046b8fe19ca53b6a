"""MCP servers as a tool source, on the official ``mcp`` SDK.

::

    async with MCPTools.stdio("uvx", ["mcp-server-time"], prefix="time_") as time_tools:
        tools = await time_tools.list_tools()          # time_get_current_time, time_convert_time
        orch = Orchestrator(tools, llm)

One session per source carries every call, so a plan that fans out to ten calls of the server runs
them at once. The session lives in a task the source owns (the SDK's transports must be entered
and left by one task); a call only sends a request over it.

- Start-up is bounded by ``startup_timeout``: a server that does not start, or never answers
  ``initialize``, fails with :class:`~tomasulo.exceptions.ToolSourceError` in that time. Reading
  the tool list (``tools/list``, every page of it) is bounded by the same number of seconds.
- A call is bounded by ``timeout`` (:class:`~tomasulo.exceptions.ToolTimeout`). A call that times
  out or is cancelled sends the server ``notifications/cancelled`` for its request.
- A server that dies fails the calls in flight with :class:`~tomasulo.exceptions.ToolCrashed`; the
  next call starts it again.
- Shutdown is bounded: the SDK closes the server's stdin, then terminates and kills its process
  tree; an HTTP session is ended with ``DELETE``. ``shutdown_timeout`` bounds the whole of it.
- ``notifications/tools/list_changed`` marks the list stale: the next :meth:`MCPTools.list_tools`
  reads it again, and :meth:`MCPTools.wait_tools_changed` wakes.
- Values of ``env`` and ``headers`` are secrets: they are cut out of every error and log line,
  whole and each whitespace-separated word of 8 characters or more (the token of
  ``Bearer <token>``); so are an HTTP URL's userinfo, query values and fragment, as written
  (percent-encoded) and decoded.
- An HTTP source's URL goes through the SSRF check (``tomasulo.tools._net.NetPolicy``) each
  time a session opens. The SDK's HTTP client is ``httpx2``, so the address is checked, not
  pinned per request; the SDK follows only same-origin redirects.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TextIO

import anyio
import anyio.abc
import mcp.types as mt
from mcp import Client
from mcp.shared.exceptions import MCPError

from ..exceptions import (
    ConfigError,
    ToolCrashed,
    ToolExecutionError,
    ToolsetError,
    ToolSourceError,
    ToolTimeout,
)
from ._mcp_content import error_text, result_value, unwrapped_output_schema
from ._net import NetPolicy, check_url
from ._schemas import tools_from_schemas
from ._source import legal_name
from ._tool import ToolPolicy

__all__ = [
    "DEFAULT_MCP_SHUTDOWN_TIMEOUT",
    "DEFAULT_MCP_STARTUP_TIMEOUT",
    "DEFAULT_MCP_TIMEOUT",
    "HttpClientFactory",
    "MCPTools",
]

#: Seconds one tool call may take, by default.
DEFAULT_MCP_TIMEOUT = 60.0
#: Seconds a server has to start and answer ``initialize``, by default.
DEFAULT_MCP_STARTUP_TIMEOUT = 30.0
#: Seconds closing the source may take before its session is cancelled outright.
DEFAULT_MCP_SHUTDOWN_TIMEOUT = 5.0

_CONNECTION_CLOSED = -32000  # mcp_types.CONNECTION_CLOSED
_LIST_PAGE_CAP = 100
_log = logging.getLogger("tomasulo.tools.mcp")

#: Builds the ``httpx2.AsyncClient`` an HTTP source talks through, from the headers and timeout.
#: This is the seam for the deployment's SSRF check (a guarded transport) and for proxies.
HttpClientFactory = Callable[..., Any]

_Transport = Callable[[], Any]  # a new transport (an async context manager) for each session


def _check_seconds(name: str, value: float | None, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if value is None or not value > 0 or value != value or value == float("inf"):
        raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}")


#: A whitespace-separated part of a secret this long is a secret of its own (``Bearer <token>``).
_SECRET_PART_MIN = 8


class _Scrubber:
    """Cuts secret values out of text: each whole value, and each long word of it on its own."""

    def __init__(self, secrets: Sequence[str]) -> None:
        found = {s for s in secrets if len(s) >= 3}
        found |= {part for s in secrets for part in s.split() if len(part) >= _SECRET_PART_MIN}
        usable = sorted(found, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, usable))) if usable else None

    def __call__(self, text: object) -> str:
        out = str(text)
        return self._pattern.sub("***", out) if self._pattern is not None else out


class _Connection:
    """One session with the server, owned by one task of the source."""

    def __init__(self) -> None:
        self.ready = anyio.Event()  # set when the session is up, or when starting it failed
        self.stop = anyio.Event()  # set to close the session
        self.closed = anyio.Event()  # set when the owning task has left the session
        self.scope = anyio.CancelScope()
        self.client: Client | None = None
        self.error: BaseException | None = None
        self.dead = False

    def alive(self) -> bool:
        if self.dead or self.client is None:
            return False
        # The SDK's dispatcher notes end of stream (the process died) before any call sees it.
        dispatcher = getattr(self.client.session, "_dispatcher", None)
        return not getattr(dispatcher, "_closed", False)


class MCPTools:
    """The tools of one MCP server, as a :class:`~tomasulo.tools.ToolSource`.

    Build one with :meth:`stdio` (a command that speaks MCP on its stdin and stdout) or
    :meth:`http` (a streamable HTTP or SSE endpoint), then open it::

        async with MCPTools.stdio(sys.executable, ["server.py"], prefix="srv_") as source:
            toolset = Toolset(await source.list_tools())

    Each tool keeps the server's input and output schemas (normalized like any schema) and its
    name made legal for plans (``prefix`` first). Calls return: the structured content (a dict,
    or ``x`` when the server wrapped a plain value as ``{"result": x}``), else the text of a
    single text block, else a list of blocks (strings and the ``MCPImage``, ``MCPAudio``,
    ``MCPResource`` and ``MCPResourceLink`` dataclasses). An ``isError`` result raises
    :class:`~tomasulo.exceptions.ToolExecutionError` with the server's text.
    """

    def __init__(
        self,
        transport: _Transport,
        *,
        label: str,
        prefix: str = "",
        timeout: float | None = DEFAULT_MCP_TIMEOUT,
        startup_timeout: float = DEFAULT_MCP_STARTUP_TIMEOUT,
        shutdown_timeout: float = DEFAULT_MCP_SHUTDOWN_TIMEOUT,
        secrets: Sequence[str] = (),
        policy: ToolPolicy | None = None,
        precheck: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        _check_seconds("timeout", timeout, optional=True)
        _check_seconds("startup_timeout", startup_timeout)
        _check_seconds("shutdown_timeout", shutdown_timeout)
        self._transport = transport
        self._precheck = precheck
        self._label = label
        self.prefix = prefix
        self.timeout = timeout
        self.startup_timeout = startup_timeout
        self.shutdown_timeout = shutdown_timeout
        self.policy = policy
        self._scrub = _Scrubber(secrets)
        self._tg: anyio.abc.TaskGroup | None = None
        self._conn: _Connection | None = None
        self._lock = anyio.Lock()
        self._tools: list[Any] | None = None
        self._version = 0
        self._changed = anyio.Event()
        self.starts = 0  #: how many sessions were opened (restarts show here)
        self.restart_note = "it is started again for the next call"

    # -- constructors ---------------------------------------------------------------------------

    @classmethod
    def stdio(
        cls,
        command: str,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        *,
        prefix: str = "",
        name: str | None = None,
        timeout: float | None = DEFAULT_MCP_TIMEOUT,
        startup_timeout: float = DEFAULT_MCP_STARTUP_TIMEOUT,
        shutdown_timeout: float = DEFAULT_MCP_SHUTDOWN_TIMEOUT,
        stderr: TextIO | None = None,
        policy: ToolPolicy | None = None,
    ) -> MCPTools:
        """A server run as a subprocess, speaking MCP over its stdin and stdout.

        Args:
            command: the program (``uvx``, ``npx``, ``sys.executable``).
            args: its arguments.
            env: variables added to the SDK's minimal inherited environment (``PATH``, ``HOME``,
                ...); their values are secrets and never appear in errors or logs.
            cwd: the working directory.
            prefix: put in front of every tool name.
            name: the label in errors (default ``mcp:<command name>``).
            timeout: seconds per call (``None``: none, the run's deadline still applies).
            startup_timeout: seconds to start and answer ``initialize``; also bounds ``tools/list``.
            shutdown_timeout: seconds closing may take.
            stderr: where the server's standard error goes (default: this process's).
            policy: retries and concurrency for every tool (``timeout`` is applied here).
        """
        from mcp import StdioServerParameters
        from mcp.client.stdio import stdio_client

        params = StdioServerParameters(
            command=command,
            args=list(args),
            env=dict(env) if env is not None else None,
            cwd=str(cwd) if cwd is not None else None,
        )

        def transport() -> Any:
            return stdio_client(params, errlog=stderr if stderr is not None else sys.stderr)

        return cls(
            transport,
            label=name or f"mcp:{Path(command).name}",
            prefix=prefix,
            timeout=timeout,
            startup_timeout=startup_timeout,
            shutdown_timeout=shutdown_timeout,
            secrets=list((env or {}).values()),
            policy=policy,
        )

    @classmethod
    def http(
        cls,
        url: str,
        headers: Mapping[str, str] | None = None,
        *,
        transport: Literal["streamable-http", "sse"] = "streamable-http",
        prefix: str = "",
        name: str | None = None,
        timeout: float | None = DEFAULT_MCP_TIMEOUT,
        startup_timeout: float = DEFAULT_MCP_STARTUP_TIMEOUT,
        shutdown_timeout: float = DEFAULT_MCP_SHUTDOWN_TIMEOUT,
        http_client_factory: HttpClientFactory | None = None,
        net_policy: NetPolicy | None = None,
        policy: ToolPolicy | None = None,
    ) -> MCPTools:
        """A server behind an HTTP endpoint: streamable HTTP (``/mcp``), or SSE for older servers.

        Args:
            url: the endpoint.
            headers: sent with every request (``Authorization``...); their values are secrets.
            transport: ``streamable-http`` (default) or ``sse``.
            http_client_factory: called as ``factory(headers=..., timeout=...)`` to build the
                ``httpx2.AsyncClient`` (proxies, client certificates); default: the SDK's client.
            net_policy: where the URL may point (``tomasulo.tools._net.NetPolicy``), checked
                each time a session opens: after resolution, private, loopback, link-local and
                metadata addresses are refused unless allowed. Default ``NetPolicy()``; a local
                server needs ``NetPolicy(allow_private_hosts=("127.0.0.1",))`` or
                ``allow_private=True``.
            prefix, name, timeout, startup_timeout, shutdown_timeout, policy: as for :meth:`stdio`.
        """
        if transport not in ("streamable-http", "sse"):
            raise ConfigError(f"transport must be 'streamable-http' or 'sse', got {transport!r}")
        hdrs = dict(headers or {})

        def make_client() -> Any:
            import httpx2
            from mcp.shared._httpx_utils import create_mcp_http_client

            factory = http_client_factory or create_mcp_http_client
            return factory(headers=hdrs, timeout=httpx2.Timeout(30.0, read=300.0))

        def open_transport() -> Any:
            if transport == "sse":
                from mcp.client.sse import sse_client

                return sse_client(
                    url,
                    headers=hdrs,
                    httpx_client_factory=lambda **kw: make_client(),  # type: ignore[arg-type]
                )
            from mcp.client.streamable_http import streamable_http_client

            return _Deferred(make_client, lambda http: streamable_http_client(url, http_client=http))

        checked = net_policy if net_policy is not None else NetPolicy()

        async def precheck() -> None:
            await check_url(url, checked)

        source = cls(
            open_transport,
            precheck=precheck,
            label=name or f"mcp:{_public_url(url)}",
            prefix=prefix,
            timeout=timeout,
            startup_timeout=startup_timeout,
            shutdown_timeout=shutdown_timeout,
            secrets=[*hdrs.values(), *_url_secrets(url)],
            policy=policy,
        )
        source.restart_note = "the next call opens a new session"
        return source

    # -- the source protocol --------------------------------------------------------------------

    @property
    def label(self) -> str:
        return self._label

    async def __aenter__(self) -> Self:
        if self._tg is not None:
            raise ConfigError(f"{self.label} is already open; open a source once")
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        try:
            await self._client()
        except BaseException as exc:
            await self._close(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close(exc_type, exc, tb)

    async def _close(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        tg, self._tg = self._tg, None
        if tg is None:
            return
        conn, self._conn = self._conn, None
        with anyio.CancelScope(shield=True):
            if conn is not None:
                conn.stop.set()
                with anyio.move_on_after(self.shutdown_timeout):
                    await conn.closed.wait()
                conn.scope.cancel()
        tg.cancel_scope.cancel()
        await tg.__aexit__(None, None, None)

    async def list_tools(self) -> list[Any]:
        """The server's tools now (read again after ``notifications/tools/list_changed``).

        Raises:
            ToolSourceError: the server could not be reached or its list read.
            ToolsetError: two of its names become one plan name.
        """
        if self._tools is not None:
            return list(self._tools)
        version = self._version
        client = await self._client()
        listed: list[mt.Tool] = []
        cursor: str | None = None
        try:
            with anyio.move_on_after(self.startup_timeout) as waited:  # every page, together
                for _ in range(_LIST_PAGE_CAP):
                    page = await client.list_tools(cursor=cursor)
                    listed.extend(page.tools)
                    cursor = page.next_cursor
                    if cursor is None:
                        break
        except (MCPError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            raise ToolSourceError(
                f"could not list the tools: {self._scrub(exc)}", source=self.label
            ) from None
        if waited.cancelled_caught:
            raise ToolSourceError(
                f"tools/list: no answer within {self.startup_timeout:g} s (startup_timeout); the "
                "server started but does not list its tools",
                source=self.label,
            )
        tools = self._build(listed)
        if version == self._version:  # no change arrived while listing
            self._tools = tools
        return list(tools)

    @property
    def tools_version(self) -> int:
        """Counts ``notifications/tools/list_changed`` received so far."""
        return self._version

    async def wait_tools_changed(self, since: int) -> int:
        """Wait until the server has announced a change after version ``since``; the new version."""
        while self._version <= since:
            await self._changed.wait()
        return self._version

    # -- the session ----------------------------------------------------------------------------

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, mt.ToolListChangedNotification):
            self._tools = None
            self._version += 1
            changed, self._changed = self._changed, anyio.Event()
            changed.set()

    async def _own(self, conn: _Connection) -> None:
        """The task that holds one session: opens it, waits for ``stop``, closes it."""
        with conn.scope:
            try:
                if self._precheck is not None:
                    await self._precheck()  # the SSRF check, before anything is sent
                async with AsyncExitStack() as stack:
                    client = Client(
                        self._transport(),
                        mode="legacy",
                        cache=None,
                        message_handler=self._on_message,
                        client_info=mt.Implementation(name="tomasulo", version=_version()),
                    )
                    await stack.enter_async_context(client)
                    conn.client = client
                    conn.ready.set()
                    await conn.stop.wait()
            except Exception as exc:
                conn.error = exc
                _log.debug("%s: session ended: %s", self.label, self._scrub(_describe(exc)))
        conn.dead = True
        conn.ready.set()
        conn.closed.set()

    async def _client(self) -> Client:
        """The live session's client, starting the server when there is none (or it died)."""
        if self._tg is None:
            raise ConfigError(f"{self.label} is not open: use it inside `async with source:`")
        conn = self._conn
        if conn is None or (conn.ready.is_set() and not conn.alive()):
            async with self._lock:
                conn = self._conn
                if conn is None or (conn.ready.is_set() and not conn.alive()):
                    if conn is not None:
                        conn.stop.set()
                    conn = self._conn = _Connection()
                    self.starts += 1
                    self._tools = None
                    self._tg.start_soon(self._own, conn)
        with anyio.move_on_after(self.startup_timeout) as waited:
            await conn.ready.wait()
        if waited.cancelled_caught:
            conn.dead = True
            conn.scope.cancel()
            raise ToolSourceError(
                f"the server did not start and answer initialize within {self.startup_timeout:g} s "
                "(startup_timeout); check the command and that it speaks MCP on stdout",
                source=self.label,
            )
        if conn.client is None or conn.dead:
            why = _describe(conn.error) if conn.error is not None else "it closed at once"
            raise ToolSourceError(f"could not start the server: {self._scrub(why)}", source=self.label)
        return conn.client

    # -- tools and calls ------------------------------------------------------------------------

    def _build(self, listed: Sequence[mt.Tool]) -> list[Any]:
        out = []
        origin: dict[str, str] = {}
        for spec in listed:
            plan_name = legal_name(self.prefix + spec.name)
            if plan_name in origin:
                raise ToolsetError(
                    f"{self.label}: the tools {origin[plan_name]!r} and {spec.name!r} would both be "
                    f"named {plan_name!r} in plans; wrap the source in prefixed(..., rename={{...}})"
                )
            origin[plan_name] = spec.name
            entry = spec.model_dump(by_alias=True, exclude_none=True, mode="json")
            entry["name"] = plan_name
            output, unwrap = unwrapped_output_schema(entry.get("outputSchema"))
            if output is None:
                entry.pop("outputSchema", None)
            else:
                entry["outputSchema"] = output
            [t] = tools_from_schemas([entry], {plan_name: self._caller(spec.name, plan_name, unwrap)})
            if self.policy is not None:
                t.policy = self.policy
            t.source_name = spec.name if spec.name != plan_name else None
            out.append(t)
        return out

    def _caller(self, outside: str, plan_name: str, unwrap: bool) -> Callable[..., Any]:
        async def call(**arguments: Any) -> Any:
            return await self.call(outside, arguments, plan_name=plan_name, unwrap=unwrap)

        call.__name__ = plan_name
        call.__qualname__ = f"MCPTools.{plan_name}"
        return call

    async def call(
        self, name: str, arguments: Mapping[str, Any], *, plan_name: str | None = None, unwrap: bool = True
    ) -> Any:
        """Call the server's tool ``name`` (its own name, not the plan name) with ``arguments``.

        Raises:
            ToolExecutionError: the server answered ``isError``, or with a protocol error.
            ToolTimeout: no answer within ``timeout`` (the server was sent a cancellation).
            ToolCrashed: the server died, or could not be started again.
        """
        shown = plan_name or name
        try:
            client = await self._client()
        except ToolSourceError as exc:
            raise ToolCrashed(f"{exc}", tool=shown) from None
        conn = self._conn
        result: mt.CallToolResult | None = None
        try:
            with anyio.move_on_after(self.timeout if self.timeout is not None else float("inf")) as limit:
                result = await client.call_tool(name, dict(arguments))
        except MCPError as exc:
            if exc.code == _CONNECTION_CLOSED:
                self._bury(conn)
                raise ToolCrashed(
                    f"the MCP server {self.label} closed the connection during the call (it died or "
                    f"was stopped); {self.restart_note}",
                    tool=shown,
                ) from None
            raise ToolExecutionError(
                f"{self.label} answered with an error: {self._scrub(exc)}", tool=shown, error_type="MCPError"
            ) from None
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream):
            self._bury(conn)
            raise ToolCrashed(
                f"the connection to the MCP server {self.label} broke during the call; {self.restart_note}",
                tool=shown,
            ) from None
        except Exception as exc:  # e.g. the SDK refusing structured content against the schema
            raise ToolExecutionError(
                f"{self.label}: {self._scrub(_describe(exc))}", tool=shown, error_type=type(exc).__name__
            ) from None
        if limit.cancelled_caught or result is None:
            raise ToolTimeout(
                f"no answer from {self.label} within {self.timeout:g} s (MCPTools timeout); the server "
                "was sent a cancellation",
                tool=shown,
            )
        if result.is_error:
            raise ToolExecutionError(self._scrub(error_text(result)), tool=shown, error_type="MCPToolError")
        return result_value(result, unwrap=unwrap)

    def _bury(self, conn: _Connection | None) -> None:
        if conn is not None:
            conn.dead = True
            conn.stop.set()


class _Deferred:
    """An async context manager that builds its inner one from a client it also enters."""

    def __init__(self, make_client: Callable[[], Any], make_inner: Callable[[Any], Any]) -> None:
        self._make_client = make_client
        self._make_inner = make_inner
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> Any:
        await self._stack.__aenter__()
        try:
            http = await self._stack.enter_async_context(self._make_client())
            return await self._stack.enter_async_context(self._make_inner(http))
        except BaseException:
            await self._stack.aclose()
            raise

    async def __aexit__(self, *exc: Any) -> bool | None:
        return await self._stack.__aexit__(*exc)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in exc.exceptions)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _public_url(url: str) -> str:
    """The URL without userinfo, query or fragment (they can carry keys)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _url_secrets(url: str) -> list[str]:
    """The userinfo, query values and fragment of ``url``, both as written and decoded.

    Errors may quote the URL either way (httpx shows it still percent-encoded).
    """
    from urllib.parse import unquote, unquote_plus, urlsplit

    parts = urlsplit(url)
    raw = [v for v in (parts.password, parts.username, parts.fragment) if v]
    for pair in re.split(r"[&;]", parts.query):
        value = pair.partition("=")[2]
        if value:
            raw.append(value)
    found: list[str] = []
    for value in raw:
        found += [value, unquote(value), unquote_plus(value)]
    return found


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tomasulo")
    except PackageNotFoundError:
        return "0"
