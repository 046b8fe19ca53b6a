"""``/v1/runs`` over real uvicorn on loopback, against SQLite and a real PostgreSQL, with the
LLM a SimulatedLLM on loopback (its own uvicorn) and tools that wait for the test's signal."""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from tomasulo.dispatcher import Event
from tomasulo.runtime import RunFinished, RunResult
from tomasulo.service._config import loads_service_config
from tomasulo.service._serve import bind, prepare
from tomasulo.testing import Latency, RecordedRequest, SimulatedLLM
from tomasulo.tools import Toolset
from tomasulo.tools.builtins import builtin_toolset

from .conftest import LiveService, run_app
from .svctools import GATES, boom, hold

PROBLEM = "application/problem+json"


# -- the simulated model ------------------------------------------------------------------------


def _question(text: str) -> str:
    return text.split("Question: ", 1)[1].split("\n", 1)[0]


def reply(record: RecordedRequest) -> str:
    """Plans by the question's first word; the joiner finishes with the results it read."""
    messages = record.body.get("messages") or []
    # a replan's prompt extends the first one: the question is in an earlier message
    system = messages[0]["content"]
    user = "\n\n".join(m["content"] for m in messages[1:] if m.get("role") == "user")
    question = _question(user)
    if "joiner" in system:
        results = user.split("Results:\n", 1)[1].strip()
        return json.dumps({"thought": "done", "action": "finish", "answer": f"{question} -> {results[:200]}"})
    start = re.search(r"Continue the plan from task (\d+)", user)
    first = int(start.group(1)) if start else 1
    if "the user said" in user:
        return f'{first}. math(expression="40 + 2")\n{first + 1}. join()'
    word, _, rest = question.partition(" ")
    if word == "hold":
        return f'{first}. hold(name="{rest}")\n{first + 1}. join()'
    if word == "many":
        lines = [f'{i}. math(expression="{i} * 2")' for i in range(1, 21)]
        return "\n".join([*lines, "21. join()"])
    return f'{first}. math(expression="2 + 3")\n{first + 1}. join()'


@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    sim = SimulatedLLM(reply, latency=Latency(ttft=0.005, tokens_per_second=5000))

    class _Sim(uvicorn.Server):
        def __init__(self, config: uvicorn.Config) -> None:
            super().__init__(config)
            self.ready = threading.Event()

        async def startup(self, sockets: list | None = None) -> None:  # type: ignore[type-arg]
            await super().startup(sockets)
            self.ready.set()

        def install_signal_handlers(self) -> None:
            pass

    sock = bind("127.0.0.1", 0)
    server = _Sim(uvicorn.Config(sim.app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    assert server.ready.wait(30), "the simulated LLM did not start"
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


CONFIG = """
models:
  sim: {{base_url: "{url}", model: sim, dialect: vllm, prices: {{prompt: 1000, completion: 1000}}}}
tenants:
  acme:
    tools: [math, echo, hold, boom, sleep]
  globex:
    tools: [echo]
  solo:
    tools: [hold, math]
    limits: {{concurrent_runs: 1}}
  frugal:
    tools: [math]
    limits: {{tokens_per_day: 1}}
limits:
  requests_per_minute: null
  max_tasks: 600
  max_body_bytes: 200000
  sse_heartbeat_s: 0.2
  max_wait: 20
"""


def run_tools() -> Toolset:
    return Toolset([*builtin_toolset(), hold, boom])


def start_service(url: str, sim: str, limits: str = "") -> tuple[LiveService, Any]:
    """The service on a database, with more ``limits`` lines (YAML, indented two spaces)."""
    config = loads_service_config(CONFIG.format(url=sim) + limits)
    prepared = prepare(config, database_url=url, tools=run_tools())
    base, stop = run_app(prepared)
    live = LiveService(base, prepared)
    for tenant in ("acme", "globex", "solo", "frugal"):
        live.keys[tenant] = prepared.db.create_key(tenant, "member", "test")[1]
    return live, stop


@pytest.fixture(scope="module")
def svc(module_database_url: str, sim_url: str) -> Iterator[LiveService]:
    live, stop = start_service(module_database_url, sim_url)
    try:
        yield live
    finally:
        for client in live.clients:
            client.close()
        stop()
        live.db.close()


def gate() -> str:
    name = uuid.uuid4().hex[:8]
    GATES[name].clear()
    return name


def sse(response: httpx.Response) -> Iterator[tuple[str | None, dict[str, Any] | None]]:
    """``(id, data)`` per SSE event of a streamed response; ``(None, None)`` per heartbeat."""
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if line.startswith(":"):
            yield None, None
        elif line == "":
            if fields:
                data = json.loads(fields["data"])
                assert fields["event"] == data["kind"]
                yield fields["id"], data
                fields = {}
        else:
            key, _, value = line.partition(": ")
            fields[key] = value


def wait_run(client: httpx.Client, run_id: str) -> dict[str, Any]:
    """The run once ended (read through its event stream, which ends with it)."""
    with client.stream("GET", f"/v1/runs/{run_id}/events", params={"after": 10**9}) as response:
        for _ in response.iter_lines():
            pass
    body = client.get(f"/v1/runs/{run_id}").json()
    assert body["status"] in ("finished", "stopped", "failed", "cancelled"), body
    return body


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["type"].endswith(f"/{slug}")
    return body


# -- submit, wait, read ---------------------------------------------------------------------------


def test_a_question_runs_in_the_background_and_answers(svc: LiveService) -> None:
    acme = svc.client("acme")
    created = acme.post("/v1/runs", json={"query": "add two numbers", "metadata": {"team": "a"}})
    assert created.status_code == 202, created.text
    run = created.json()
    assert created.headers["location"] == f"/v1/runs/{run['id']}"
    assert run["status"] in ("queued", "running", "finished") and run["object"] == "run"
    done = wait_run(acme, run["id"])
    assert done["status"] == "finished", done
    assert done["answer"].startswith("add two numbers -> ")
    assert [(t["tool"], t["status"], t["value"]) for t in done["tasks"]] == [("math", "succeeded", 5)]
    assert done["plans"] and done["plans"][0].startswith("1. math(")
    assert done["usage"]["llm_calls"] == 2 and done["usage"]["prompt_tokens"] > 0
    assert done["metadata"] == {"team": "a"} and done["model"] == "sim" and done["mode"] == "stream"
    assert done["started_at"] and done["finished_at"] and done["last_seq"] > 5


def test_prefer_wait_returns_the_ended_run(svc: LiveService) -> None:
    acme = svc.client("acme")
    response = acme.post(
        "/v1/runs", json={"plan": '1. math(expression="6 * 7")\n2. join()'}, headers={"Prefer": "wait=20"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["preference-applied"] == "wait=20"
    body = response.json()
    assert (body["status"], body["answer"], body["kind"]) == ("finished", "42", "plan")
    by_query = acme.post(
        "/v1/runs?wait=20",
        json={
            "plan": '{"tasks": [{"id": 1, "tool": "math", "args": {"expression": "1 + 1"}}]}',
            "dialect": "json",
        },
    )
    assert by_query.status_code == 200 and by_query.json()["answer"] == "2"


def test_a_bad_request_is_a_clear_422(svc: LiveService) -> None:
    acme = svc.client("acme")
    body = assert_problem(acme.post("/v1/runs", json={"plan": "1. mth(x=1)\n2. join()"}), 422, "invalid-plan")
    assert "line 1" in body["detail"] and body["errors"][0]["hint"]
    assert_problem(acme.post("/v1/runs", json={"query": "x", "plan": "1. join()"}), 422, "invalid-request")
    assert_problem(acme.post("/v1/runs", json={}), 422, "invalid-request")
    assert_problem(acme.post("/v1/runs", json={"query": "x", "model": "gpt-9"}), 404, "not-found")
    body = assert_problem(
        acme.post("/v1/runs", json={"query": "x", "tools": ["secret"]}), 422, "unknown-tools"
    )
    assert "'secret'" in body["detail"]


def test_list_filter_and_paginate(svc: LiveService) -> None:
    acme = svc.client("acme")
    tag = uuid.uuid4().hex[:8]
    before = dt.datetime.now(dt.UTC).isoformat()
    ids = []
    for i in range(5):
        plan = f'1. math(expression="{i} + 1")\n2. join()'
        made = acme.post("/v1/runs?wait=20", json={"plan": plan, "metadata": {"tag": tag, "i": str(i)}})
        ids.append(made.json()["id"])
    failed = acme.post("/v1/runs?wait=20", json={"plan": "1. boom()\n2. join()", "metadata": {"tag": tag}})
    assert failed.json()["status"] == "failed"
    pages, cursor = [], None
    while True:
        params: dict[str, Any] = {"metadata[tag]": tag, "limit": 2, "status": "finished"}
        if cursor:
            params["cursor"] = cursor
        page = acme.get("/v1/runs", params=params).json()
        assert page["object"] == "list" and len(page["data"]) <= 2
        assert all("tasks" not in r or r["tasks"] is None for r in page["data"])
        pages.append([r["id"] for r in page["data"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [i for p in pages for i in p] == ids[::-1]  # newest first, each once
    dotted = acme.get("/v1/runs", params={"metadata.tag": tag, "metadata.i": "3"}).json()["data"]
    assert [r["id"] for r in dotted] == [ids[3]]
    recent = acme.get("/v1/runs", params={"metadata[tag]": tag, "created_after": before}).json()["data"]
    assert len(recent) == 6
    assert acme.get("/v1/runs", params={"metadata[tag]": tag, "created_before": before}).json()["data"] == []
    assert_problem(acme.get("/v1/runs", params={"cursor": "nonsense"}), 422, "invalid-request")


def test_idempotency_key_gives_the_same_run(svc: LiveService) -> None:
    acme = svc.client("acme")
    key = {"Idempotency-Key": uuid.uuid4().hex}
    body = {"plan": '1. math(expression="3 * 3")\n2. join()'}
    first = acme.post("/v1/runs", json=body, headers=key).json()
    again = acme.post("/v1/runs", json=body, headers=key).json()
    assert again["id"] == first["id"]
    other = acme.post("/v1/runs", json={"plan": '1. math(expression="4")\n2. join()'}, headers=key)
    problem = assert_problem(other, 409, "idempotency-conflict")
    assert problem["run_id"] == first["id"]
    # the key is the tenant's: another tenant's same key makes its own run
    globex = svc.client("globex").post("/v1/runs", json={"plan": "1. echo(value=1)\n2. join()"}, headers=key)
    assert globex.status_code == 202 and globex.json()["id"] != first["id"]


# -- events ---------------------------------------------------------------------------------------


def _plan_with_a_gate(name: str, before: int, after: int) -> str:
    lines = [f'{i}. math(expression="{i} + 0")' for i in range(1, before + 1)]
    g = before + 1
    lines.append(f'{g}. hold(name="{name}")')
    lines += [f"{i}. echo(value=$${g})".replace("$$", "$") for i in range(g + 1, g + after + 1)]
    return "\n".join([*lines, f"{g + after + 1}. join()"])


def test_sse_resume_after_a_disconnect_mid_run_sees_every_event_once(svc: LiveService) -> None:
    acme = svc.client("acme")
    name = gate()
    plan = _plan_with_a_gate(name, 250, 249)  # 500 tasks
    run_id = acme.post("/v1/runs", json={"plan": plan}).json()["id"]
    seen: list[int] = []
    last = None
    with acme.stream("GET", f"/v1/runs/{run_id}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for event_id, data in sse(response):
            if data is None:
                continue
            assert int(event_id) == data["seq"]
            seen.append(data["seq"])
            last = event_id
            if data["kind"] == "task_started" and data["tool"] == "hold":
                break  # disconnect mid-run
    GATES[name].set()
    with acme.stream("GET", f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": last}) as response:
        kinds = []
        for _, data in sse(response):
            if data is not None:
                seen.append(data["seq"])
                kinds.append(data["kind"])
    assert kinds[-1] == "run_finished"
    assert seen == list(range(1, len(seen) + 1))
    done = acme.get(f"/v1/runs/{run_id}").json()
    assert done["status"] == "finished" and len(done["tasks"]) == 500 and done["last_seq"] == len(seen)
    # the ended run's stream, from the database, resumes the same way
    with acme.stream("GET", f"/v1/runs/{run_id}/events", params={"after": 1000}) as response:
        tail = [d["seq"] for _, d in sse(response) if d is not None]
    assert tail == list(range(1001, len(seen) + 1))
    # and the events rebuild the run's result
    with acme.stream(
        "GET", f"/v1/runs/{run_id}/events", headers={"Accept": "application/x-ndjson"}
    ) as response:
        assert response.headers["content-type"].startswith("application/x-ndjson")
        events = [Event.from_json(json.loads(line)) for line in response.iter_lines() if line.strip()]
    result = RunResult.from_events(events)
    assert result.status == "finished" and len(result.tasks) == 500


def test_sse_heartbeats_while_nothing_happens(svc: LiveService) -> None:
    acme = svc.client("acme")
    name = gate()
    run_id = acme.post("/v1/runs", json={"plan": f'1. hold(name="{name}")\n2. join()'}).json()["id"]
    beats = 0
    with acme.stream("GET", f"/v1/runs/{run_id}/events") as response:
        for _, data in sse(response):
            if data is None:
                beats += 1
                GATES[name].set()  # heard one: let the run end
            elif data["kind"] == "run_finished":
                break
    assert beats >= 1


def test_post_with_accept_event_stream_streams_the_run(svc: LiveService) -> None:
    acme = svc.client("acme")
    with acme.stream(
        "POST", "/v1/runs", json={"query": "add again"}, headers={"Accept": "text/event-stream"}
    ) as response:
        assert response.status_code == 200
        run_id = response.headers["x-run-id"]
        assert response.headers["location"] == f"/v1/runs/{run_id}"
        events = [d for _, d in sse(response) if d is not None]
    assert events[0]["kind"] == "run_started" and events[0]["run_id"] == run_id
    assert events[-1]["kind"] == "run_finished" and events[-1]["status"] == "finished"
    # the run_finished event comes once the result is stored
    assert acme.get(f"/v1/runs/{run_id}").json()["status"] == "finished"


# -- interrupt, cancel, delete -------------------------------------------------------------------


def test_interrupt_replans(svc: LiveService) -> None:
    acme = svc.client("acme")
    name = gate()
    run_id = acme.post("/v1/runs", json={"query": f"hold {name}"}).json()["id"]
    with acme.stream("GET", f"/v1/runs/{run_id}/events") as response:
        for _, data in sse(response):
            if data is not None and data["kind"] == "task_started" and data["tool"] == "hold":
                accepted = acme.post(f"/v1/runs/{run_id}/interrupt", json={"message": "use 40 + 2"})
                assert accepted.status_code == 202 and accepted.json() == {"id": run_id, "accepted": True}
            if data is not None and data["kind"] == "plan_started" and data["plan"] == 2:
                assert "the user said: use 40 + 2" in data["reason"]
                GATES[name].set()
    done = acme.get(f"/v1/runs/{run_id}").json()
    assert done["status"] == "finished"
    assert [t["tool"] for t in done["tasks"]] == ["hold", "math"] and len(done["plans"]) == 2
    assert_problem(acme.post(f"/v1/runs/{run_id}/interrupt", json={"message": "late"}), 409, "conflict")


def test_cancel_a_running_run(svc: LiveService) -> None:
    acme = svc.client("acme")
    name = gate()
    run_id = acme.post("/v1/runs", json={"plan": f'1. hold(name="{name}")\n2. join()'}).json()["id"]
    cancelled = acme.post(f"/v1/runs/{run_id}/cancel")
    assert cancelled.status_code == 202
    done = wait_run(acme, run_id)
    assert done["status"] == "cancelled" and done["tasks"][0]["status"] == "cancelled"
    again = acme.post(f"/v1/runs/{run_id}/cancel")
    assert again.status_code == 200 and again.json()["status"] == "cancelled"
    GATES[name].set()


def test_delete_cancels_and_removes(svc: LiveService) -> None:
    acme = svc.client("acme")
    name = gate()
    run_id = acme.post("/v1/runs", json={"plan": f'1. hold(name="{name}")\n2. join()'}).json()["id"]
    assert acme.delete(f"/v1/runs/{run_id}").status_code == 204
    assert_problem(acme.get(f"/v1/runs/{run_id}"), 404, "not-found")
    assert_problem(acme.get(f"/v1/runs/{run_id}/events"), 404, "not-found")
    assert_problem(acme.delete(f"/v1/runs/{run_id}"), 404, "not-found")
    GATES[name].set()


# -- tenants and limits ---------------------------------------------------------------------------


def test_another_tenants_run_is_a_404(svc: LiveService) -> None:
    acme, globex = svc.client("acme"), svc.client("globex")
    name = gate()
    run_id = acme.post("/v1/runs", json={"plan": f'1. hold(name="{name}")\n2. join()'}).json()["id"]
    for response in (
        globex.get(f"/v1/runs/{run_id}"),
        globex.get(f"/v1/runs/{run_id}/events"),
        globex.post(f"/v1/runs/{run_id}/interrupt", json={"message": "x"}),
        globex.post(f"/v1/runs/{run_id}/cancel"),
        globex.delete(f"/v1/runs/{run_id}"),
    ):
        body = assert_problem(response, 404, "not-found")
        assert "for this tenant" in body["detail"]
    assert run_id not in [r["id"] for r in globex.get("/v1/runs", params={"limit": 100}).json()["data"]]
    # a tool not granted to globex does not exist for it
    assert_problem(
        globex.post("/v1/runs", json={"plan": '1. hold(name="x")\n2. join()'}), 422, "invalid-plan"
    )
    GATES[name].set()
    assert wait_run(acme, run_id)["status"] == "finished"


def test_concurrent_runs_over_the_tenants_limit_are_a_429(svc: LiveService) -> None:
    solo = svc.client("solo")
    name = gate()
    first = solo.post("/v1/runs", json={"plan": f'1. hold(name="{name}")\n2. join()'})
    assert first.status_code == 202
    second = solo.post("/v1/runs", json={"plan": '1. math(expression="1")\n2. join()'})
    body = assert_problem(second, 429, "too-many-runs")
    assert second.headers["retry-after"] == "1" and "concurrent_runs" in body["detail"]
    GATES[name].set()
    wait_run(solo, first.json()["id"])
    assert (
        solo.post("/v1/runs?wait=20", json={"plan": '1. math(expression="1")\n2. join()'}).status_code == 200
    )


def test_a_spent_day_budget_is_a_429_and_bounds_the_run(svc: LiveService) -> None:
    frugal = svc.client("frugal")
    run = frugal.post("/v1/runs?wait=20", json={"query": "add"}).json()
    # one token a day: the first plan's stream is cut at once
    assert run["status"] == "stopped" and "token budget" in run["reason"]
    again = frugal.post("/v1/runs", json={"query": "add"})
    body = assert_problem(again, 429, "budget-exhausted")
    assert "tokens_per_day" in body["detail"] and int(again.headers["retry-after"]) >= 1


def test_server_bounds_on_runs_and_streams_are_a_503(database_url: str, sim_url: str) -> None:
    live, stop = start_service(database_url, sim_url, "  max_concurrent_runs: 1\n  max_sse_connections: 1\n")
    try:
        acme = live.client("acme")
        name = gate()
        run_id = acme.post("/v1/runs", json={"plan": f'1. hold(name="{name}")\n2. join()'}).json()["id"]
        busy = acme.post("/v1/runs", json={"plan": '1. math(expression="1")\n2. join()'})
        assert "max_concurrent_runs" in assert_problem(busy, 503, "server-busy")["detail"]
        with acme.stream("GET", f"/v1/runs/{run_id}/events") as response:
            events = sse(response)
            next(events)  # the stream is open
            second = live.client("acme").get(f"/v1/runs/{run_id}/events")
            assert "max_sse_connections" in assert_problem(second, 503, "too-many-streams")["detail"]
            GATES[name].set()
            assert [d for _, d in events if d is not None][-1]["kind"] == "run_finished"
        assert (
            acme.post("/v1/runs?wait=20", json={"plan": '1. math(expression="1")\n2. join()'}).status_code
            == 200
        )
    finally:
        for client in live.clients:
            client.close()
        stop()
        live.db.close()


def test_another_replica_streams_the_run_from_the_database(database_url: str, sim_url: str) -> None:
    one, stop_one = start_service(database_url, sim_url)
    two, stop_two = start_service(database_url, sim_url)
    try:
        first, second = one.client("acme"), two.client(key=one.keys["acme"])
        name = gate()
        run_id = first.post("/v1/runs", json={"plan": _plan_with_a_gate(name, 20, 20)}).json()["id"]
        seen: list[int] = []
        with second.stream("GET", f"/v1/runs/{run_id}/events") as response:
            for _, data in sse(response):
                if data is not None:
                    seen.append(data["seq"])
                    if data["kind"] == "task_started" and data["tool"] == "hold":
                        break
        assert second.get(f"/v1/runs/{run_id}").json()["status"] == "running"
        # the run's controls must reach the replica that drives it
        assert_problem(second.post(f"/v1/runs/{run_id}/cancel"), 409, "run-elsewhere")
        assert_problem(second.delete(f"/v1/runs/{run_id}"), 409, "run-elsewhere")
        GATES[name].set()
        with second.stream(
            "GET", f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": str(seen[-1])}
        ) as response:
            rest = [d for _, d in sse(response) if d is not None]
        seen += [d["seq"] for d in rest]
        assert rest[-1]["kind"] == "run_finished"
        assert seen == list(range(1, len(seen) + 1))
        assert second.get(f"/v1/runs/{run_id}").json()["status"] == "finished"
    finally:
        for client in one.clients + two.clients:
            client.close()
        stop_two()
        stop_one()
        one.db.close()
        two.db.close()


# -- restart and shutdown -------------------------------------------------------------------------


def test_shutdown_cancels_runs_and_a_restart_fails_what_a_crash_left(database_url: str, sim_url: str) -> None:
    import sqlalchemy as sa

    from tomasulo.service._schema import runs

    live, stop = start_service(database_url, sim_url)
    acme = live.client("acme")
    name = gate()
    run_id = acme.post("/v1/runs", json={"plan": f'1. hold(name="{name}")\n2. join()'}).json()["id"]
    # a run a crashed server left behind: running, with a lease that lapsed
    with live.db.engine.begin() as connection:
        connection.execute(
            sa.insert(runs).values(
                id="crashed1", tenant_id="acme", status="running", kind="plan", request={}, metadata={},
                created_at=dt.datetime.now(dt.UTC), last_seq=0,
                lease_expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1),
            )
        )  # fmt: skip
    live.prepared.config.limits.shutdown_grace = 0.1
    for client in live.clients:
        client.close()
    stop()  # the held run does not end within the grace: it is cancelled, its result saved
    GATES[name].set()
    live2, stop2 = start_service(database_url, sim_url)
    try:
        acme = live2.client("acme")
        held = acme.get(f"/v1/runs/{run_id}").json()
        assert held["status"] == "cancelled", held
        crashed = acme.get("/v1/runs/crashed1").json()
        assert (crashed["status"], crashed["reason"]) == ("failed", "server restarted")
        with acme.stream("GET", "/v1/runs/crashed1/events") as response:
            events = [d for _, d in sse(response) if d is not None]
        assert [e["kind"] for e in events] == [RunFinished.kind]
    finally:
        for client in live2.clients:
            client.close()
        stop2()
        live2.db.close()
        live.db.close()


# -- workflow runs --------------------------------------------------------------------------------

WORKFLOW = """
name: double-then-ask
tools: [math]
inputs:
  x: {type: number}
steps:
  - id: twice
    plan: |
      1. input("x")
      2. math(expression="a * 2", variables={"a": $1})
      3. join()
  - id: ask
    query: "add {twice}"
outputs:
  doubled: twice
  said: ask
"""


def test_a_workflow_runs_its_steps_as_one_run(svc: LiveService) -> None:
    acme = svc.client("acme")
    created = acme.post("/v1/runs", json={"workflow": WORKFLOW, "inputs": {"x": 5}})
    assert created.status_code == 202, created.text
    run_id = created.json()["id"]
    with acme.stream("GET", f"/v1/runs/{run_id}/events") as response:
        events = [d for _, d in sse(response) if d is not None]
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "run_started" and kinds.count("run_started") == 1
    assert kinds[-1] == "run_finished" and kinds.count("run_finished") == 1
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert {e["run_id"] for e in events} == {run_id}
    done = acme.get(f"/v1/runs/{run_id}").json()
    assert (done["status"], done["kind"], done["mode"]) == ("finished", "workflow", "workflow")
    assert done["outputs"]["doubled"] == 10 and done["outputs"]["said"].startswith("add 10 -> ")
    assert json.loads(done["answer"]) == done["outputs"]
    assert [(t["step"], t["tool"]) for t in done["tasks"]] == [
        ("twice", "input"),
        ("twice", "math"),
        ("ask", "math"),
    ]
    assert done["usage"]["llm_calls"] == 2


def test_a_workflow_may_use_only_granted_tools_by_name(svc: LiveService) -> None:
    acme = svc.client("acme")
    imported = WORKFLOW.replace("tools: [math]", "tools: ['tests.service.svctools:secret_vault']")
    body = assert_problem(
        acme.post("/v1/runs", json={"workflow": imported, "inputs": {"x": 1}}), 422, "invalid-workflow"
    )
    assert "by name only" in body["detail"]
    other = svc.client("globex").post("/v1/runs", json={"workflow": WORKFLOW, "inputs": {"x": 1}})
    assert "no tool 'math' for this tenant" in assert_problem(other, 422, "invalid-workflow")["detail"]
    broken = WORKFLOW.replace("2. math(", "2. mth(")
    body = assert_problem(
        acme.post("/v1/runs", json={"workflow": broken, "inputs": {"x": 1}}), 422, "invalid-workflow"
    )
    assert ":10:10: step 'twice': unknown tool 'mth'" in body["detail"]  # the line and column
    odd = acme.post("/v1/runs", json={"workflow": "a\u0098b"})  # a character YAML refuses to read
    assert "not YAML" in assert_problem(odd, 422, "invalid-workflow")["detail"]
    missing = assert_problem(acme.post("/v1/runs", json={"workflow": WORKFLOW}), 422, "invalid-inputs")
    assert "'x'" in missing["detail"]


def test_cancel_a_workflow_run(svc: LiveService) -> None:
    acme = svc.client("acme")
    slow = "tools: [sleep]\nsteps:\n  - id: wait\n    plan: |\n      1. sleep(seconds=30)\n      2. join()\n"
    run_id = acme.post("/v1/runs", json={"workflow": slow}).json()["id"]
    with acme.stream("GET", f"/v1/runs/{run_id}/events") as response:
        for _, data in sse(response):
            if data is not None and data["kind"] == "task_started":
                assert acme.post(f"/v1/runs/{run_id}/cancel").status_code == 202
            if data is not None and data["kind"] == "run_finished":
                assert data["status"] == "cancelled"
    done = acme.get(f"/v1/runs/{run_id}").json()
    assert (done["status"], done["reason"]) == ("cancelled", "the run was cancelled")
    assert_problem(acme.post(f"/v1/runs/{run_id}/interrupt", json={"message": "x"}), 409, "conflict")
