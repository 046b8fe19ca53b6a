"""One retry policy for everything that retries: tool calls and LLM requests.

A :class:`RetryPolicy` says how many attempts a call gets, how long to wait between them
(exponential backoff with jitter, or the server's ``Retry-After``) and when to stop trying. The
dispatcher retries a tool's call by one (``ToolPolicy.retries`` and ``idempotent`` say how many
and which failures; :meth:`Limits.retry_policy <tomasulo.dispatcher.Limits.retry_policy>` the
waits); :class:`~tomasulo.planner.LLM` retries its requests by one (``LLM(retry=...)``).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from ..exceptions import ConfigError

__all__ = ["DEFAULT_RETRY", "RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a failed call is tried again.

    >>> policy = RetryPolicy(attempts=3, initial=0.5, maximum=4.0, jitter=0.0)
    >>> [policy.backoff(n) for n in (1, 2, 3, 4)]
    [0.5, 1.0, 2.0, 4.0]
    >>> policy.backoff(1, retry_after=7.0)
    7.0

    Attributes:
        attempts: calls in all, the first one included (1: no retry).
        initial: the wait after the first failed attempt; each later wait doubles.
        maximum: no wait is longer than this (jitter included).
        jitter: up to this fraction of the wait is added at random (0: none).
        total: no new attempt starts once this many seconds have passed since the first one
            (``math.inf``: no bound but the attempts).
        max_retry_after: the longest ``Retry-After`` a server may ask for; a longer one is cut
            to this (it replaces the backoff where the error carries one).

    For LLM requests, 429s, 5xx answers, connection errors and timeouts that happen before any
    text are retried (a stream that has produced text never is: see ``LLM.stream``).
    """

    attempts: int = 4
    initial: float = 0.5
    maximum: float = 8.0
    jitter: float = 0.5
    total: float = 60.0
    max_retry_after: float = 30.0

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int) or self.attempts < 1:
            raise ConfigError(f"RetryPolicy.attempts must be a whole number >= 1, got {self.attempts!r}")
        for name in ("initial", "maximum", "jitter", "total", "max_retry_after"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and not math.isnan(value) and value >= 0):
                raise ConfigError(f"RetryPolicy.{name} must be a number >= 0, got {value!r}")
            if name != "total" and math.isinf(value):
                raise ConfigError(f"RetryPolicy.{name} must be a finite number >= 0, got {value!r}")

    def backoff(self, attempt: int, retry_after: float | None = None, rand: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (from 1): ``retry_after``
        (capped at ``max_retry_after``) when the server gave one (not NaN), else
        ``min(initial * 2 ** (attempt - 1) * (1 + jitter * rand), maximum)`` with ``rand`` in
        [0, 1) (random by default)."""
        if retry_after is not None and not math.isnan(retry_after):
            return min(max(retry_after, 0.0), self.max_retry_after)
        if rand is None:
            rand = random.random()
        try:
            base = self.initial * 2.0 ** (attempt - 1)
        except OverflowError:
            return self.maximum
        return min(base * (1 + self.jitter * rand), self.maximum)


#: Four attempts, waits from 0.5 s up to 8 s, none after 60 s: the LLM's default.
DEFAULT_RETRY = RetryPolicy()
