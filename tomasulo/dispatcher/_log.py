"""A run's event log: the history, live event iterators and the ``on_event`` callback.

Most events are about tasks, four or more per task (planned, ready, started, and how it ended).
When someone listens (an ``on_event`` callback or a live iterator), each event object is built
when it happens and handed over at once. When nobody does, the log keeps only ``(kind, node)``
and builds the objects the first time the history is read, from what the node recorded at the
time (``planned_at``, ``ready_at``, ``started_at``, the outcome): the same objects, with the same
``seq`` and ``ts``, minus the cost of building them when no one reads them.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable
from typing import Protocol

import anyio

from ._events import Event, Outcome, make_planned, make_ready, make_started, make_terminal

__all__ = ["ENDED", "PLANNED", "READY", "STARTED", "EventCallback", "EventLog", "Recorded"]

logger = logging.getLogger("tomasulo.dispatcher")

EventCallback = Callable[[Event], None]

# Kinds of task event the log can build later. STARTED is the first attempt's only.
PLANNED, READY, STARTED, ENDED = 0, 1, 2, 3
_BUILT = 255


class Recorded(Protocol):
    """What the log reads from a dispatcher node to build a task event later."""

    tid: int
    name: str
    deps: frozenset[int]
    planned_at: float
    ready_at: float | None
    started_at: float | None
    outcome: Outcome | None


class Subscription:
    """One consumer's queue of events; iterating ends when the run's events end."""

    def __init__(self, log: EventLog, backlog: Iterable[Event]) -> None:
        self._log = log
        self._buffer: deque[Event] = deque(backlog)
        self._wakeup: anyio.Event | None = None
        self._closed = False

    def _push(self, event: Event) -> None:
        self._buffer.append(event)
        if self._wakeup is not None:
            self._wakeup.set()
            self._wakeup = None

    def _close(self) -> None:
        self._closed = True
        if self._wakeup is not None:
            self._wakeup.set()
            self._wakeup = None

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        while not self._buffer:
            if self._closed:
                raise StopAsyncIteration
            self._wakeup = anyio.Event()
            await self._wakeup.wait()
        return self._buffer.popleft()

    async def aclose(self) -> None:
        """Stop receiving events."""
        self._close()
        self._log.unsubscribe(self)


class EventLog:
    """The events of one run, in order; ``seq`` is the position in the log, from 1."""

    def __init__(self, run_id: str, on_event: EventCallback | None) -> None:
        self.run_id = run_id
        self._on_event = on_event
        self._items: list[Event | Recorded] = []
        self._kinds = bytearray()  # for each item: its kind, or _BUILT for an Event
        self._built_upto = 0  # every item before this index is an Event
        self._subscribers: list[Subscription] = []
        self._eager = on_event is not None
        #: The run's events have ended (see :meth:`close`); later ones reach ``on_event`` only.
        self.closed = False

    def next_seq(self) -> int:
        """The ``seq`` the next event gets."""
        return len(self._items) + 1

    def task(self, kind: int, node: Recorded) -> None:
        """Log a task event of ``kind``; its ``ts`` is the node's time for it."""
        if self._eager:
            self.emit(self._build(kind, node, len(self._items) + 1))
        else:
            self._items.append(node)
            self._kinds.append(kind)

    def started(self, node: Recorded, ts: float, attempt: int) -> None:
        """Log an attempt's start (the first one can be built later)."""
        if attempt == 1:
            self.task(STARTED, node)
        else:
            self.emit(make_started(self.run_id, len(self._items) + 1, ts, node.tid, node.name, attempt))

    def emit(self, event: Event) -> None:
        """Log a built event (its ``seq`` must be :meth:`next_seq`) and hand it to listeners."""
        self._items.append(event)
        self._kinds.append(_BUILT)
        if not self._eager:
            return
        for sub in self._subscribers:
            sub._push(event)
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:
                logger.exception("run %s: on_event callback raised on %r", self.run_id, event)

    def _build(self, kind: int, node: Recorded, seq: int) -> Event:
        run_id, tid, name = self.run_id, node.tid, node.name
        if kind == PLANNED:
            return make_planned(run_id, seq, node.planned_at, tid, name, tuple(sorted(node.deps)))
        if kind == READY:
            return make_ready(run_id, seq, node.ready_at, tid, name)
        if kind == STARTED:
            return make_started(run_id, seq, node.started_at, tid, name, 1)
        outcome = node.outcome
        assert outcome is not None
        return make_terminal[outcome.status](run_id, seq, outcome.finished_at, tid, name, outcome)

    def history(self) -> list[Event]:
        """Every event so far, built (the log keeps the built objects)."""
        items, kinds = self._items, self._kinds
        for i in range(self._built_upto, len(items)):
            kind = kinds[i]
            if kind != _BUILT:
                items[i] = self._build(kind, items[i], i + 1)  # type: ignore[arg-type]
                kinds[i] = _BUILT
        self._built_upto = len(items)
        return items  # type: ignore[return-value]

    def subscribe(self, *, replay: bool, ended: bool) -> Subscription:
        """A live iterator (already ended when ``ended``), starting with the history on ``replay``."""
        sub = Subscription(self, self.history() if replay else ())
        if ended:
            sub._close()
        else:
            self._subscribers.append(sub)
            self._eager = True
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop pushing events to ``sub``."""
        if sub in self._subscribers:
            self._subscribers.remove(sub)
        self._eager = self._on_event is not None or bool(self._subscribers)

    def close(self) -> None:
        """End every live iterator: the run's events have ended."""
        self.closed = True
        subs, self._subscribers = self._subscribers, []
        self._eager = self._on_event is not None
        for sub in subs:
            sub._close()
