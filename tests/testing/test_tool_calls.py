"""SimulatedLLM's native tool calls, driven by the real ``openai`` client over loopback."""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx
import openai
import pytest

from tomasulo.testing import Disconnect, Latency, RecordedRequest, Reply, SimulatedLLM, ToolCall, count_tokens

pytestmark = pytest.mark.anyio

WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city"],
    "additionalProperties": False,
}
CHAT_TOOLS: list[Any] = [
    {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}},
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}},
]
RESPONSES_TOOLS: list[Any] = [
    {"type": "function", "name": "get_weather", "parameters": WEATHER, "strict": False},
]
ASK = [{"role": "user", "content": "Weather in Paris and Oslo?"}]
PARIS = ToolCall("get_weather", {"city": "Paris"}, id="call_paris")
OSLO = ToolCall("get_weather", {"city": "Oslo", "unit": "celsius"}, id="call_oslo")


def _client(base_url: str, http: httpx.AsyncClient) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base_url, api_key="sim", http_client=http, max_retries=0)


async def test_chat_non_streamed_parallel_calls() -> None:
    sim = SimulatedLLM([Reply.calls(PARIS, OSLO)])
    with anyio.fail_after(20):
        async with sim.serve() as url, httpx.AsyncClient() as http:
            done = await _client(url, http).chat.completions.create(
                model="m", messages=ASK, tools=CHAT_TOOLS, parallel_tool_calls=True
            )
    choice = done.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls or []
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in calls] == [  # type: ignore[union-attr]
        ("call_paris", "get_weather", {"city": "Paris"}),
        ("call_oslo", "get_weather", {"city": "Oslo", "unit": "celsius"}),
    ]
    assert done.usage is not None
    expected = (
        count_tokens("get_weather") * 2
        + count_tokens(PARIS.arguments_json())
        + count_tokens(OSLO.arguments_json())
    )
    assert done.usage.completion_tokens == expected
    assert sim.requests[0].extra["tool_calls"][1]["arguments"] == OSLO.arguments_json()


async def test_chat_stream_sends_deltas_as_openai_does() -> None:
    sim = SimulatedLLM([Reply.calls(PARIS, OSLO, text="Checking.")])
    chunks: list[Any] = []
    with anyio.fail_after(20):
        async with sim.serve() as url, httpx.AsyncClient() as http:
            stream = await _client(url, http).chat.completions.create(
                model="m", messages=ASK, tools=CHAT_TOOLS, stream=True
            )
            async for chunk in stream:
                chunks.append(chunk)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Checking."
    deltas = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or ()]
    # per call: first a delta with index, id, type and name (arguments empty), then fragments
    heads = [d for d in deltas if d.id is not None]
    assert [(d.index, d.id, d.type, d.function.name, d.function.arguments) for d in heads] == [  # type: ignore[union-attr]
        (0, "call_paris", "function", "get_weather", ""),
        (1, "call_oslo", "function", "get_weather", ""),
    ]
    fragments = [d for d in deltas if d.id is None]
    assert all(d.function.name is None and d.type is None for d in fragments)  # type: ignore[union-attr]
    assert len([d for d in fragments if d.index == 0]) > 1  # streamed in pieces, not at once
    joined = {i: "".join(d.function.arguments for d in fragments if d.index == i) for i in (0, 1)}  # type: ignore[union-attr,misc]
    assert joined == {0: PARIS.arguments_json(), 1: OSLO.arguments_json()}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    # the openai helper that accumulates a stream agrees
    sim.push(Reply.calls(PARIS))
    with anyio.fail_after(20):
        async with sim.serve() as url, httpx.AsyncClient() as http:
            client = _client(url, http)
            async with client.chat.completions.stream(model="m", messages=ASK, tools=CHAT_TOOLS) as events:
                final = await events.get_final_completion()
    call = (final.choices[0].message.tool_calls or [])[0]
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"city": "Paris"}  # type: ignore[union-attr]


async def test_follow_up_turn_with_tool_results() -> None:
    def answer(request: RecordedRequest) -> Reply:
        messages = request.body["messages"]
        if messages[-1]["role"] == "tool":
            results = [m["content"] for m in messages if m["role"] == "tool"]
            return Reply("Paris: " + results[0] + ", Oslo: " + results[1])
        return Reply.calls(PARIS, OSLO)

    sim = SimulatedLLM(answer)
    with anyio.fail_after(20):
        async with sim.serve() as url, httpx.AsyncClient() as http:
            client = _client(url, http)
            first = await client.chat.completions.create(model="m", messages=ASK, tools=CHAT_TOOLS)
            message = first.choices[0].message
            history: list[Any] = [*ASK, message.model_dump(exclude_none=True)]
            for call, result in zip(message.tool_calls or [], ["18C", "4C"], strict=True):
                history.append({"role": "tool", "tool_call_id": call.id, "content": result})
            second = await client.chat.completions.create(model="m", messages=history, tools=CHAT_TOOLS)
    assert second.choices[0].message.content == "Paris: 18C, Oslo: 4C"
    assert second.choices[0].finish_reason == "stop"
    prompt = sim.requests[1].prompt
    assert "get_weather(" in prompt and "18C" in prompt and "None" not in prompt
    assert sim.requests[1].body["messages"][1]["tool_calls"][0]["id"] == "call_paris"


async def test_responses_function_calls_streamed_and_not() -> None:
    sim = SimulatedLLM([Reply.calls(PARIS, OSLO), Reply.calls(PARIS, OSLO)])
    with anyio.fail_after(20):
        async with sim.serve() as url, httpx.AsyncClient() as http:
            client = _client(url, http)
            whole = await client.responses.create(model="m", input=ASK, tools=RESPONSES_TOOLS)
            events: list[Any] = []
            stream = await client.responses.create(model="m", input=ASK, tools=RESPONSES_TOOLS, stream=True)
            async for event in stream:
                events.append(event)
    calls = [item for item in whole.output if item.type == "function_call"]
    assert [(c.call_id, c.name, json.loads(c.arguments)) for c in calls] == [  # type: ignore[union-attr]
        ("call_paris", "get_weather", {"city": "Paris"}),
        ("call_oslo", "get_weather", {"city": "Oslo", "unit": "celsius"}),
    ]
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    added = [e for e in events if e.type == "response.output_item.added"]
    assert [(e.output_index, e.item.type, e.item.arguments) for e in added] == [
        (0, "function_call", ""),
        (1, "function_call", ""),
    ]
    for index, call in enumerate((PARIS, OSLO)):
        pieces = [
            e.delta
            for e in events
            if e.type == "response.function_call_arguments.delta" and e.output_index == index
        ]
        done = [
            e for e in events if e.type == "response.function_call_arguments.done" and e.output_index == index
        ]
        assert len(pieces) > 1 and "".join(pieces) == call.arguments_json()
        assert [e.arguments for e in done] == [call.arguments_json()]
    # each call's events come in order: added, deltas, done, item done; then the next call
    order = [(e.type, getattr(e, "output_index", None)) for e in events]
    first_done = order.index(("response.output_item.done", 0))
    assert first_done < order.index(("response.output_item.added", 1))
    final = events[-1].response
    assert [item.type for item in final.output] == ["function_call", "function_call"]


async def test_responses_follow_up_with_function_call_output() -> None:
    sim = SimulatedLLM([Reply.calls(PARIS), Reply("18C in Paris.")])
    with anyio.fail_after(20):
        async with sim.serve() as url, httpx.AsyncClient() as http:
            client = _client(url, http)
            first = await client.responses.create(model="m", input=ASK, tools=RESPONSES_TOOLS)
            call = first.output[0]
            assert call.type == "function_call"
            follow: list[Any] = [
                *ASK,
                call.model_dump(exclude_none=True),
                {"type": "function_call_output", "call_id": call.call_id, "output": "18C"},
            ]
            second = await client.responses.create(model="m", input=follow, tools=RESPONSES_TOOLS)
    assert second.output_text == "18C in Paris."
    assert "18C" in sim.requests[1].prompt and "get_weather(" in sim.requests[1].prompt


@pytest.mark.parametrize(
    ("reply", "extra", "param", "needle"),
    [
        (Reply.calls(ToolCall("get_weather", {"town": "Paris"})), {}, "tools[get_weather].parameters",
         "'city' is a required property"),
        (Reply.calls(ToolCall("get_weather", {"city": 3})), {}, "tools[get_weather].parameters",
         "at city: 3 is not of type 'string'"),
        (Reply.calls(ToolCall("get_weather", "{city: Paris}")), {}, "tools[get_weather].parameters",
         "not JSON"),
        (Reply.calls(ToolCall("search", {"q": "x"})), {}, "tools", "does not declare"),
        (Reply.calls(PARIS), {"tool_choice": "none"}, "tool_choice", "tool_choice is 'none'"),
        (Reply("just text"), {"tool_choice": "required"}, "tool_choice", "requires a call"),
        (Reply.calls(PARIS), {"tool_choice": {"type": "function", "function": {"name": "get_time"}}},
         "tool_choice", "not the function tool_choice names ('get_time')"),
        (Reply.calls(PARIS, OSLO), {"parallel_tool_calls": False}, "parallel_tool_calls",
         "parallel_tool_calls to false"),
    ],
)  # fmt: skip
async def test_invalid_scripted_calls_are_a_clear_400(
    reply: Reply, extra: dict[str, Any], param: str, needle: str
) -> None:
    sim = SimulatedLLM([reply])
    with anyio.fail_after(20):
        async with sim.serve() as url, httpx.AsyncClient() as http:
            with pytest.raises(openai.BadRequestError) as caught:
                await _client(url, http).chat.completions.create(
                    model="m",
                    messages=ASK,
                    tools=CHAT_TOOLS,
                    **extra,
                )
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["param"] == param
    assert needle in error["message"]
    assert error["code"] == "tool_call_mismatch"


async def test_check_grammar_false_sends_a_bad_call_anyway() -> None:
    bad = Reply(tool_calls=(ToolCall("get_weather", "{not json"),), check_grammar=False)
    sim = SimulatedLLM([bad])
    with anyio.fail_after(20):
        async with sim.serve() as url, httpx.AsyncClient() as http:
            done = await _client(url, http).chat.completions.create(model="m", messages=ASK, tools=CHAT_TOOLS)
    assert (done.choices[0].message.tool_calls or [])[0].function.arguments == "{not json"  # type: ignore[union-attr]


async def test_tool_choice_is_honoured_by_sampled_replies() -> None:
    sim = SimulatedLLM(default=Reply.sampled(), seed=3)
    named = {"type": "function", "function": {"name": "get_weather"}}
    with anyio.fail_after(60):
        async with sim.serve() as url, httpx.AsyncClient() as http:
            client = _client(url, http)
            forced = [
                await client.chat.completions.create(
                    model="m", messages=ASK, tools=CHAT_TOOLS, tool_choice=named
                )  # type: ignore[arg-type]
                for _ in range(4)
            ]
            required = await client.chat.completions.create(
                model="m", messages=ASK, tools=CHAT_TOOLS, tool_choice="required"
            )
            none = await client.chat.completions.create(
                model="m", messages=ASK, tools=CHAT_TOOLS, tool_choice="none"
            )
    for done in forced:
        call = (done.choices[0].message.tool_calls or [])[0]
        assert call.function.name == "get_weather"  # type: ignore[union-attr]
        arguments = json.loads(call.function.arguments)  # type: ignore[union-attr]
        assert isinstance(arguments["city"], str)  # sampled from the schema: valid
        assert set(arguments) <= {"city", "unit"}
        assert arguments.get("unit", "celsius") in ("celsius", "fahrenheit")
    assert required.choices[0].finish_reason == "tool_calls"
    assert none.choices[0].message.tool_calls is None
    assert none.choices[0].message.content


async def test_max_tokens_cuts_a_call_short() -> None:
    sim = SimulatedLLM([Reply.calls(PARIS)])
    with anyio.fail_after(20):
        async with httpx.AsyncClient(transport=sim.transport(), base_url="http://sim") as http:
            body = {"model": "m", "messages": ASK, "tools": CHAT_TOOLS, "max_tokens": 5}
            response = await http.post("/v1/chat/completions", json=body)
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "length"
    arguments = choice["message"]["tool_calls"][0]["function"]["arguments"]
    assert PARIS.arguments_json().startswith(arguments) and arguments != PARIS.arguments_json()


async def test_streamed_calls_follow_the_latency_model_and_faults() -> None:
    sim = SimulatedLLM(
        [
            Reply.calls(PARIS, latency=Latency(ttft=0.2, tokens_per_second=50)),
            Reply(tool_calls=(PARIS,), fault=Disconnect(after_tokens=4)),
        ]
    )
    arrivals: list[float] = []
    body = {"model": "m", "messages": ASK, "tools": CHAT_TOOLS, "stream": True}
    with anyio.fail_after(20):
        async with sim.serve() as url, httpx.AsyncClient(base_url=url) as http:
            start = anyio.current_time()
            async with http.stream("POST", "/chat/completions", json=body) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["delta"].get(
                        "tool_calls"
                    ):
                        arrivals.append(anyio.current_time() - start)
            got: list[str] = []
            with pytest.raises(httpx.RemoteProtocolError):
                async with http.stream("POST", "/chat/completions", json=body) as response:
                    async for line in response.aiter_lines():
                        if line.startswith("data: {"):
                            got.append(line)
    n_args = count_tokens(PARIS.arguments_json())
    assert len(arrivals) == 1 + n_args  # the header, then one delta per argument token
    assert arrivals[0] >= 0.2  # the name's tokens come after the time to first token
    assert arrivals[-1] - arrivals[0] >= (n_args - 1) / 50 * 0.9
    assert 1 <= len(got) < 1 + n_args  # dropped mid-call


async def test_responses_text_then_a_call() -> None:
    sim = SimulatedLLM([Reply.calls(PARIS, text="Let me look.")])
    events: list[Any] = []
    with anyio.fail_after(20):
        async with sim.serve() as url, httpx.AsyncClient() as http:
            stream = await _client(url, http).responses.create(
                model="m", input=ASK, tools=RESPONSES_TOOLS, stream=True
            )
            async for event in stream:
                events.append(event)
    added = [(e.output_index, e.item.type) for e in events if e.type == "response.output_item.added"]
    assert added == [(0, "message"), (1, "function_call")]
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "Let me look."
    final = events[-1].response
    assert final.output_text == "Let me look."
    assert [item.type for item in final.output] == ["message", "function_call"]
    assert [e.sequence_number for e in events] == list(range(1, len(events) + 1))
