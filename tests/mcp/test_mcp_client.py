"""MCPTools against real MCP servers written with the SDK, over stdio and streamable HTTP."""

from __future__ import annotations

import os
import sys
import time

import anyio
import pytest
from mcp_helpers import server

from tomasulo.exceptions import ToolCrashed, ToolExecutionError, ToolSourceError, ToolTimeout
from tomasulo.tools import MCPImage, MCPTools, Tool, Toolset, ToolSource
from tomasulo.tools._net import NetPolicy

pytestmark = pytest.mark.anyio
LOOPBACK = NetPolicy(allow_private_hosts=("127.0.0.1",))


async def by_name(source: MCPTools) -> dict[str, Tool]:
    return {t.name: t for t in await source.list_tools()}


async def test_tools_are_listed_with_normalized_schemas(basic: MCPTools) -> None:
    with anyio.fail_after(20):
        tools = await by_name(basic)
    assert isinstance(basic, ToolSource)
    assert {"echo", "fail", "weather", "hang", "crash"} <= set(tools)
    echo = tools["echo"]
    assert echo.description == "Return the text."
    assert echo.input_schema["properties"]["text"]["type"] == "string"
    assert echo.input_schema["required"] == ["text"]
    assert echo.output_schema is not None and echo.output_schema["type"] == "string", "unwrapped"
    weather = tools["weather"].output_schema
    assert weather is not None and set(weather["properties"]) == {"city", "celsius"}
    Toolset(tools.values())  # every name is a legal plan name


async def test_results_become_typed_values(basic: MCPTools) -> None:
    with anyio.fail_after(20):
        tools = await by_name(basic)
        assert await tools["echo"].fn(text="hello") == "hello"
        assert await tools["weather"].fn(city="Oslo") == {"city": "Oslo", "celsius": 21.5}
        assert await tools["cancellations"].fn() == 0, "a plain value comes back unwrapped"
        assert await tools["picture"].fn() == MCPImage(b"\x89PNG", "image/png")


async def test_is_error_is_a_tool_error_with_the_servers_text(basic: MCPTools) -> None:
    with anyio.fail_after(20):
        tools = await by_name(basic)
        with pytest.raises(ToolExecutionError, match="refused: no reason") as info:
            await tools["fail"].fn(reason="no reason")
    assert info.value.tool == "fail"


async def test_a_hanging_call_times_out_and_the_server_is_told() -> None:
    with anyio.fail_after(30):
        async with MCPTools.stdio(sys.executable, server("basic"), timeout=0.5) as source:
            tools = await by_name(source)
            started = time.monotonic()
            with pytest.raises(ToolTimeout, match=r"within 0.5 s"):
                await tools["hang"].fn()
            assert time.monotonic() - started < 10
            assert await tools["cancellations"].fn(at_least=1) == 1, "the server got notifications/cancelled"
            # a call cancelled from outside (a run cancelled) is reported to the server too
            with anyio.move_on_after(0.2):
                await tools["hang"].fn()
            assert await tools["cancellations"].fn(at_least=2) == 2


async def test_a_crashed_server_fails_the_call_and_is_restarted() -> None:
    with anyio.fail_after(40):
        async with MCPTools.stdio(sys.executable, server("basic")) as source:
            tools = await by_name(source)
            first = await tools["pid"].fn()
            with pytest.raises(ToolCrashed, match="started again for the next call"):
                await tools["crash"].fn()
            second = await tools["pid"].fn()
    assert second != first and source.starts == 2


async def test_the_list_refreshes_on_list_changed(basic: MCPTools) -> None:
    with anyio.fail_after(20):
        tools = await by_name(basic)
        assert "greet" not in tools
        version = basic.tools_version
        assert await tools["add_tool"].fn(name="greet") == "greet"
        await basic.wait_tools_changed(version)
        tools = await by_name(basic)
        assert await tools["greet"].fn() == "I am greet"


async def test_prefix_makes_names_legal_and_calls_use_the_servers_name() -> None:
    with anyio.fail_after(20):
        async with MCPTools.stdio(sys.executable, server("basic"), prefix="2 b/") as source:
            tools = await by_name(source)
            assert "_2_b_echo" in tools
            assert await tools["_2_b_echo"].fn(text="x") == "x"


async def test_a_server_that_never_answers_initialize_fails_within_startup_timeout() -> None:
    started = time.monotonic()
    with anyio.fail_after(30):
        with pytest.raises(ToolSourceError, match=r"within 1 s \(startup_timeout\)"):
            async with MCPTools.stdio(sys.executable, server("silent"), startup_timeout=1):
                pass  # pragma: no cover
    assert time.monotonic() - started < 15


async def test_a_server_that_never_answers_tools_list_fails_within_startup_timeout() -> None:
    started = time.monotonic()
    with anyio.fail_after(30):
        async with MCPTools.stdio(sys.executable, server("nolist"), startup_timeout=2) as source:
            with pytest.raises(ToolSourceError, match=r"tools/list: no answer within 2 s"):
                await source.list_tools()
    assert time.monotonic() - started < 20


async def test_a_command_that_does_not_exist_is_a_clear_error() -> None:
    with anyio.fail_after(20):
        with pytest.raises(ToolSourceError, match="could not start the server") as info:
            async with MCPTools.stdio("/no/such/mcp-server", env={"API_TOKEN": "hunter2-secret"}):
                pass  # pragma: no cover
    assert "hunter2-secret" not in str(info.value)
    assert info.value.source == "mcp:mcp-server"


async def test_a_server_that_ignores_shutdown_is_killed() -> None:
    with anyio.fail_after(30):
        async with MCPTools.stdio(sys.executable, server("stubborn"), shutdown_timeout=8) as source:
            pid = await (await by_name(source))["pid"].fn()
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


async def test_env_reaches_the_server_and_its_values_stay_out_of_errors() -> None:
    secret = "s3cret-token-value"
    with anyio.fail_after(20):
        async with MCPTools.stdio(
            sys.executable, server("basic"), env={"MCP_TEST_TOKEN": secret}, timeout=0.3
        ) as source:
            tools = await by_name(source)
            assert await tools["secret_env"].fn() == "set"
            with pytest.raises(ToolExecutionError) as info:
                await source.call("fail", {"reason": f"echoing {secret}"})
    assert secret not in str(info.value) and "***" in str(info.value)
    assert secret not in source.label


async def test_calls_are_concurrent_over_one_session(basic: MCPTools) -> None:
    with anyio.fail_after(30):
        slow = (await by_name(basic))["slow"]
        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(lambda: slow.fn(seconds=1.0))
        elapsed = time.monotonic() - started
    assert elapsed < 5.0, f"10 calls of 1 s took {elapsed:.2f} s: not concurrent"


async def test_http_transports(basic_http_url: str) -> None:
    headers = {"Authorization": "Bearer http-secret-123"}
    transport = "sse" if basic_http_url.endswith("/sse") else "streamable-http"
    with anyio.fail_after(40):
        async with MCPTools.http(
            basic_http_url, headers, transport=transport, timeout=0.5, net_policy=LOOPBACK
        ) as source:
            assert source.label.startswith("mcp:http://127.0.0.1:")
            tools = await by_name(source)
            assert await tools["echo"].fn(text="over http") == "over http"
            assert await tools["weather"].fn(city="Rome") == {"city": "Rome", "celsius": 21.5}
            with pytest.raises(ToolExecutionError, match="refused: http"):
                await tools["fail"].fn(reason="http")
            with pytest.raises(ToolTimeout):
                await tools["hang"].fn()
            assert await tools["cancellations"].fn(at_least=1) == 1, "the cancellation reached the server"
            version = source.tools_version
            await tools["add_tool"].fn(name="hello")
            await source.wait_tools_changed(version)
            assert "hello" in await by_name(source)
            with pytest.raises(ToolCrashed, match="the next call opens a new session"):
                await tools["crash"].fn()
            with pytest.raises(ToolCrashed, match="could not start the server"):
                await tools["echo"].fn(text="nobody there")


async def test_http_errors_carry_no_header_secrets() -> None:
    with anyio.fail_after(20):
        with pytest.raises(ToolSourceError) as info:
            async with MCPTools.http(
                "http://127.0.0.1:9/mcp?key=query-secret",
                {"X-Api-Key": "header-secret"},
                startup_timeout=5,
                net_policy=LOOPBACK,
            ):
                pass  # pragma: no cover
    text = str(info.value)
    assert "header-secret" not in text and "query-secret" not in text
    assert "could not start the server" in text


@pytest.mark.parametrize("basic_http_url", ["streamable-http"], indirect=True)
async def test_http_secrets_are_cut_out_as_words_and_as_written_in_the_url(basic_http_url: str) -> None:
    token, password, query = "tok-abcdef123456", "p%40ss-word-99", "q%2Bsecret-xyz"
    url = basic_http_url.replace("http://", f"http://user:{password}@") + f"?key={query}"
    leaks = [token, password, "p@ss-word-99", query, "q+secret-xyz"]
    with anyio.fail_after(40):
        async with MCPTools.http(
            url, {"Authorization": f"Bearer {token}"}, timeout=5, net_policy=LOOPBACK
        ) as source:
            with pytest.raises(ToolExecutionError) as info:
                await source.call("fail", {"reason": " / ".join(leaks)})
    text = str(info.value)
    assert "refused: " in text
    assert [leak for leak in leaks if leak in text] == [], text
    assert text.count("***") == len(leaks)


async def test_http_urls_go_through_the_ssrf_check() -> None:
    with anyio.fail_after(20):
        with pytest.raises(ToolSourceError, match="loopback") as info:
            async with MCPTools.http("http://127.0.0.1:9/mcp?token=url-secret"):
                pass  # pragma: no cover
        assert "url-secret" not in str(info.value)
        with pytest.raises(ToolSourceError, match=r"169\.254\.169\.254"):
            async with MCPTools.http("http://169.254.169.254/mcp", net_policy=NetPolicy(allow_private=True)):
                pass  # pragma: no cover
