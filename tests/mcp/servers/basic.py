"""An MCP server for the tests: tools that succeed, fail, hang, crash, return structured
content and images, and change the tool list.

Run over stdio (``python basic.py``) or serve its ``app()`` over streamable HTTP.
"""

from __future__ import annotations

import base64
import os
import sys

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ImageContent
from pydantic import BaseModel

server = MCPServer("basic", log_level="WARNING")
STATE = {"cancelled": 0, "hanging": 0}
CHANGED: list[anyio.Event] = []  # set when a cancellation arrives


@server.tool()
def echo(text: str) -> str:
    """Return the text."""
    return text


@server.tool()
def fail(reason: str) -> str:
    """Fail with the reason (an isError result)."""
    raise ToolError(f"refused: {reason}")


class Weather(BaseModel):
    city: str
    celsius: float


@server.tool()
def weather(city: str) -> Weather:
    """Structured content."""
    return Weather(city=city, celsius=21.5)


@server.tool()
def picture() -> ImageContent:
    """An image."""
    return ImageContent(type="image", data=base64.b64encode(b"\x89PNG").decode(), mime_type="image/png")


@server.tool()
async def hang() -> str:
    """Never returns; counts the cancellations it gets."""
    STATE["hanging"] += 1
    try:
        await anyio.sleep_forever()
    except anyio.get_cancelled_exc_class():
        STATE["cancelled"] += 1
        for event in CHANGED:
            event.set()
        raise
    return "unreachable"


@server.tool()
async def cancellations(at_least: int = 0) -> int:
    """How many hanging calls were cancelled by their client (waiting up to 5 s for ``at_least``;
    the cancellation and this call can arrive in either order over HTTP)."""
    with anyio.move_on_after(5):
        while STATE["cancelled"] < at_least:
            event = anyio.Event()
            CHANGED.append(event)
            try:
                await event.wait()
            finally:
                CHANGED.remove(event)
    return STATE["cancelled"]


@server.tool()
async def slow(seconds: float) -> float:
    """Sleep, then return the seconds."""
    await anyio.sleep(seconds)
    return seconds


@server.tool()
def crash() -> str:
    """The process dies mid-call."""
    os._exit(3)


@server.tool()
def pid() -> int:
    """This server's process id."""
    return os.getpid()


@server.tool()
def secret_env() -> str:
    """Whether the environment carries MCP_TEST_TOKEN."""
    return "set" if os.environ.get("MCP_TEST_TOKEN") else "unset"


@server.tool()
async def add_tool(name: str, ctx: Context) -> str:
    """Add a tool called ``name`` and tell the client the list changed."""

    def added() -> str:
        return f"I am {name}"

    server.add_tool(added, name=name, description=f"added at run time as {name}")
    await ctx.request_context.session.send_tool_list_changed()
    return name


def serve_http() -> None:
    """Streamable HTTP (SSE with --sse) with uvicorn on a free loopback port, printed on stdout."""
    import socket

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # before the port is printed: a client that connects at once waits in the backlog
    print(sock.getsockname()[1], flush=True)
    app = server.sse_app() if "--sse" in sys.argv else server.streamable_http_app()
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    if "--http" in sys.argv:
        serve_http()
    else:
        server.run("stdio")
