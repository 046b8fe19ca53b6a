"""What the simulated model says and how: replies, faults, the latency model, recorded requests."""

from __future__ import annotations

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


# -- latency ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Latency:
    """When tokens come out: after ``ttft`` seconds, then ``tokens_per_second``.

    ``jitter`` is a relative spread (0.1 = each delay drawn within ±10%), drawn from the
    server's seeded random generator. ``tokens_per_second=None`` sends every token at once.
    """

    ttft: float = 0.0
    tokens_per_second: float | None = None
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.ttft < 0 or not math.isfinite(self.ttft):
            raise ValueError(f"ttft must be a finite number >= 0, got {self.ttft}")
        if self.tokens_per_second is not None and not self.tokens_per_second > 0:
            raise ValueError(f"tokens_per_second must be > 0, got {self.tokens_per_second}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter}")

    def schedule(self, n_tokens: int, rng: random.Random) -> list[float]:
        """Offsets in seconds from the start of the request at which each token is due."""

        def spread(value: float) -> float:
            return value * (1 + rng.uniform(-self.jitter, self.jitter)) if self.jitter else value

        t = spread(self.ttft)
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

    @property
    def prompt(self) -> str:
        """The prompt text: message contents joined by newlines, or the completions ``prompt``."""
        if "prompt" in self.body:
            prompt = self.body["prompt"]
            return prompt if isinstance(prompt, str) else "\n".join(map(str, prompt))
        messages = self.body.get("messages", self.body.get("input", []))
        if isinstance(messages, str):
            return messages
        parts = [self.body.get("instructions") or ""]
        for message in messages:
            content = message.get("content", "") if isinstance(message, Mapping) else ""
            if isinstance(content, list):
                content = "".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
            parts.append(str(content))
        return "\n".join(p for p in parts if p)

    @property
    def stream(self) -> bool:
        """Whether the client asked for a streamed answer."""
        return bool(self.body.get("stream"))
