"""The one SSRF check: addresses in every spelling, URLs, and a transport that checks every hop."""

from __future__ import annotations

import pickle
import socket
import threading
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tomasulo.exceptions import ConfigError, DestinationRefused, TomasuloError
from tomasulo.tools._net import NetPolicy, check_ip, check_url, guarded_client, guarded_transport

pytestmark = pytest.mark.anyio

HITS: list[str] = []


async def where(request: Request) -> Response:
    HITS.append(request.url.path)
    return JSONResponse({"host": request.headers["host"]})


async def hop(request: Request) -> Response:
    HITS.append(request.url.path)
    return RedirectResponse(request.query_params["to"], status_code=302)


async def loop(request: Request) -> Response:
    HITS.append(request.url.path)
    return RedirectResponse("/loop", status_code=302)


APP = Starlette(routes=[Route("/where", where), Route("/hop", hop), Route("/loop", loop)])


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(APP, lifespan="off", log_level="warning", ws="none"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture
def hits() -> Iterator[list[str]]:
    HITS.clear()
    yield HITS
    HITS.clear()


def static(table: dict[str, list[str]]) -> Any:
    async def resolve(host: str, port: int) -> list[str]:
        return table[host]

    return resolve


async def never(host: str, port: int) -> list[str]:
    raise AssertionError(f"an IP literal must not be resolved, got {host!r}")


# -- addresses ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "shared"),
        ("169.254.1.1", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("198.18.0.1", "benchmarking"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("fc00::1", "unique-local"),
        ("fd12:3456::1", "unique-local"),
        ("fec0::1", "site-local"),
        ("ff02::1", "multicast"),
        ("2001:db8::1", "documentation"),
        # IPv4 embedded in IPv6: every form names the IPv4 address it hides
        ("::ffff:127.0.0.1", "IPv4-mapped form of 127.0.0.1, a loopback"),
        ("::ffff:7f00:1", "IPv4-mapped form of 127.0.0.1"),
        ("::127.0.0.1", "IPv4-compatible form of 127.0.0.1, a loopback"),
        ("::ffff:0:10.0.0.1", "IPv4-translated form of 10.0.0.1, a private"),
        ("64:ff9b::127.0.0.1", "NAT64 form of 127.0.0.1, a loopback"),
        ("64:ff9b::a00:1", "NAT64 form of 10.0.0.1"),
        ("64:ff9b:1::808:808", "local-use NAT64"),
        ("2002:7f00:1::1", "6to4 form of 127.0.0.1, a loopback"),
        ("2002:c0a8:101::", "6to4 form of 192.168.1.1, a private"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
        ("::8.8.8.8", "deprecated IPv4-compatible form of 8.8.8.8"),
        # odd IPv4 spellings a system resolver reads as loopback
        ("2130706433", "loopback"),
        ("0x7f000001", "loopback"),
        ("0177.0.0.1", "loopback"),
        ("0x7f.1", "loopback"),
        ("127.1", "loopback"),
        ("0", "unspecified"),
    ],
)
def test_non_public_addresses_are_refused_in_every_form(address: str, why: str) -> None:
    with pytest.raises(DestinationRefused, match="not a public address") as info:
        check_ip(address)
    assert why in str(info.value)
    assert "allow_private_hosts" in str(info.value)  # says how to allow it
    # and with allow_private they pass
    check_ip(address, allow_private=True)


@pytest.mark.parametrize(
    "address",
    ["169.254.169.254", "::ffff:169.254.169.254", "fd00:ec2::254", "100.100.100.200", "64:ff9b::a9fe:a9fe"],
)
def test_metadata_addresses_are_refused_even_with_allow_private(address: str) -> None:
    with pytest.raises(DestinationRefused, match="cloud metadata address, refused even with allow_private"):
        check_ip(address, allow_private=True)
    check_ip(address, allow_private=True, allow_metadata=True)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("8.8.8.8", "8.8.8.8"),
        ("93.184.216.34", "93.184.216.34"),
        ("::ffff:8.8.8.8", "8.8.8.8"),  # mapped: returned as the IPv4 address it maps
        ("2606:4700:4700::1111", "2606:4700:4700::1111"),
        ("64:ff9b::808:808", "64:ff9b::808:808"),  # NAT64 to a public address
        ("2002:808:808::1", "2002:808:808::1"),  # 6to4 of a public address
    ],
)
def test_public_addresses_pass(address: str, expected: str) -> None:
    assert str(check_ip(address)) == expected


def test_refusal_is_typed_and_survives_pickling() -> None:
    with pytest.raises(DestinationRefused) as info:
        check_ip("10.0.0.1")
    err = info.value
    assert isinstance(err, PermissionError) and isinstance(err, TomasuloError)
    assert (err.address, err.reason) == ("10.0.0.1", "a private address")
    again = pickle.loads(pickle.dumps(err))
    assert (str(again), again.address, again.reason) == (str(err), err.address, err.reason)


def test_not_an_address() -> None:
    with pytest.raises(ValueError, match="not an IP address"):
        check_ip("example.com")


# -- policies and URLs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"allow_hosts": "example.com"}, "must be a list of host names"),
        ({"allow_hosts": ("",)}, "empty or non-string"),
        ({"allow_private_hosts": "x"}, "must be a list"),
        ({"max_redirects": -1}, "max_redirects must be an integer >= 0"),
        ({"allow_private": "yes"}, "true or false"),
    ],
)
def test_policy_is_validated(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        NetPolicy(**kwargs)


def test_policy_takes_lists() -> None:
    policy = NetPolicy(allow_hosts=["a.example"])  # type: ignore[arg-type]
    assert policy.allow_hosts == ("a.example",)


@pytest.mark.parametrize(
    "url",
    [
        "http://2130706433/",
        "http://0x7f000001/",
        "http://0x7f.1/",
        "http://127.1/",
        "http://127.0.0.1./",
        "http://0/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:7f00:1]:8080/",
        "http://[64:ff9b::7f00:1]/",
        "http://[2002:7f00:1::]/",
        "http://[fe80::1%25eth0]/",
        "https://169.254.169.254/latest/meta-data/",
    ],
)
async def test_odd_literals_in_urls_are_read_as_the_address_they_mean(url: str) -> None:
    with anyio.fail_after(5), pytest.raises(DestinationRefused, match="refusing to connect to"):
        await check_url(url, NetPolicy(), resolve=never)


async def test_scheme_and_allowlist() -> None:
    policy = NetPolicy(allow_hosts=("api.example.com", "*.wiki.example"))
    resolve = static({"api.example.com": ["93.184.216.34"], "en.wiki.example": ["93.184.216.35"]})
    with anyio.fail_after(5):
        assert [str(a) for a in await check_url("https://API.example.com/x", policy, resolve=resolve)] == [
            "93.184.216.34"
        ]
        assert await check_url("http://en.wiki.example/", policy, resolve=resolve)
        with pytest.raises(DestinationRefused, match=r"not in the allowlist .*add it to allow_hosts"):
            await check_url("http://wiki.example/", policy, resolve=resolve)
        with pytest.raises(DestinationRefused, match="only http and https URLs are allowed, not 'file'"):
            await check_url("file:///etc/passwd", policy, resolve=resolve)
        with pytest.raises(DestinationRefused, match="not 'gopher'"):
            await check_url("gopher://api.example.com/", policy, resolve=resolve)
        with pytest.raises(ValueError, match="invalid port"):
            await check_url("http://api.example.com:99999/", policy, resolve=resolve)


async def test_every_resolved_address_is_checked() -> None:
    resolve = static({"mixed.example": ["93.184.216.34", "2606:4700::1", "192.168.1.5"]})
    with anyio.fail_after(5), pytest.raises(DestinationRefused) as info:
        await check_url("http://mixed.example/", NetPolicy(), resolve=resolve)
    assert "192.168.1.5 (the address of 'mixed.example')" in str(info.value)
    assert info.value.host == "mixed.example"


async def test_allow_private_hosts_names_hosts_not_addresses() -> None:
    resolve = static(
        {"search.internal": ["10.0.0.7"], "other.internal": ["10.0.0.7"], "imds": ["169.254.169.254"]}
    )
    policy = NetPolicy(allow_private_hosts=("search.internal", "imds"))
    with anyio.fail_after(5):
        assert [str(a) for a in await check_url("http://search.internal/", policy, resolve=resolve)] == [
            "10.0.0.7"
        ]
        assert await check_url("http://imds/", policy, resolve=resolve)
        with pytest.raises(DestinationRefused, match=r"the address of 'other\.internal'"):
            await check_url("http://other.internal/", policy, resolve=resolve)
        # a private-allowed host must still pass the allowlist
        narrow = NetPolicy(allow_hosts=("api.example.com",), allow_private_hosts=("search.internal",))
        with pytest.raises(DestinationRefused, match="not in the allowlist"):
            await check_url("http://search.internal/", narrow, resolve=resolve)
        # an allowed address is allowed however it is spelled, and only that address
        literal = NetPolicy(allow_private_hosts=("127.0.0.1",))
        for url in ("http://127.0.0.1/", "http://[::ffff:127.0.0.1]/", "http://2130706433/"):
            assert [str(a) for a in await check_url(url, literal, resolve=never)] == ["127.0.0.1"]
        with pytest.raises(DestinationRefused, match=r"IPv4-mapped form of 127\.0\.0\.2"):
            await check_url("http://[::ffff:127.0.0.2]/", literal, resolve=never)


# -- the guarded transport ----------------------------------------------------------------------


async def test_a_name_is_pinned_to_its_checked_address(server: str, hits: list[str]) -> None:
    port = httpx.URL(server).port
    # svc.test resolves only through the injected resolver: the system resolver is never asked
    policy = NetPolicy(allow_private_hosts=("svc.test",))
    async with guarded_client(policy, timeout=5, resolve=static({"svc.test": ["127.0.0.1"]})) as client:
        with anyio.fail_after(10):
            response = await client.get(f"http://svc.test:{port}/where")
    assert response.json() == {"host": f"svc.test:{port}"}
    assert str(response.url) == f"http://svc.test:{port}/where"


async def test_loopback_server_refused_unless_allowed(server: str, hits: list[str]) -> None:
    async with guarded_client(NetPolicy(), timeout=5) as client:
        with anyio.fail_after(10), pytest.raises(DestinationRefused, match=r"127\.0\.0\.1: it is a loopback"):
            await client.get(f"{server}/where")
    assert hits == []


@pytest.mark.parametrize(
    "target",
    [
        "http://localhost:{port}/where",  # same server, under a name that is not allowed private
        "http://[::ffff:10.0.0.1]/",
        "http://167772161/",  # 10.0.0.1
        "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",  # 169.254.169.254
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
    ],
)
async def test_a_redirect_to_a_refused_destination_is_refused_on_the_hop(
    server: str, hits: list[str], target: str
) -> None:
    port = httpx.URL(server).port
    policy = NetPolicy(allow_private_hosts=("127.0.0.1",))
    async with guarded_client(policy, timeout=5) as client:
        with anyio.fail_after(10):
            ok = await client.get(f"{server}/where")
            assert ok.status_code == 200
            with pytest.raises(DestinationRefused, match="refusing to connect to"):
                await client.get(f"{server}/hop", params={"to": target.format(port=port)})
    assert hits == ["/where", "/hop"]  # the refused hop never reached the server


async def test_redirects_are_bounded(server: str, hits: list[str]) -> None:
    policy = NetPolicy(allow_private_hosts=("127.0.0.1",), max_redirects=2)
    async with guarded_client(policy, timeout=5) as client:
        with anyio.fail_after(10), pytest.raises(httpx.TooManyRedirects):
            await client.get(f"{server}/loop")
    assert hits == ["/loop"] * 3


async def test_dns_rebinding_cannot_move_a_checked_request() -> None:
    answers = [["93.184.216.34"], ["127.0.0.1"]]
    asked: list[str] = []
    seen: list[tuple[str, str, Any]] = []

    async def rebinding(host: str, port: int) -> list[str]:
        asked.append(host)
        return answers[min(len(asked), len(answers)) - 1]

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((str(request.url.host), request.headers["host"], request.extensions.get("sni_hostname")))
        return httpx.Response(200, text="ok")

    transport = guarded_transport(NetPolicy(), resolve=rebinding, inner=httpx.MockTransport(handler))
    async with httpx.AsyncClient(transport=transport) as client:
        with anyio.fail_after(5):
            await client.get("https://rebind.example/a")
            # the second lookup answers loopback: that request is refused, not sent
            with pytest.raises(DestinationRefused, match=r"the address of 'rebind\.example'"):
                await client.get("https://rebind.example/b")
    # one lookup per request, and the request went to the address that was checked, with the
    # name kept for the Host header and TLS
    assert asked == ["rebind.example", "rebind.example"]
    assert seen == [("93.184.216.34", "rebind.example", "rebind.example")]


def test_max_pools_is_validated() -> None:
    with pytest.raises(ConfigError, match="max_pools"):
        guarded_transport(NetPolicy(), max_pools=0)
