"""A base URL without /v1 gets a hint whichever way the server says it has no such endpoint."""

from __future__ import annotations

from contextlib import aclosing
from typing import Any

import anyio
import httpx
import pytest

from tomasulo.exceptions import LLMResponseError, LLMStatusError
from tomasulo.planner import LLM, RetryPolicy

pytestmark = pytest.mark.anyio

ONCE = RetryPolicy(attempts=1)


def web_page(status: int, content_type: str = "text/html") -> Any:
    """A web server with no OpenAI API at its root: every request gets the same page."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", content_type.encode())],
            }
        )
        await send({"type": "http.response.body", "body": b"<html><body>Welcome to the UI</body></html>"})

    return app


async def ask(base_url: str, app: Any) -> str:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
        async with LLM(base_url, model="m", dialect="plain", http_client=http, retry=ONCE) as llm:
            async with aclosing(llm.stream("plan it")) as chunks:
                return "".join([c async for c in chunks])


@pytest.mark.parametrize("status", [404, 405])
async def test_a_missing_endpoint_without_v1_says_to_add_it(status: int) -> None:
    with anyio.fail_after(10), pytest.raises(LLMStatusError, match=r"usually serve under /v1") as caught:
        await ask("http://127.0.0.1:8080", web_page(status))
    assert "try http://127.0.0.1:8080/v1" in str(caught.value)


async def test_a_web_page_instead_of_a_stream_without_v1_says_to_add_it() -> None:
    with anyio.fail_after(10), pytest.raises(LLMResponseError, match=r"not server-sent events") as caught:
        await ask("http://127.0.0.1:8080/", web_page(200))
    assert "try http://127.0.0.1:8080/v1" in str(caught.value)


async def test_a_base_url_with_v1_gets_no_such_hint() -> None:
    with anyio.fail_after(10), pytest.raises(LLMResponseError) as caught:
        await ask("http://127.0.0.1:8080/v1", web_page(200))
    assert "/v1 (try" not in str(caught.value)
    with anyio.fail_after(10), pytest.raises(LLMStatusError) as status:
        await ask("http://127.0.0.1:8080/v1", web_page(405))
    assert "/v1 (try" not in str(status.value)
