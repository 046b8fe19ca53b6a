"""A snapshot of a dispatcher's state: how many tasks and workers are where."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DispatcherStatistics"]


@dataclass(frozen=True, slots=True)
class DispatcherStatistics:
    """What :meth:`Dispatcher.statistics() <tomasulo.dispatcher.Dispatcher.statistics>` returns:
    the run's tasks and workers at one moment.

    >>> DispatcherStatistics(submitted=3, finished=1, waiting=1, ready=0, running=1)
    ... # doctest: +ELLIPSIS
    DispatcherStatistics(submitted=3, finished=1, waiting=1, ready=0, running=1, busy=0, ...)

    Tasks (each in exactly one of ``finished``, ``waiting``, ``ready``, ``running``):
        submitted: tasks submitted (restored ones not counted).
        finished: submitted tasks with an outcome.
        waiting: tasks waiting for at least one input.
        ready: tasks whose inputs all exist, not started yet (waiting for a worker, a slot of
            their tool or of the run, or their turn in a ``sequential`` tool's lane).
        running: tasks whose call is in flight (between retries included).

    Workers:
        busy: workers running a task.
        parked: idle workers waiting for a task to become ready.
        waking: workers woken or started that have not taken a task yet.
        workers: workers alive (busy, parked, waking, or about to return).

    Others:
        restored: tasks seeded from an earlier run (``restore=``).
        abandoned: tasks whose calls ignored cancellation and were left running at the end.
    """

    submitted: int = 0
    finished: int = 0
    waiting: int = 0
    ready: int = 0
    running: int = 0
    busy: int = 0
    parked: int = 0
    waking: int = 0
    workers: int = 0
    restored: int = 0
    abandoned: int = 0

    @property
    def pending(self) -> int:
        """Submitted tasks without an outcome yet (``waiting + ready + running``)."""
        return self.submitted - self.finished
