"""LLM against hostile or broken servers: every fault is a typed LLMError, and every call is bounded.

Real HTTP against SimulatedLLM on loopback (its fault modes play the broken server), or its
in-process transport where only the client's own work is measured.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest

from tomasulo.exceptions import BudgetExceeded, ConfigError, LLMResponseError, LLMStatusError, LLMTimeout
from tomasulo.grammar import PlanStream
from tomasulo.planner import LLM, RetryPolicy, Timeouts, Usage
from tomasulo.testing import Latency, Reply, SimulatedLLM, count_tokens, split_tokens
from tomasulo.tools import Toolset, tool

pytestmark = pytest.mark.anyio

TEXT = "1. search()\n2. math()\njoin()"
FIRST_LINE = count_tokens("1. search()\n")
FAST_RETRY = RetryPolicy(attempts=3, initial=0.01, maximum=0.05, jitter=0.1, total=10)


@tool(name="search")
def _search(query: str) -> str:
    """Search for ``query``."""
    return query


@asynccontextmanager
async def served(sim: SimulatedLLM, **options: Any) -> AsyncIterator[LLM]:
    options.setdefault("retry", FAST_RETRY)
    async with sim.serve() as base_url, httpx.AsyncClient() as http:
        async with LLM(base_url, model="m", dialect="plain", http_client=http, **options) as llm:
            yield llm


async def collect(llm: LLM, **kwargs: Any) -> str:
    async with aclosing(llm.stream("plan it", **kwargs)) as chunks:
        return "".join([chunk async for chunk in chunks])


# -- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("ftp://127.0.0.1/v1", "uses the 'ftp' scheme; only http:// and https://"),
        ("localhost:8000", "has no scheme.*did you mean 'http://localhost:8000'"),
        ("127.0.0.1:8000/v1", "has no scheme.*did you mean 'http://127.0.0.1:8000/v1'"),
        ("http://", "names no host"),
        ("", "must be a URL"),
    ],
)
def test_a_base_url_that_cannot_work_is_refused_at_once(base_url: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        LLM(base_url, model="m")


async def test_a_404_on_a_base_url_without_v1_says_to_add_it() -> None:
    sim = SimulatedLLM([TEXT])
    with anyio.fail_after(10):
        async with sim.serve() as url, LLM(url.removesuffix("/v1"), model="m", retry=FAST_RETRY) as llm:
            with pytest.raises(LLMStatusError, match=r"404.*usually serve under /v1 \(try http://.*/v1\)"):
                await collect(llm)
    assert sim.requests == [], "the request went to /chat/completions, which the server does not have"


# -- answers that are not OpenAI answers --------------------------------------------------------


@pytest.mark.parametrize(
    "retry_after",
    ["soon", "nan", "-1", "Thu, 99 Foo 2015 25:61:00 GMT", "", "1e999", "Wed, 99 Foo", "1_0", "1e1", "+9"],
)
async def test_a_retry_after_that_means_nothing_falls_back_to_backoff(retry_after: str) -> None:
    sim = SimulatedLLM([Reply.rate_limited(retry_after=retry_after), TEXT])
    with anyio.fail_after(10):
        async with served(sim) as llm:
            assert await collect(llm) == TEXT
    first, second = sim.requests
    assert second.time - first.time < 1, "the policy's 10 ms backoff, not a parsed wait"


async def test_a_retry_after_http_date_is_honoured_up_to_the_cap() -> None:
    sim = SimulatedLLM([Reply.rate_limited(retry_after="Fri, 01 Jan 2100 00:00:00 GMT"), TEXT])
    retry = RetryPolicy(attempts=2, initial=0.01, max_retry_after=0.3)
    with anyio.fail_after(10):
        async with served(sim, retry=retry) as llm:
            assert await collect(llm) == TEXT
    first, second = sim.requests
    assert second.time - first.time >= 0.3


async def test_a_malformed_event_mid_stream_raises_with_the_partial_text() -> None:
    sim = SimulatedLLM([Reply.bad_event(TEXT, after_tokens=FIRST_LINE)])
    received: list[str] = []
    with anyio.fail_after(10):
        async with served(sim) as llm:
            with pytest.raises(LLMResponseError, match="malformed event") as caught:
                async with aclosing(llm.stream("plan it")) as chunks:
                    async for chunk in chunks:
                        received.append(chunk)
    assert caught.value.partial == "1. search()\n" == "".join(received)
    assert len(sim.requests) == 1


@pytest.mark.parametrize("stream", [True, False])
async def test_an_html_page_is_an_llm_response_error_that_says_what_came(stream: bool) -> None:
    sim = SimulatedLLM([Reply.raw("<html><h1>Welcome to nginx!</h1></html>")])
    with anyio.fail_after(10):
        async with served(sim) as llm:
            with pytest.raises(LLMResponseError, match="Welcome to nginx") as caught:
                await (collect(llm) if stream else llm.complete("x"))
    assert "base URL" in str(caught.value)
    assert len(sim.requests) == 1, "a page is not retried"


# -- time bounds --------------------------------------------------------------------------------


async def test_empty_keep_alive_chunks_cannot_outlast_the_total_timeout() -> None:
    """Each empty chunk arrives well within the read timeout; only the total bound ends it."""
    sim = SimulatedLLM([Reply.keep_alive(TEXT, after_tokens=FIRST_LINE, interval=0.05, kind="empty")])
    with anyio.fail_after(10):
        async with served(sim, timeouts=Timeouts(read=0.5, total=1.2)) as llm:
            start = anyio.current_time()
            with pytest.raises(LLMTimeout, match=r"1\.2 s total timeout.* after \d+ chunks") as caught:
                await collect(llm)
            elapsed = anyio.current_time() - start
    assert 1.2 <= elapsed < 3
    assert caught.value.partial == "1. search()\n"
    assert int(str(caught.value).split(" after ")[1].split()[0]) > 10, "it counts the empty chunks"


async def test_keep_alive_comments_do_not_reset_the_read_timeout() -> None:
    sim = SimulatedLLM([Reply.keep_alive(TEXT, after_tokens=FIRST_LINE, interval=0.05, kind="comment")])
    with anyio.fail_after(10):
        async with served(sim, timeouts=Timeouts(read=0.4, total=30)) as llm:
            start = anyio.current_time()
            with pytest.raises(LLMTimeout, match="read timeout"):
                await collect(llm)
            assert anyio.current_time() - start < 2


async def test_a_server_that_trickles_tokens_hits_the_total_timeout() -> None:
    words = " ".join(f"w{i}" for i in range(200))
    sim = SimulatedLLM([Reply(words, latency=Latency(ttft=0.01, tokens_per_second=20))])
    with anyio.fail_after(10):
        async with served(sim, timeouts=Timeouts(read=1, total=1.0)) as llm:
            with pytest.raises(LLMTimeout, match="total timeout") as caught:
                await collect(llm)
    assert caught.value.partial and words.startswith(caught.value.partial)


# -- usage during a stream ----------------------------------------------------------------------


async def test_watch_sees_live_usage_and_can_cut_the_stream() -> None:
    words = " ".join(f"w{i}" for i in range(100))
    sim = SimulatedLLM([words])
    seen: list[int] = []

    def watch(usage: Usage) -> None:
        seen.append(usage.completion_tokens)
        if usage.completion_tokens >= 5:
            raise BudgetExceeded("five tokens is enough", bound="tokens")

    meter = Usage(prompt_tokens=1000)
    with anyio.fail_after(10):
        async with served(sim) as llm:
            with pytest.raises(BudgetExceeded, match="five tokens"):
                await collect(llm, usage=meter, watch=watch)
            total = llm.usage
    assert seen == [1, 2, 3, 4, 5], "checked after every chunk; nothing read after the cut"
    assert meter.completion_tokens == 5 == total.completion_tokens
    assert meter.prompt_tokens == 1000 + total.prompt_tokens


async def test_a_long_stream_costs_linear_time() -> None:
    """The client's CPU time for the last quarter of a long stream is close to the first's.

    Chunks are large (about 2 kB each, 8 MB in all) so that re-joining the text received at each
    chunk, the quadratic behaviour this guards against, dominates: with it the last quarter costs
    about 3.8 times the first (measured); without it about 1.2. The bound of 2 sits between them
    with room either side. CPU time of this process (not wall time) keeps other processes on the
    machine out of it, and the in-process transport keeps the server's work out of the stream.
    """
    text = ("x" + " " * 2000) * 2000  # 4000 chunks: a run of spaces, then " x"
    sim = SimulatedLLM([Reply(text)])
    stamps: list[float] = []
    with anyio.fail_after(60):
        async with (
            httpx.AsyncClient(transport=sim.transport()) as http,
            LLM("http://sim/v1", model="m", dialect="plain", http_client=http) as llm,
        ):
            async with aclosing(llm.stream("go")) as chunks:
                async for _ in chunks:
                    stamps.append(time.process_time())
    quarter = len(stamps) // 4
    assert quarter >= 900
    first = stamps[quarter] - stamps[0]
    last = stamps[-1] - stamps[3 * quarter]
    assert last < 2 * max(first, 0.05), f"last quarter {last:.3f} s of CPU, first {first:.3f} s"


def test_a_long_plan_line_costs_linear_time_in_the_stream_parser() -> None:
    """A task whose string argument is long and full of ``)`` is read in linear time.

    The parser tried to parse the whole line again at every ``)``, inside strings too: over the
    10,000 tokens here the last quarter cost about six times the first (measured); now about
    the same. CPU time and a bound of 2 keep the test robust; see the stream test above.
    """
    tools = Toolset([_search])
    text = '1. search(query="' + "ab) " * 5000 + '")\n2. join()\n'
    stream = PlanStream(tools)
    stamps: list[float] = []
    for token in split_tokens(text):
        stream.feed(token)
        stamps.append(time.process_time())
    stream.close()
    assert stream.joined and len(stream.plan.tasks) == 1
    quarter = len(stamps) // 4
    first = stamps[quarter] - stamps[0]
    last = stamps[-1] - stamps[3 * quarter]
    assert last < 2 * max(first, 0.05), f"last quarter {last:.3f} s of CPU, first {first:.3f} s"


@pytest.mark.parametrize("compat", [False, True])
def test_a_task_is_still_emitted_at_its_closing_parenthesis_after_escapes_and_parentheses(
    compat: bool,
) -> None:
    tools = Toolset([_search])
    line = '1. search(query="a \\" ) b \\\\")'  # the string holds an escaped quote, ")" and "\\"
    stream = PlanStream(tools, compat=compat)
    tokens = split_tokens(line)
    emitted = [bool(stream.feed(t)) for t in tokens]
    assert emitted == [False] * (len(tokens) - 1) + [True], "the task comes with its last ')'"
    assert stream.plan.tasks[0].kwargs == {"query": 'a " ) b \\'}
