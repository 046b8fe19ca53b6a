"""The service under test: real uvicorn on loopback, over SQLite and a real PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn

from tomasulo.service._config import loads_service_config
from tomasulo.service._serve import PreparedService, bind, prepare
from tomasulo.service._store import Database
from tomasulo.tools import Toolset
from tomasulo.tools.builtins import builtin_toolset

from .pg import PostgresServer
from .svctools import boom, secret_vault

CONFIG = """
tenants:
  acme:
    name: Acme
    tools: [math, echo, sleep, boom]
  globex:
    name: Globex
    tools: ["secret_*"]
  tiny:
    tools: [echo]
    limits: {requests_per_minute: 3}
limits:
  max_body_bytes: 4096
  tool_call_timeout: 5
"""


def service_tools() -> Toolset:
    return Toolset([*builtin_toolset(), secret_vault, boom])


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer.start()
    try:
        yield server
    finally:
        server.stop()


def fresh_database(request: pytest.FixtureRequest, kind: str, folder: Path) -> str:
    """The URL of a new, empty database of ``kind`` (sqlite or postgresql)."""
    if kind == "sqlite":
        return f"sqlite:///{folder / f'service-{uuid.uuid4().hex[:8]}.db'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database(f"t_{uuid.uuid4().hex[:12]}")


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new database for one test."""
    return fresh_database(request, request.param, tmp_path)


@pytest.fixture(scope="module", params=BACKENDS)
def module_database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A new database for one test module (tests that share a service)."""
    return fresh_database(request, request.param, tmp_path_factory.mktemp("db"))


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list | None = None) -> None:  # type: ignore[type-arg]
        await super().startup(sockets)
        self.ready.set()

    def install_signal_handlers(self) -> None:  # the test process owns signals
        pass


@dataclass
class LiveService:
    """A service listening on loopback, with a key per tenant."""

    url: str
    prepared: PreparedService
    keys: dict[str, str] = field(default_factory=dict)
    clients: list[httpx.Client] = field(default_factory=list)

    @property
    def db(self) -> Database:
        return self.prepared.db

    def client(self, tenant: str | None = None, *, key: str | None = None) -> httpx.Client:
        """A client with the tenant's member key (``admin``: the first admin key; None: no key)."""
        headers = {}
        token = key if key is not None else self.keys.get(tenant) if tenant else None
        if token:
            headers["Authorization"] = f"Bearer {token}"
        client = httpx.Client(base_url=self.url, headers=headers, timeout=30)
        self.clients.append(client)
        return client


def run_app(prepared: PreparedService) -> tuple[str, Callable[[], None]]:
    """Serve the app with uvicorn in a thread; returns its URL and a function that stops it."""
    sock = bind("127.0.0.1", 0)
    server = _Server(
        uvicorn.Config(prepared.app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    if not server.ready.wait(30):
        raise AssertionError("the service did not start within 30 s")

    def stop() -> None:
        server.should_exit = True
        thread.join(15)
        sock.close()

    return f"http://127.0.0.1:{sock.getsockname()[1]}", stop


@pytest.fixture(scope="module")
def service(module_database_url: str) -> Iterator[LiveService]:
    """The service, shared by a module's tests (they use tenants of their own where they change them)."""
    config = loads_service_config(CONFIG)
    prepared = prepare(config, database_url=module_database_url, tools=service_tools())
    url, stop = run_app(prepared)
    live = LiveService(url, prepared)
    assert prepared.admin_key is not None
    live.keys["admin"] = prepared.admin_key
    for tenant in ("acme", "globex", "tiny"):
        live.keys[tenant] = prepared.db.create_key(tenant, "member", "test")[1]
    try:
        yield live
    finally:
        for client in live.clients:
            client.close()
        stop()
        prepared.db.close()
