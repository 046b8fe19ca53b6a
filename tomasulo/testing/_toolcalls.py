"""Native tool calls: which tools a request declares, checking or sampling the model's calls, and
the wire shapes (chat ``tool_calls`` deltas, Responses ``function_call`` items and events).

A reply with tool calls is cut into steps: the text before the calls a token at a time, then for
each call its header (id and name, sent once the name's tokens are out) and its arguments a token
at a time. The server times each step by the latency model and hands it to the encoder, which
turns it into the events OpenAI sends for it.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import jsonschema

from ._constraint import _compiled
from ._protocol import Encoder, Event, ResponsesEncoder, Usage
from ._script import Reply, ToolCall, count_tokens, split_tokens

__all__ = ["CallPlan", "ToolCallMismatch", "ToolEncoder", "plan_tool_calls", "tool_encoder"]


class ToolCallMismatch(ValueError):
    """A scripted tool call the request does not allow: an undeclared tool, arguments outside
    the tool's schema, or calls that break ``tool_choice`` / ``parallel_tool_calls``.

    ``param`` names the request field at fault; the server answers 400 with ``code``.
    """

    def __init__(self, param: str, message: str, code: str = "tool_call_mismatch") -> None:
        self.param = param
        self.code = code
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class PlannedCall:
    """A call as it goes on the wire."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class CallPlan:
    """What a tool-calling answer says: ``text`` first, then ``calls``."""

    text: str
    calls: tuple[PlannedCall, ...]


# -- what the request declares -------------------------------------------------------------------


def declared_functions(path: str, body: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The request's function tools: name -> JSON schema of the arguments."""
    out: dict[str, Mapping[str, Any]] = {}
    for tool in body.get("tools") or ():
        if not isinstance(tool, Mapping) or tool.get("type") != "function":
            continue
        spec = tool if path.endswith("/responses") else tool.get("function") or {}
        name = spec.get("name")
        if isinstance(name, str) and name:
            parameters = spec.get("parameters")
            out[name] = parameters if isinstance(parameters, Mapping) else {"type": "object"}
    return out


Choice = tuple[Literal["auto", "none", "required", "function"], str | None]


def tool_choice(path: str, body: Mapping[str, Any]) -> Choice:
    """``tool_choice`` as (mode, function name): ``auto`` unless the request says otherwise."""
    choice = body.get("tool_choice")
    if choice in (None, "auto"):
        return ("auto", None)
    if choice in ("none", "required"):
        return (choice, None)
    if isinstance(choice, Mapping) and choice.get("type") == "function":
        spec = choice if path.endswith("/responses") else choice.get("function") or {}
        name = spec.get("name")
        if isinstance(name, str):
            return ("function", name)
    raise ToolCallMismatch(
        "tool_choice",
        f"tool_choice {choice!r} is not understood: use 'auto', 'none', 'required' or a named function",
        code="invalid_tool_choice",
    )


# -- deciding the calls --------------------------------------------------------------------------


def plan_tool_calls(
    path: str,
    body: Mapping[str, Any],
    reply: Reply,
    rng: random.Random,
    *,
    check: bool,
    can_sample: bool,
) -> CallPlan | None:
    """The tool calls to answer with, or None for a plain text answer.

    A scripted reply's calls are checked against the request (``check``): each names a declared
    function, its arguments are a JSON object the tool's schema accepts, and together they obey
    ``tool_choice`` and ``parallel_tool_calls``. A reply with no calls is refused when
    ``tool_choice`` requires one. A sampled reply (``Reply.sampled()``, when ``can_sample``)
    calls one declared function with arguments sampled from its schema, unless ``tool_choice``
    is ``"none"``.

    Raises:
        ToolCallMismatch: the scripted reply breaks one of the rules above.
    """
    if path.endswith("/completions") and not path.endswith("/chat/completions"):
        return None
    tools = declared_functions(path, body)
    if not tools and not reply.tool_calls:
        return None
    mode, named = tool_choice(path, body) if tools else ("auto", None)
    if reply.text is None:
        if not tools or mode == "none" or not can_sample:
            return None
        name = named if mode == "function" and named in tools else rng.choice(sorted(tools))
        arguments = _sample_arguments(name, tools[name], rng, reply.max_sample_bytes)
        return CallPlan("", (PlannedCall(_Ids(rng).next(), name, arguments),))
    calls = reply.tool_calls
    if check:
        _check_calls(calls, tools, mode, named, body.get("parallel_tool_calls", True))
    if not calls:
        return None  # a text answer: the generator is left as the text path expects it
    ids = _Ids(rng)
    planned = tuple(PlannedCall(c.id or ids.next(), c.name, c.arguments_json()) for c in calls)
    return CallPlan(reply.text, planned)


def _check_calls(
    calls: Sequence[ToolCall],
    tools: Mapping[str, Mapping[str, Any]],
    mode: str,
    named: str | None,
    parallel: Any,
) -> None:
    if not calls:
        if mode in ("required", "function"):
            what = "a call" if mode == "required" else f"a call of {named!r}"
            raise ToolCallMismatch(
                "tool_choice",
                f"the request's tool_choice requires {what} but the scripted reply has no tool "
                "calls: script Reply.calls(ToolCall(...)), or send tool_choice 'auto'",
            )
        return
    if mode == "none":
        raise ToolCallMismatch(
            "tool_choice",
            f"the scripted reply calls {calls[0].name!r} but the request's tool_choice is 'none'",
        )
    if parallel is False and len(calls) > 1:
        raise ToolCallMismatch(
            "parallel_tool_calls",
            f"the scripted reply makes {len(calls)} tool calls but the request sets "
            "parallel_tool_calls to false (one call per turn)",
        )
    for index, call in enumerate(calls):
        where = f"scripted tool call {index} ({call.name!r})"
        if call.name not in tools:
            declared = ", ".join(sorted(tools)) or "none"
            raise ToolCallMismatch(
                "tools", f"{where} names a tool the request does not declare (declared: {declared})"
            )
        if mode == "function" and call.name != named:
            raise ToolCallMismatch(
                "tool_choice", f"{where} is not the function tool_choice names ({named!r})"
            )
        _check_arguments(where, call.name, call.arguments_json(), tools[call.name])


def _check_arguments(where: str, name: str, text: str, schema: Mapping[str, Any]) -> None:
    param = f"tools[{name}].parameters"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ToolCallMismatch(param, f"{where}: the arguments are not JSON ({exc}): {text[:80]!r}") from None
    if not isinstance(value, dict):
        raise ToolCallMismatch(param, f"{where}: the arguments must be a JSON object, got {text[:80]!r}")
    cls = jsonschema.validators.validator_for(schema, jsonschema.Draft202012Validator)
    try:
        cls.check_schema(dict(schema))
    except jsonschema.SchemaError as exc:
        message = f"the schema of tool {name!r} is not a valid JSON schema: {exc.message}"
        raise ToolCallMismatch(param, message, "invalid_tool_schema") from None
    error = jsonschema.exceptions.best_match(cls(schema).iter_errors(value))
    if error is not None:
        at = "/".join(str(p) for p in error.absolute_path) or "(the arguments object)"
        raise ToolCallMismatch(
            param, f"{where}: the arguments do not match the tool's schema at {at}: {error.message}"
        )


def _sample_arguments(name: str, schema: Mapping[str, Any], rng: random.Random, max_bytes: int) -> str:
    """Arguments the schema accepts, sampled with llguidance like grammar-sampled texts."""
    constraint = _compiled("json_schema", json.dumps(schema), f"tools[{name}].parameters")
    return constraint.sample(rng, max_bytes=max_bytes)


class _Ids:
    def __init__(self, rng: random.Random) -> None:
        self._rng = random.Random(rng.random())  # ids must not shift the latency model's draws

    def next(self) -> str:
        return f"call_{self._rng.getrandbits(64):016x}"


# -- steps ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """One timed piece of a tool-calling answer; ``tokens`` is how many tokens it stands for."""

    kind: Literal["text", "call", "args"]
    call: int
    piece: str
    tokens: int


def _steps(plan: CallPlan, limit: int | None) -> tuple[list[Step], str]:
    steps = [Step("text", -1, piece, 1) for piece in split_tokens(plan.text)]
    for index, call in enumerate(plan.calls):
        steps.append(Step("call", index, call.name, max(1, count_tokens(call.name))))
        steps.extend(Step("args", index, piece, 1) for piece in split_tokens(call.arguments))
    if limit is None:
        return steps, "tool_calls"
    kept: list[Step] = []
    used = 0
    for step in steps:
        if used + step.tokens > limit:
            return kept, "length"
        kept.append(step)
        used += step.tokens
    return kept, "tool_calls"


class _Sent:
    """The text and calls a (possibly truncated) list of steps carries."""

    def __init__(self, plan: CallPlan, steps: Sequence[Step]) -> None:
        self.text = "".join(s.piece for s in steps if s.kind == "text")
        started = sorted({s.call for s in steps if s.kind == "call"})
        self.calls = [
            PlannedCall(
                plan.calls[i].id,
                plan.calls[i].name,
                "".join(s.piece for s in steps if s.kind == "args" and s.call == i),
            )
            for i in started
        ]


# -- chat completions ----------------------------------------------------------------------------


class ChatToolEncoder(Encoder):
    """``/v1/chat/completions`` with ``tool_calls``, streamed as OpenAI streams them."""

    def __init__(self, body: Mapping[str, Any], model: str, plan: CallPlan) -> None:
        super().__init__(body, model)
        self.steps, self.finish = _steps(plan, self.max_tokens())
        self.sent = _Sent(plan, self.steps)
        self.plan = plan

    def _message(self) -> dict[str, Any]:
        calls = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in self.sent.calls
        ]
        message: dict[str, Any] = {"role": "assistant", "content": self.sent.text or None}
        if calls:
            message["tool_calls"] = calls
        return message

    def whole(self, text: str, finish: str, usage: Usage) -> dict[str, Any]:
        body = super().whole("", self.finish, usage)
        body["choices"][0]["message"] = self._message()
        return body

    def head(self) -> list[Event]:
        delta = {"role": "assistant", "content": "" if self.plan.text else None}
        return [(None, self._chunk([{"index": 0, "delta": delta, "finish_reason": None}]))]

    def step(self, step: Step) -> list[Event]:
        if step.kind == "text":
            return [self.delta(step.piece)]
        call = self.plan.calls[step.call]
        if step.kind == "call":
            entry: dict[str, Any] = {
                "index": step.call,
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
        else:
            entry = {"index": step.call, "function": {"arguments": step.piece}}
        choice = {"index": 0, "delta": {"tool_calls": [entry]}, "finish_reason": None}
        return [(None, self._chunk([choice]))]

    def tail(self, text: str, finish: str, usage: Usage) -> list[Event]:
        return super().tail("", self.finish, usage)


# -- Responses -----------------------------------------------------------------------------------


class ResponsesToolEncoder(ResponsesEncoder):
    """``/v1/responses`` with ``function_call`` output items (after a message, when there is text)."""

    def __init__(self, body: Mapping[str, Any], model: str, plan: CallPlan) -> None:
        super().__init__(body, model)
        self.tool = None  # function calls, not the custom tool
        limit = self.max_tokens()
        self.steps, finish = _steps(plan, limit)
        self.finish = "length" if finish == "length" else "stop"
        self.sent = _Sent(plan, self.steps)
        self.plan = plan
        self.item_ids = [f"fc_{uuid.uuid4().hex[:16]}" for _ in plan.calls]
        self._open: int | None = None  # the call whose item is open; -1: the message
        self._args: list[str] = ["" for _ in plan.calls]

    def _output_index(self, call: int) -> int:
        return call + (1 if self.plan.text else 0)

    def _call_item(self, call: int, arguments: str, status: str) -> dict[str, Any]:
        planned = self.plan.calls[call]
        return {
            "type": "function_call",
            "id": self.item_ids[call],
            "call_id": planned.id,
            "name": planned.name,
            "arguments": arguments,
            "status": status,
        }

    def whole(self, text: str, finish: str, usage: Usage) -> dict[str, Any]:
        output: list[Any] = []
        if self.sent.text:
            output.append(self._item(self.sent.text, "completed"))
        by_id = {c.id: c for c in self.sent.calls}
        for index, call in enumerate(self.plan.calls):
            if call.id in by_id:
                output.append(self._call_item(index, by_id[call.id].arguments, "completed"))
        status = "incomplete" if self.finish == "length" else "completed"
        response = self._response(status, output, usage)
        response["parallel_tool_calls"] = bool(self.body.get("parallel_tool_calls", True))
        if self.finish == "length":
            response["incomplete_details"] = {"reason": "max_output_tokens"}
        return response

    def head(self) -> list[Event]:
        if self.plan.text:  # created, then the message item and its text part
            self._open = -1
            return super().head()
        return [self._event("response.created", response=self._response("in_progress", [], None))]

    def _close(self) -> list[Event]:
        if self._open is None:
            return []
        if self._open == -1:
            text = self.sent.text
            where = {"item_id": self.item_id, "output_index": 0}
            part = {"type": "output_text", "text": text, "annotations": []}
            events = [
                self._event("response.output_text.done", content_index=0, text=text, logprobs=[], **where),
                self._event("response.content_part.done", content_index=0, part=part, **where),
                self._event("response.output_item.done", output_index=0, item=self._item(text, "completed")),
            ]
        else:
            call = self._open
            arguments = self._args[call]
            where = {"item_id": self.item_ids[call], "output_index": self._output_index(call)}
            events = [
                self._event("response.function_call_arguments.done", arguments=arguments, **where),
                self._event(
                    "response.output_item.done",
                    output_index=where["output_index"],
                    item=self._call_item(call, arguments, "completed"),
                ),
            ]
        self._open = None
        return events

    def step(self, step: Step) -> list[Event]:
        if step.kind == "text":
            return [self.delta(step.piece)]
        if step.kind == "call":
            events = self._close()
            self._open = step.call
            item = self._call_item(step.call, "", "in_progress")
            index = self._output_index(step.call)
            events.append(self._event("response.output_item.added", output_index=index, item=item))
            return events
        self._args[step.call] += step.piece
        return [
            self._event(
                "response.function_call_arguments.delta",
                item_id=self.item_ids[step.call],
                output_index=self._output_index(step.call),
                delta=step.piece,
            )
        ]

    def tail(self, text: str, finish: str, usage: Usage) -> list[Event]:
        events = self._close()
        done = "response.incomplete" if self.finish == "length" else "response.completed"
        events.append(self._event(done, response=self.whole("", self.finish, usage)))
        return events


ToolEncoder = ChatToolEncoder | ResponsesToolEncoder


def tool_encoder(path: str, body: Mapping[str, Any], model: str, plan: CallPlan) -> ToolEncoder:
    """The encoder of a tool-calling answer for an endpoint path."""
    if path.endswith("/responses"):
        return ResponsesToolEncoder(body, model, plan)
    return ChatToolEncoder(body, model, plan)
