"""Workflow tests run steps with the real Orchestrator; servers they need run on loopback."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from tomasulo.workflows import OrchestratorRunner

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def runner() -> OrchestratorRunner:
    return OrchestratorRunner()


@pytest.fixture
def serve_app() -> Iterator[Callable[[Any], str]]:
    """Serve ASGI apps with uvicorn in background threads; returns ``http://127.0.0.1:PORT``.

    The socket listens before the thread starts, so requests queue until the server accepts them
    (no waiting for start-up).
    """
    started: list[tuple[uvicorn.Server, threading.Thread, socket.socket]] = []

    def serve(app: Any) -> str:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        config = uvicorn.Config(app, lifespan="off", log_level="warning", ws="none")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        started.append((server, thread, sock))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"

    yield serve
    for server, thread, sock in started:
        server.should_exit = True
        thread.join(10)
        sock.close()
