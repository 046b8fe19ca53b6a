"""Run-wide limits for the dispatcher: a validated value object with module-level defaults."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..exceptions import ConfigError
from ..tools import RetryPolicy

__all__ = ["DEFAULT_CANCEL_GRACE", "DEFAULT_LIMITS", "DEFAULT_RETRY_BACKOFF", "Limits"]

#: Seconds a cancelled call gets to unwind before its outcome is recorded regardless.
DEFAULT_CANCEL_GRACE = 0.1
#: First retry delay in seconds; later ones double, plus jitter, up to ``retry_max_wait``.
DEFAULT_RETRY_BACKOFF = 0.1
DEFAULT_RETRY_MAX_WAIT = 5.0


def _positive(name: str, value: float | None, *, allow_zero: bool = False) -> None:
    if value is None:
        return
    ok = math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        need = "0 or more" if allow_zero else "a positive number of"
        raise ConfigError(f"{name} must be {need} seconds, got {value!r}")


@dataclass(frozen=True, slots=True)
class Limits:
    """Limits for one run of the dispatcher.

    >>> Limits(max_concurrency=8, deadline=30.0)
    Limits(max_concurrency=8, deadline=30.0, cancel_grace=0.1, retry_backoff=0.1, retry_max_wait=5.0)

    Attributes:
        max_concurrency: at most this many tool calls of the run at once (``None``: no limit).
            Tasks over the limit wait in the ready queue: ranked ones first (``submit_all`` and
            ``run_plan`` rank a plan's tasks by the longest chain through each), the highest rank
            first, then the unranked ones in the order they became ready.
        deadline: seconds the whole run may take, counted from entering the dispatcher; when it
            passes, every unfinished task is cancelled and an interrupt is raised.
        cancel_grace: seconds a cancelled call gets to unwind when the run ends (a deadline,
            a cancelled run; sync calls on threads are abandoned at once). On asyncio, an async
            tool that ignores cancellation (catches ``CancelledError`` and carries on) is then
            abandoned: the run ends at most this long after its deadline, the task's outcome
            and a ``TaskAbandoned`` event say so, and the coroutine runs on in the background
            without keeping ``asyncio.run`` from returning (asyncio logs it as destroyed while
            pending when the loop closes).
            On trio, structured concurrency waits for such a call: the run ends when it stops.
        retry_backoff: the first retry waits about this long; each later one doubles, plus jitter.
        retry_max_wait: no retry waits longer than this.

    A tool's retries follow :meth:`retry_policy`: the one :class:`~tomasulo.tools.RetryPolicy`
    type that LLM requests use too.
    """

    max_concurrency: int | None = None
    deadline: float | None = None
    cancel_grace: float = DEFAULT_CANCEL_GRACE
    retry_backoff: float = DEFAULT_RETRY_BACKOFF
    retry_max_wait: float = DEFAULT_RETRY_MAX_WAIT

    def __post_init__(self) -> None:
        if self.max_concurrency is not None and (
            isinstance(self.max_concurrency, bool)
            or not isinstance(self.max_concurrency, int)
            or self.max_concurrency < 1
        ):
            raise ConfigError(
                f"max_concurrency must be a whole number of at least 1, got {self.max_concurrency!r}"
            )
        _positive("deadline", self.deadline)
        _positive("cancel_grace", self.cancel_grace, allow_zero=True)
        _positive("retry_backoff", self.retry_backoff, allow_zero=True)
        _positive("retry_max_wait", self.retry_max_wait, allow_zero=True)

    def retry_policy(self, retries: int) -> RetryPolicy:
        """How a tool's failed call is retried ``retries`` times (its ``ToolPolicy.retries``):
        waits from ``retry_backoff``, doubling, plus up to as much again of jitter, never longer
        than ``retry_max_wait``; bounded in time by the run's deadline only.

        >>> Limits(retry_backoff=0.2).retry_policy(2)
        RetryPolicy(attempts=3, initial=0.2, maximum=5.0, jitter=1.0, total=inf, max_retry_after=5.0)
        """
        return RetryPolicy(
            attempts=retries + 1,
            initial=self.retry_backoff,
            maximum=self.retry_max_wait,
            jitter=1.0,
            total=math.inf,
            max_retry_after=self.retry_max_wait,
        )


#: No run-wide concurrency limit, no deadline.
DEFAULT_LIMITS = Limits()
