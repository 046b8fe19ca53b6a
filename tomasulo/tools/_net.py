"""The one check on network destinations (SSRF), shared by every tool that makes requests.

A URL is allowed when its scheme is ``http`` or ``https``, its host matches the policy's
allowlist, and every address the host resolves to is public. "Public" is decided here, from
fixed tables (the IANA special-purpose registries), not from :mod:`ipaddress`'s ``is_global``,
whose answers change between Python releases. IPv4 addresses hidden inside IPv6 ones
(IPv4-mapped ``::ffff:a.b.c.d``, IPv4-compatible ``::a.b.c.d``, NAT64 ``64:ff9b::/96``,
6to4 ``2002::/16``, Teredo) are unwrapped and checked as IPv4; odd IPv4 spellings that a system
resolver would accept (``2130706433``, ``0x7f.1``, ``127.1``) are read as the address they mean.
Cloud metadata addresses are refused even with ``allow_private``; only a host named in
``allow_private_hosts`` may reach them.

:func:`guarded_transport` applies the check to every request that goes through it (so to every
redirect hop an ``httpx.AsyncClient`` follows) after resolution, and sends the request to the
checked address itself, keeping the name for the ``Host`` header and TLS (SNI and certificate),
so a name cannot resolve to a public address for the check and a private one for the connection.

>>> policy = NetPolicy(allow_hosts=("api.example.com",))
>>> async with guarded_client(policy, timeout=10.0) as client:  # doctest: +SKIP
...     response = await client.get("https://api.example.com/v1/items")
"""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import httpx

from ..exceptions import ConfigError, DestinationRefused

__all__ = [
    "METADATA_ADDRESSES",
    "IPAddress",
    "NetPolicy",
    "Resolver",
    "check_ip",
    "check_url",
    "guarded_client",
    "guarded_transport",
    "host_matches",
    "parse_ip",
    "system_resolve",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Resolves ``(host, port)`` to IP address strings (the system resolver by default).
Resolver = Callable[[str, int], Awaitable[list[str]]]

_HOW = "list the host in allow_private_hosts (or set allow_private=True) to allow it"

_N4 = ipaddress.IPv4Network
_N6 = ipaddress.IPv6Network

#: Cloud metadata endpoints: refused even with ``allow_private``.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, Oracle, DigitalOcean, ...
        "169.254.169.253",  # AWS DNS
        "169.254.169.123",  # AWS time
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.170.23",  # AWS EKS pod identity
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud (legacy)
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "fd00:ec2::253",  # AWS DNS over IPv6
        "fd00:ec2::23",  # AWS EKS pod identity over IPv6
        "fd20:ce::254",  # GCP metadata over IPv6
    )
)

_REFUSED_V4: tuple[tuple[ipaddress.IPv4Network, str], ...] = (
    (_N4("0.0.0.0/8"), "an unspecified ('this network') address"),
    (_N4("10.0.0.0/8"), "a private address"),
    (_N4("100.64.0.0/10"), "a shared (carrier-grade NAT) address"),
    (_N4("127.0.0.0/8"), "a loopback address"),
    (_N4("169.254.0.0/16"), "a link-local address"),
    (_N4("172.16.0.0/12"), "a private address"),
    (_N4("192.0.0.0/24"), "an IETF protocol assignment"),
    (_N4("192.0.2.0/24"), "a documentation address"),
    (_N4("192.88.99.0/24"), "a 6to4 relay anycast address"),
    (_N4("192.168.0.0/16"), "a private address"),
    (_N4("198.18.0.0/15"), "a benchmarking address"),
    (_N4("198.51.100.0/24"), "a documentation address"),
    (_N4("203.0.113.0/24"), "a documentation address"),
    (_N4("224.0.0.0/4"), "a multicast address"),
    (_N4("240.0.0.0/4"), "a reserved address"),
)

_REFUSED_V6: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (_N6("::/128"), "an unspecified address"),
    (_N6("::1/128"), "a loopback address"),
    (_N6("64:ff9b:1::/48"), "a local-use NAT64 address"),
    (_N6("100::/64"), "a discard-only address"),
    (_N6("2001:db8::/32"), "a documentation address"),
    (_N6("2001::/23"), "an IETF protocol assignment"),
    (_N6("3fff::/20"), "a documentation address"),
    (_N6("5f00::/16"), "a segment-routing (SRv6) address"),
    (_N6("fc00::/7"), "a unique-local (private) address"),
    (_N6("fe80::/10"), "a link-local address"),
    (_N6("fec0::/10"), "a site-local address"),
    (_N6("ff00::/8"), "a multicast address"),
)

_GLOBAL_UNICAST_V6 = _N6("2000::/3")
_MAPPED = _N6("::ffff:0:0/96")
_TRANSLATED = _N6("::ffff:0:0:0/96")
_COMPATIBLE = _N6("::/96")
_NAT64 = _N6("64:ff9b::/96")
_SIX_TO_FOUR = _N6("2002::/16")
_TEREDO = _N6("2001::/32")


def _v4_reason(ip: ipaddress.IPv4Address) -> str | None:
    for network, reason in _REFUSED_V4:
        if ip in network:
            return reason
    return None


def _refusal(ip: IPAddress) -> tuple[str, bool] | None:
    """Why ``ip`` is not a public address, and whether it is a metadata address; None if public."""
    bare = ipaddress.ip_address(int(ip)) if ip.version == 4 else ipaddress.IPv6Address(int(ip))
    if bare in METADATA_ADDRESSES:
        return "a cloud metadata address", True
    if isinstance(bare, ipaddress.IPv4Address):
        reason = _v4_reason(bare)
        return None if reason is None else (reason, False)
    low = ipaddress.IPv4Address(int(bare) & 0xFFFFFFFF)
    embedded: tuple[str, ipaddress.IPv4Address] | None = None
    if bare in _MAPPED:
        embedded = ("IPv4-mapped", low)
    elif bare in _TRANSLATED:
        embedded = ("IPv4-translated", low)
    elif bare in _COMPATIBLE and int(bare) > 1:
        embedded = ("IPv4-compatible", low)
    elif bare in _NAT64:
        embedded = ("NAT64", low)
    elif bare in _SIX_TO_FOUR:
        embedded = ("6to4", ipaddress.IPv4Address((int(bare) >> 80) & 0xFFFFFFFF))
    elif bare in _TEREDO:
        client = ipaddress.IPv4Address(~int(bare) & 0xFFFFFFFF)
        return f"a Teredo tunnel address (it hides the IPv4 client {client})", False
    if embedded is not None:
        kind, v4 = embedded
        inner = _refusal(v4)
        if inner is not None:
            return f"{kind} form of {v4}, {inner[0]}", inner[1]
        if kind in ("IPv4-translated", "IPv4-compatible"):
            return f"a deprecated {kind} form of {v4} (use {v4} itself)", False
        return None
    for network, reason in _REFUSED_V6:
        if bare in network:
            return reason, False
    if bare not in _GLOBAL_UNICAST_V6:
        return "a reserved address (outside the global unicast range 2000::/3)", False
    return None


_IPV4_PART = re.compile(r"0[xX][0-9a-fA-F]*|[0-9]+")


def _loose_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The address an ``inet_aton``-style spelling means (``2130706433``, ``0x7f.1``, ``0177.0.0.1``)."""
    parts = host[:-1].split(".") if host.endswith(".") else host.split(".")
    if not 1 <= len(parts) <= 4 or not all(_IPV4_PART.fullmatch(p) for p in parts):
        return None
    numbers = []
    for part in parts:
        if part[:2].lower() == "0x":
            numbers.append(int(part[2:] or "0", 16))
        elif len(part) > 1 and part.startswith("0"):
            if any(c in "89" for c in part):
                return None
            numbers.append(int(part, 8))
        else:
            numbers.append(int(part))
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        return None
    value = last
    for index, n in enumerate(head):
        value |= n << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def parse_ip(address: str) -> IPAddress | None:
    """``address`` as an IP address (scope ids, brackets and odd IPv4 spellings allowed), or None."""
    text = address.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    text = text.replace("%25", "%", 1)
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    return _loose_ipv4(text)


def check_ip(address: str, *, allow_private: bool = False, allow_metadata: bool = False) -> IPAddress:
    """Parse ``address`` and refuse it unless it is a public address.

    Private, loopback, link-local, unspecified, multicast, reserved, shared (``100.64.0.0/10``),
    documentation and cloud metadata addresses are refused in every form: IPv4 embedded in
    IPv6 (mapped, compatible, translated, NAT64, 6to4, Teredo), with a scope id, or spelled
    oddly (``2130706433``, ``0x7f.1``). ``allow_private`` allows all of them but the metadata
    addresses, which need ``allow_metadata``.

    Returns the address, an IPv4-mapped IPv6 address as the IPv4 address it maps.

    >>> check_ip("93.184.216.34")
    IPv4Address('93.184.216.34')

    Raises:
        DestinationRefused: the address is not public (the message says what it is).
        ValueError: ``address`` is not an IP address.
    """
    return _check_ip(address, allow_private, allow_metadata, None)


def _check_ip(address: str, allow_private: bool, allow_metadata: bool, host: str | None) -> IPAddress:
    ip = parse_ip(address)
    if ip is None:
        raise ValueError(f"{address!r} is not an IP address")
    refusal = _refusal(ip)
    if refusal is not None:
        reason, metadata = refusal
        where = f"{ip} (the address of {host!r})" if host is not None else str(ip)
        if metadata and not allow_metadata:
            raise DestinationRefused(
                f"refusing to connect to {where}: it is {reason}, refused even with allow_private; "
                "list the host in allow_private_hosts to allow it",
                host=host,
                address=str(ip),
                reason=reason,
            )
        if not metadata and not allow_private:
            raise DestinationRefused(
                f"refusing to connect to {where}: it is {reason}, not a public address; {_HOW}",
                host=host,
                address=str(ip),
                reason=reason,
            )
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _ascii_host(host: str) -> str:
    host = host.strip().lower().rstrip(".")
    if host.isascii():
        return host
    import idna  # an httpx dependency

    try:
        return ".".join(
            lab if lab == "*" or lab.isascii() else idna.encode(lab).decode() for lab in host.split(".")
        )
    except idna.IDNAError:
        return host  # not a valid name: it matches only itself


def host_matches(host: str, patterns: Sequence[str]) -> bool:
    """Whether ``host`` matches one of ``patterns``.

    ``"*"`` matches any host, ``"*.example.com"`` any subdomain of example.com (not the bare
    name), anything else that exact name (case, a trailing dot and IDNA ignored) or, for an
    address, that address however it is spelled (``127.0.0.1``, ``2130706433``, ``::ffff:127.0.0.1``).
    """
    name = _ascii_host(host)
    ip = _unmapped(parse_ip(name))
    for pattern in patterns:
        p = _ascii_host(pattern)
        if p == "*" or p == name:
            return True
        if p.startswith("*.") and name.endswith(p[1:]):
            return True
        if ip is not None and _unmapped(parse_ip(p)) == ip:
            return True
    return False


def _unmapped(ip: IPAddress | None) -> IPAddress | None:
    if isinstance(ip, ipaddress.IPv6Address):
        ip = ip.ipv4_mapped or ipaddress.IPv6Address(int(ip))  # no scope id
    return ip


@dataclass(frozen=True, slots=True)
class NetPolicy:
    """Where requests may go.

    Attributes:
        allow_hosts: host patterns that may be reached: ``"*"`` any host, ``"*.example.com"``
            subdomains, otherwise an exact name or address. Private addresses are still refused.
        allow_private: allow private, loopback, link-local and reserved addresses for every
            allowed host (for local services). Cloud metadata addresses stay refused.
        allow_private_hosts: hosts (same patterns) that may resolve to private addresses, and
            to metadata addresses, though others may not; they must also match ``allow_hosts``.
        max_redirects: redirects followed per request; each hop is checked again.

    >>> NetPolicy(allow_hosts=("*.wiki.example",), allow_private_hosts=("search.internal",))  # doctest: +SKIP
    """

    allow_hosts: tuple[str, ...] = ("*",)
    allow_private: bool = False
    allow_private_hosts: tuple[str, ...] = ()
    max_redirects: int = 5

    def __post_init__(self) -> None:
        for field in ("allow_hosts", "allow_private_hosts"):
            value = getattr(self, field)
            if isinstance(value, str) or not isinstance(value, Sequence):
                raise ConfigError(
                    f"NetPolicy.{field} must be a list of host names, not {type(value).__name__} "
                    "(use ['*'] for any host)"
                )
            if not all(isinstance(h, str) and h.strip() for h in value):
                raise ConfigError(f"NetPolicy.{field} holds an empty or non-string host: {value!r}")
            object.__setattr__(self, field, tuple(value))
        if not isinstance(self.allow_private, bool):
            raise ConfigError(f"NetPolicy.allow_private must be true or false, not {self.allow_private!r}")
        if (
            isinstance(self.max_redirects, bool)
            or not isinstance(self.max_redirects, int)
            or self.max_redirects < 0
        ):
            raise ConfigError(f"NetPolicy.max_redirects must be an integer >= 0, not {self.max_redirects!r}")


async def system_resolve(host: str, port: int) -> list[str]:
    """Resolve ``host`` with the system resolver (``anyio.getaddrinfo``), in its preferred order."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    out: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in out:
            out.append(address)
    return out


async def check_url(
    url: str | httpx.URL, policy: NetPolicy, *, resolve: Resolver | None = None
) -> list[IPAddress]:
    """Check ``url`` against ``policy`` and return the addresses it may be sent to, in order.

    The scheme must be http or https and the host must match ``policy.allow_hosts``. A host
    name is resolved (with ``resolve``, the system resolver by default) and EVERY address it
    resolves to must pass :func:`check_ip`, so a name cannot slip a private address in among
    public ones.

    Raises:
        DestinationRefused: the scheme, the host or one of its addresses is refused.
        ValueError: the URL cannot be parsed or has no host.
        OSError: the host did not resolve.
    """
    try:
        target = url if isinstance(url, httpx.URL) else httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"{str(url)!r} is not a valid URL: {exc}") from None
    shown = str(target)
    if target.scheme not in ("http", "https"):
        raise DestinationRefused(
            f"refusing {shown!r}: only http and https URLs are allowed, not {target.scheme!r}",
            host=target.host,
            reason="scheme",
        )
    host = target.raw_host.decode("ascii", errors="replace")
    if not host:
        raise ValueError(f"the URL {shown!r} has no host")
    port = target.port or (443 if target.scheme == "https" else 80)
    if not 0 < port < 65536:
        raise ValueError(f"the URL {shown!r} has an invalid port {port}")
    if not host_matches(host, policy.allow_hosts):
        raise DestinationRefused(
            f"refusing to connect to {host!r}: the host is not in the allowlist "
            f"({', '.join(policy.allow_hosts) or 'empty'}); add it to allow_hosts to allow it",
            host=host,
            reason="not in the allowlist",
        )
    named = host_matches(host, policy.allow_private_hosts)
    literal = parse_ip(host)
    if literal is not None:
        addresses = [str(literal)]
    elif "%" in host or "[" in host:
        raise ValueError(f"the URL {shown!r} has an invalid host {host!r}")
    else:
        addresses = await (resolve or system_resolve)(host, port)
        if not addresses:
            raise OSError(f"{host!r} did not resolve to any address")
    allow = policy.allow_private or named
    shown_host = None if literal is not None else host
    checked = [_check_ip(a, allow, named, shown_host) for a in addresses]
    return checked


class _GuardedTransport(httpx.AsyncBaseTransport):
    """Checks every request with :func:`check_url` and sends it to the checked address."""

    def __init__(
        self,
        policy: NetPolicy,
        resolve: Resolver | None,
        inner: httpx.AsyncBaseTransport | None,
        max_pools: int,
    ) -> None:
        self._policy = policy
        self._resolve = resolve
        self._inner = inner
        self._pools: OrderedDict[tuple[str, str, int], httpx.AsyncHTTPTransport] = OrderedDict()
        self._max_pools = max_pools
        self._ssl: ssl.SSLContext | None = None

    def _transport_for(self, url: httpx.URL) -> httpx.AsyncBaseTransport:
        if self._inner is not None:
            return self._inner
        # One pool per name: a pool keyed by address would reuse a TLS connection made (and
        # verified) for one name for requests to another name at the same address.
        key = (url.scheme, url.raw_host.decode("ascii", errors="replace"), url.port or 0)
        transport = self._pools.get(key)
        if transport is None:
            if self._ssl is None:
                self._ssl = httpx.create_ssl_context()
            transport = httpx.AsyncHTTPTransport(verify=self._ssl)
            self._pools[key] = transport
        self._pools.move_to_end(key)
        return transport

    async def _evict(self) -> None:
        while len(self._pools) > self._max_pools:
            _, oldest = self._pools.popitem(last=False)
            await oldest.aclose()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        addresses = await check_url(request.url, self._policy, resolve=self._resolve)
        ip = addresses[0]
        host = request.url.raw_host.decode("ascii", errors="replace")
        extensions: dict[str, Any] = dict(request.extensions)
        if request.url.scheme == "https" and parse_ip(host) is None:
            extensions["sni_hostname"] = host
        headers = request.headers.copy()
        if "host" not in headers:
            headers["Host"] = request.url.netloc.decode("ascii")
        pinned = httpx.Request(
            request.method,
            request.url.copy_with(host=str(ip)),
            headers=headers,
            stream=request.stream,
            extensions=extensions,
        )
        transport = self._transport_for(request.url)
        await self._evict()
        return await transport.handle_async_request(pinned)

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), OrderedDict()
        for transport in pools:
            await transport.aclose()
        if self._inner is not None:
            await self._inner.aclose()


def guarded_transport(
    policy: NetPolicy,
    *,
    resolve: Resolver | None = None,
    inner: httpx.AsyncBaseTransport | None = None,
    max_pools: int = 32,
) -> httpx.AsyncBaseTransport:
    """A transport that checks every request against ``policy`` and pins it to the checked address.

    Each request (so each redirect hop a client follows) is checked with :func:`check_url`
    after resolution, then sent to the first checked address with the name kept in the
    ``Host`` header and, for https, as the TLS server name (SNI and certificate check). A
    later DNS answer cannot change where the request goes.

    Args:
        policy: where requests may go.
        resolve: resolves a host to addresses; the system resolver by default.
        inner: the transport that sends the pinned requests (tests pass one). By default each
            host name gets its own ``httpx.AsyncHTTPTransport`` (one connection pool per name,
            at most ``max_pools`` kept), so a TLS connection verified for one name is never
            reused for another name at the same address. A single ``inner`` is used for every
            host; give one whose connections are not shared across names when it speaks TLS.
            Closing the guarded transport closes ``inner``.
    """
    if max_pools < 1:
        raise ConfigError(f"max_pools must be at least 1, got {max_pools}")
    return _GuardedTransport(policy, resolve, inner, max_pools)


def guarded_client(
    policy: NetPolicy,
    *,
    timeout: float | httpx.Timeout,
    resolve: Resolver | None = None,
    inner: httpx.AsyncBaseTransport | None = None,
    headers: dict[str, str] | None = None,
    follow_redirects: bool = True,
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` whose every request and redirect hop is checked against ``policy``.

    Redirects are followed up to ``policy.max_redirects`` (then ``httpx.TooManyRedirects``).
    The environment's proxy settings are ignored (``trust_env=False``): a proxy would connect
    on the client's behalf to addresses the check never saw.

    >>> client = guarded_client(NetPolicy(allow_hosts=("api.example.com",)), timeout=10.0)  # doctest: +SKIP
    """
    return httpx.AsyncClient(
        transport=guarded_transport(policy, resolve=resolve, inner=inner),
        timeout=timeout,
        headers=headers,
        follow_redirects=follow_redirects,
        max_redirects=policy.max_redirects,
        trust_env=False,
    )
