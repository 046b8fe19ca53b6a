"""Token usage and cost: what LLM calls used, added up per run."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..exceptions import ConfigError

__all__ = ["Prices", "Usage", "estimate_tokens"]


def estimate_tokens(text: str) -> int:
    """A rough token count (about four characters a token) for servers that report no usage."""
    return math.ceil(len(text) / 4) if text else 0


@dataclass(frozen=True, slots=True)
class Prices:
    """Prices in currency units per million tokens.

    Example::

        Prices(prompt=0.15, completion=0.60)   # $0.15 / M input tokens, $0.60 / M output
    """

    prompt: float = 0.0
    completion: float = 0.0

    def __post_init__(self) -> None:
        for name in ("prompt", "completion"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"Prices.{name} must be a finite number >= 0, got {value!r}")

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """What that many tokens cost."""
        return (prompt_tokens * self.prompt + completion_tokens * self.completion) / 1_000_000


@dataclass(slots=True)
class Usage:
    """Tokens, requests and cost, accumulated across calls.

    ``LLM.usage`` adds up everything an LLM did; pass your own ``Usage()`` as ``usage=`` to
    ``LLM.stream`` / ``LLM.complete`` to meter one run. Usage objects add with ``+``.

    Attributes:
        prompt_tokens, completion_tokens: as reported by the server (or estimated, see below).
        requests: HTTP requests made, retries included.
        retries: how many of those were retries.
        estimated: requests whose counts were estimated because the server sent no usage.
        cost: from the LLM's :class:`Prices`.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    retries: int = 0
    estimated: int = 0
    cost: float = 0.0

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens

    def add(self, other: Usage) -> None:
        """Add ``other`` into this one, in place."""
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.requests += other.requests
        self.retries += other.retries
        self.estimated += other.estimated
        self.cost += other.cost

    def __add__(self, other: Usage) -> Usage:
        total = Usage()
        total.add(self)
        total.add(other)
        return total
