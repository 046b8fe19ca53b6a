"""http_get: allowlisted hosts only, private addresses refused unless allowed, every answer bounded."""

from __future__ import annotations

import gzip
import json
import socket
import threading
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from tomasulo.exceptions import ConfigError, DestinationRefused
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


async def loop(request: Request) -> Response:
    n = int(request.query_params.get("n", "0"))
    return RedirectResponse(f"/loop?n={n + 1}", status_code=302)


def _bomb() -> bytes:
    # 64 MiB of zeros in about 64 KiB of gzip
    out = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    return b"".join([*(out.compress(zeros) for _ in range(64)), out.flush()])


BOMB: list[bytes] = []


async def bomb(request: Request) -> Response:
    if not BOMB:
        BOMB.append(_bomb())
    return Response(BOMB[0], headers={"content-encoding": "gzip", "content-type": "text/plain"})


async def gzipped(request: Request) -> Response:
    body = json.dumps({"ok": True, "pad": "y" * 5000}).encode()
    encoding = request.query_params["encoding"]
    if encoding == "gzip":
        data = gzip.compress(body)
    elif encoding == "deflate":
        data = zlib.compress(body)
    else:  # raw deflate, as some servers send it
        squeeze = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        data = squeeze.compress(body) + squeeze.flush()
        encoding = "deflate"
    return Response(data, headers={"content-encoding": encoding, "content-type": "application/json"})


async def brotli(request: Request) -> Response:
    return Response(b"\x0b\x02\x80hi\x03", headers={"content-encoding": "br"})


async def trickle(request: Request) -> Response:
    async def one_byte_at_a_time() -> AsyncIterator[bytes]:
        for _ in range(200):  # at most 40 s, far past any timeout used here
            yield b"x"
            await anyio.sleep(0.2)

    return StreamingResponse(one_byte_at_a_time(), media_type="text/plain")


async def nested(request: Request) -> Response:
    depth = int(request.query_params["depth"])
    return Response("[" * depth + "]" * depth, media_type="application/json")


async def unterminated(request: Request) -> Response:
    # one string that never ends, full of escaped quotes: quadratic for a naive string matcher
    return Response('"a\\' * 8000, media_type="application/json")


async def not_json(request: Request) -> Response:
    return Response("<html>oops</html>", media_type="application/json")


APP = Starlette(
    routes=[
        Route("/hello", hello),
        Route("/data", data),
        Route("/big", big),
        Route("/hop", hop),
        Route("/loop", loop),
        Route("/bomb", bomb),
        Route("/gzipped", gzipped),
        Route("/brotli", brotli),
        Route("/trickle", trickle),
        Route("/nested", nested),
        Route("/not-json", not_json),
        Route("/unterminated", unterminated),
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
    assert out["note"] == "the body was cut at max_bytes=1000 bytes"


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
        # IPv4 inside IPv6, and odd IPv4 spellings: Python's is_global passes some of these
        "http://[64:ff9b::7f00:1]/",
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://[::127.0.0.1]/",
        "http://[2002:a00:1::]/",
        "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
        "http://[fd00:ec2::254]/",
        "http://2130706433/",
        "http://0x7f.1/",
    ],
)
async def test_private_addresses_are_refused(url: str) -> None:
    tool = http_get_tool(allow_hosts=["*"])
    with pytest.raises(DestinationRefused, match=r"refusing to connect to .*: it is"):
        await call(tool, url=url)


async def test_loopback_server_is_refused_without_allow_private(server: str) -> None:
    tool = http_get_tool(allow_hosts=["*"])
    port = httpx.URL(server).port
    with pytest.raises(
        PermissionError, match=r"refusing to connect to 'localhost': it resolves to a loopback address"
    ) as info:
        await call(tool, url=f"http://localhost:{port}/hello")
    assert "127.0.0.1" not in str(info.value)


async def test_allow_private_hosts_opens_one_host(server: str) -> None:
    port = httpx.URL(server).port
    tool = http_get_tool(allow_hosts=["*"], allow_private_hosts=["localhost"])
    out = await call(tool, url=f"http://localhost:{port}/hello")
    assert out["text"] == "hello world"
    with pytest.raises(DestinationRefused, match="not a public address"):
        await call(tool, url=f"{server}/hello")


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

    tool = http_get_tool(
        allow_hosts=["*"],
        transport=httpx.MockTransport(handler),
        resolver=static_resolver({"public.example": ["93.184.216.34"]}),
    )
    with pytest.raises(PermissionError, match=r"169\.254\.169\.254"):
        await call(tool, url="http://public.example/start")
    # the first hop went to the checked address, with the name in the Host header
    assert seen == ["93.184.216.34 public.example"]


@pytest.mark.parametrize(
    "target",
    ["http://169.254.169.254/latest/meta-data/", "http://[::ffff:a9fe:a9fe]/", "http://[fd00:ec2::254]/"],
)
async def test_a_redirect_to_metadata_is_refused_on_the_hop_even_with_allow_private(
    server: str, target: str
) -> None:
    tool = http_get_tool(allow_hosts=["*"], allow_private=True)
    assert (await call(tool, url=f"{server}/hello"))["status"] == 200
    with pytest.raises(DestinationRefused, match="cloud metadata address, refused even with allow_private"):
        await call(tool, url=f"{server}/hop", params={"to": target})


async def test_a_redirect_to_another_scheme_is_refused(server: str) -> None:
    tool = http_get_tool(allow_hosts=["127.0.0.1"], allow_private=True)
    with pytest.raises(DestinationRefused, match="only http and https URLs are allowed, not 'file'"):
        await call(tool, url=f"{server}/hop", params={"to": "file:///etc/passwd"})


async def test_redirects_are_bounded(server: str) -> None:
    tool = http_get_tool(allow_hosts=["127.0.0.1"], allow_private=True, max_redirects=3)
    with pytest.raises(OSError, match="redirected more than max_redirects=3 times"):
        await call(tool, url=f"{server}/loop")
    with pytest.raises(ConfigError, match="max_redirects"):
        http_get_tool(allow_hosts=["*"], max_redirects=-1)


async def test_a_gzip_bomb_is_cut_without_inflating_it(server: str) -> None:
    tool = http_get_tool(allow_hosts=["127.0.0.1"], allow_private=True, max_bytes=10_000)
    await call(tool, url=f"{server}/hello")  # warm up: the first connection's own allocations
    tracemalloc.start()
    try:
        out = await call(tool, url=f"{server}/bomb")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # the bomb inflates to 64 MiB; a few MiB of peak means it was never inflated
    assert peak < 8 * 2**20, f"peak traced memory {peak / 2**20:.1f} MiB"
    assert out["text"] == "\x00" * 10_000
    assert out["truncated"] is True
    assert out["note"].startswith("the body was cut at max_bytes=10000 bytes after gzip decompression")


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate"])
async def test_compressed_bodies_are_decoded(server: str, encoding: str) -> None:
    tool = http_get_tool(allow_hosts=["127.0.0.1"], allow_private=True)
    out = await call(tool, url=f"{server}/gzipped", params={"encoding": encoding})
    assert out["json"]["ok"] is True and len(out["json"]["pad"]) == 5000
    assert out["truncated"] is False and out["note"] is None


class _Chunks(httpx.AsyncByteStream):
    def __init__(self, *chunks: bytes) -> None:
        self.chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


@pytest.mark.parametrize("first", [1, 2, 5])
async def test_a_zlib_deflate_body_is_decoded_however_it_is_split(first: int) -> None:
    data = zlib.compress(b"hello world " * 100)

    def handler(request: httpx.Request) -> httpx.Response:
        headers = {"content-type": "text/plain", "content-encoding": "deflate"}
        return httpx.Response(200, headers=headers, stream=_Chunks(data[:first], data[first:]))

    tool = http_get_tool(
        allow_hosts=["*"],
        transport=httpx.MockTransport(handler),
        resolver=static_resolver({"public.example": ["93.184.216.34"]}),
    )
    out = await call(tool, url="http://public.example/")
    assert out["text"] == "hello world " * 100 and out["note"] is None


async def test_an_encoding_it_did_not_ask_for_is_refused(server: str) -> None:
    tool = http_get_tool(allow_hosts=["127.0.0.1"], allow_private=True)
    with pytest.raises(ValueError, match="content-encoding 'br', which http_get does not decode"):
        await call(tool, url=f"{server}/brotli")


async def test_a_trickling_server_cannot_outlast_the_total_timeout(server: str) -> None:
    tool = http_get_tool(allow_hosts=["127.0.0.1"], allow_private=True, timeout=1.0)
    with anyio.fail_after(10), pytest.raises(TimeoutError, match=r"within the total timeout of 1\.0 s"):
        assert tool.fn is not None
        await tool.fn(url=f"{server}/trickle")


async def test_deeply_nested_json_is_refused_cleanly(server: str) -> None:
    tool = http_get_tool(allow_hosts=["127.0.0.1"], allow_private=True)
    out = await call(tool, url=f"{server}/nested", params={"depth": 100_000})
    assert out["json"] is None
    assert out["note"].startswith("the JSON body nests 100000 levels deep, more than max_json_depth=100")
    assert len(out["text"]) == 200_000
    fine = await call(tool, url=f"{server}/nested", params={"depth": 50})
    assert fine["note"] is None and fine["json"] is not None
    bad = await call(tool, url=f"{server}/not-json")
    assert bad["json"] is None and bad["note"].startswith("the body is not valid JSON")
    # 24 KB that took seconds to measure, blocking the event loop (so no deadline could fire),
    # when strings were matched naively; now milliseconds, off the loop
    start = anyio.current_time()
    endless = await call(tool, url=f"{server}/unterminated")
    assert anyio.current_time() - start < 3
    assert endless["json"] is None and endless["note"].startswith("the body is not valid JSON")
    assert len(endless["text"]) == 24_000


async def test_bad_arguments_are_value_errors() -> None:
    tool = http_get_tool(allow_hosts=["*"])
    with pytest.raises(ValueError, match="query parameter 'q' must be a string"):
        await call(tool, url="http://example.com/", params={"q": {"nested": 1}})
    with pytest.raises(ValueError, match="not a valid URL"):
        await call(tool, url="http://exa mple.com:99x/")


def test_bad_options_are_config_errors() -> None:
    for kwargs in (
        {"allow_hosts": "*"},
        {"allow_hosts": ["*"], "max_bytes": 0},
        {"allow_hosts": ["*"], "timeout": 0},
    ):
        with pytest.raises(ConfigError):
            http_get_tool(**kwargs)  # type: ignore[arg-type]


def test_check_address() -> None:
    assert str(check_address("8.8.8.8")) == "8.8.8.8"
    assert str(check_address("127.0.0.1", allow_private=True)) == "127.0.0.1"
    with pytest.raises(PermissionError):
        check_address("::1")
