"""The prefill model: TTFT grows with the uncached prompt, a prefix cache skips what it has seen."""

from __future__ import annotations

import json
import random
from typing import Any

import anyio
import httpx
import pytest

from tomasulo.testing import LATENCY_PRESETS, Latency, PrefixCache, SimulatedLLM, count_tokens

pytestmark = pytest.mark.anyio

SYSTEM = " ".join(f"rule{i} says the planner must be careful" for i in range(60))  # ~400 tokens


def _chat(*contents: str, **extra: Any) -> dict[str, Any]:
    messages = [{"role": "system", "content": SYSTEM}]
    messages += [{"role": "user", "content": c} for c in contents]
    return {"model": "m", "messages": messages, **extra}


def test_the_cache_counts_leading_blocks_and_leaves_one_token_to_compute() -> None:
    cache = PrefixCache(capacity_tokens=1024, block_tokens=4)
    assert cache.lookup(list("abcdefghij")) == 0  # stores "abcd" and "efgh", not the partial "ij"
    assert cache.lookup(list("abcdefghXY")) == 8
    assert cache.lookup(list("abcdXfghij")) == 4  # a block is found only after the same prefix
    assert cache.lookup(list("abcdefgh")) == 4  # the last token is always computed
    assert cache.lookup(list("zbcdefghij")) == 0


def test_the_cache_is_bounded_and_evicts_the_least_recently_used() -> None:
    cache = PrefixCache(capacity_tokens=12, block_tokens=4)  # three blocks
    a, b, c = list("aaaabbbbX"), list("ccccY"), list("ddddZ")
    cache.lookup(a)  # 2 blocks
    cache.lookup(b)  # 1 block: full
    assert cache.lookup(a) == 8  # touches a's blocks
    cache.lookup(c)  # evicts b, the least recently used
    assert cache.held_tokens == 12
    assert cache.lookup(a) == 8
    assert cache.lookup(b) == 0


def test_short_prompts_are_not_cached_below_the_minimum() -> None:
    cache = PrefixCache(capacity_tokens=10_000, block_tokens=4, min_tokens=10)
    short = list("abcdefgh")
    cache.lookup(short)
    assert cache.lookup([*short, "x"]) == 0
    long = list("abcdefghijkl")
    cache.lookup(long)
    assert cache.lookup(long) == 8


def test_latency_checks_its_prefill_settings() -> None:
    with pytest.raises(ValueError, match="prefill_tokens_per_second"):
        Latency(prefill_tokens_per_second=0)
    with pytest.raises(ValueError, match="cache_block_tokens"):
        Latency(cache_block_tokens=0)
    with pytest.raises(ValueError, match="prefix_cache_tokens"):
        Latency(prefix_cache_tokens=-1)
    schedule = Latency(ttft=0.1, tokens_per_second=10, prefill_tokens_per_second=100).schedule(
        3, random.Random(0), prefill_tokens=50
    )
    assert schedule == pytest.approx([0.6, 0.7, 0.8])
    assert Latency(ttft=0.1).schedule(1, random.Random(0), prefill_tokens=10_000) == [0.1]


async def test_ttft_counts_only_the_uncached_prompt() -> None:
    latency = Latency(ttft=0.01, prefill_tokens_per_second=5_000, prefix_cache_tokens=100_000)
    sim = SimulatedLLM(default="ok", latency=latency)
    with anyio.fail_after(20):
        async with httpx.AsyncClient(transport=sim.transport(), base_url="http://sim") as client:
            first = await client.post("/v1/chat/completions", json=_chat("Plan: Everest"))
            second = await client.post("/v1/chat/completions", json=_chat("Plan: Everest", "Join it"))
            other = await client.post("/v1/chat/completions", json={**_chat(), "messages": [
                {"role": "system", "content": "A different system prompt. " + SYSTEM}]})  # fmt: skip
    one, two, three = sim.requests
    assert one.cached_tokens == 0
    assert one.ttft == pytest.approx(0.01 + count_tokens(one.prompt) / 5_000)
    assert two.cached_tokens > count_tokens(SYSTEM) - 16  # the whole shared prefix, to a block
    assert two.cached_tokens % 16 == 0
    uncached = count_tokens(two.prompt) - two.cached_tokens
    assert two.ttft == pytest.approx(0.01 + uncached / 5_000)
    assert two.ttft is not None and one.ttft is not None and two.ttft < one.ttft / 3
    assert three.cached_tokens == 0  # a changed first message shares no prefix
    # the answers report it as OpenAI does
    assert first.json()["usage"]["prompt_tokens_details"] == {"cached_tokens": 0}
    assert second.json()["usage"]["prompt_tokens_details"] == {"cached_tokens": two.cached_tokens}
    assert other.json()["usage"]["prompt_tokens_details"] == {"cached_tokens": 0}
    assert sim.cached_tokens == two.cached_tokens
    assert sim.prefix_cache is not None and sim.prefix_cache.held_tokens > 0


async def test_responses_report_cached_input_tokens() -> None:
    sim = SimulatedLLM(
        default="ok", latency=Latency(prefill_tokens_per_second=1e6, prefix_cache_tokens=10_000)
    )
    body = {"model": "m", "instructions": SYSTEM, "input": "hello"}
    with anyio.fail_after(20):
        async with httpx.AsyncClient(transport=sim.transport(), base_url="http://sim") as client:
            await client.post("/v1/responses", json=body)
            again = await client.post("/v1/responses", json={**body, "input": "hello again"})
    details = again.json()["usage"]["input_tokens_details"]
    assert details["cached_tokens"] == sim.requests[1].cached_tokens > 0


async def test_without_prefill_settings_nothing_changes() -> None:
    sim = SimulatedLLM(["one", "two"], latency=Latency(ttft=0.01))
    with anyio.fail_after(20):
        async with httpx.AsyncClient(transport=sim.transport(), base_url="http://sim") as client:
            first = await client.post("/v1/chat/completions", json=_chat("x"))
            await client.post("/v1/chat/completions", json=_chat("x"))
    assert "prompt_tokens_details" not in first.json()["usage"]
    assert [r.cached_tokens for r in sim.requests] == [0, 0]
    assert [r.ttft for r in sim.requests] == [0.01, 0.01]
    assert sim.prefix_cache is None


async def test_the_first_token_waits_for_the_prefill_over_http() -> None:
    # ~400 prompt tokens at 600 tokens/s: about 0.67 s of prefill, then a cache hit skips it
    latency = Latency(
        ttft=0.0, tokens_per_second=100, prefill_tokens_per_second=600, prefix_cache_tokens=10_000
    )
    sim = SimulatedLLM(default="a b c", latency=latency)
    firsts: list[float] = []
    with anyio.fail_after(20):
        async with sim.serve() as base_url, httpx.AsyncClient(base_url=base_url) as client:
            for body in (_chat("q1", stream=True), _chat("q1", "q2", stream=True)):
                start = anyio.current_time()
                async with client.stream("POST", "/chat/completions", json=body) as response:
                    async for line in response.aiter_lines():
                        if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["delta"].get(
                            "content"
                        ):
                            firsts.append(anyio.current_time() - start)
                            break
    modelled = [r.ttft for r in sim.requests]
    assert modelled[0] is not None and modelled[0] > 0.6
    assert firsts[0] >= modelled[0]  # a timer never fires early
    assert firsts[1] < firsts[0] - 0.3  # the cached prefix is not prefilled again


def test_presets_carry_their_published_figures() -> None:
    assert set(LATENCY_PRESETS) == {"llama-8b-1xh100", "llama-70b-2xh100", "hosted-api"}
    for preset in LATENCY_PRESETS.values():
        assert preset.prefill_tokens_per_second and preset.tokens_per_second and preset.prefix_cache_tokens
    big = LATENCY_PRESETS["llama-70b-2xh100"]
    rng = random.Random(0)
    # NVIDIA NIM, Llama 3.3 70B FP8 on 2 x H100: TTFT 406.77 ms at 5000 tokens, 47.77 ms at 500
    assert big.schedule(1, rng, prefill_tokens=5000)[0] == pytest.approx(0.40677, abs=0.001)
    assert big.schedule(1, rng, prefill_tokens=500)[0] == pytest.approx(0.04777, abs=0.001)
    hosted = LATENCY_PRESETS["hosted-api"]
    assert (hosted.cache_block_tokens, hosted.cache_min_tokens) == (128, 1024)  # OpenAI's rules
