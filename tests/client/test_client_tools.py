"""Client and AsyncClient against the real service: tools, plans, and errors as exceptions."""

from __future__ import annotations

import socket

import anyio
import pytest
from service.conftest import LiveService

from tomasulo.client import (
    AsyncClient,
    Client,
    Retries,
    ServiceConnectionError,
    ServiceError,
    ServiceNotFound,
    ServiceRateLimited,
    ToolInfo,
)
from tomasulo.exceptions import ConfigError, TomasuloError


def test_tools_round_trip(live: LiveService) -> None:
    with Client(live.url, api_key=live.keys["acme"]) as client:
        tools = client.list_tools()
        assert [t.name for t in tools] == ["math", "echo", "sleep", "boom"]
        assert isinstance(tools[0], ToolInfo) and tools[0].signature.startswith("math(")
        result = client.call_tool("math", {"expression": "6 * 7"})
        assert (result.ok, result.value, result.attempts) == (True, 42, 1)
        failed = client.call_tool("boom", {"reason": "nope"})
        assert not failed.ok and failed.error is not None and "nope" in failed.error["message"]


def test_validate_plan_gives_line_and_hint(live: LiveService) -> None:
    with Client(live.url, api_key=live.keys["acme"]) as client:
        bad = client.validate_plan('1. math(expression="1+1")\n2. mth(x=1)\n3. join()')
        assert not bad.ok
        assert (bad.errors[0].line, bad.errors[0].type) == (2, "UnknownToolError")
        assert "math" in bad.errors[0].hint
        good = client.validate_plan('1. echo(value="a")\n2. echo(value="b")\n3. join()')
        assert good.ok and good.waves == [[1, 2]]


def test_a_problem_becomes_an_exception_with_its_members(live: LiveService) -> None:
    with Client(live.url, api_key=live.keys["other"]) as client:
        with pytest.raises(ServiceNotFound) as caught:
            client.call_tool("math", {"expression": "1"})  # not granted to this tenant: a 404
    error = caught.value
    assert isinstance(error, ServiceError) and isinstance(error, TomasuloError)
    assert (error.status, error.slug) == (404, "not-found")
    assert error.type == "https://tomasulo.dev/problems/not-found"
    assert error.title and "for this tenant" in error.detail
    assert error.request_id and error.request_id in str(error)
    assert error.problem["instance"] == "/v1/tools/math:call"


def test_a_422_keeps_the_errors_list(live: LiveService) -> None:
    with Client(live.url, api_key=live.keys["acme"]) as client, pytest.raises(ServiceError) as caught:
        client.call_tool("math", {"expression": 5})
    assert caught.value.status == 422 and caught.value.slug == "invalid-arguments"
    assert caught.value.problem["errors"][0]["where"] == "expression"


def test_a_bad_key_is_a_401(live: LiveService) -> None:
    with Client(live.url, api_key="tmsk_0000_wrong") as client, pytest.raises(ServiceError) as caught:
        client.list_tools()
    assert caught.value.status == 401 and caught.value.slug == "unauthorized"


def test_429_waits_out_a_short_retry_after(live: LiveService) -> None:
    with Client(live.url, api_key=live.keys["burst"]) as client:
        for _ in range(62):  # the bucket holds 60; the next ones wait a second each, then pass
            assert client.call_tool("echo", {"value": "x"}).ok


def test_429_with_a_retry_after_past_the_bound_is_raised_at_once(live: LiveService) -> None:
    with Client(live.url, api_key=live.keys["slow"], retries=Retries(max_retry_after=5)) as client:
        client.list_tools()
        with pytest.raises(ServiceRateLimited) as caught:
            client.list_tools()
    assert caught.value.status == 429 and caught.value.retry_after is not None
    assert caught.value.retry_after > 5


def test_an_unreachable_service_is_a_connection_error_after_bounded_retries() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket closes
    retries = Retries(attempts=3, backoff=0.01, max_backoff=0.02)
    with Client(f"http://127.0.0.1:{port}", api_key="k", retries=retries) as client:
        with pytest.raises(ServiceConnectionError) as caught:
            client.list_tools()
    assert caught.value.unsent and "cannot reach the service" in str(caught.value)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="http:// or https://"):
        Client("127.0.0.1:8080")
    with pytest.raises(ConfigError, match="attempts"):
        Retries(attempts=0)


@pytest.mark.anyio
async def test_async_client_tools_and_errors(live: LiveService) -> None:
    with anyio.fail_after(30):
        async with AsyncClient(live.url, api_key=live.keys["acme"]) as client:
            assert [t.name for t in await client.list_tools()][:2] == ["math", "echo"]
            assert (await client.call_tool("math", {"expression": "2**10"})).value == 1024
            with pytest.raises(ServiceNotFound):
                await client.call_tool("nope", {})
            assert (await client.validate_plan("1. join()")).ok
