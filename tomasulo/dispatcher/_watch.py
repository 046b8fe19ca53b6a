"""Watching an async tool call on the event loop, to judge a call that returns past its timeout.

A call with a timeout that returns later than its timeout, without being stopped, is late for
one of three reasons, and only two of them are the tool's fault: it blocked the event loop
itself (``time.sleep`` in an ``async def``), so its timer could not fire; it was cancelled and
carried on; or something else blocked the loop while it waited, so its timer fired late, after
the call had finished on time. :class:`CallWatch` drives the call's coroutine and notes what
tells them apart.
"""

from __future__ import annotations

import time
from collections.abc import Coroutine, Generator
from typing import Any

__all__ = ["CallWatch"]

_now = time.monotonic


class CallWatch:
    """Awaits ``coro`` (one tool call on the loop), noting whether a cancellation reached it
    and how long it held the event loop after ``deadline`` (a ``time.monotonic()`` time).

    >>> # watch = CallWatch(executor.call(tool, args, ...), started + timeout, CancelledError)
    >>> # value = await watch; if watch.cancelled: ... ; if watch.overran > slack: ...
    """

    __slots__ = ("_cancel_exc", "_coro", "_deadline", "cancelled", "overran")

    def __init__(
        self, coro: Coroutine[Any, Any, Any], deadline: float, cancel_exc: type[BaseException]
    ) -> None:
        self._coro = coro
        self._deadline = deadline
        self._cancel_exc = cancel_exc
        #: A cancellation was delivered into the call (thrown in on asyncio; sent in on trio).
        self.cancelled = False
        #: Seconds the call's own steps ran past the deadline, holding the loop.
        self.overran = 0.0

    def __await__(self) -> Generator[Any, Any, Any]:
        coro = self._coro
        deadline = self._deadline
        cancel_exc = self._cancel_exc
        sent: Any = None
        error: BaseException | None = None
        while True:
            start = _now()
            try:
                yielded = coro.send(sent) if error is None else coro.throw(error)
            except StopIteration as stop:
                self._ran(start, deadline)
                return stop.value
            except BaseException:
                self._ran(start, deadline)
                raise
            self._ran(start, deadline)
            error = None
            try:
                sent = yield yielded
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # handed on to the call, whatever it is
                error, sent = exc, None
                if isinstance(exc, cancel_exc):
                    self.cancelled = True
            else:
                # trio resumes a task with an outcome object; a cancellation is an Error one.
                if sent is not None and isinstance(getattr(sent, "error", None), cancel_exc):
                    self.cancelled = True

    def _ran(self, start: float, deadline: float) -> None:
        end = _now()
        if end > deadline:
            self.overran += end - max(start, deadline)
