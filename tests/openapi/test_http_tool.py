"""HTTP tools from a URL template, Retry-After parsing, and auth headers on redirects."""

from __future__ import annotations

import email.utils
from typing import Any

import anyio
import pytest

from tomasulo.exceptions import ConfigError, DestinationRefused, ToolHTTPError
from tomasulo.tools import HttpLimits, OpenAPITools, Tool, http_tool
from tomasulo.tools._http_tool import parse_retry_after

from . import app as served
from .app import make_app
from .conftest import LOOPBACK, Served, serving

pytestmark = pytest.mark.anyio


async def call(t: Tool, **args: Any) -> Any:
    return await t.call(t.validate(args))


async def test_url_template_arguments_fill_the_path_and_the_rest_goes_in_the_query(api: Served) -> None:
    t = http_tool(
        "pet",
        api.url + "/pets/{pet_id}",
        schema={"type": "object", "properties": {"pet_id": {"type": "integer"}}, "required": ["pet_id"]},
        policy=LOOPBACK,
    )
    listing = http_tool(
        "pets",
        api.url + "/pets",
        schema={"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"}}}},
        policy=LOOPBACK,
    )
    with anyio.fail_after(10):
        assert await call(t, pet_id=1) == {"id": 1, "name": "Rex", "tag": "dog"}
        assert [p["name"] for p in await call(listing, tags=["dog", "cat"])] == ["Rex"]
        with pytest.raises(ToolHTTPError) as info:
            await call(t, pet_id=5)
    assert info.value.status_code == 404 and api.state.calls["get 5"] == 1


async def test_post_sends_the_arguments_as_json_or_a_form(api: Served) -> None:
    create = http_tool(
        "create",
        api.url + "/pets",
        "POST",
        schema={"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
        policy=LOOPBACK,
    )
    login = http_tool(
        "login",
        api.url + "/login",
        "POST",
        schema={"type": "object", "properties": {"username": {"type": "string"}}},
        policy=LOOPBACK,
        body="form",
    )
    with anyio.fail_after(10):
        assert (await call(create, name="Ivy"))["name"] == "Ivy"
        assert await call(login, username="bo") == {"user": "bo", "remember": False}


async def test_a_5xx_on_get_is_retried_and_post_is_not(api: Served) -> None:
    limits = HttpLimits(retries=2, backoff=0.01)
    get = http_tool("g", api.url + "/flaky/{key}", policy=LOOPBACK, limits=limits)
    post = http_tool("p", api.url + "/flaky/{key}", "POST", policy=LOOPBACK, limits=limits)
    with anyio.fail_after(10):
        assert await call(get, key="a") == {"attempts": 2}
        with pytest.raises(ToolHTTPError, match="503"):
            await call(post, key="b")
    assert api.state.calls["flaky b"] == 1


def test_the_default_schema_is_the_placeholders_and_they_must_be_required() -> None:
    assert (
        http_tool("w", "https://api.example.com/w/{city}/{day}").signature() == "w(city: string, day: string)"
    )
    with pytest.raises(ConfigError, match=r"\{city\} must be a required property"):
        http_tool("w", "https://api.example.com/w/{city}", schema={"type": "object", "properties": {}})


async def test_an_http_tool_is_refused_a_private_destination_by_default() -> None:
    t = http_tool("meta", "http://169.254.169.254/latest/meta-data")
    with anyio.fail_after(10), pytest.raises(DestinationRefused, match="metadata"):
        await call(t)


def test_retry_after_in_seconds_an_http_date_or_junk() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after("-3") == 0.0
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert parse_retry_after(date, now=1_000_000) == pytest.approx(30)
    for junk in ("soon", "", "Wed, 99 Foo 2024", "nan", "inf", None):
        assert parse_retry_after(junk) is None


@pytest.mark.usefixtures("api")
async def test_an_api_key_is_not_sent_on_to_another_origin(
    api: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PETS_KEY", served.API_KEY)
    other, _ = make_app()
    with serving(other) as elsewhere:
        src = OpenAPITools.from_spec(
            api.spec, base_url=api.url, policy=LOOPBACK, auth={"key_header": {"key_env": "PETS_KEY"}}
        )
        bounce = {t.name: t for t in src.tools()}["secureBounce"]
        with anyio.fail_after(10):
            same = await call(bounce, to=api.url + "/whoami")
            away = await call(bounce, to=elsewhere + "/whoami")
    assert same == {"key": served.API_KEY}  # the same origin keeps the credentials
    assert away == {"key": None}  # another origin (another port) does not get them
