"""What the simulated model says and how: replies, faults, the latency model, recorded requests."""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "BadEvent",
    "Disconnect",
    "Fault",
    "HTTPFault",
    "KeepAlive",
    "Latency",
    "RawBody",
    "RecordedRequest",
    "Reply",
    "Stall",
    "ToolCall",
    "count_tokens",
    "split_tokens",
]

# One token, split the way byte-level BPE tokenizers pre-split text (GPT-4, Llama 3, Qwen2): a
# contraction; a word of up to seven letters with the character before it (a space, a quote, a
# bracket), and long words in pieces; up to three digits; one or two punctuation characters with
# the newlines after them; runs of whitespace. Deterministic and total (the pieces always join back
# to the text). Calibrated against the Llama 3 and Qwen2 vocabularies on plans, ReAct turns, joiner
# replies, questions, prose and Python: within 6% of their counts for every kind of text
# (``benchmarks/token_fidelity.py`` measures it). The first version, one token per punctuation
# character and per six letters, counted plans 1.4 times too long.
_TOKEN = re.compile(
    r"'(?:[sdmt]|ll|ve|re)|[^\r\n\w]?[^\W\d_]{1,7}|[^\W\d_]{1,5}|\d{1,3}"
    r"| ?[^\w\s]{1,2}\n*|\s*\n+|\s+(?!\S)|\s+|_",
    re.UNICODE,
)


def split_tokens(text: str) -> list[str]:
    """Split text into the simulator's tokens; ``"".join(split_tokens(t)) == t``."""
    return _TOKEN.findall(text)


def count_tokens(text: str) -> int:
    """How many tokens the simulator counts in ``text`` (for usage and timing)."""
    return len(split_tokens(text))


# -- faults -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HTTPFault:
    """Answer with an error status instead of text.

    ``retry_after`` (seconds) is sent as ``Retry-After`` and ``retry-after-ms`` when given; a
    string is sent as ``Retry-After`` verbatim (``"soon"``, an HTTP date), to test clients.
    """

    status: int = 500
    message: str = "simulated server error"
    retry_after: float | str | None = None


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Drop the connection after sending ``after_tokens`` tokens of the reply."""

    after_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Stall:
    """Stop sending for ``seconds`` after ``after_tokens`` tokens, then carry on."""

    after_tokens: int = 0
    seconds: float = 60.0


@dataclass(frozen=True, slots=True)
class RawBody:
    """Answer with ``body`` as it is instead of an OpenAI answer: a proxy's HTML page, broken JSON.

    Sent with ``status`` and ``content_type`` whether or not the client asked for a stream.
    """

    body: str = "<html><body><h1>502 Bad Gateway</h1></body></html>"
    status: int = 200
    content_type: str = "text/html"


@dataclass(frozen=True, slots=True)
class BadEvent:
    """In a stream, send one server-sent event whose data is ``data`` (not a valid chunk) after
    ``after_tokens`` tokens, then carry on."""

    after_tokens: int = 0
    data: str = "{not json"


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """After ``after_tokens`` tokens, send only keep-alives, one every ``interval`` seconds, until
    the client hangs up: ``kind="comment"`` sends SSE comment lines (``: keep-alive``),
    ``kind="empty"`` sends chunks with an empty delta (the server looks busy but says nothing).
    """

    after_tokens: int = 0
    interval: float = 0.05
    kind: Literal["comment", "empty"] = "empty"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.interval) and self.interval > 0):
            raise ValueError(f"interval must be a positive number of seconds, got {self.interval}")


Fault = HTTPFault | Disconnect | Stall | RawBody | BadEvent | KeepAlive


# -- tool calls ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One native tool call the model makes (chat ``tool_calls``, Responses ``function_call``).

    ``arguments`` is a mapping (sent as JSON) or a string sent verbatim, so a test can send
    arguments that are not JSON (with ``Reply(check_grammar=False)``). ``id`` defaults to
    ``call_<n>`` drawn from the server's seeded generator.

    Example::

        Reply.calls(ToolCall("search", {"query": "Everest"}), ToolCall("search", {"query": "K2"}))
    """

    name: str
    arguments: Mapping[str, Any] | str = field(default_factory=dict)
    id: str | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a ToolCall needs the name of a declared tool")
        if not isinstance(self.arguments, str):
            try:
                json.dumps(self.arguments)
            except (TypeError, ValueError) as exc:
                message = f"ToolCall({self.name!r}) arguments are not JSON-serializable: {exc}"
                raise ValueError(message) from None

    def arguments_json(self) -> str:
        """The arguments as the wire carries them: a JSON text."""
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(self.arguments, separators=(", ", ": "))


@dataclass(frozen=True, slots=True)
class Reply:
    """One scripted answer.

    Attributes:
        text: what the model says. ``None`` means "sample a random text from the request's
            grammar" (see :meth:`sampled`).
        fault: an error status, a dropped connection, a stall, a raw (non-OpenAI) body, a
            malformed event or endless keep-alives (see the constructors below).
        latency: overrides the server's latency model for this reply.
        check_grammar: set False to send text the grammar refuses (to test client-side checks).
            It also lets tool calls through that break their tool's schema or ``tool_choice``.
        tool_calls: native tool calls that follow ``text`` (see :meth:`calls` and
            :class:`ToolCall`); their arguments are checked against the declared tool's schema.
        finish: the ``finish_reason`` to report (None: ``"stop"``, or ``"length"`` where the
            request's ``max_tokens`` cut the text); see :meth:`truncated`.

    Example::

        Reply("1. search(query=\\"x\\")\\njoin()")
        Reply.rate_limited(retry_after=0.2)
        Reply("...", fault=Disconnect(after_tokens=5))
    """

    text: str | None = ""
    fault: Fault | None = None
    latency: Latency | None = None
    check_grammar: bool = True
    max_sample_bytes: int = 2000
    tool_calls: tuple[ToolCall, ...] = ()
    finish: str | None = None

    def __post_init__(self) -> None:
        calls = tuple(self.tool_calls)
        if not all(isinstance(call, ToolCall) for call in calls):
            raise TypeError("Reply.tool_calls takes ToolCall items")
        object.__setattr__(self, "tool_calls", calls)

    @classmethod
    def rate_limited(cls, retry_after: float = 1.0) -> Reply:
        """A 429 with ``Retry-After``."""
        return cls(fault=HTTPFault(429, "simulated rate limit", retry_after))

    @classmethod
    def server_error(cls, status: int = 500, message: str = "simulated server error") -> Reply:
        """A 5xx (or any) error status."""
        return cls(fault=HTTPFault(status, message))

    @classmethod
    def unavailable(cls, retry_after: float | None = None) -> Reply:
        """A 503, with ``Retry-After`` when given."""
        return cls(fault=HTTPFault(503, "simulated overload", retry_after))

    @classmethod
    def disconnect(cls, text: str, after_tokens: int) -> Reply:
        """Send the first ``after_tokens`` tokens of ``text``, then drop the connection."""
        return cls(text, fault=Disconnect(after_tokens))

    @classmethod
    def truncated(cls, text: str) -> Reply:
        """Send ``text`` and end with ``finish_reason: "length"``, as a server that hit its
        token limit does (a request's own ``max_tokens`` does this too, by counting)."""
        return cls(text, finish="length")

    @classmethod
    def stall(cls, text: str, after_tokens: int, seconds: float) -> Reply:
        """Send ``after_tokens`` tokens of ``text``, go quiet for ``seconds``, then finish."""
        return cls(text, fault=Stall(after_tokens, seconds))

    @classmethod
    def raw(cls, body: str, *, status: int = 200, content_type: str = "text/html") -> Reply:
        """Answer ``body`` verbatim (an HTML page, text that is not JSON) instead of an answer."""
        return cls(fault=RawBody(body, status, content_type))

    @classmethod
    def bad_event(cls, text: str, after_tokens: int, data: str = "{not json") -> Reply:
        """Stream ``text`` with a malformed event (``data``) after ``after_tokens`` tokens."""
        return cls(text, fault=BadEvent(after_tokens, data))

    @classmethod
    def keep_alive(
        cls,
        text: str,
        after_tokens: int,
        *,
        interval: float = 0.05,
        kind: Literal["comment", "empty"] = "empty",
    ) -> Reply:
        """Stream ``after_tokens`` tokens of ``text``, then keep-alives forever (see :class:`KeepAlive`)."""
        return cls(text, fault=KeepAlive(after_tokens, interval, kind))

    @classmethod
    def sampled(cls, max_bytes: int = 2000) -> Reply:
        """A random text the request's grammar accepts (seeded by the server's seed)."""
        return cls(None, max_sample_bytes=max_bytes)

    @classmethod
    def calls(cls, *calls: ToolCall, text: str = "", latency: Latency | None = None) -> Reply:
        """Native tool calls (several make a parallel call), after an optional ``text``."""
        return cls(text, tool_calls=calls, latency=latency)


# -- latency ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Latency:
    """When tokens come out: after the time to first token, then ``tokens_per_second``.

    The time to first token is ``ttft`` plus the prefill of the prompt's uncached tokens at
    ``prefill_tokens_per_second`` (``None``: prefill costs nothing, the old model). With
    ``prefix_cache_tokens`` > 0 the server keeps a prefix cache of that many tokens (see
    :class:`PrefixCache`): a prompt whose leading blocks of ``cache_block_tokens`` tokens it has
    seen prefills only the rest, and the answer reports them as cached tokens. Prompts shorter
    than ``cache_min_tokens`` are neither looked up nor stored (OpenAI caches from 1,024).

    ``jitter`` is a relative spread (0.1 = each delay drawn within ±10%), drawn from the
    server's seeded random generator. ``tokens_per_second=None`` sends every token at once.
    Named presets measured on real servers are in :data:`LATENCY_PRESETS`.

    Example::

        Latency(ttft=0.3, tokens_per_second=50)                       # the old model
        Latency(ttft=0.008, tokens_per_second=54, prefill_tokens_per_second=12_500,
                prefix_cache_tokens=200_000)                           # prefill and a cache
    """

    ttft: float = 0.0
    tokens_per_second: float | None = None
    jitter: float = 0.0
    prefill_tokens_per_second: float | None = None
    prefix_cache_tokens: int = 0
    cache_block_tokens: int = 16
    cache_min_tokens: int = 0

    def __post_init__(self) -> None:
        if self.ttft < 0 or not math.isfinite(self.ttft):
            raise ValueError(f"ttft must be a finite number >= 0, got {self.ttft}")
        if self.tokens_per_second is not None and not self.tokens_per_second > 0:
            raise ValueError(f"tokens_per_second must be > 0, got {self.tokens_per_second}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter}")
        rate = self.prefill_tokens_per_second
        if rate is not None and not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"prefill_tokens_per_second must be a finite number > 0, got {rate}")
        if self.prefix_cache_tokens < 0:
            raise ValueError(f"prefix_cache_tokens must be >= 0, got {self.prefix_cache_tokens}")
        if self.cache_block_tokens < 1:
            raise ValueError(f"cache_block_tokens must be >= 1, got {self.cache_block_tokens}")
        if self.cache_min_tokens < 0:
            raise ValueError(f"cache_min_tokens must be >= 0, got {self.cache_min_tokens}")

    def prefill_seconds(self, uncached_tokens: int) -> float:
        """How long prefilling ``uncached_tokens`` prompt tokens takes."""
        rate = self.prefill_tokens_per_second
        return 0.0 if rate is None else uncached_tokens / rate

    def schedule(self, n_tokens: int, rng: random.Random, *, prefill_tokens: int = 0) -> list[float]:
        """Offsets in seconds from the start of the request at which each token is due.

        ``prefill_tokens`` is how many prompt tokens must be prefilled first (the uncached ones).
        """

        def spread(value: float) -> float:
            return value * (1 + rng.uniform(-self.jitter, self.jitter)) if self.jitter else value

        t = spread(self.ttft + self.prefill_seconds(prefill_tokens))
        step = 0.0 if self.tokens_per_second is None else 1 / self.tokens_per_second
        out = []
        for i in range(n_tokens):
            if i:
                t += spread(step)
            out.append(t)
        return out


# -- recording ----------------------------------------------------------------------------------


@dataclass(slots=True)
class RecordedRequest:
    """A request the server received, kept for assertions and passed to reply functions.

    Attributes:
        method, path: e.g. ``"POST"``, ``"/v1/chat/completions"``.
        body: the parsed JSON body (``{}`` for none).
        headers: request headers, lower-cased names.
        index: 0-based arrival order.
        time: ``anyio.current_time()`` at arrival.
        grammar_field: the request field the grammar was found in, or None.
        status: the status code the server answered with (set once decided).
        cached_tokens: prompt tokens the prefix cache held (reported as cached in usage).
        ttft: the modelled time to first token in seconds (base, prefill and jitter), once
            decided.
    """

    method: str
    path: str
    body: Mapping[str, Any]
    headers: Mapping[str, str]
    index: int
    time: float
    grammar_field: str | None = None
    status: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    cached_tokens: int = 0
    ttft: float | None = None

    @property
    def prompt(self) -> str:
        """The prompt text: message contents joined by newlines, or the completions ``prompt``.

        Declared function tools come first (as chat templates put them in the system turn), and
        the tool calls and tool results in the conversation count too, so that usage and the
        prefix cache see what a real server would prefill.
        """
        if "prompt" in self.body:
            prompt = self.body["prompt"]
            return prompt if isinstance(prompt, str) else "\n".join(map(str, prompt))
        parts = [_tools_text(self.body.get("tools")), self.body.get("instructions") or ""]
        messages = self.body.get("messages", self.body.get("input", []))
        if isinstance(messages, str):
            return "\n".join(p for p in [*parts, messages] if p)
        for message in messages:
            content = message.get("content", "") if isinstance(message, Mapping) else ""
            if isinstance(content, list):
                content = "".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
            parts.append("" if content is None else str(content))
            if isinstance(message, Mapping):
                parts.extend(_call_texts(message))
        return "\n".join(p for p in parts if p)

    @property
    def stream(self) -> bool:
        """Whether the client asked for a streamed answer."""
        return bool(self.body.get("stream"))


def _tools_text(tools: Any) -> str:
    """The declared function tools as JSON (custom grammar tools are not counted as prompt)."""
    if not isinstance(tools, list):
        return ""
    functions = [t for t in tools if isinstance(t, Mapping) and t.get("type") == "function"]
    return json.dumps(functions, separators=(",", ":")) if functions else ""


def _call_texts(message: Mapping[str, Any]) -> list[str]:
    """The tool calls and tool results a chat message or a Responses input item carries."""
    out = []
    for call in message.get("tool_calls") or ():  # chat: an assistant turn's calls
        function = call.get("function", {}) if isinstance(call, Mapping) else {}
        out.append(f"{function.get('name', '')}({function.get('arguments', '')})")
    kind = message.get("type")
    if kind == "function_call":  # Responses: a call item and its result
        out.append(f"{message.get('name', '')}({message.get('arguments', '')})")
    elif kind == "function_call_output":
        out.append(str(message.get("output", "")))
    return out
