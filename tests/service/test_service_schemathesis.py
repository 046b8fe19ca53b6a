"""Schemathesis, driven by the service's own OpenAPI schema, against the real server on loopback.

Every operation gets a bounded number of generated requests (valid ones and, through the
schema's edge cases, odd ones); each response must not be a 5xx, must have a status the
schema documents, and must fit the documented body schema and content type. The whole run
takes well under a minute.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tomasulo.service._app import create_app
from tomasulo.service._config import loads_service_config
from tomasulo.service._serve import prepare
from tomasulo.service._store import Database

from .conftest import LiveService, run_app, service_tools

# The default tenant comes from the file, so generated PATCH and DELETE requests cannot lock
# the admin key out (the API refuses to change tenants the file defines); no rate limit.
CONFIG = """
tenants:
  default: {name: default}
  acme: {tools: [math, echo]}
limits: {requests_per_minute: null, max_body_bytes: 65536, max_tasks: 8, tool_call_timeout: 2}
"""

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    folder: Path = tmp_path_factory.mktemp("schemathesis")
    prepared = prepare(
        loads_service_config(CONFIG), database_url=f"sqlite:///{folder / 's.db'}", tools=service_tools()
    )
    url, stop = run_app(prepared)
    assert prepared.admin_key is not None
    service = LiveService(url, prepared, keys={"admin": prepared.admin_key})
    try:
        yield service
    finally:
        stop()
        prepared.db.close()


def _openapi() -> dict[str, Any]:
    """The app's OpenAPI document (the same the server serves at /openapi.json; checked below)."""
    app = create_app(loads_service_config(CONFIG), Database.open("sqlite://"))
    return app.openapi()


schema = schemathesis.openapi.from_dict(_openapi())


def test_the_served_schema_is_the_one_tested(live: LiveService) -> None:
    import httpx

    assert httpx.get(f"{live.url}/openapi.json").json() == _openapi()


@schema.parametrize()
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
def test_no_500_and_no_schema_violation(case: Any, live: LiveService) -> None:
    headers = {"Authorization": f"Bearer {live.keys['admin']}"}
    case.call_and_validate(base_url=live.url, headers=headers, checks=CHECKS, timeout=30)
