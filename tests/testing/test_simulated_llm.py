"""SimulatedLLM as a server: wire formats, grammar enforcement, sampling, latency and faults."""

from __future__ import annotations

import json
import random
from typing import Any

import anyio
import httpx
import lark
import pytest
from hypothesis import given
from hypothesis import strategies as st
from toy_grammar import GBNF, LARK, SCHEMA

from tomasulo.testing import (
    GrammarConstraint,
    HTTPFault,
    InvalidGrammar,
    Latency,
    RecordedRequest,
    Reply,
    SimulatedLLM,
    count_tokens,
    split_tokens,
)

pytestmark = pytest.mark.anyio

PLAN = "1. search()\n2. math()\njoin()"
BAD_PLAN = "1. search()\n2. maths()\njoin()"  # offset 19: the "s" after "math"
JSON_PLAN = '{"tasks": [{"tool": "search"}]}'
BAD_JSON = '{"tasks": [{"tool": "google"}]}'
MESSAGES = [{"role": "user", "content": "plan it"}]

# (path, extra request fields, a reply the grammar accepts, one it refuses, expected field)
DIALECT_CASES = [
    ("/v1/chat/completions", {"structured_outputs": {"grammar": GBNF}}, PLAN, BAD_PLAN,
     "structured_outputs.grammar"),
    ("/v1/chat/completions", {"structured_outputs": {"grammar": LARK}}, PLAN, BAD_PLAN,
     "structured_outputs.grammar"),
    ("/v1/chat/completions", {"guided_grammar": GBNF}, PLAN, BAD_PLAN, "guided_grammar"),
    ("/v1/chat/completions", {"grammar": GBNF}, PLAN, BAD_PLAN, "grammar"),
    ("/v1/completions", {"grammar": GBNF}, PLAN, BAD_PLAN, "grammar"),
    ("/v1/chat/completions", {"ebnf": GBNF}, PLAN, BAD_PLAN, "ebnf"),
    ("/v1/chat/completions", {"json_schema": json.dumps(SCHEMA)}, JSON_PLAN, BAD_JSON,
     "json_schema"),
    ("/v1/chat/completions", {"structured_outputs": {"json": SCHEMA}}, JSON_PLAN, BAD_JSON,
     "structured_outputs.json"),
    ("/v1/chat/completions",
     {"response_format": {"type": "json_schema",
                          "json_schema": {"name": "plan", "schema": SCHEMA, "strict": True}}},
     JSON_PLAN, BAD_JSON, "response_format"),
    ("/v1/chat/completions", {"format": SCHEMA}, JSON_PLAN, BAD_JSON, "format"),
    ("/v1/responses",
     {"tools": [{"type": "custom", "name": "plan",
                 "format": {"type": "grammar", "syntax": "lark", "definition": LARK}}]},
     PLAN, BAD_PLAN, "tools[plan].format"),
    ("/v1/responses",
     {"tools": [{"type": "custom", "name": "plan",
                 "format": {"type": "grammar", "syntax": "regex", "definition": r"\d+ items"}}]},
     "12 items", "12 item", "tools[plan].format"),
    ("/v1/responses",
     {"text": {"format": {"type": "json_schema", "name": "plan", "schema": SCHEMA}}},
     JSON_PLAN, BAD_JSON, "text.format"),
]  # fmt: skip


def _body(path: str, extra: dict[str, Any], **more: Any) -> dict[str, Any]:
    if path.endswith("/responses"):
        base: dict[str, Any] = {"model": "m", "input": MESSAGES}
    elif path.endswith("/chat/completions"):
        base = {"model": "m", "messages": MESSAGES}
    else:
        base = {"model": "m", "prompt": "plan it"}
    return {**base, **extra, **more}


def _text_of(path: str, data: dict[str, Any]) -> str:
    if path.endswith("/responses"):
        item = data["output"][0]
        return str(item["input"] if item["type"] == "custom_tool_call" else item["content"][0]["text"])
    choice = data["choices"][0]
    return str(choice["message"]["content"] if "message" in choice else choice["text"])


@given(st.text())
def test_tokens_join_back_to_the_text(text: str) -> None:
    assert "".join(split_tokens(text)) == text
    assert count_tokens(text) == len(split_tokens(text))


@pytest.mark.parametrize(("path", "extra", "good", "bad", "field"), DIALECT_CASES)
async def test_each_dialect_field_is_enforced(
    path: str, extra: dict[str, Any], good: str, bad: str, field: str
) -> None:
    sim = SimulatedLLM([good, bad])
    with anyio.fail_after(10):
        async with httpx.AsyncClient(transport=sim.transport(), base_url="http://sim") as client:
            ok = await client.post(path, json=_body(path, extra))
            refused = await client.post(path, json=_body(path, extra))
    assert ok.status_code == 200, ok.text
    assert _text_of(path, ok.json()) == good
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "grammar_mismatch"
    assert error["param"] == field
    assert "offset" in error["message"]
    assert [r.grammar_field for r in sim.requests] == [field, field]


async def test_mismatch_names_the_first_offending_position() -> None:
    sim = SimulatedLLM([BAD_PLAN])
    with anyio.fail_after(10):
        async with httpx.AsyncClient(transport=sim.transport(), base_url="http://sim") as client:
            response = await client.post(
                "/v1/chat/completions", json=_body("/v1/chat/completions", {"grammar": GBNF})
            )
    message = response.json()["error"]["message"]
    assert "offset 19 (line 2, column 8)" in message
    assert "'1. search()\\n2. math'" in message


async def test_a_grammar_that_does_not_compile_is_a_400() -> None:
    sim = SimulatedLLM([PLAN])
    with anyio.fail_after(10):
        async with httpx.AsyncClient(transport=sim.transport(), base_url="http://sim") as client:
            response = await client.post(
                "/v1/chat/completions",
                json=_body("/v1/chat/completions", {"grammar": "root ::= undefined_rule"}),
            )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_grammar"
    assert sim.pending == 1  # the reply was not used up


def test_sampled_texts_are_valid_and_seeded() -> None:
    constraint = GrammarConstraint("lark", LARK, field="grammar")
    parser = lark.Lark(LARK)
    samples = [constraint.sample(random.Random(seed)) for seed in range(20)]
    for text in samples:
        assert constraint.check(text) is None
        parser.parse(text)  # an independent parser agrees
    assert samples == [constraint.sample(random.Random(seed)) for seed in range(20)]
    assert len(set(samples)) > 10


async def test_sampled_replies_follow_the_request_grammar() -> None:
    sim = SimulatedLLM(default=Reply.sampled(), seed=7)
    schema = GrammarConstraint("json_schema", SCHEMA, field="format")
    with anyio.fail_after(20):
        async with httpx.AsyncClient(transport=sim.transport(), base_url="http://sim") as client:
            for _ in range(5):
                response = await client.post(
                    "/v1/chat/completions", json=_body("/v1/chat/completions", {"format": SCHEMA})
                )
                text = response.json()["choices"][0]["message"]["content"]
                assert schema.check(text) is None
                assert isinstance(json.loads(text)["tasks"], list)


def test_bad_grammars_raise_invalid_grammar() -> None:
    with pytest.raises(InvalidGrammar, match="'grammar'"):
        GrammarConstraint("lark", "start: nowhere", field="grammar")


async def test_chat_stream_over_http_follows_the_latency_model() -> None:
    text = "one two three four five six seven eight nine ten"
    sim = SimulatedLLM([text], latency=Latency(ttft=0.2, tokens_per_second=50))
    arrivals: list[float] = []
    pieces: list[str] = []
    with anyio.fail_after(10):
        async with sim.serve() as base_url, httpx.AsyncClient(base_url=base_url) as client:
            body = _body("/v1/chat/completions", {}, stream=True,
                         stream_options={"include_usage": True})  # fmt: skip
            start = anyio.current_time()
            async with client.stream("POST", "/chat/completions", json=body) as response:
                async for line in response.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[6:])
                    if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                        arrivals.append(anyio.current_time() - start)
                        pieces.append(chunk["choices"][0]["delta"]["content"])
    assert "".join(pieces) == text
    assert len(pieces) == 10
    assert arrivals[0] >= 0.2
    assert arrivals[-1] - arrivals[0] >= 9 / 50 * 0.9
    assert arrivals[-1] < 2.0


async def test_usage_is_counted_consistently() -> None:
    sim = SimulatedLLM(["alpha beta gamma", "delta"])
    with anyio.fail_after(10):
        async with httpx.AsyncClient(transport=sim.transport(), base_url="http://sim") as client:
            chat = await client.post("/v1/chat/completions", json=_body("/v1/chat/completions", {}))
            text = await client.post("/v1/completions", json=_body("/v1/completions", {}))
    first, second = chat.json(), text.json()
    assert first["usage"] == {
        "prompt_tokens": count_tokens("plan it"),
        "completion_tokens": count_tokens("alpha beta gamma"),
        "total_tokens": count_tokens("plan it") + count_tokens("alpha beta gamma"),
    }
    assert second["choices"][0]["text"] == "delta"
    assert sim.completion_tokens == count_tokens("alpha beta gamma") + count_tokens("delta")


async def test_stop_and_max_tokens_truncate() -> None:
    sim = SimulatedLLM(["1. a()\n2. b()\nEND more", "one two three four"])
    with anyio.fail_after(10):
        async with httpx.AsyncClient(transport=sim.transport(), base_url="http://sim") as client:
            stopped = await client.post(
                "/v1/chat/completions", json=_body("/v1/chat/completions", {}, stop=["END"])
            )
            cut = await client.post("/v1/completions", json=_body("/v1/completions", {}, max_tokens=2))
    assert stopped.json()["choices"][0]["message"]["content"] == "1. a()\n2. b()\n"
    assert stopped.json()["choices"][0]["finish_reason"] == "stop"
    assert cut.json()["choices"][0] == {
        "index": 0, "text": "one two", "finish_reason": "length", "logprobs": None
    }  # fmt: skip


async def test_faults_and_recording_over_http() -> None:
    sim = SimulatedLLM(
        [
            Reply.rate_limited(retry_after=1.5),
            Reply.server_error(500),
            Reply.unavailable(),
            Reply.disconnect("a b c d e f", after_tokens=2),
        ]
    )
    with anyio.fail_after(10):
        async with sim.serve() as base_url, httpx.AsyncClient(base_url=base_url) as client:
            body = _body("/v1/chat/completions", {})
            limited = await client.post("/chat/completions", json=body, headers={"x-run": "r1"})
            failed = await client.post("/chat/completions", json=body)
            overloaded = await client.post("/chat/completions", json=body)
            got: list[str] = []
            with pytest.raises(httpx.RemoteProtocolError):
                async with client.stream(
                    "POST", "/chat/completions", json={**body, "stream": True}
                ) as response:
                    async for line in response.aiter_lines():
                        if line.startswith("data: {"):
                            got.append(json.loads(line[6:])["choices"][0]["delta"]["content"])
            models = await client.get("/models")
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "1.5"
    assert limited.headers["retry-after-ms"] == "1500"
    assert failed.status_code == 500
    assert overloaded.status_code == 503
    assert "".join(got) == "a b"
    assert models.json()["data"][0]["id"] == "simulated-llm"
    assert sim.requests[0].headers["x-run"] == "r1"
    assert sim.requests[0].body["messages"] == MESSAGES
    assert [r.status for r in sim.requests[:3]] == [429, 500, 503]


async def test_a_stall_pauses_the_stream() -> None:
    sim = SimulatedLLM([Reply.stall("a b c d", after_tokens=2, seconds=0.3)])
    gaps: list[float] = []
    with anyio.fail_after(10):
        async with sim.serve() as base_url, httpx.AsyncClient(base_url=base_url) as client:
            body = _body("/v1/chat/completions", {}, stream=True)
            last = anyio.current_time()
            async with client.stream("POST", "/chat/completions", json=body) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["delta"].get(
                        "content"
                    ):
                        now = anyio.current_time()
                        gaps.append(now - last)
                        last = now
    assert len(gaps) == 4
    assert gaps[2] >= 0.28  # the third token waited out the stall
    assert max(gaps[1], gaps[3]) < 0.25


async def test_replies_from_a_function_and_an_exhausted_script() -> None:
    def answer(request: RecordedRequest) -> str:
        return f"you said: {request.prompt}"

    scripted = SimulatedLLM(answer)
    empty = SimulatedLLM()
    with anyio.fail_after(10):
        async with httpx.AsyncClient(transport=scripted.transport(), base_url="http://s") as c1:
            r1 = await c1.post("/v1/chat/completions", json=_body("/v1/chat/completions", {}))
        async with httpx.AsyncClient(transport=empty.transport(), base_url="http://s") as c2:
            r2 = await c2.post("/v1/chat/completions", json=_body("/v1/chat/completions", {}))
    assert r1.json()["choices"][0]["message"]["content"] == "you said: plan it"
    assert r2.status_code == 500
    assert "script is exhausted" in r2.json()["error"]["message"]


async def test_responses_stream_calls_the_custom_tool() -> None:
    extra = DIALECT_CASES[10][1]
    sim = SimulatedLLM([PLAN])
    events: list[dict[str, Any]] = []
    with anyio.fail_after(10):
        async with sim.serve() as base_url, httpx.AsyncClient(base_url=base_url) as client:
            body = _body("/v1/responses", extra, stream=True)
            async with client.stream("POST", "/responses", json=body) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data: "):
                        events.append(json.loads(line[6:]))
    deltas = [e["delta"] for e in events if e["type"] == "response.custom_tool_call_input.delta"]
    assert "".join(deltas) == PLAN
    assert events[-1]["type"] == "response.completed"
    assert events[-1]["response"]["output"][0]["input"] == PLAN
    assert events[-1]["response"]["usage"]["output_tokens"] == count_tokens(PLAN)


async def test_errors_inside_serve_propagate_unwrapped() -> None:
    sim = SimulatedLLM()
    with anyio.fail_after(10), pytest.raises(KeyError, match="boom"):
        async with sim.serve():
            raise KeyError("boom")


async def test_hostile_server_faults_over_http() -> None:
    """Raw bodies, malformed events, keep-alives and a verbatim Retry-After, as a client sees them."""
    sim = SimulatedLLM(
        [
            Reply(fault=HTTPFault(429, "slow down", retry_after="soon")),
            Reply.raw("<html>proxy</html>"),
            Reply.bad_event("a b c", after_tokens=1, data="{oops"),
            Reply.keep_alive("a b c", after_tokens=1, interval=0.01, kind="comment"),
            Reply.keep_alive("a b c", after_tokens=0, interval=0.01, kind="empty"),
        ]
    )
    body = {**_body("/v1/chat/completions", {}), "stream": True}

    async def lines(client: httpx.AsyncClient, n: int) -> list[str]:
        out: list[str] = []
        async with client.stream("POST", "/chat/completions", json=body) as response:
            async for line in response.aiter_lines():
                if line:
                    out.append(line)
                if len(out) == n:
                    break
        return out

    with anyio.fail_after(10):
        async with sim.serve() as base_url, httpx.AsyncClient(base_url=base_url) as client:
            limited = await client.post("/chat/completions", json=body)
            page = await client.post("/chat/completions", json=body)
            bad = await lines(client, 4)
            comments = await lines(client, 6)
            empties = await lines(client, 5)
    assert limited.status_code == 429 and limited.headers["retry-after"] == "soon"
    assert "retry-after-ms" not in limited.headers
    assert page.status_code == 200 and page.text == "<html>proxy</html>"
    assert page.headers["content-type"].startswith("text/html")
    assert bad[2] == "data: {oops" and '"a"' in bad[1] and '" b"' in bad[3]
    assert comments[2:] == [": keep-alive"] * 4, "after one token, only keep-alives"
    assert all('"content":""' in line for line in empties[1:])
