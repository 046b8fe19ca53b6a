"""A FastAPI app on loopback: its generated spec loaded back as tools and called end to end."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import anyio
import pytest

from tomasulo.dispatcher import Dispatcher
from tomasulo.exceptions import ConfigError, DestinationRefused, ToolHTTPError, ToolOutputError, ToolTimeout
from tomasulo.grammar import parse_plan
from tomasulo.tools import HttpLimits, OpenAPITools, Tool, Toolset
from tomasulo.tools._net import NetPolicy

from . import app as served
from .conftest import LOOPBACK, Served

pytestmark = pytest.mark.anyio

FAST = HttpLimits(timeout=10, retries=2, backoff=0.01, max_backoff=0.05)


def source(api: Served, **kw: Any) -> OpenAPITools:
    kw.setdefault("policy", LOOPBACK)
    kw.setdefault("limits", FAST)
    return OpenAPITools.from_spec(api.spec, base_url=api.url, **kw)


def by_name(tools: list[Tool]) -> dict[str, Tool]:
    return {t.name: t for t in tools}


async def call(t: Tool, **args: Any) -> Any:
    return await t.call(t.validate(args))


async def test_the_generated_spec_round_trips_through_path_query_and_json_bodies(api: Served) -> None:
    with anyio.fail_after(20):
        async with source(api) as src:
            tools = by_name(await src.list_tools())
            assert await call(tools["getPet"], pet_id=1) == {"id": 1, "name": "Rex", "tag": "dog"}
            created = await call(tools["createPet"], name="Tom", tag="cat")
            assert created["name"] == "Tom" and created["id"] == 2
            assert [p["name"] for p in await call(tools["listPets"], tags=["cat"])] == ["Tom"]
            assert len(await call(tools["listPets"], limit=1)) == 1


async def test_read_only_properties_are_not_arguments(api: Served) -> None:
    tools = by_name(source(api).tools())
    assert "id" not in tools["createPet"].param_names  # Pet.id is readOnly: the server assigns it
    assert tools["createPet"].param_names == ("name", "tag")


async def test_a_body_field_named_like_a_path_parameter_becomes_body_id(api: Served) -> None:
    tools = by_name(source(api).tools())
    rename = tools["renamePet"]
    assert rename.param_names == ("id", "body_id", "name")
    with anyio.fail_after(10):
        got = await call(rename, id=1, body_id=99, name="Max")
    assert got == {"path_id": 1, "body_id": 99, "name": "Max"}


async def test_form_and_multipart_bodies(api: Served) -> None:
    tools = by_name(source(api).tools())
    with anyio.fail_after(10):
        assert await call(tools["login"], username="ada", remember=True) == {"user": "ada", "remember": True}
        got = await call(tools["upload"], file="PNG-ish bytes", note="n1")
    assert got == {"size": 13, "note": "n1", "head": "PNG-i"}


async def test_a_header_parameter_becomes_an_identifier_argument(api: Served) -> None:
    tools = by_name(source(api).tools())
    with anyio.fail_after(10):
        assert await call(tools["echoHeader"], x_request_id="req-42") == "req-42"


async def test_recursive_schema_is_bounded_and_still_callable(api: Served) -> None:
    t = by_name(source(api, max_depth=2).tools())["treeDepth"]
    tree = {"label": "a", "children": [{"label": "b", "children": [{"label": "c", "children": []}]}]}
    with anyio.fail_after(10):
        assert await call(t, **tree) == 3
    text = repr(t.input_schema)
    assert "recursion cut after 2 levels" in text


async def test_responses_are_parsed_by_media_type(api: Served) -> None:
    tools = by_name(source(api).tools())
    with anyio.fail_after(10):
        assert await call(tools["plainText"]) == "hello there"
        image = await call(tools["image"])
    assert image["kind"] == "bytes" and image["media_type"] == "image/png" and image["size"] == 32


async def test_a_response_over_the_size_bound_is_refused_with_the_bound_named(api: Served) -> None:
    small = dataclasses.replace(FAST, max_response_bytes=50_000)
    t = by_name(source(api, limits=small).tools())["big"]
    with anyio.fail_after(10), pytest.raises(ToolOutputError, match="max_response_bytes"):
        await call(t)


async def test_a_server_that_trickles_cannot_pass_the_timeout(api: Served) -> None:
    short = dataclasses.replace(FAST, timeout=0.5, retries=0)
    t = by_name(source(api, limits=short).tools())["trickle"]
    with anyio.fail_after(10), pytest.raises(ToolTimeout, match=r"0\.5 s \(timeout\)"):
        await call(t)


async def test_404_is_typed_and_not_retried(api: Served) -> None:
    t = by_name(source(api).tools())["getPet"]
    with anyio.fail_after(10), pytest.raises(ToolHTTPError) as info:
        await call(t, pet_id=77)
    assert info.value.status_code == 404 and not info.value.retryable
    assert "no pet 77" in str(info.value)
    assert api.state.calls["get 77"] == 1


async def test_503_is_retried_for_get_honouring_retry_after(api: Served) -> None:
    t = by_name(source(api).tools())["flakyGet"]
    with anyio.fail_after(20):
        start = time.monotonic()
        got = await call(t, key="g", fails=2, retry_after="0.3")
        waited = time.monotonic() - start
    assert got == {"attempts": 3}
    assert waited >= 0.6  # two waits of the server's 0.3 s, not the 0.01 s backoff


async def test_a_retry_after_that_is_not_a_number_or_a_date_is_ignored(api: Served) -> None:
    t = by_name(source(api).tools())["flakyGet"]
    with anyio.fail_after(20):
        assert await call(t, key="junk", fails=1, retry_after="soon, maybe") == {"attempts": 2}


async def test_503_is_not_retried_for_post_unless_marked_idempotent(api: Served) -> None:
    t = by_name(source(api).tools())["flakyPost"]
    with anyio.fail_after(10), pytest.raises(ToolHTTPError) as info:
        await call(t, key="p")
    assert info.value.status_code == 503 and "not idempotent" in str(info.value)
    assert api.state.calls["flaky p"] == 1
    marked = by_name(source(api, idempotent=["flakyPost"]).tools())["flakyPost"]
    with anyio.fail_after(10), pytest.raises(ToolHTTPError):
        await call(marked, key="q")
    assert api.state.calls["flaky q"] == 3  # the first attempt and two retries


async def test_other_4xx_are_typed_and_name_the_request(api: Served) -> None:
    t = by_name(source(api).tools())["teapot"]
    with (
        anyio.fail_after(10),
        pytest.raises(ToolHTTPError, match=r"GET http://127\.0\.0\.1:\d+/teapot answered 418"),
    ):
        await call(t)


async def test_loopback_is_refused_without_an_explicit_allowance(api: Served) -> None:
    t = by_name(source(api, policy=NetPolicy()).tools())["getPet"]
    with anyio.fail_after(10), pytest.raises(DestinationRefused, match="loopback"):
        await call(t, pet_id=1)


# -- auth ------------------------------------------------------------------------------------


@pytest.fixture
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PETS_KEY", served.API_KEY)
    monkeypatch.setenv("PETS_TOKEN", served.BEARER)
    monkeypatch.setenv("PETS_USER", served.USER)
    monkeypatch.setenv("PETS_PASSWORD", served.PASSWORD)
    monkeypatch.setenv("PETS_CLIENT_ID", served.CLIENT_ID)
    monkeypatch.setenv("PETS_CLIENT_SECRET", served.CLIENT_SECRET)


AUTH = {
    "key_header": {"key_env": "PETS_KEY"},
    "key_query": {"key_env": "PETS_KEY"},
    "key_cookie": {"key_env": "PETS_KEY"},
    "bearer": {"token_env": "PETS_TOKEN"},
    "basic": {"username_env": "PETS_USER", "password_env": "PETS_PASSWORD"},
    "oauth": {"client_id_env": "PETS_CLIENT_ID", "client_secret_env": "PETS_CLIENT_SECRET"},
}


@pytest.mark.usefixtures("secrets_env")
async def test_every_auth_scheme_works_with_secrets_from_the_environment(api: Served) -> None:
    with anyio.fail_after(20):
        async with source(api, auth=AUTH) as src:
            tools = by_name(await src.list_tools())
            for name in ("secureKey", "secureQuery", "secureCookie", "secureBearer", "secureOauth"):
                assert tools[name].param_names == ()  # credentials are never arguments
                assert (await call(tools[name])).endswith("ok")
            assert await call(tools["secureBasic"]) == "basic ok ada"


@pytest.mark.usefixtures("secrets_env")
async def test_oauth_token_is_cached_and_fetched_again_once_after_a_401(api: Served) -> None:
    with anyio.fail_after(20):
        async with source(api, auth=AUTH) as src:
            t = by_name(await src.list_tools())["secureOauth"]
            for _ in range(3):
                assert await call(t) == "oauth ok"
            assert api.state.token_requests == 1
            async with __import__("httpx").AsyncClient() as plain:
                await plain.post(api.url + "/admin/revoke")
            assert await call(t) == "oauth ok"
            assert api.state.token_requests == 2


async def test_a_missing_secret_names_the_variable(api: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PETS_KEY", raising=False)
    with pytest.raises(ConfigError, match="PETS_KEY"):
        source(api, auth={"key_header": {"key_env": "PETS_KEY"}})


async def test_secrets_never_appear_in_errors(api: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    # the server echoes the wrong password back in its 401; the error must not carry it
    monkeypatch.setenv("PETS_USER", "ada")
    monkeypatch.setenv("PETS_PASSWORD", "wrong-pw-123")
    auth = {"basic": {"username_env": "PETS_USER", "password_env": "PETS_PASSWORD"}}
    t = by_name(source(api, auth=auth).tools())["secureBasic"]
    with anyio.fail_after(10), pytest.raises(ToolHTTPError) as info:
        await call(t)
    assert info.value.status_code == 401
    assert "wrong-pw-123" not in str(info.value) and "***" in str(info.value)


@pytest.mark.usefixtures("secrets_env")
async def test_secrets_stay_out_of_events_and_logs(api: Served, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    events: list[Any] = []
    tools = Toolset(source(api, auth=AUTH, include=["tag:auth"]).tools())
    plan = parse_plan("1. secureQuery()\n2. secureOauth()\n3. secureBasic()\n4. join()", tools)
    with anyio.fail_after(20):
        outcomes = await Dispatcher.run_plan(tools, plan, on_event=events.append)
    assert [o.status for o in outcomes.values()] == ["succeeded"] * 3
    assert "api_key=***" in caplog.text  # httpx logged the request, with the key scrubbed
    seen = caplog.text + "\n".join(repr(e) for e in events)
    for secret in (served.API_KEY, served.PASSWORD, served.CLIENT_SECRET):
        assert secret not in seen


async def test_include_and_exclude_by_tag_path_and_id(api: Served) -> None:
    names = lambda src: {t.name for t in src.tools()}  # noqa: E731
    assert names(source(api, include=["tag:auth"])) == {
        "secureKey",
        "secureQuery",
        "secureCookie",
        "secureBearer",
        "secureBasic",
        "secureOauth",
    }
    assert names(source(api, include=["path:/pets*"], exclude=["id:create*"])) == {
        "listPets",
        "getPet",
        "renamePet",
    }
    assert names(source(api, include=["GET /flaky/*"], prefix="api_")) == {"api_flakyGet"}


async def test_a_plan_fans_out_to_operations_concurrently(api: Served) -> None:
    tools = Toolset(source(api).tools())
    lines = [f"{i}. getPet(pet_id=1)" for i in range(1, 11)]
    plan = parse_plan("\n".join([*lines, "11. join()"]), tools)
    with anyio.fail_after(20):
        outcomes = await Dispatcher.run_plan(tools, plan)
    assert [o.status for o in outcomes.values()] == ["succeeded"] * 10
    assert all(o.value["name"] == "Rex" for o in outcomes.values())
