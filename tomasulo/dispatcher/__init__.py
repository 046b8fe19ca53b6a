"""The task fetching unit: DAG state, ready queue, limits, reference resolution, events."""

from ._dispatcher import Dispatcher, EventCallback
from ._events import (
    Event,
    InterruptRaised,
    Outcome,
    Status,
    TaskAbandoned,
    TaskCancelled,
    TaskEvent,
    TaskFailed,
    TaskPlanned,
    TaskReady,
    TaskRetrying,
    TaskSkipped,
    TaskStarted,
    TaskSucceeded,
)
from ._limits import DEFAULT_CANCEL_GRACE, DEFAULT_LIMITS, Limits
from ._resolve import resolve_args

__all__ = [
    "DEFAULT_CANCEL_GRACE",
    "DEFAULT_LIMITS",
    "Dispatcher",
    "Event",
    "EventCallback",
    "InterruptRaised",
    "Limits",
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
    "resolve_args",
]
