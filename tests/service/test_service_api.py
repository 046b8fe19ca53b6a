"""The REST API over real uvicorn on loopback, against SQLite and a real PostgreSQL."""

from __future__ import annotations

import socket

import httpx
import pytest

from .conftest import LiveService

PROBLEM = "application/problem+json"


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["type"] == f"https://tomasulo.dev/problems/{slug}"
    assert body["status"] == status
    assert body["title"] and body["detail"]
    assert body["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    return body


# -- health, keys ---------------------------------------------------------------------------------


def test_health_and_readiness(service: LiveService) -> None:
    anonymous = service.client()
    assert anonymous.get("/healthz").json()["status"] == "ok"
    ready = anonymous.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["database"] == service.db.engine.dialect.name


def test_v1_needs_a_valid_key(service: LiveService) -> None:
    body = assert_problem(service.client().get("/v1/tools"), 401, "unauthorized")
    assert "Authorization: Bearer" in body["detail"]
    wrong = service.keys["acme"][:-4] + "AAAA"
    response = service.client(key=wrong).get("/v1/tools")
    assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert_problem(service.client(key="not-a-key").get("/v1/tools"), 401, "unauthorized")


def test_keys_are_stored_hashed(service: LiveService) -> None:
    import sqlalchemy as sa

    from tomasulo.service._schema import api_keys

    with service.db.engine.connect() as connection:
        rows = connection.execute(sa.select(api_keys)).all()
    stored = " ".join(str(v) for row in rows for v in row)
    for key in service.keys.values():
        secret = key.rsplit("_", 1)[1]
        assert secret not in stored
    assert all(row.hash.startswith("scrypt:") and len(row.salt) == 32 for row in rows)


def test_me_names_the_tenant_and_role(service: LiveService) -> None:
    me = service.client("acme").get("/v1/me").json()
    assert (me["tenant"]["id"], me["role"]) == ("acme", "member")
    assert service.client("admin").get("/v1/me").json()["role"] == "admin"


# -- tools and tenant isolation -------------------------------------------------------------------


def test_each_tenant_sees_only_its_granted_tools(service: LiveService) -> None:
    acme = [t["name"] for t in service.client("acme").get("/v1/tools").json()["tools"]]
    globex = [t["name"] for t in service.client("globex").get("/v1/tools").json()["tools"]]
    assert acme == ["math", "echo", "sleep", "boom"]
    assert globex == ["secret_vault"]
    tool = service.client("acme").get("/v1/tools/math").json()
    assert tool["input_schema"]["properties"]["expression"]["type"] == "string"
    assert tool["signature"].startswith("math(")


def test_another_tenants_tool_is_a_404_never_a_403(service: LiveService) -> None:
    globex = service.client("globex")
    for response in (
        globex.get("/v1/tools/math"),
        globex.post("/v1/tools/math:call", json={"args": {"expression": "1+1"}}),
        service.client("acme").post("/v1/tools/secret_vault:call", json={"args": {"name": "x"}}),
    ):
        body = assert_problem(response, 404, "not-found")
        assert "for this tenant" in body["detail"]
    # the globex tenant's own tool works for it
    ok = globex.post("/v1/tools/secret_vault:call", json={"args": {"name": "x"}}).json()
    assert ok["value"] == "secret of x"


def test_plans_and_grammars_see_only_granted_tools(service: LiveService) -> None:
    globex = service.client("globex")
    verdict = globex.post("/v1/plans:validate", json={"plan": '1. math(expression="1")\n2. join()'}).json()
    assert not verdict["ok"]
    assert verdict["errors"][0]["type"] == "UnknownToolError"
    body = assert_problem(globex.get("/v1/grammar", params={"tools": ["math"]}), 422, "unknown-tools")
    assert "'math'" in body["detail"]
    grammar = globex.get("/v1/grammar", params={"dialect": "llamacpp"}).json()
    assert grammar["tools"] == ["secret_vault"]
    assert "math" not in grammar["grammar"]


def test_direct_tool_call(service: LiveService) -> None:
    acme = service.client("acme")
    result = acme.post("/v1/tools/math:call", json={"args": {"expression": "6 * 7"}}).json()
    assert result == {
        "tool": "math",
        "ok": True,
        "status": "succeeded",
        "value": 42,
        "error": None,
        "attempts": 1,
        "seconds": result["seconds"],
    }
    failed = acme.post("/v1/tools/boom:call", json={"args": {"reason": "nope"}})
    assert failed.status_code == 200
    assert failed.json()["status"] == "failed"
    assert "nope" in failed.json()["error"]["message"]


def test_a_direct_call_is_bounded_in_time(service: LiveService) -> None:
    response = service.client("acme").post(
        "/v1/tools/sleep:call", json={"args": {"seconds": 5}, "timeout": 0.3}
    )
    assert response.status_code == 200
    assert response.json()["status"] != "succeeded"
    assert response.elapsed.total_seconds() < 3


def test_bad_arguments_are_a_422_naming_the_field(service: LiveService) -> None:
    response = service.client("acme").post("/v1/tools/math:call", json={"args": {"expression": 5}})
    body = assert_problem(response, 422, "invalid-arguments")
    assert body["errors"][0]["where"] == "expression"
    assert "expected string" in body["detail"]


# -- plans and grammars -----------------------------------------------------------------------------


def test_validate_reports_line_column_and_hint(service: LiveService) -> None:
    plan = '1. math(expression="1 + 1")\n2. mth(expression="2")\n3. join()'
    verdict = service.client("acme").post("/v1/plans:validate", json={"plan": plan}).json()
    assert verdict["ok"] is False
    error = verdict["errors"][0]
    assert (error["type"], error["line"], error["column"]) == ("UnknownToolError", 2, 4)
    assert "math" in error["hint"]
    assert error["text"] == '2. mth(expression="2")'


def test_validate_a_good_plan_gives_tasks_and_waves(service: LiveService) -> None:
    plan = '1. math(expression="1")\n2. math(expression="2")\n3. echo(value="${1} ${2}")\n4. join()'
    verdict = service.client("acme").post("/v1/plans:validate", json={"plan": plan}).json()
    assert verdict["ok"] and verdict["joined"]
    assert [t["deps"] for t in verdict["tasks"]] == [[], [], [1, 2]]
    assert verdict["waves"] == [[1, 2], [3]]


def test_validate_the_json_dialect_and_a_tool_subset(service: LiveService) -> None:
    acme = service.client("acme")
    plan = '{"tasks": [{"id": 1, "tool": "echo", "args": {"value": "hi"}}]}'
    assert acme.post("/v1/plans:validate", json={"plan": plan, "dialect": "json"}).json()["ok"]
    verdict = acme.post(
        "/v1/plans:validate", json={"plan": plan, "dialect": "json", "tools": ["math"]}
    ).json()
    assert not verdict["ok"]
    assert verdict["errors"][0]["type"] == "UnknownToolError"


def test_too_long_and_too_many_tasks(service: LiveService) -> None:
    acme = service.client("acme")
    plan = "".join(f'{i}. echo(value="x")\n' for i in range(1, 6)) + "6. join()"
    verdict = acme.post("/v1/plans:validate", json={"plan": plan, "max_tasks": 3}).json()
    assert verdict["errors"][0]["type"] == "TooManyTasksError"


@pytest.mark.parametrize(
    ("dialect", "form", "marker"),
    [("vllm", "gbnf", "root ::="), ("llamacpp", "gbnf", "root ::="), ("openai", "lark", "start:")],
)
def test_grammar_per_dialect(service: LiveService, dialect: str, form: str, marker: str) -> None:
    params = {"dialect": dialect, "tools": ["math", "echo"], "max_tasks": 4}
    grammar = service.client("acme").get("/v1/grammar", params=params).json()
    assert grammar["format"] == form
    assert marker in grammar["grammar"]
    assert grammar["tools"] == ["math", "echo"]


def test_grammar_json_schema_and_plain(service: LiveService) -> None:
    acme = service.client("acme")
    ollama = acme.get("/v1/grammar", params={"dialect": "ollama", "tools": ["echo"]}).json()
    assert ollama["format"] == "json_schema" and ollama["grammar"] is None
    assert ollama["json_schema"]["type"] == "object"
    plain = acme.get("/v1/grammar", params={"dialect": "plain"}).json()
    assert plain["format"] is None and "compat" in plain["note"]
    lark = acme.get("/v1/grammar", params={"dialect": "plain", "format": "lark"}).json()
    assert "start:" in lark["grammar"]
    assert_problem(acme.get("/v1/grammar", params={"dialect": "gpt"}), 422, "invalid-request")


# -- problem+json for bad input -------------------------------------------------------------------


def test_malformed_json_is_a_400(service: LiveService) -> None:
    response = service.client("acme").post(
        "/v1/plans:validate", content=b'{"plan": ', headers={"content-type": "application/json"}
    )
    body = assert_problem(response, 400, "malformed-json")
    assert "character" in body["detail"]


def test_wrong_content_type_is_a_415(service: LiveService) -> None:
    response = service.client("acme").post(
        "/v1/plans:validate", content=b"plan=1", headers={"content-type": "text/plain"}
    )
    assert "text/plain" in assert_problem(response, 415, "unsupported-media-type")["detail"]


def test_invalid_body_is_a_422_naming_the_field(service: LiveService) -> None:
    acme = service.client("acme")
    body = assert_problem(acme.post("/v1/plans:validate", json={"plan": 3}), 422, "invalid-request")
    assert "body field 'plan'" in body["detail"]
    extra = assert_problem(
        acme.post("/v1/plans:validate", json={"plan": "", "oops": 1}), 422, "invalid-request"
    )
    assert "oops" in extra["detail"]
    assert_problem(acme.post("/v1/tools/math:call", json=[1, 2]), 422, "invalid-request")


def test_a_huge_body_is_a_413(service: LiveService) -> None:
    acme = service.client("acme")
    big = {"plan": "x" * 10_000}
    assert_problem(acme.post("/v1/plans:validate", json=big), 413, "body-too-large")

    def chunks():  # no Content-Length: the server counts what arrives
        for _ in range(10):
            yield b" " * 1000

    response = acme.post("/v1/plans:validate", content=chunks(), headers={"content-type": "application/json"})
    assert_problem(response, 413, "body-too-large")


def test_unknown_endpoint_and_method(service: LiveService) -> None:
    acme = service.client("acme")
    assert_problem(acme.get("/v1/nothing"), 404, "not-found")
    assert_problem(acme.delete("/v1/tools"), 405, "method-not-allowed")


def test_request_id_is_taken_from_the_client_when_sane(service: LiveService) -> None:
    acme = service.client("acme")
    response = acme.get("/v1/tools/nope", headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    assert response.json()["request_id"] == "abc-123"
    odd = acme.get("/v1/tools/nope", headers={"X-Request-ID": "a b<c>"})
    assert odd.headers["x-request-id"] != "a b<c>"


def test_a_raw_garbage_request_gets_an_http_error_not_a_crash(service: LiveService) -> None:
    host, port = service.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"POST /v1/plans:validate HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
        head = sock.recv(200)
    assert head.startswith(b"HTTP/1.1 4")


# -- rate limits ------------------------------------------------------------------------------------


def test_requests_per_minute_give_429_with_retry_after(service: LiveService) -> None:
    tiny = service.client("tiny")
    for _ in range(3):
        assert tiny.get("/v1/tools").status_code == 200
    response = tiny.get("/v1/tools")
    body = assert_problem(response, 429, "rate-limited")
    assert int(response.headers["retry-after"]) >= 1
    assert "'tiny'" in body["detail"]
    assert service.client("acme").get("/v1/tools").status_code == 200  # other tenants go on


# -- admin: tenants and keys ------------------------------------------------------------------------


def test_members_cannot_use_admin_endpoints(service: LiveService) -> None:
    assert_problem(service.client("acme").get("/v1/admin/tenants"), 403, "forbidden")


def test_admin_manages_tenants_and_keys(service: LiveService) -> None:
    admin = service.client("admin")
    ids = [t["id"] for t in admin.get("/v1/admin/tenants").json()["tenants"]]
    assert ids == ["acme", "default", "globex", "tiny"]
    made = admin.post("/v1/admin/tenants", json={"id": "initech", "tools": ["echo"]})
    assert made.status_code == 201 and made.json()["source"] == "api"
    assert_problem(admin.post("/v1/admin/tenants", json={"id": "initech"}), 409, "conflict")
    key = admin.post("/v1/admin/tenants/initech/keys", json={"name": "ci"})
    assert key.status_code == 201
    secret = key.json()["key"]
    initech = service.client(key=secret)
    assert [t["name"] for t in initech.get("/v1/tools").json()["tools"]] == ["echo"]
    listed = admin.get("/v1/admin/tenants/initech/keys").json()["keys"]
    assert [k["id"] for k in listed] == [key.json()["id"]]
    assert "key" not in listed[0]

    changed = admin.patch("/v1/admin/tenants/initech", json={"tools": ["echo", "math"]})
    assert changed.json()["tools"] == ["echo", "math"]
    assert [t["name"] for t in initech.get("/v1/tools").json()["tools"]] == ["math", "echo"]

    revoked = admin.delete(f"/v1/admin/keys/{key.json()['id']}")
    assert revoked.json()["revoked_at"] is not None
    assert_problem(initech.get("/v1/tools"), 401, "unauthorized")
    assert admin.delete("/v1/admin/tenants/initech").status_code == 204
    assert_problem(admin.get("/v1/admin/tenants/initech"), 404, "not-found")


def test_config_tenants_and_default_are_protected(service: LiveService) -> None:
    admin = service.client("admin")
    body = assert_problem(admin.patch("/v1/admin/tenants/acme", json={"name": "x"}), 409, "conflict")
    assert "configuration file" in body["detail"]
    assert_problem(admin.delete("/v1/admin/tenants/default"), 409, "conflict")
    assert_problem(admin.delete("/v1/admin/keys/0000000000000000"), 404, "not-found")


def test_disabling_a_tenant_locks_its_keys_out(service: LiveService) -> None:
    admin = service.client("admin")
    admin.post("/v1/admin/tenants", json={"id": "hooli"})
    secret = admin.post("/v1/admin/tenants/hooli/keys", json={}).json()["key"]
    hooli = service.client(key=secret)
    assert hooli.get("/v1/tools").status_code == 200
    admin.patch("/v1/admin/tenants/hooli", json={"disabled": True})
    assert_problem(hooli.get("/v1/tools"), 401, "unauthorized")


def test_admin_keys_are_made_only_for_the_default_tenant(service: LiveService) -> None:
    admin = service.client("admin")
    admin.post("/v1/admin/tenants", json={"id": "umbrella", "tools": ["echo"]})
    body = assert_problem(
        admin.post("/v1/admin/tenants/umbrella/keys", json={"role": "admin"}), 422, "invalid-role"
    )
    assert "default" in body["detail"]
    assert admin.delete("/v1/admin/tenants/umbrella").status_code == 204


def test_a_grammar_for_a_tenant_with_no_tools_is_a_422_not_a_500(service: LiveService) -> None:
    admin = service.client("admin")
    admin.post("/v1/admin/tenants", json={"id": "empty", "tools": []})
    secret = admin.post("/v1/admin/tenants/empty/keys", json={}).json()["key"]
    assert_problem(service.client(key=secret).get("/v1/grammar"), 422, "no-tools")
    assert admin.delete("/v1/admin/tenants/empty").status_code == 204
