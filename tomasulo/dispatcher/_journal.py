"""A run's journal: every event of the run, numbered once, for every reader.

One :class:`RunJournal` per run. The dispatcher writes the task events, the runtime the run's own
(plans, LLM calls, the joiner, the end), each stamped with the next ``seq`` (from 1, no gaps).
Readers take :meth:`RunJournal.events` (``after=seq`` resumes after the last event a reader saw:
the backlog from there, then live events, with no gap and no duplicate) and the ``on_event``
callback; the history stays in the journal for the run's result and its store.

Most events are about tasks, four or more per task (planned, ready, started, and how it ended).
When someone listens (an ``on_event`` callback or a live iterator), each event object is built
when it happens and handed over at once. When nobody does, the journal keeps only ``(kind,
node)`` and builds the objects the first time the history is read, from what the node recorded
at the time (``planned_at``, ``ready_at``, ``started_at``, the outcome): the same objects, with
the same ``seq`` and ``ts``, minus the cost of building them when no one reads them. Kept
because a paired run tells it from noise: building every event as it happens, with nobody
listening, measured the streamed dispatch latency p50 1.41x and the throughput 0.79x
(``python benchmarks/dispatch_ab.py <this tree> <that one> --rounds 4``).
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import anyio

from .._logging import get_logger
from ._events import Event, Outcome, make_planned, make_ready, make_started, make_terminal

__all__ = [
    "ENDED",
    "MAX_OBSERVER_WARNINGS",
    "PLANNED",
    "READY",
    "STARTED",
    "EventCallback",
    "Recorded",
    "RunJournal",
    "Subscription",
    "outcomes_of",
    "restore_map",
]

log = get_logger("tomasulo.journal")

EventCallback = Callable[[Event], None]

#: Observer failures recorded one by one in :attr:`RunJournal.warnings`; later ones are counted.
MAX_OBSERVER_WARNINGS = 5

# Kinds of task event the journal can build later. STARTED is the first attempt's only.
PLANNED, READY, STARTED, ENDED = 0, 1, 2, 3
_BUILT = 255


class Recorded(Protocol):
    """What the journal reads from a dispatcher node to build a task event later."""

    tid: int
    name: str
    deps: frozenset[int]
    planned_at: float
    ready_at: float | None
    started_at: float | None
    outcome: Outcome | None

    def planned_args(self) -> dict[str, Any]:
        """The task's arguments by parameter name, as planned."""
        ...


class Subscription:
    """One reader's events: the backlog it asked for, then live ones; iterating ends when the
    journal closes. ``async for event in journal.events(after=seq): ...``"""

    def __init__(
        self, journal: RunJournal, backlog: Iterable[Event], after: int = 0, quiet: bool = False
    ) -> None:
        self._journal = journal
        self.quiet = quiet
        self._after = after  # live events up to this seq are not this reader's
        self._buffer: deque[Event] = deque(backlog)
        self._wakeup: anyio.Event | None = None
        self._closed = False

    def _push(self, event: Event) -> None:
        if event.seq <= self._after:
            return
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

    async def batch(self, limit: int = 1000) -> list[Event]:
        """The events that arrived since the last read (at least one, at most ``limit``),
        waiting for one if none has; ``[]`` once the journal has closed and all were read.
        A store appends these, one batch per write."""
        while not self._buffer:
            if self._closed:
                return []
            self._wakeup = anyio.Event()
            await self._wakeup.wait()
        buffer = self._buffer
        take = min(limit, len(buffer))
        return [buffer.popleft() for _ in range(take)]

    async def aclose(self) -> None:
        """Stop receiving events."""
        self._close()
        self._journal._unsubscribe(self)


class RunJournal:
    """The events of one run, in order; ``seq`` is an event's position in it, from 1.

    >>> journal = RunJournal("run1")
    >>> from tomasulo.runtime import UserMessage
    >>> journal.record(UserMessage, message="hello").seq
    1
    >>> [e.kind for e in journal.history()]
    ['user_message']

    Args:
        run_id: the run's id (default: a new random one).
        on_event: called with each event as it is recorded, in order. Whatever it raises is
            logged and listed in :attr:`warnings` (the first :data:`MAX_OBSERVER_WARNINGS`, then a
            count); the run goes on as if it had returned.
    """

    def __init__(self, run_id: str | None = None, *, on_event: EventCallback | None = None) -> None:
        self.run_id = run_id if run_id is not None else uuid.uuid4().hex[:12]
        self._on_event = on_event
        self._items: list[Event | Recorded] = []
        self._kinds = bytearray()  # for each item: its kind, or _BUILT for an Event
        self._built_upto = 0  # every item before this index is an Event
        self._subscribers: list[Subscription] = []
        self._eager = on_event is not None
        self._watchers = 0  # readers that are not quiet
        self._observer_warnings: list[str] = []
        self._observer_failures = 0
        #: The run's events have ended (see :meth:`close`); later ones reach ``on_event`` only.
        self.closed = False

    # -- state ----------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._items)

    @property
    def last_seq(self) -> int:
        """The ``seq`` of the latest event (0 before the first)."""
        return len(self._items)

    def next_seq(self) -> int:
        """The ``seq`` the next event gets."""
        return len(self._items) + 1

    @property
    def listening(self) -> bool:
        """Whether anyone watches events as they happen (an ``on_event`` callback, or an
        iterator that is not ``quiet``); events made only for watchers (``PlanDelta``, the plan's
        text as it streams) are made only then."""
        return self._watchers > 0 or self._on_event is not None

    @property
    def warnings(self) -> list[str]:
        """What the ``on_event`` observer raised, one line per failure (a copy)."""
        out = list(self._observer_warnings)
        more = self._observer_failures - MAX_OBSERVER_WARNINGS
        if more > 0:
            out.append(f"the on_event observer raised on {more} more events (not listed)")
        return out

    # -- writing --------------------------------------------------------------------------------

    def record(
        self, cls: Callable[..., Event], task_id: int | None = None, *, ts: float | None = None, **fields: Any
    ) -> Event:
        """Build an event of class ``cls`` with the next ``seq`` (and ``ts``, by default now),
        record it and hand it to every reader; returns it."""
        event = cls(
            run_id=self.run_id,
            seq=len(self._items) + 1,
            ts=time.monotonic() if ts is None else ts,
            task_id=task_id,
            **fields,
        )
        self.emit(event)
        return event

    def emit(self, event: Event) -> None:
        """Record a built event (its ``seq`` must be :meth:`next_seq`) and hand it to readers."""
        self._items.append(event)
        self._kinds.append(_BUILT)
        if not self._eager:
            return
        for sub in self._subscribers:
            sub._push(event)
        callback = self._on_event
        if callback is not None:
            try:
                callback(event)
            except Exception as exc:
                self._observer_failed(callback, event, exc)

    def task(self, kind: int, node: Recorded) -> None:
        """Record a task event of ``kind`` (the dispatcher's hot path); its ``ts`` is the node's
        time for it. Built now when someone listens, else when the history is first read."""
        if self._eager:
            self.emit(self._build(kind, node, len(self._items) + 1))
        else:
            self._items.append(node)
            self._kinds.append(kind)

    def started(self, node: Recorded, ts: float, attempt: int) -> None:
        """Record an attempt's start (the first one can be built later)."""
        if attempt == 1:
            self.task(STARTED, node)
        else:
            self.emit(make_started(self.run_id, len(self._items) + 1, ts, node.tid, node.name, attempt))

    def _observer_failed(self, callback: EventCallback, event: Event, exc: Exception) -> None:
        self._observer_failures += 1
        if self._observer_failures > MAX_OBSERVER_WARNINGS:
            return
        name = getattr(callback, "__qualname__", None) or repr(callback)
        try:
            detail = f"{type(exc).__name__}: {exc}"[:300]
        except Exception:  # an exception whose __str__ raises
            detail = type(exc).__name__
        line = (
            f"the on_event observer {name} raised on {type(event).__name__} (seq {event.seq}): "
            f"{detail}; the run went on without it"
        )
        self._observer_warnings.append(line)
        log.warning(
            "observer failed",
            run_id=self.run_id,
            observer=name,
            event_type=type(event).__name__,
            error=detail,
        )

    def _build(self, kind: int, node: Recorded, seq: int) -> Event:
        run_id, tid, name = self.run_id, node.tid, node.name
        if kind == PLANNED:
            return make_planned(
                run_id, seq, node.planned_at, tid, name, tuple(sorted(node.deps)), node.planned_args()
            )
        if kind == READY:
            return make_ready(run_id, seq, node.ready_at, tid, name)
        if kind == STARTED:
            return make_started(run_id, seq, node.started_at, tid, name, 1)
        outcome = node.outcome
        assert outcome is not None
        return make_terminal[outcome.status](run_id, seq, outcome.finished_at, tid, name, outcome)

    # -- reading --------------------------------------------------------------------------------

    def history(self) -> list[Event]:
        """Every event so far, in order (the journal's own list: do not change it)."""
        items, kinds = self._items, self._kinds
        for i in range(self._built_upto, len(items)):
            kind = kinds[i]
            if kind != _BUILT:
                items[i] = self._build(kind, items[i], i + 1)  # type: ignore[arg-type]
                kinds[i] = _BUILT
        self._built_upto = len(items)
        return items  # type: ignore[return-value]

    def events(self, *, after: int = 0, quiet: bool = False) -> Subscription:
        """An async iterator over the events with ``seq`` greater than ``after``: those recorded
        already, then each one as it is recorded; it ends when the journal closes.

        A reader that reconnects passes the ``seq`` of the last event it saw and misses nothing,
        sees nothing twice. With ``after`` past the latest event, the iterator starts at
        ``after + 1``. A ``quiet`` reader (a store) does not count as watching (see
        :attr:`listening`): it gets every event recorded, but none is made for it.
        """
        if after < 0:
            raise ValueError(f"after must be a seq (0 or more), got {after}")
        backlog = self.history()[after:] if after < len(self._items) else ()
        sub = Subscription(self, backlog, after, quiet)
        if self.closed:
            sub._close()
        else:
            self._subscribers.append(sub)
            self._eager = True
            self._watchers += not quiet
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subscribers:
            self._subscribers.remove(sub)
            self._watchers -= not sub.quiet
        self._eager = self._on_event is not None or bool(self._subscribers)

    def close(self) -> None:
        """End every live iterator: the run's events have ended (idempotent)."""
        self.closed = True
        subs, self._subscribers = self._subscribers, []
        self._watchers = 0
        self._eager = self._on_event is not None
        for sub in subs:
            sub._close()


def outcomes_of(events: Iterable[Event]) -> dict[int, Outcome]:
    """Each task's last recorded outcome in ``events`` (a journal's history, or one read back
    from a store), by task id: what ``Dispatcher(restore=...)`` takes to resume a run."""
    out: dict[int, Outcome] = {}
    for event in events:
        outcome = getattr(event, "outcome", None)
        if isinstance(outcome, Outcome):
            out[outcome.task_id] = outcome
    return out


def restore_map(restore: Iterable[Outcome] | Mapping[int, Outcome] | None) -> dict[int, Outcome]:
    """Outcomes given as an iterable or a mapping, by task id."""
    if restore is None:
        return {}
    items = restore.values() if isinstance(restore, Mapping) else restore
    return {o.task_id: o for o in items}
