"""``/v1/batches`` over real uvicorn on loopback, on SQLite and a real PostgreSQL: a workflow over
many inputs with progress, per-input results, cancel, and resume after a server restart."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest

from tomasulo.service._config import loads_service_config
from tomasulo.service._serve import prepare
from tomasulo.tools import Toolset
from tomasulo.tools.builtins import builtin_toolset

from .conftest import run_app

PROBLEM = "application/problem+json"

CONFIG = """
tenants:
  acme: {tools: [math, echo, sleep]}
  other: {tools: [echo]}
limits:
  shutdown_grace: 0
"""

#: n doubled, after `wait` seconds (a held input waits long).
WORKFLOW = """
name: double
tools: [sleep, math]
inputs:
  n: {type: integer}
  wait: {type: number, default: 0}
steps:
  - id: doubled
    plan: |
      1. input("n")
      2. input("wait")
      3. sleep(seconds=$2, value=$1)
      4. math(expression="${3} * 2")
      5. join()
    output: $4
outputs:
  value: doubled
"""


class Service:
    """The service on a database; ``restart()`` stops it and starts a new one on the same data."""

    def __init__(self, url: str) -> None:
        self.database_url = url
        self.keys: dict[str, str] = {}
        self._start()

    def _start(self) -> None:
        tools = Toolset(builtin_toolset())
        self.prepared = prepare(loads_service_config(CONFIG), database_url=self.database_url, tools=tools)
        if not self.keys:
            for tenant in ("acme", "other"):
                self.keys[tenant] = self.prepared.db.create_key(tenant, "member", "t")[1]
        self.url, self._stop = run_app(self.prepared)

    def client(self, tenant: str = "acme") -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.keys[tenant]}"}, timeout=30
        )

    def stop(self) -> None:
        self._stop()
        self.prepared.db.close()

    def restart(self) -> None:
        self.stop()
        self._start()


@pytest.fixture
def svc(database_url: str) -> Iterator[Service]:
    service = Service(database_url)
    try:
        yield service
    finally:
        service.stop()


def wait_until_ended(client: httpx.Client, batch_id: str) -> dict:
    """The batch once it has ended (each GET is bounded; 150 at most)."""
    for _ in range(150):
        batch = client.get(f"/v1/batches/{batch_id}").json()
        if batch["status"] != "running":
            return batch
        threading.Event().wait(0.1)
    raise AssertionError(f"batch {batch_id} did not end: {batch}")


def inputs(*ns: int, held: float = 30) -> list[dict]:
    """An input per n; n = 7 waits ``held`` seconds."""
    return [{"n": n, "wait": held if n == 7 else 0} for n in ns]


def test_a_batch_runs_every_input_and_reports_each(svc: Service) -> None:
    with svc.client() as client:
        made = client.post(
            "/v1/batches", json={"workflow": WORKFLOW, "inputs": inputs(1, 2, 3), "metadata": {"k": "v"}}
        )
        assert made.status_code == 202, made.text
        body = made.json()
        assert (body["object"], body["total"], body["metadata"]) == ("batch", 3, {"k": "v"})
        batch = wait_until_ended(client, body["id"])
    assert (batch["status"], batch["done"], batch["failed"]) == ("finished", 3, 0)
    with svc.client() as client:  # each input is a run of its own, with its events and outputs
        run = client.get(f"/v1/runs/{batch['results'][1]['run_id']}").json()
        assert (run["status"], run["metadata"]) == ("finished", {"batch": body["id"], "batch_index": "1"})
    assert [(r["index"], r["status"], r["outputs"]) for r in batch["results"]] == [
        (0, "finished", {"value": 2}),
        (1, "finished", {"value": 4}),
        (2, "finished", {"value": 6}),
    ]


def test_bad_inputs_and_bad_workflows_are_422s_naming_where(svc: Service) -> None:
    with svc.client() as client:
        bad = client.post("/v1/batches", json={"workflow": WORKFLOW, "inputs": [{"n": 1}, {"m": 2}]})
        assert bad.status_code == 422 and bad.headers["content-type"].startswith(PROBLEM)
        assert "inputs[1]" in bad.json()["detail"]
        broken = client.post(
            "/v1/batches", json={"workflow": WORKFLOW.replace("math(", "mth("), "inputs": inputs(1)}
        )
        assert broken.status_code == 422 and "mth" in broken.json()["detail"]
        imports = WORKFLOW.replace("tools: [sleep, math]", "tools: [sleep, math, 'os:system']")
        refused = client.post("/v1/batches", json={"workflow": imports, "inputs": inputs(1)})
        assert refused.status_code == 422, refused.text
        assert "by name only" in refused.json()["detail"]
        control = client.post("/v1/batches", json={"workflow": "\u009e", "inputs": inputs(1)})
        assert control.status_code == 422 and "not YAML" in control.json()["detail"]
        empty = client.post("/v1/batches", json={"workflow": WORKFLOW, "inputs": []})
        assert empty.status_code == 422


def test_a_tool_not_granted_cannot_be_named(svc: Service) -> None:
    with svc.client("other") as client:
        response = client.post("/v1/batches", json={"workflow": WORKFLOW, "inputs": inputs(1)})
    assert response.status_code == 422 and "sleep" in response.json()["detail"]


def test_another_tenants_batch_is_a_404(svc: Service) -> None:
    with svc.client() as acme, svc.client("other") as other:
        batch_id = acme.post("/v1/batches", json={"workflow": WORKFLOW, "inputs": inputs(1)}).json()["id"]
        assert other.get(f"/v1/batches/{batch_id}").status_code == 404
        assert other.post(f"/v1/batches/{batch_id}/cancel").status_code == 404
        assert acme.get(f"/v1/batches/{batch_id}").status_code == 200


def test_cancel_stops_the_inputs_still_running(svc: Service) -> None:
    with svc.client() as client:
        batch_id = client.post("/v1/batches", json={"workflow": WORKFLOW, "inputs": inputs(1, 7)}).json()[
            "id"
        ]
        for _ in range(100):  # until input 0 ended (input 1 sleeps 30 s)
            if client.get(f"/v1/batches/{batch_id}").json()["done"] == 1:
                break
            threading.Event().wait(0.05)
        cancelled = client.post(f"/v1/batches/{batch_id}/cancel").json()
    assert cancelled["status"] == "cancelled"
    assert [r["status"] for r in cancelled["results"]] == ["finished", "cancelled"]


def test_a_batch_continues_after_a_server_restart(svc: Service) -> None:
    with svc.client() as client:
        made = client.post("/v1/batches", json={"workflow": WORKFLOW, "inputs": inputs(1, 7, 3, held=1.5)})
        batch_id = made.json()["id"]
        for _ in range(100):  # inputs 0 and 2 end; input 1 sleeps 1.5 s
            if client.get(f"/v1/batches/{batch_id}").json()["done"] == 2:
                break
            threading.Event().wait(0.05)
        first = client.get(f"/v1/batches/{batch_id}").json()["results"]
    svc.restart()  # the held input is stopped with its server; the new server runs it again
    with svc.client() as client:
        batch = wait_until_ended(client, batch_id)
    assert batch["status"] == "finished"
    assert [r["outputs"] for r in batch["results"]] == [{"value": 2}, {"value": 14}, {"value": 6}]
    runs = [r["run_id"] for r in batch["results"]]
    assert runs[0] == first[0]["run_id"] and runs[2] == first[2]["run_id"]  # ended ones: not again
    assert runs[1] != first[1]["run_id"]  # a new run for the input whose run did not end
