"""The ``http_get`` tool: GET a URL on an allowlisted host, refusing private addresses.

The host name must match the allowlist. It is then resolved, and every address it resolves to
must be public (not private, loopback, link-local, multicast, reserved or unspecified) unless
``allow_private`` is set; the request goes to the checked address itself (the name is kept for the
``Host`` header and TLS), so a name cannot resolve to a public address for the check and a private
one for the connection. Redirects are followed by hand, each hop checked again. Bodies are cut at
``max_bytes`` and the whole call is bounded by ``timeout``.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import httpx

from ...exceptions import ConfigError
from .._tool import Tool, ToolPolicy

__all__ = ["Resolver", "check_address", "http_get_tool"]

#: Resolves ``(host, port)`` to IP address strings.
Resolver = Callable[[str, int], Awaitable[list[str]]]


async def _system_resolve(host: str, port: int) -> list[str]:
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def check_address(
    address: str, *, allow_private: bool = False
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """Parse ``address`` and refuse it when it is not a public address (unless allowed).

    Raises:
        PermissionError: the address is private, loopback, link-local, multicast or reserved.
    """
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if not allow_private and (not ip.is_global or ip.is_multicast):
        raise PermissionError(
            f"refusing to connect to {ip}: it is a private, loopback, link-local or reserved "
            "address (pass allow_private=True to allow it)"
        )
    return ip


def _host_allowed(host: str, patterns: Sequence[str]) -> bool:
    host = host.lower().rstrip(".")
    for pattern in patterns:
        p = pattern.lower().rstrip(".")
        if p == "*" or p == host:
            return True
        if p.startswith("*.") and host.endswith(p[1:]):
            return True
    return False


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


async def _pinned_request(
    client: httpx.AsyncClient,
    url: httpx.URL,
    *,
    allow_hosts: Sequence[str],
    allow_private: bool,
    resolve: Resolver,
) -> httpx.Request:
    if url.scheme not in ("http", "https"):
        raise PermissionError(f"only http and https URLs are allowed, not {url.scheme!r}")
    host = url.host
    if not host:
        raise ValueError(f"the URL {str(url)!r} has no host")
    if not _host_allowed(host, allow_hosts):
        raise PermissionError(
            f"the host {host!r} is not in the allowlist ({', '.join(allow_hosts) or 'empty'})"
        )
    port = url.port or (443 if url.scheme == "https" else 80)
    addresses = [host] if _is_ip(host) else await resolve(host, port)
    if not addresses:
        raise OSError(f"{host!r} did not resolve to any address")
    checked = [check_address(a, allow_private=allow_private) for a in addresses]
    ip = checked[0]
    pinned = url.copy_with(host=str(ip))
    extensions: dict[str, Any] = {}
    if url.scheme == "https" and not _is_ip(host):
        extensions["sni_hostname"] = host
    host_header = host if url.port is None else f"{host}:{url.port}"
    if ":" in host and not host.startswith("["):
        host_header = f"[{host}]" if url.port is None else f"[{host}]:{url.port}"
    return client.build_request("GET", pinned, headers={"Host": host_header}, extensions=extensions)


def http_get_tool(
    *,
    allow_hosts: Sequence[str],
    allow_private: bool = False,
    max_bytes: int = 1_000_000,
    timeout: float = 10.0,
    max_redirects: int = 5,
    client: httpx.AsyncClient | None = None,
    resolver: Resolver | None = None,
    name: str = "http_get",
) -> Tool:
    """The ``http_get`` tool: ``http_get(url, params?)``.

    Args:
        allow_hosts: host names that may be fetched; ``"*.example.com"`` allows subdomains,
            ``"*"`` any host (private addresses are still refused).
        allow_private: allow private, loopback and link-local addresses (for local services).
        max_bytes: bodies are cut at this size (``truncated`` is then true).
        timeout: seconds for the whole call, redirects included.
        client: an ``httpx.AsyncClient`` to send with (tests inject transports this way).
        resolver: resolves a host to addresses; the system resolver by default.

    Returns ``{"url", "status", "content_type", "text", "json", "truncated"}``; ``json`` is the
    parsed body when the server says it is JSON and the body was not cut.
    """
    if not isinstance(allow_hosts, list | tuple):
        raise ConfigError("allow_hosts must be a list of host names (use ['*'] for any host)")
    if max_bytes < 1 or not timeout > 0 or max_redirects < 0:
        raise ConfigError("max_bytes and timeout must be positive and max_redirects not negative")
    hosts = tuple(allow_hosts)
    resolve = resolver or _system_resolve

    async def fetch(http: httpx.AsyncClient, url: str, params: dict[str, Any] | None) -> dict[str, Any]:
        target = httpx.URL(url, params=params or None)
        for _ in range(max_redirects + 1):
            request = await _pinned_request(
                http, target, allow_hosts=hosts, allow_private=allow_private, resolve=resolve
            )
            response = await http.send(request, stream=True, follow_redirects=False)
            try:
                if response.is_redirect and "location" in response.headers:
                    target = target.join(response.headers["location"])
                    continue
                body = bytearray()
                truncated = False
                async for chunk in response.aiter_bytes():
                    body.extend(chunk)
                    if len(body) > max_bytes:
                        del body[max_bytes:]
                        truncated = True
                        break
            finally:
                await response.aclose()
            text = bytes(body).decode(response.encoding or "utf-8", errors="replace")
            content_type = response.headers.get("content-type", "")
            parsed: Any = None
            if "json" in content_type and not truncated:
                try:
                    parsed = json.loads(text)
                except ValueError:
                    parsed = None
            return {
                "url": str(target),
                "status": response.status_code,
                "content_type": content_type,
                "text": text,
                "json": parsed,
                "truncated": truncated,
            }
        raise OSError(f"more than {max_redirects} redirects from {url!r}")

    async def http_get(url: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        with anyio.fail_after(timeout):
            if client is not None:
                return await fetch(client, url, params)
            async with httpx.AsyncClient(timeout=timeout, trust_env=False) as http:
                return await fetch(http, url, params)

    return Tool(
        name=name,
        description=(
            "Fetch a URL with HTTP GET from an allowed host ("
            + ", ".join(hosts)
            + "). Returns status, content type, the body as text, and the parsed JSON if any."
        ),
        input_schema={
            "type": "object",
            "properties": {
                "url": {"type": "string", "description": "an http or https URL"},
                "params": {"type": "object", "description": "query parameters"},
            },
            "required": ["url"],
            "additionalProperties": False,
        },
        output_schema={
            "type": "object",
            "properties": {
                "url": {"type": "string"},
                "status": {"type": "integer"},
                "content_type": {"type": "string"},
                "text": {"type": "string"},
                "json": {},
                "truncated": {"type": "boolean"},
            },
        },
        policy=ToolPolicy(timeout=timeout + 1.0, retries=1, idempotent=True),
        fn=http_get,
    )
