"""The OpenAI wire formats the simulator speaks: chat completions, completions and Responses.

Each encoder turns a reply (its tokens, finish reason and usage) into either one JSON body or a
sequence of server-sent events, so the server only decides *when* to send, not *what*.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._constraint import custom_tool

__all__ = ["Encoder", "Event", "Usage", "encoder_for", "sse"]

Event = tuple[str | None, Mapping[str, Any] | str]
"""One server-sent event: its ``event:`` name (or None) and its ``data`` (JSON or raw text)."""


def sse(event: Event) -> bytes:
    """Render one server-sent event."""
    name, data = event
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {name}\n" if name else ""
    return f"{head}data: {payload}\n\n".encode()


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one answer.

    ``cached_tokens`` of the prompt came from the prefix cache. ``report_cached`` adds
    ``prompt_tokens_details.cached_tokens`` to chat usage (OpenAI always sends it, vLLM only
    with prefix caching on, so it is sent when the latency model has a prefix cache).
    """

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    report_cached: bool = False


class Encoder:
    """Base: a chat-completions encoder; subclasses change the shapes."""

    object_name = "chat.completion"

    def __init__(self, body: Mapping[str, Any], model: str) -> None:
        self.body = body
        self.model = str(body.get("model") or model)
        self.id = f"sim-{uuid.uuid4().hex[:16]}"
        self.created = int(time.time())

    # limits the request sets
    def max_tokens(self) -> int | None:
        value = self.body.get("max_completion_tokens", self.body.get("max_tokens"))
        return int(value) if value is not None else None

    def stop(self) -> list[str]:
        stop = self.body.get("stop")
        if stop is None:
            return []
        return [stop] if isinstance(stop, str) else [str(s) for s in stop]

    def include_usage(self) -> bool:
        options = self.body.get("stream_options") or {}
        return bool(options.get("include_usage"))

    # shapes
    def _usage(self, usage: Usage) -> dict[str, Any]:
        out: dict[str, Any] = {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        }
        if usage.report_cached:
            out["prompt_tokens_details"] = {"cached_tokens": usage.cached_tokens}
        return out

    def whole(self, text: str, finish: str, usage: Usage) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": self.object_name,
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": finish,
                    "logprobs": None,
                }
            ],
            "usage": self._usage(usage),
        }

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            **extra,
        }

    def head(self) -> list[Event]:
        delta = {"role": "assistant", "content": ""}
        return [(None, self._chunk([{"index": 0, "delta": delta, "finish_reason": None}]))]

    def delta(self, piece: str) -> Event:
        choice = {"index": 0, "delta": {"content": piece}, "finish_reason": None}
        return (None, self._chunk([choice]))

    def tail(self, text: str, finish: str, usage: Usage) -> list[Event]:
        events: list[Event] = [(None, self._chunk([{"index": 0, "delta": {}, "finish_reason": finish}]))]
        if self.include_usage():
            events.append((None, self._chunk([], usage=self._usage(usage))))
        events.append((None, "[DONE]"))
        return events


class CompletionsEncoder(Encoder):
    """``/v1/completions``: text completions."""

    object_name = "text_completion"

    def whole(self, text: str, finish: str, usage: Usage) -> dict[str, Any]:
        choice = {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
        return {
            "id": self.id,
            "object": self.object_name,
            "created": self.created,
            "model": self.model,
            "choices": [choice],
            "usage": self._usage(usage),
        }

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": self.object_name,
            "created": self.created,
            "model": self.model,
            "choices": choices,
            **extra,
        }

    def head(self) -> list[Event]:
        return []

    def delta(self, piece: str) -> Event:
        choice = {"index": 0, "text": piece, "finish_reason": None, "logprobs": None}
        return (None, self._chunk([choice]))

    def tail(self, text: str, finish: str, usage: Usage) -> list[Event]:
        last = {"index": 0, "text": "", "finish_reason": finish, "logprobs": None}
        events: list[Event] = [(None, self._chunk([last]))]
        if self.include_usage():
            events.append((None, self._chunk([], usage=self._usage(usage))))
        events.append((None, "[DONE]"))
        return events


class ResponsesEncoder(Encoder):
    """``/v1/responses``: a message, or a call of the custom tool the request forces."""

    object_name = "response"

    def __init__(self, body: Mapping[str, Any], model: str) -> None:
        super().__init__(body, model)
        self.tool = custom_tool(body)
        self.item_id = f"item-{uuid.uuid4().hex[:12]}"
        self.seq = 0

    def max_tokens(self) -> int | None:
        value = self.body.get("max_output_tokens")
        return int(value) if value is not None else None

    def stop(self) -> list[str]:
        return []

    def _usage(self, usage: Usage) -> dict[str, Any]:
        return {
            "input_tokens": usage.prompt_tokens,
            "input_tokens_details": {"cached_tokens": usage.cached_tokens, "cache_write_tokens": 0},
            "output_tokens": usage.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        }

    def _item(self, text: str, status: str) -> dict[str, Any]:
        if self.tool is not None:
            return {
                "type": "custom_tool_call",
                "id": self.item_id,
                "call_id": f"call-{self.item_id}",
                "name": self.tool.get("name", ""),
                "input": text,
                "status": status,
            }
        content = [{"type": "output_text", "text": text, "annotations": []}] if text else []
        return {
            "type": "message",
            "id": self.item_id,
            "role": "assistant",
            "status": status,
            "content": content,
        }

    def _response(self, status: str, output: list[Any], usage: Usage | None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "model": self.model,
            "status": status,
            "output": output,
            "parallel_tool_calls": False,
            "tool_choice": self.body.get("tool_choice", "auto"),
            "tools": list(self.body.get("tools") or []),
            "usage": self._usage(usage) if usage is not None else None,
        }

    def whole(self, text: str, finish: str, usage: Usage) -> dict[str, Any]:
        status = "incomplete" if finish == "length" else "completed"
        response = self._response(status, [self._item(text, "completed")], usage)
        if finish == "length":
            response["incomplete_details"] = {"reason": "max_output_tokens"}
        return response

    def _event(self, kind: str, **data: Any) -> Event:
        self.seq += 1
        return (kind, {"type": kind, "sequence_number": self.seq, **data})

    def head(self) -> list[Event]:
        events = [
            self._event("response.created", response=self._response("in_progress", [], None)),
            self._event("response.output_item.added", output_index=0, item=self._item("", "in_progress")),
        ]
        if self.tool is None:
            part = {"type": "output_text", "text": "", "annotations": []}
            events.append(
                self._event(
                    "response.content_part.added",
                    item_id=self.item_id,
                    output_index=0,
                    content_index=0,
                    part=part,
                )
            )
        return events

    def delta(self, piece: str) -> Event:
        if self.tool is not None:
            return self._event(
                "response.custom_tool_call_input.delta",
                item_id=self.item_id,
                output_index=0,
                delta=piece,
            )
        return self._event(
            "response.output_text.delta",
            item_id=self.item_id,
            output_index=0,
            content_index=0,
            delta=piece,
            logprobs=[],
        )

    def tail(self, text: str, finish: str, usage: Usage) -> list[Event]:
        where = {"item_id": self.item_id, "output_index": 0}
        if self.tool is not None:
            events = [self._event("response.custom_tool_call_input.done", input=text, **where)]
        else:
            part = {"type": "output_text", "text": text, "annotations": []}
            events = [
                self._event("response.output_text.done", content_index=0, text=text, logprobs=[], **where),
                self._event("response.content_part.done", content_index=0, part=part, **where),
            ]
        item = self._item(text, "completed")
        events.append(self._event("response.output_item.done", output_index=0, item=item))
        done = "response.incomplete" if finish == "length" else "response.completed"
        events.append(self._event(done, response=self.whole(text, finish, usage)))
        return events


def encoder_for(path: str, body: Mapping[str, Any], model: str) -> Encoder:
    """The encoder for an endpoint path."""
    if path.endswith("/responses"):
        return ResponsesEncoder(body, model)
    if path.endswith("/chat/completions"):
        return Encoder(body, model)
    return CompletionsEncoder(body, model)
