"""The service under test for the clients: real uvicorn on loopback (the service tests' set-up)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from service.conftest import LiveService, module_database_url, postgres, run_app, service_tools
from service.test_service_runs import sim_url, start_service

from tomasulo.service._config import loads_service_config
from tomasulo.service._serve import prepare

__all__ = ["module_database_url", "postgres", "sim_url"]  # fixtures, found here by pytest

CONFIG = """
tenants:
  acme:
    tools: [math, echo, sleep, boom]
  other:
    tools: [echo]
  burst:                             # 60 a minute: a 429 says "Retry-After: 1"
    tools: [echo]
    limits: {requests_per_minute: 60}
  slow:                              # 1 a minute: a 429 says "Retry-After: 60"
    tools: [echo]
    limits: {requests_per_minute: 1}
limits:
  tool_call_timeout: 5
"""


@pytest.fixture(scope="module")
def live(module_database_url: str) -> Iterator[LiveService]:
    """The service with a member key per tenant."""
    prepared = prepare(loads_service_config(CONFIG), database_url=module_database_url, tools=service_tools())
    url, stop = run_app(prepared)
    service = LiveService(url, prepared)
    for tenant in ("acme", "other", "burst", "slow"):
        service.keys[tenant] = prepared.db.create_key(tenant, "member", "test")[1]
    try:
        yield service
    finally:
        stop()
        prepared.db.close()


@pytest.fixture(scope="module")
def runs(module_database_url: str, sim_url: str) -> Iterator[LiveService]:
    """The service with runs: the runs tests' set-up (a SimulatedLLM that plans by the question's
    first word: "hold NAME" waits at a gate, "many" plans 20 tasks, anything else one)."""
    live, stop = start_service(module_database_url, sim_url)
    try:
        yield live
    finally:
        stop()
        live.db.close()
