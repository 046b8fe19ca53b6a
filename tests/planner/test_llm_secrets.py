"""Keys in a base URL (userinfo, query values) never appear in an error message.

``https://user:sk-...@host/v1?api-key=...`` is how some gateways take keys; every message that
names the server shows the URL with those parts as ``***``.
"""

from __future__ import annotations

import anyio
import pytest

from tomasulo.exceptions import ConfigError, LLMConnectionError, LLMError, LLMStatusError
from tomasulo.planner import LLM, RetryPolicy
from tomasulo.planner._llm import _shown_url
from tomasulo.testing import SimulatedLLM

pytestmark = pytest.mark.anyio

SECRETS = ("sk-user-secret", "sk-query-secret")
ONCE = RetryPolicy(attempts=1)


def _assert_redacted(message: str) -> None:
    assert "***" in message, message
    for secret in SECRETS:
        assert secret not in message, message


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://me:sk-1@llm.example/v1?key=sk-2&v", "https://***@llm.example/v1?key=***&***"),
        ("me:sk-1@llm.example/v1", "***@llm.example/v1"),
        ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
        ("https://llm.example/v1#sk-3", "https://llm.example/v1#***"),
    ],
)
def test_the_shown_url_hides_userinfo_query_values_and_fragment(url: str, shown: str) -> None:
    assert _shown_url(url) == shown


@pytest.mark.parametrize(
    "base_url",
    [
        "ftp://me:sk-user-secret@127.0.0.1/v1?key=sk-query-secret",
        "me:sk-user-secret@127.0.0.1/v1?key=sk-query-secret",
        "https://me:sk-user-secret@127.0.0.1:bad/v1?key=sk-query-secret",
        "https://me:sk-user-secret@/v1?key=sk-query-secret",
    ],
)
def test_a_refused_base_url_is_shown_without_its_keys(base_url: str) -> None:
    with pytest.raises(ConfigError) as info:
        LLM(base_url, model="m")
    _assert_redacted(str(info.value))
    assert info.value.__cause__ is None, "the URL parser's own error may quote the keys"


async def test_errors_from_the_server_name_it_without_its_keys() -> None:
    sim = SimulatedLLM(["1. join()"])
    with anyio.fail_after(10):
        async with sim.serve() as url:
            host = url.removeprefix("http://").removesuffix("/v1")
            base = f"http://me:sk-user-secret@{host}/?key=sk-query-secret"  # no /v1: a 404
            async with LLM(base, model="m", retry=ONCE) as llm:
                with pytest.raises(LLMStatusError, match="404") as info:
                    await llm.complete("hi")
    _assert_redacted(str(info.value))
    assert "usually serve under /v1" in str(info.value)


async def test_a_server_that_cannot_be_reached_is_named_without_its_keys() -> None:
    with anyio.fail_after(10):
        # port 1 on loopback: nothing listens, the connection is refused at once
        base = "http://me:sk-user-secret@127.0.0.1:1/v1?key=sk-query-secret"
        async with LLM(base, model="m", retry=ONCE) as llm:
            with pytest.raises(LLMError) as info:
                await llm.complete("hi")
    assert isinstance(info.value, LLMConnectionError), info.value
    _assert_redacted(str(info.value))
