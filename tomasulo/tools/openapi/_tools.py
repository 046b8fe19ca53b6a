"""``OpenAPITools``: a tool source with one tool per operation of an OpenAPI spec."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import anyio
import httpx

from ...exceptions import ConfigError, OpenAPIError, SchemaError, ToolOutputError
from .._http_tool import (
    DEFAULT_LIMITS,
    HttpLimits,
    HttpRequest,
    RequestAuth,
    _query_value,
    _scrub,
    _shown_url,
    check_cookie_value,
    check_header_value,
    fill_template,
    fixed_secrets,
    new_client,
    query_pairs,
    read_bounded,
    send_request,
)
from .._net import NetPolicy
from .._schemas import normalize_parameters
from .._source import legal_name
from .._tool import DEFAULT_POLICY, Tool, ToolPolicy
from ._auth import make_auth
from ._operations import Argument, Operation, read_operations
from ._refs import DEFAULT_MAX_DEPTH, Inliner, make_resolver
from ._spec import convert_swagger2, parse_document, read_local, spec_version

__all__ = ["OpenAPITools"]

SpecSource = str | os.PathLike[str] | Mapping[str, Any]


class OpenAPITools:
    """One tool per operation of an OpenAPI 3.0 / 3.1 or Swagger 2.0 spec, as a tool source.

    >>> petstore = OpenAPITools.from_spec(  # doctest: +SKIP
    ...     "petstore.yaml",
    ...     base_url="https://petstore.example.com/v1",
    ...     auth={"api_key": {"key_env": "PETSTORE_KEY"}},
    ...     include=["tag:pets"],
    ...     prefix="pets_",
    ... )
    >>> async with petstore:  # doctest: +SKIP
    ...     tools = await petstore.list_tools()

    A spec from a file or a mapping is read at once; one from a URL is fetched (through the SSRF
    check) when the source opens, or by :meth:`tools`. While the source is open its tools share
    one connection pool; outside it (tools taken with :meth:`tools`) each call makes its own.
    See :func:`from_spec` for the options.
    """

    def __init__(
        self,
        spec: SpecSource,
        *,
        base_url: str | None = None,
        auth: Mapping[str, Mapping[str, Any]] | None = None,
        include: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        prefix: str = "",
        policy: NetPolicy | None = None,
        limits: HttpLimits = DEFAULT_LIMITS,
        idempotent: Sequence[str] = (),
        tool_policy: ToolPolicy = DEFAULT_POLICY,
        max_depth: int = DEFAULT_MAX_DEPTH,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if isinstance(include, str) or isinstance(exclude, str):
            raise ConfigError("include and exclude are lists of patterns, not one string")
        self._policy = policy if policy is not None else NetPolicy()
        self._limits = limits
        self._base_url = base_url
        self._auth_config = {k: dict(v) for k, v in (auth or {}).items()}
        self._include = list(include) if include is not None else None
        self._exclude = list(exclude or [])
        self._prefix = prefix
        self._idempotent = list(idempotent)
        self._tool_policy = tool_policy
        self._max_depth = max_depth
        self._headers = dict(headers or {})
        self._client: httpx.AsyncClient | None = None
        self._tools: list[Tool] | None = None
        self.operations: list[Operation] = []
        self._doc: dict[str, Any] | None = None
        self._url: str | None = None
        self._no_base = ""  # why there is no base URL, when there is none
        self._local_root: Path | None = None  # where $ref may read files: a spec file's directory
        if isinstance(spec, Mapping):
            self._where = str(spec.get("info", {}).get("title") or "<spec>")
            self._doc, self._base = dict(spec), "file:///spec.json"
        elif isinstance(spec, str) and spec.startswith(("http://", "https://")):
            self._url = spec
            self._where = _shown_url(spec)  # the label and messages: no userinfo or query
            self._base = spec
        else:
            path = Path(spec).expanduser().resolve()
            self._where = str(spec)
            self._doc, self._base = read_local(path), path.as_uri()
            self._local_root = path.parent
        if self._doc is not None:
            self._build()

    @classmethod
    def from_spec(
        cls,
        spec: SpecSource,
        *,
        base_url: str | None = None,
        auth: Mapping[str, Mapping[str, Any]] | None = None,
        include: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        prefix: str = "",
        policy: NetPolicy | None = None,
        limits: HttpLimits = DEFAULT_LIMITS,
        idempotent: Sequence[str] = (),
        tool_policy: ToolPolicy = DEFAULT_POLICY,
        max_depth: int = DEFAULT_MAX_DEPTH,
        headers: Mapping[str, str] | None = None,
    ) -> OpenAPITools:
        """Tools from the spec at ``spec`` (a file path, an http(s) URL, or the parsed mapping).

        Args:
            base_url: where requests go; by default the spec's first server (its variables at
                their defaults, a relative one joined to the spec's URL).
            auth: credentials per security scheme, from the environment (see
                :mod:`tomasulo.tools.openapi._auth`): ``{"petstore_auth": {"client_id_env":
                "PET_ID", "client_secret_env": "PET_SECRET"}}``.
            include: only operations matching one of these patterns (``tag:pets``,
                ``path:/pets/*``, ``id:list*``, or a bare glob matched against the
                operationId, the name, the tags and ``METHOD /path``).
            exclude: leave out operations matching one of these.
            prefix: put in front of every tool name (``pets_``).
            policy: where requests may go (the SSRF check). A loopback test server needs
                ``NetPolicy(allow_private_hosts=("127.0.0.1",))``.
            limits: timeout, response size bound and retries of each call.
            idempotent: operationIds (or tool names) whose 429/5xx may be retried although
                their method is not idempotent (as ``x-idempotent: true`` in the spec does).
            tool_policy: the dispatcher's policy for every tool.
            max_depth: how often a recursive schema is expanded before it becomes open.
            headers: sent with every request (not arguments).

        Raises:
            OpenAPIError: the spec cannot be read or has a part that cannot become a tool.
            ConfigError: a secret's environment variable is not set, or no base URL is known.
        """
        return cls(
            spec,
            base_url=base_url,
            auth=auth,
            include=include,
            exclude=exclude,
            prefix=prefix,
            policy=policy,
            limits=limits,
            idempotent=idempotent,
            tool_policy=tool_policy,
            max_depth=max_depth,
            headers=headers,
        )

    # -- the source protocol ------------------------------------------------------------------

    @property
    def label(self) -> str:
        return f"openapi:{self._where}"

    async def __aenter__(self) -> Self:
        if self._doc is None:
            await self._fetch()
        self._client = new_client(self._policy, self._limits)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def list_tools(self) -> list[Tool]:
        if self._tools is None:
            await self._fetch()
        assert self._tools is not None
        return list(self._tools)

    def tools(self) -> list[Tool]:
        """The tools now, without opening the source (a spec URL is fetched in a helper thread)."""
        if self._tools is None:
            errors: list[BaseException] = []

            def fetch() -> None:
                try:
                    anyio.run(self._fetch)
                except BaseException as exc:  # handed to the caller's thread
                    errors.append(exc)

            thread = threading.Thread(target=fetch, name="openapi-fetch")
            thread.start()
            thread.join()
            if errors:
                raise errors[0]
        assert self._tools is not None
        return list(self._tools)

    # -- loading ------------------------------------------------------------------------------

    async def _fetch(self) -> None:
        if self._doc is not None:
            return
        assert self._url is not None
        async with new_client(self._policy, self._limits) as client:
            try:
                with anyio.fail_after(self._limits.timeout):
                    status, body = await _get_bounded(client, self._url, self._policy, self._limits)
            except (httpx.HTTPError, TimeoutError) as exc:
                raise OpenAPIError(
                    f"cannot fetch the spec: {_scrub(str(exc) or type(exc).__name__, [self._url])}",
                    where=self._where,
                ) from None
            except ToolOutputError:
                raise OpenAPIError(
                    f"the spec is larger than {self._limits.max_response_bytes} bytes "
                    "(max_response_bytes, counted after decompression); raise limits=HttpLimits(...)",
                    where=self._where,
                ) from None
        if status >= 400:
            raise OpenAPIError(f"fetching the spec answered {status}", where=self._where)
        self._doc = parse_document(body, self._where)
        # CPU work, bounded (see _refs): off the event loop, so other tasks keep running
        await anyio.to_thread.run_sync(self._build)

    def _server_url(self, doc: Mapping[str, Any]) -> str:
        if self._base_url:
            return self._base_url.rstrip("/")
        servers = doc.get("servers") or []
        url = ""
        if servers and isinstance(servers[0], Mapping):
            server = servers[0]
            url = str(server.get("url", ""))
            for name, var in (server.get("variables") or {}).items():
                url = url.replace("{" + name + "}", str((var or {}).get("default", "")))
        if self._url is not None:
            # a fetched spec may name only its own origin: it must not choose where requests
            # (with their credentials and fixed headers) go
            joined = httpx.URL(self._url).join(url or "/")
            spec = httpx.URL(self._url)
            if (joined.scheme, joined.host, joined.port) != (spec.scheme, spec.host, spec.port):
                raise ConfigError(
                    f"{self.label}: the spec's server {_shown_url(joined)} is not on the origin it was "
                    "fetched from; a remote spec does not choose where requests go: pass base_url=..."
                )
            return str(joined).rstrip("/")
        if url.startswith(("http://", "https://")):
            return url.rstrip("/")
        raise ConfigError(
            f"{self.label}: the spec names no absolute server URL ({url or 'none'}); pass base_url=..."
        )

    def _build(self) -> None:
        assert self._doc is not None
        version = spec_version(self._doc, self._where)
        doc = convert_swagger2(self._doc) if version == "2.0" else self._doc

        def load(path: Path) -> Any:
            return read_local(path)

        resolver = make_resolver(doc, self._base, load, local_root=self._local_root)
        inliner = Inliner(resolver, self._where, self._max_depth)
        operations = read_operations(
            doc,
            inliner,
            self._where,
            include=self._include,
            exclude=self._exclude,
            idempotent=self._idempotent,
        )
        try:
            base = self._server_url(doc)
        except ConfigError as exc:
            base = ""  # schemas can still be planned with; calls need base_url
            self._no_base = str(exc)
        schemes = (doc.get("components") or {}).get("securitySchemes") or {}
        auths: dict[str, RequestAuth] = {}
        for scheme_name, config in self._auth_config.items():
            if scheme_name not in schemes:
                raise ConfigError(
                    f"{self.label}: auth names the security scheme {scheme_name!r}, which the spec "
                    f"does not define (schemes: {', '.join(schemes) or 'none'})"
                )
            scheme, _ = inliner.deref(schemes[scheme_name])
            auths[scheme_name] = make_auth(
                scheme_name, scheme, config, base_url=base, limits=self._limits, spec_url=self._url
            )
        tools: list[Tool] = []
        taken: set[str] = set()
        for op in operations:
            name = legal_name(self._prefix + op.name)
            n = 2
            while name in taken:
                name = legal_name(f"{self._prefix}{op.name}_{n}")
                n += 1
            taken.add(name)
            op.name = name
            inliner.check_deadline()
            try:
                schema = normalize_parameters(op.input_schema(), tool=name, strip_titles=True)
            except SchemaError as exc:
                raise OpenAPIError(
                    f"operation {op.method} {op.path}: its arguments are not a usable schema: {exc}",
                    where=self._where,
                ) from None
            auth = _pick_auth(op, doc, auths)
            tools.append(
                Tool(
                    name=name,
                    description=op.description,
                    input_schema=schema,
                    policy=self._tool_policy,
                    fn=self._caller(op, base, auth),
                )
            )
        self.operations = operations
        self._tools = tools

    # -- calling ------------------------------------------------------------------------------

    def _caller(self, op: Operation, base: str, auth: RequestAuth | None) -> Any:
        async def call_operation(**args: Any) -> Any:
            if not base:
                raise ConfigError(
                    self._no_base or f"{self.label}: no base URL for {op.method} {op.path}; pass base_url=..."
                )
            req = build_request(op, base, args, self._headers, tool=op.name)
            return await send_request(
                req,
                client=self._client,
                auth=auth,
                policy=self._policy,
                limits=self._limits,
                idempotent=op.idempotent,
                tool=op.name,
            )

        call_operation.__name__ = op.name
        return call_operation


async def _get_bounded(
    client: httpx.AsyncClient, url: str, policy: NetPolicy, limits: HttpLimits
) -> tuple[int, bytes]:
    """GET ``url``, following up to ``policy.max_redirects`` redirects (each hop through the
    guarded transport), reading at most ``limits.max_response_bytes`` of decompressed body."""
    target = httpx.URL(url)
    for _hop in range(policy.max_redirects + 1):
        request = client.build_request("GET", target, headers={"Accept": "application/json, */*"})
        response = await client.send(request, stream=True)
        try:
            location = response.headers.get("location")
            if response.status_code in (301, 302, 303, 307, 308) and location:
                target = target.join(location)
                continue
            if response.status_code >= 400:
                return response.status_code, b""
            return response.status_code, await read_bounded(response, limits, "", _shown_url(target))
        finally:
            await response.aclose()
    raise httpx.TooManyRedirects(f"more than {policy.max_redirects} redirects (max_redirects)")


def _pick_auth(op: Operation, doc: Mapping[str, Any], auths: Mapping[str, RequestAuth]) -> RequestAuth | None:
    requirements = op.security
    if not requirements:
        return None
    for requirement in requirements:
        if not requirement:
            return None  # {} : no auth is one of the options
        if all(name in auths for name in requirement):
            picked = [auths[name] for name in requirement]
            return picked[0] if len(picked) == 1 else _AllOf(picked)
    return None


class _AllOf(RequestAuth):
    def __init__(self, parts: list[RequestAuth]) -> None:
        self.parts = parts

    async def apply(self, request: HttpRequest, client: httpx.AsyncClient, policy: NetPolicy) -> None:
        for part in self.parts:
            await part.apply(request, client, policy)

    def unauthorized(self) -> bool:
        return any([p.unauthorized() for p in self.parts])

    def secrets(self) -> list[str]:
        return [s for p in self.parts for s in p.secrets()]


def _serialize_path(arg: Argument, value: Any) -> str:
    if isinstance(value, list):
        return ",".join(_query_value(v) for v in value)
    if isinstance(value, dict):
        pairs = [
            f"{k}={_query_value(v)}" if arg.explode else f"{k},{_query_value(v)}" for k, v in value.items()
        ]
        return ",".join(pairs)
    return _query_value(value)


def _query(arg: Argument, value: Any) -> list[tuple[str, str]]:
    if isinstance(value, dict):
        if arg.style == "deepObject":
            return [(f"{arg.wire}[{k}]", _query_value(v)) for k, v in value.items()]
        if arg.explode:
            return [(str(k), _query_value(v)) for k, v in value.items()]
        return [(arg.wire, ",".join(f"{k},{_query_value(v)}" for k, v in value.items()))]
    if isinstance(value, list) and not arg.explode:
        delimiter = {"spaceDelimited": " ", "pipeDelimited": "|"}.get(arg.style, ",")
        return [(arg.wire, delimiter.join(_query_value(v) for v in value))]
    return query_pairs(arg.wire, value)


def build_request(
    op: Operation, base: str, args: Mapping[str, Any], headers: Mapping[str, str], *, tool: str = ""
) -> HttpRequest:
    """The request for one call of ``op`` with (validated) ``args``.

    Raises:
        ToolArgumentError: a header value with a line break or control character, a cookie value
            with ``;``, ``,``, whitespace or a control character, or a path value ``.``/``..``.
    """
    path_values: dict[str, str] = {}
    req = HttpRequest(op.method, "", headers=dict(headers), secrets=fixed_secrets(headers))
    body: dict[str, Any] = {}
    whole: Any = None
    has_whole = False
    for arg in op.arguments:
        if arg.name not in args:
            continue
        value = args[arg.name]
        if arg.location == "path":
            path_values[arg.wire] = _serialize_path(arg, value)
        elif arg.location == "query":
            if value is not None:
                req.params.extend(_query(arg, value))
        elif arg.location == "header":
            if value is not None:
                text = _serialize_path(arg, value)
                check_header_value(arg.wire, text, tool=tool, argument=arg.name)
                req.headers[arg.wire] = text
        elif arg.location == "cookie":
            if value is not None:
                text = _query_value(value)
                check_cookie_value(arg.wire, text, tool=tool, argument=arg.name)
                req.cookies[arg.wire] = text
        elif arg.location == "body":
            body[arg.wire] = value
        else:
            whole, has_whole = value, True
    req.url = base + fill_template(op.path, path_values, tool=tool)
    if op.body_mode is None:
        return req
    payload = whole if has_whole else (body if body or op.body_required else None)
    if payload is None and not has_whole:
        return req
    if op.body_mode == "json":
        req.json, req.has_json = payload, True
    elif op.body_mode == "form" and isinstance(payload, Mapping):
        req.data = {k: v if isinstance(v, list) else _query_value(v) for k, v in payload.items()}
    elif op.body_mode == "multipart" and isinstance(payload, Mapping):
        # every field as a part (a file part for binary ones), so the body is multipart even
        # when no file is sent
        parts: list[tuple[str, Any]] = []
        props = {a.wire: a.schema for a in op.arguments if a.location == "body"}
        for k, v in payload.items():
            schema = props.get(k) or {}
            binary = isinstance(schema, Mapping) and (
                schema.get("format") in ("binary", "base64") or "contentMediaType" in schema
            )
            for item in v if isinstance(v, list) and not binary else [v]:
                content = item.encode() if isinstance(item, str) else _query_value(item).encode()
                parts.append((k, (k, content, "application/octet-stream") if binary else (None, content)))
        req.files = parts
    else:
        text = payload if isinstance(payload, str) else _query_value(payload)
        req.headers.setdefault("Content-Type", op.body_media)
        req.data = None
        req.json, req.has_json = None, False
        req.content = text.encode()
    return req
