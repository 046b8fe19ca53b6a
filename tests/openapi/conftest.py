"""A FastAPI app served by uvicorn on loopback, and the policy that lets tools reach it."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn

from tomasulo.tools._net import NetPolicy

from .app import State, make_app

LOOPBACK = NetPolicy(allow_private_hosts=("127.0.0.1",))


@dataclass
class Served:
    url: str
    state: State
    spec: dict  # type: ignore[type-arg]


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a loopback port while the block runs; yields its URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)  # requests queue until uvicorn accepts them: no waiting for start-up
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="off", log_level="warning", ws="none")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def api() -> Iterator[Served]:
    app, state = make_app()
    with serving(app) as url:
        yield Served(url, state, app.openapi())
