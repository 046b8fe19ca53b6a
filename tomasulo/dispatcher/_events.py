"""Outcomes and the typed events of a run.

Every event carries ``run_id``, ``seq`` (strictly increasing within a run), ``ts``
(``time.monotonic()``) and ``task_id`` (``None`` for run-wide events such as a deadline interrupt).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, Literal, TypeAlias, TypeVar

__all__ = [
    "Event",
    "InterruptRaised",
    "Outcome",
    "Status",
    "TaskAbandoned",
    "TaskCancelled",
    "TaskEvent",
    "TaskFailed",
    "TaskPlanned",
    "TaskReady",
    "TaskRetrying",
    "TaskSkipped",
    "TaskStarted",
    "TaskSucceeded",
]

Status: TypeAlias = Literal["succeeded", "failed", "skipped", "cancelled"]
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one task ended. Each task gets exactly one.

    Attributes:
        task_id: the task.
        tool: the tool it called.
        status: ``"succeeded"``, ``"failed"``, ``"skipped"`` or ``"cancelled"``.
        value: the result (succeeded), or the partial value a tool passed with ``Interrupt``.
        error: the exception (failed, skipped, cancelled), else ``None``.
        error_type: the name of the error's type; for a tool that raised, the tool's own
            exception type (``"ValueError"``).
        message: one line saying what happened, naming the task and the cause.
        attempts: how many times the tool was called (0 when it never ran).
        planned_at, ready_at, started_at, finished_at: ``time.monotonic()`` when the task was
            submitted, had all its inputs, first called its tool, and ended (``None`` where that
            did not happen).
        skipped_because: for a skipped task, the id of the failed or cancelled task that caused it.
    """

    task_id: int
    tool: str
    status: Status
    value: Any = None
    error: BaseException | None = None
    error_type: str | None = None
    message: str | None = None
    attempts: int = 0
    planned_at: float | None = None
    ready_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    skipped_because: int | None = None

    @property
    def ok(self) -> bool:
        """Whether the task succeeded."""
        return self.status == "succeeded"

    @property
    def duration(self) -> float | None:
        """Seconds from the first call to the end, when the tool ran."""
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of every dispatcher event."""

    run_id: str
    seq: int
    ts: float
    task_id: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskEvent(Event):
    """An event about one task; ``tool`` names its tool."""

    task_id: int
    tool: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskPlanned(TaskEvent):
    """A task was submitted; ``deps`` are the ids of the tasks whose results it uses."""

    deps: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskReady(TaskEvent):
    """Every input of the task exists; it waits only for a free slot now."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskStarted(TaskEvent):
    """The tool is being called (``attempt`` counts from 1)."""

    attempt: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskRetrying(TaskEvent):
    """An attempt failed with a retryable error; the next one starts after ``delay`` seconds."""

    attempt: int
    error_type: str
    message: str
    delay: float


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskSucceeded(TaskEvent):
    """The task ended with a value."""

    outcome: Outcome


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskFailed(TaskEvent):
    """The task ended with an error."""

    outcome: Outcome


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskSkipped(TaskEvent):
    """The task never ran because an input failed or was cancelled."""

    outcome: Outcome


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskCancelled(TaskEvent):
    """The task was cancelled (by the caller, or by the run's deadline)."""

    outcome: Outcome


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskAbandoned(TaskEvent):
    """A cancelled task's call (its outcome already recorded) ignored cancellation for
    ``grace`` seconds, so the run ended without waiting for it: it may still be running.

    ``message`` names the task and the tool. ``outcome`` is the task's outcome as the run ends
    (its ``error_type`` is ``"Abandoned"``); the task's earlier :class:`TaskCancelled` event
    carries the outcome as it was when it was cancelled (``"Cancelled"``).
    """

    grace: float
    message: str
    outcome: Outcome | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class InterruptRaised(Event):
    """Something the planner should hear about: a task failed, a tool raised ``Interrupt``, or the
    run's deadline passed.

    Attributes:
        kind: ``"failure"``, ``"interrupt"`` or ``"deadline"``.
        reason: one line for the planner.
        error: the exception behind it, if any.
    """

    kind: Literal["failure", "interrupt", "deadline"]
    reason: str
    error: BaseException | None = None


def _fast_constructor(cls: type[_T]) -> Callable[..., _T]:
    """A positional constructor for a frozen, slotted dataclass that skips ``__init__``.

    The dispatcher builds several events and an outcome per task; a frozen dataclass's
    ``__init__`` sets each field through ``object.__setattr__`` by keyword, which costs a few
    microseconds per object. This sets the slots through their descriptors, in field order, to
    the same effect (the classes have no ``__post_init__``). Every field must be given. Like
    ``dataclasses`` itself, it generates the function's source so that the stores are unrolled.
    """
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    scope: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    scope.update({f"_set_{name}": getattr(cls, name).__set__ for name in names})
    body = "".join(f"    _set_{name}(obj, {name})\n" for name in names)
    source = f"def make({', '.join(names)}):\n    obj = _new(_cls)\n{body}    return obj\n"
    exec(source, scope)  # built from the class's own field names only
    make: Callable[..., _T] = scope["make"]
    make.__qualname__ = f"make_{cls.__name__}"
    return make


# Positional, every field in declaration order (see each class for the order).
make_outcome = _fast_constructor(Outcome)
make_planned = _fast_constructor(TaskPlanned)  # run_id, seq, ts, task_id, tool, deps
make_ready = _fast_constructor(TaskReady)  # run_id, seq, ts, task_id, tool
make_started = _fast_constructor(TaskStarted)  # run_id, seq, ts, task_id, tool, attempt
#: The terminal event for each status: run_id, seq, ts, task_id, tool, outcome.
make_terminal: dict[str, Callable[..., TaskEvent]] = {
    "succeeded": _fast_constructor(TaskSucceeded),
    "failed": _fast_constructor(TaskFailed),
    "skipped": _fast_constructor(TaskSkipped),
    "cancelled": _fast_constructor(TaskCancelled),
}
