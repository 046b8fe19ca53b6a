"""A real llama.cpp server on loopback: llama-cpp-python's ``python -m llama_cpp.server`` with a
tiny random-weight GGUF built here (see ``tiny_gguf.py``), one per test session."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .tiny_gguf import write_model

HAVE_SERVER = all(
    importlib.util.find_spec(m) is not None
    for m in ("llama_cpp", "gguf", "starlette_context", "pydantic_settings", "sse_starlette")
)
requires_server = pytest.mark.skipif(
    not HAVE_SERVER,
    reason="llama-cpp-python[server] (and gguf) not installed: run scripts/install-llamacpp.sh "
    "(make test does)",
)
#: seconds the server may take to load the model and listen
STARTUP_S = 60.0


@dataclass
class LlamaServer:
    """A running server: its base URL, the model path, and what it wrote to its log."""

    base_url: str
    model: Path
    process: subprocess.Popen[str]
    log: list[str] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_llama_cpp_python(model: Path, *, n_ctx: int = 4096) -> LlamaServer:
    """Start ``python -m llama_cpp.server`` and return once uvicorn says it is listening."""
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--model_alias",
        "tiny",
        "--n_ctx",
        str(n_ctx),
        "--n_threads",
        "1",
        "--n_threads_batch",
        "1",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--verbose",
        "False",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    server = LlamaServer(f"http://127.0.0.1:{port}/v1", model, proc)
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            server.log.append(line.rstrip())
            if "Uvicorn running on" in line:
                ready.set()
        ready.set()  # the process ended: stop waiting

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(STARTUP_S) or proc.poll() is not None:
        proc.kill()
        raise RuntimeError("llama_cpp.server did not start:\n" + "\n".join(server.log[-40:]))
    return server


def stop(server: LlamaServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(10)
    if server.process.stdout is not None:
        server.process.stdout.close()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


@pytest.fixture(scope="session")
def llama_cpp_python(tiny_model: Path) -> Iterator[LlamaServer]:
    if not HAVE_SERVER:
        pytest.skip("llama-cpp-python[server] is not installed")
    server = start_llama_cpp_python(tiny_model)
    yield server
    stop(server)
