"""Starting the service: the data folder, the database, the tools, the first admin key, uvicorn.

>>> config = load_service_config("service.yaml")                 # doctest: +SKIP
>>> service = prepare(config)                                     # doctest: +SKIP
>>> anyio.run(serve, service)                                     # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from fastapi import FastAPI

from ..tools import ToolLoadError, Toolset, ToolSource
from ..workflows import tool_source  # the one import of the tool-source loader
from ._app import create_app, open_tool_sources
from ._config import ServiceConfig
from ._store import Database, database_for

__all__ = ["PreparedService", "prepare", "serve", "tool_sources"]


def tool_sources(config: ServiceConfig) -> list[ToolSource]:
    """The configuration's ``tools`` as sources (the built-in tools when it names none).

    Raises:
        WorkflowError: an entry that cannot be made, at its line and column.
    """
    if config.tools is None:
        from ..tools import StaticTools
        from ..tools.builtins import builtin_toolset

        return [StaticTools(builtin_toolset(), label="builtins")]
    sources: list[ToolSource] = []
    for i, spec in enumerate(config.tools):
        try:
            sources.append(tool_source(spec, config.folder))
        except ToolLoadError as exc:
            key = exc.key or "builtin"
            raise config.error_at(str(exc), ("tools", i, key), key=key not in ("builtin", "import")) from None
    return sources


@dataclass
class PreparedService:
    """A service ready to serve: the app, its database, and the admin key made on first start."""

    app: FastAPI
    db: Database
    config: ServiceConfig
    admin_key: str | None


def prepare(
    config: ServiceConfig,
    *,
    database_url: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    tools: Toolset | None = None,
) -> PreparedService:
    """Migrate the database, sync the configured tenants, make the first admin key, build the app.

    ``tools`` replaces the configuration's tools (tests, embedding).
    """
    db = database_for(config, database_url=database_url, data_dir=data_dir)
    db.upgrade()
    admin_key = db.bootstrap(config.tenants)
    if tools is not None:
        app = create_app(config, db, tools=tools)
    else:
        app = create_app(config, db, sources=tool_sources(config))
    return PreparedService(app=app, db=db, config=config, admin_key=admin_key)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (``0``: a free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)  # connections wait in the backlog until uvicorn accepts them
    return sock


def banner(service: PreparedService, url: str, out: TextIO) -> None:
    """What ``tomasulo serve`` prints when it listens."""
    out.write(f"tomasulo service on {url}\n")
    out.write(f"  API docs:  {url}/docs\n")
    out.write(f"  database:  {service.db.url}\n")
    if service.admin_key is not None:
        out.write(f"  admin key: {service.admin_key}\n")
        out.write("  (shown this once and stored hashed: keep it; `tomasulo keys create` makes more)\n")
    else:
        out.write(
            "  admin key: created on an earlier start; `tomasulo keys create --role admin` makes another\n"
        )
    out.flush()


async def serve(
    service: PreparedService,
    *,
    host: str | None = None,
    port: int | None = None,
    out: TextIO = sys.stderr,
    on_listening: Callable[[str], None] | None = None,
) -> bool:
    """Serve until cancelled or signalled (Ctrl-C stops accepting, then ends open requests).

    The banner (URL, docs URL, admin key) is printed once the app has started (its tool sources
    are open) and the socket accepts. Returns ``False`` if the app failed to start (uvicorn has
    logged why), ``True`` after a normal stop.
    """
    import uvicorn

    host = host or service.config.host
    port = service.config.port if port is None else port
    sock = bind(host, port)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{sock.getsockname()[1]}"

    class _Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                banner(service, url, out)
                if on_listening is not None:
                    on_listening(url)

        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            service.app.state.runs.request_shutdown()  # new runs get a 503; runs in flight end

    config = uvicorn.Config(
        service.app,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=math.ceil(service.config.limits.shutdown_grace) + 10,  # runs end first
        proxy_headers=False,
    )
    server = _Server(config)
    try:
        async with contextlib.AsyncExitStack() as stack:
            # opened here, not in the app's lifespan, so that a source that fails is one clear error
            await open_tool_sources(service.app.state.service, stack)
            await server.serve(sockets=[sock])
    finally:
        service.db.close()
        sock.close()
    return bool(server.started)
