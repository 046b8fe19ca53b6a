"""Where runs are kept: the :class:`RunStore` protocol and the in-memory store used by default.

A run writes its journal into the store in batches while it runs (off the dispatcher's hot
path: a background task reads the journal and appends what arrived since its last write), then
saves its result. The protocol's methods are async so that a store over SQLAlchemy (SQLite,
PostgreSQL) or any other async client fits it; such a store writes each event's JSON form
(``event.to_json()``) and reads it back with ``Event.from_json``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ..dispatcher import Event
from ..exceptions import ConfigError
from ._events import RunFinished, RunStarted
from ._result import RunResult

__all__ = ["DEFAULT_MAX_RUNS", "InMemoryRunStore", "RunStore", "RunSummary"]

#: How many runs an :class:`InMemoryRunStore` keeps by default (the oldest go first).
DEFAULT_MAX_RUNS = 100


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One run as a store lists it.

    Attributes:
        run_id: the run's id.
        query: its question (``""`` for a fixed plan).
        mode: how it ran (``"stream"``, ...).
        started_at: Unix time of its start (``RunStarted.wall_time``).
        status: how it ended (see ``RunStatus``), or ``None`` while it runs.
        events: how many of its events the store holds.
    """

    run_id: str
    query: str
    mode: str
    started_at: float
    status: str | None
    events: int


@runtime_checkable
class RunStore(Protocol):
    """Keeps runs: their journals (appended in batches) and their results.

    ``Orchestrator(store=...)`` takes one; every run appends its events as they come, in
    ``seq`` order and each once, then saves its result. A store must not block the event loop.
    """

    async def append(self, run_id: str, events: Sequence[Event]) -> None:
        """Add a batch of a run's events (the next ones in ``seq`` order)."""
        ...

    async def save_result(self, result: RunResult) -> None:
        """Keep a run's result (after its last event was appended)."""
        ...

    async def load_events(self, run_id: str, *, after: int = 0) -> list[Event]:
        """A run's events with ``seq`` greater than ``after``, in order.

        Raises:
            KeyError: the store has no run ``run_id``.
        """
        ...

    async def load_result(self, run_id: str) -> RunResult | None:
        """A run's saved result (``None`` while it runs).

        Raises:
            KeyError: the store has no run ``run_id``.
        """
        ...

    async def list_runs(self, *, limit: int = 100) -> list[RunSummary]:
        """The latest runs, the most recent first, at most ``limit``."""
        ...


@dataclass(slots=True)
class _Stored:
    events: list[Event] = field(default_factory=list)
    result: RunResult | None = None
    summary: RunSummary | None = None


class InMemoryRunStore:
    """A :class:`RunStore` in this process's memory: the default, gone when the process ends.

    It keeps the latest ``max_runs`` runs (the oldest are dropped first), and holds the event
    objects themselves (no JSON round trip).

    >>> import anyio
    >>> from tomasulo import Orchestrator
    >>> store = InMemoryRunStore()
    >>> async def main() -> None:
    ...     result = await Orchestrator([], store=store).execute_plan("1. join()")
    ...     (summary,) = await store.list_runs()
    ...     assert summary.run_id == result.run_id and summary.status == "finished"
    ...     assert RunResult.from_events(await store.load_events(result.run_id)) == result
    >>> anyio.run(main)
    """

    def __init__(self, *, max_runs: int = DEFAULT_MAX_RUNS) -> None:
        if max_runs < 1:
            raise ConfigError(f"max_runs must be at least 1, got {max_runs}")
        self.max_runs = max_runs
        self._runs: OrderedDict[str, _Stored] = OrderedDict()

    def _run(self, run_id: str, create: bool = False) -> _Stored:
        stored = self._runs.get(run_id)
        if stored is None:
            if not create:
                raise KeyError(run_id)
            stored = self._runs[run_id] = _Stored()
            while len(self._runs) > self.max_runs:
                self._runs.popitem(last=False)
        return stored

    async def append(self, run_id: str, events: Sequence[Event]) -> None:
        """Add a batch of a run's events."""
        stored = self._run(run_id, create=True)
        stored.events.extend(events)
        if stored.summary is None:
            start = next((e for e in stored.events[:1] if isinstance(e, RunStarted)), None)
            if start is not None:
                stored.summary = RunSummary(run_id, start.query, start.mode, start.wall_time, None, 0)

    async def save_result(self, result: RunResult) -> None:
        """Keep a run's result."""
        self._run(result.run_id, create=True).result = result

    async def load_events(self, run_id: str, *, after: int = 0) -> list[Event]:
        """A run's events after ``after``."""
        return [e for e in self._run(run_id).events if e.seq > after]

    async def load_result(self, run_id: str) -> RunResult | None:
        """A run's saved result (``None`` while it runs)."""
        return self._run(run_id).result

    async def list_runs(self, *, limit: int = 100) -> list[RunSummary]:
        """The latest runs, the most recent first."""
        out: list[RunSummary] = []
        for run_id in reversed(self._runs):
            if len(out) >= limit:
                break
            stored = self._runs[run_id]
            base = stored.summary or RunSummary(run_id, "", "", 0.0, None, 0)
            status: str | None = None
            if stored.result is not None:
                status = stored.result.status
            elif stored.events and isinstance(stored.events[-1], RunFinished):
                status = stored.events[-1].status
            out.append(
                RunSummary(base.run_id, base.query, base.mode, base.started_at, status, len(stored.events))
            )
        return out
