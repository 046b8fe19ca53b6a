"""http_get: allowlisted hosts only, private addresses refused unless allowed, bounded bodies."""

from __future__ import annotations

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
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from tomasulo.tools import Tool
from tomasulo.tools.builtins import check_address, http_get_tool

pytestmark = pytest.mark.anyio


async def hello(request: Request) -> Response:
    return PlainTextResponse(f"hello {request.query_params.get('name', 'world')}")


async def data(request: Request) -> Response:
    return JSONResponse({"height_m": 8849, "host": request.headers["host"]})


async def big(request: Request) -> Response:
    return PlainTextResponse("x" * 50_000)


async def hop(request: Request) -> Response:
    return RedirectResponse(request.query_params["to"], status_code=302)


APP = Starlette(
    routes=[
        Route("/hello", hello),
        Route("/data", data),
        Route("/big", big),
        Route("/hop", hop),
    ]
)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    config = uvicorn.Config(APP, lifespan="off", log_level="warning", ws="none")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    # the socket is already listening, so requests queue until the server accepts them
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)
    sock.close()


async def call(tool: Tool, **args: Any) -> Any:
    assert tool.fn is not None
    with anyio.fail_after(10):
        return await tool.fn(**tool.validate(args))


def static_resolver(table: dict[str, list[str]]) -> Any:
    async def resolve(host: str, port: int) -> list[str]:
        return table[host]

    return resolve


async def test_allowed_fetch_from_a_real_server(server: str) -> None:
    tool = http_get_tool(allow_hosts=["127.0.0.1"], allow_private=True)
    out = await call(tool, url=f"{server}/hello", params={"name": "tomasulo"})
    assert out["status"] == 200
    assert out["text"] == "hello tomasulo"
    assert out["truncated"] is False
    data = await call(tool, url=f"{server}/data")
    assert data["json"]["height_m"] == 8849


async def test_name_is_kept_in_the_host_header_while_the_ip_is_pinned(server: str) -> None:
    port = httpx.URL(server).port
    tool = http_get_tool(allow_hosts=["localhost"], allow_private=True)
    out = await call(tool, url=f"http://localhost:{port}/data")
    assert out["json"]["host"] == f"localhost:{port}"


async def test_body_is_cut_at_max_bytes(server: str) -> None:
    tool = http_get_tool(allow_hosts=["127.0.0.1"], allow_private=True, max_bytes=1000)
    out = await call(tool, url=f"{server}/big")
    assert len(out["text"]) == 1000
    assert out["truncated"] is True


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://10.1.2.3/",
        "http://192.168.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[fe80::1]/",
        "http://0.0.0.0/",
        "http://100.64.0.1/",
    ],
)
async def test_private_addresses_are_refused(url: str) -> None:
    tool = http_get_tool(allow_hosts=["*"])
    with pytest.raises(PermissionError, match="private, loopback, link-local or reserved"):
        await call(tool, url=url)


async def test_loopback_server_is_refused_without_allow_private(server: str) -> None:
    tool = http_get_tool(allow_hosts=["*"])
    port = httpx.URL(server).port
    with pytest.raises(PermissionError, match=r"refusing to connect to 127\.0\.0\.1"):
        await call(tool, url=f"http://localhost:{port}/hello")


@pytest.mark.parametrize("addresses", [["10.0.0.7"], ["93.184.216.34", "192.168.1.5"], ["169.254.169.254"]])
async def test_names_resolving_to_private_addresses_are_refused(addresses: list[str]) -> None:
    tool = http_get_tool(allow_hosts=["*.example"], resolver=static_resolver({"intranet.example": addresses}))
    with pytest.raises(PermissionError, match="refusing to connect"):
        await call(tool, url="http://intranet.example/")


async def test_hosts_outside_the_allowlist_are_refused() -> None:
    tool = http_get_tool(allow_hosts=["api.example.com", "*.wiki.example"])
    with pytest.raises(PermissionError, match="not in the allowlist"):
        await call(tool, url="http://evil.example.net/")
    with pytest.raises(PermissionError, match="only http and https"):
        await call(tool, url="file:///etc/passwd")


async def test_redirects_are_checked_again() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.url.host} {request.headers['host']}")
        return httpx.Response(302, headers={"location": "http://169.254.169.254/secrets"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        tool = http_get_tool(
            allow_hosts=["*"],
            client=client,
            resolver=static_resolver({"public.example": ["93.184.216.34"]}),
        )
        with pytest.raises(PermissionError, match=r"169\.254\.169\.254"):
            await call(tool, url="http://public.example/start")
    # the first hop went to the checked address, with the name in the Host header
    assert seen == ["93.184.216.34 public.example"]


def test_check_address() -> None:
    assert str(check_address("8.8.8.8")) == "8.8.8.8"
    assert str(check_address("127.0.0.1", allow_private=True)) == "127.0.0.1"
    with pytest.raises(PermissionError):
        check_address("::1")
