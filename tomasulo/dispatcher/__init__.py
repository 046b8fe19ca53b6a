"""The task fetching unit: DAG state, ready queue, workers, limits, references, the run's journal."""

from ._dispatcher import Dispatcher
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
    TaskRestored,
    TaskRetrying,
    TaskSkipped,
    TaskStarted,
    TaskSucceeded,
    event_kinds,
    json_value,
)
from ._journal import EventCallback, RunJournal, Subscription, outcomes_of
from ._limits import DEFAULT_CANCEL_GRACE, DEFAULT_LIMITS, Limits
from ._resolve import resolve_args
from ._statistics import DispatcherStatistics

__all__ = [
    "DEFAULT_CANCEL_GRACE",
    "DEFAULT_LIMITS",
    "Dispatcher",
    "DispatcherStatistics",
    "Event",
    "EventCallback",
    "InterruptRaised",
    "Limits",
    "Outcome",
    "RunJournal",
    "Status",
    "Subscription",
    "TaskAbandoned",
    "TaskCancelled",
    "TaskEvent",
    "TaskFailed",
    "TaskPlanned",
    "TaskReady",
    "TaskRestored",
    "TaskRetrying",
    "TaskSkipped",
    "TaskStarted",
    "TaskSucceeded",
    "event_kinds",
    "json_value",
    "outcomes_of",
    "resolve_args",
]
