"""Real MCP servers for the tests: the SDK's servers in tests/mcp/servers, as subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator

import pytest
from mcp_helpers import server

from tomasulo.tools import MCPTools


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """Module scope, so that one server can serve the tests of a module (each start costs seconds)."""
    return "asyncio"


@pytest.fixture(scope="module")
async def basic() -> AsyncIterator[MCPTools]:
    """The basic server over stdio, open, shared by a module's tests: only for tests that leave
    it as they found it (no crash, no hanging call)."""
    async with MCPTools.stdio(sys.executable, server("basic"), timeout=10, name="mcp:basic") as source:
        yield source


@pytest.fixture(params=["streamable-http", "sse"])
def basic_http_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The basic server over streamable HTTP, then SSE (uvicorn on loopback, in a subprocess)."""
    sse = request.param == "sse"
    proc = subprocess.Popen(
        [sys.executable, *server("basic"), "--http", *(["--sse"] if sse else [])],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the port, once the socket is bound
        assert line.strip().isdigit(), f"the HTTP server did not start: {line!r}"
        yield f"http://127.0.0.1:{line.strip()}/{'sse' if sse else 'mcp'}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
