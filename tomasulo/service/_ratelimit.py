"""Requests per minute per tenant: a token bucket per tenant, in the replica's memory.

Each replica keeps its own buckets, so N replicas behind a load balancer let a tenant through
about N times its rate at worst; a shared bucket (PostgreSQL or Redis) can replace this class.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

__all__ = ["RateLimiter"]


class RateLimiter:
    """``check(tenant, per_minute)``: ``None`` when the request may go, else seconds to wait.

    A bucket holds up to ``per_minute`` tokens and refills at ``per_minute / 60`` a second, so
    a quiet tenant may burst up to its whole minute's worth at once.

    >>> limiter = RateLimiter()
    >>> limiter.check("acme", 1), limiter.check("acme", 1) is not None
    (None, True)
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # tenant -> (tokens, when)
        self._lock = threading.Lock()

    def check(self, tenant: str, per_minute: int | None) -> int | None:
        """Take a token for ``tenant``; ``None`` if one was there, else whole seconds to wait."""
        if per_minute is None:
            return None
        rate = per_minute / 60.0
        now = self._clock()
        with self._lock:
            tokens, when = self._buckets.get(tenant, (float(per_minute), now))
            tokens = min(float(per_minute), tokens + (now - when) * rate)
            if tokens >= 1.0:
                self._buckets[tenant] = (tokens - 1.0, now)
                return None
            self._buckets[tenant] = (tokens, now)
            return max(1, math.ceil((1.0 - tokens) / rate))

    def forget(self, tenant: str) -> None:
        """Drop a tenant's bucket (its limit changed, or it was deleted)."""
        with self._lock:
            self._buckets.pop(tenant, None)
