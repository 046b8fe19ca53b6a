"""Failures nobody planned for still answer problem+json: a bug is a 500 with no traceback, a
database that does not answer is a 503."""

from __future__ import annotations

import httpx
import pytest

from tomasulo.service._app import create_app
from tomasulo.service._config import ServiceConfig
from tomasulo.service._store import Database

pytestmark = pytest.mark.anyio


async def test_a_bug_is_a_500_problem_without_a_traceback(tmp_path) -> None:
    db = Database.open(f"sqlite:///{tmp_path / 'x.db'}")
    app = create_app(ServiceConfig(), db)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals /etc/passwd")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/boom")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"].endswith("/internal")
    assert body["request_id"] in body["detail"]
    assert response.headers["x-request-id"] == body["request_id"]
    assert "secret internals" not in response.text and "Traceback" not in response.text
    db.close()


async def test_a_database_that_does_not_answer_is_a_503() -> None:
    db = Database.open("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")
    app = create_app(ServiceConfig(), db)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        ready = await client.get("/readyz")
        key = "tmsk_0123456789abcdef_" + "A" * 43
        tools = await client.get("/v1/tools", headers={"Authorization": f"Bearer {key}"})
    assert ready.status_code == 503 and ready.json()["type"].endswith("/unavailable")
    assert tools.status_code == 503 and tools.headers["retry-after"] == "5"
    db.close()
