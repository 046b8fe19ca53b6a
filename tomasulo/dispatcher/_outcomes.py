"""How tasks end: each task's one :class:`Outcome`, and skipping what depended on a failure.

:class:`Ledger` holds a run's outcomes and the values of the tasks that succeeded. Settling a
task (:meth:`Ledger.settle`) records its outcome once and hands it on: each dependent of a
success counts one input fewer and is offered to the ready queue when none is left; each
dependent of a task that did not succeed is skipped, naming the task at the root of the chain
(a failure, a cancellation), and its own dependents in turn.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .._text import safe_str
from ..exceptions import Interrupt, ToolArgumentError, ToolExecutionError
from ..tools import MAX_MESSAGE_CHARS
from ._events import Outcome, make_outcome
from ._node import RestoredNode, TaskNode

__all__ = ["Ledger", "cancelled", "failed", "skipped", "succeeded"]

_now = time.monotonic

Node = TaskNode | RestoredNode


def succeeded(node: TaskNode, value: Any) -> Outcome:
    """The outcome of a task whose call returned ``value``."""
    # Every field of Outcome, in order: task_id, tool, status, value, error, error_type,
    # message, attempts, planned_at, ready_at, started_at, finished_at, skipped_because
    # (make_outcome: see _events.py for why, and what it gains).
    return make_outcome(
        node.tid,
        node.name,
        "succeeded",
        value,
        None,
        None,
        None,
        node.attempts,
        node.planned_at,
        node.ready_at,
        node.started_at,
        _now(),
        None,
    )


def failed(node: TaskNode, error: BaseException) -> Outcome:
    """The outcome of a task that failed with ``error`` (or raised ``Interrupt``)."""
    if isinstance(error, Interrupt):
        error_type = "Interrupt"
        message = f"task {node.tid} ({node.name}) raised Interrupt: {error.message}"
        value = error.value
    else:
        error_type = error.error_type if isinstance(error, ToolExecutionError) else type(error).__name__
        # Clipped once more (a tool's own ToolError can be long); the call clipped the text of
        # an exception it wrapped already, so this leaves room for the task and tool names.
        message = safe_str(error, MAX_MESSAGE_CHARS + 500)
        if isinstance(error, ToolArgumentError):
            message = f"task {node.tid} ({node.name}) {message}"
        value = None
    return Outcome(
        task_id=node.tid,
        tool=node.name,
        status="failed",
        value=value,
        error=error,
        error_type=error_type,
        message=message,
        attempts=node.attempts,
        planned_at=node.planned_at,
        ready_at=node.ready_at,
        started_at=node.started_at,
        finished_at=_now(),
    )


def cancelled(node: TaskNode, reason: str) -> Outcome:
    """The outcome of a task cancelled for ``reason`` ("cancelled by the caller", ...)."""
    return Outcome(
        task_id=node.tid,
        tool=node.name,
        status="cancelled",
        error_type="Cancelled",
        message=f"task {node.tid} ({node.name}) {reason}",
        attempts=node.attempts,
        planned_at=node.planned_at,
        ready_at=node.ready_at,
        started_at=node.started_at,
        finished_at=_now(),
    )


def skipped(node: TaskNode, upstream: Node, outcomes: dict[int, Outcome]) -> Outcome:
    """The outcome of a task skipped because its input ``upstream`` did not succeed; it names
    the task at the root of the chain and how that one ended."""
    up = upstream.outcome
    assert up is not None
    root = up.skipped_because if up.status == "skipped" else upstream.tid
    root_outcome = outcomes.get(root) if root is not None else None
    why = root_outcome.status if root_outcome is not None else "did not succeed"
    detail = ""
    if root_outcome is not None and root_outcome.error_type:
        detail = f" ({root_outcome.error_type})"
    return Outcome(
        task_id=node.tid,
        tool=node.name,
        status="skipped",
        message=f"task {node.tid} ({node.name}) skipped: its input task {root} {why}{detail}",
        planned_at=node.planned_at,
        finished_at=_now(),
        skipped_because=root,
    )


def _ignore(*_: object) -> None:
    """What a detached ledger calls: nothing (the run is over)."""


class Ledger:
    """A run's outcomes by task id, and the values of those that succeeded.

    ``ended(node)`` is called for each task as it gets its outcome (the run writes its event
    and counts it); ``ready(node, now)`` for each task whose last input has just succeeded.
    """

    __slots__ = ("_ended", "_ready", "outcomes", "results")

    def __init__(self, ended: Callable[[TaskNode], None], ready: Callable[[TaskNode, float], None]) -> None:
        self.outcomes: dict[int, Outcome] = {}
        self.results: dict[int, Any] = {}
        self._ended = ended
        self._ready = ready

    def detach(self) -> None:
        """The run is over: drop the callbacks into it (so that nothing holds it in a cycle)."""
        self._ended = _ignore
        self._ready = _ignore

    def restore(self, outcome: Outcome) -> None:
        """Record an outcome from an earlier run (the task never runs in this one)."""
        self.outcomes[outcome.task_id] = outcome
        if outcome.status == "succeeded":
            self.results[outcome.task_id] = outcome.value

    def replace(self, node: TaskNode, outcome: Outcome) -> None:
        """Amend an ended task's outcome (an abandoned call's note)."""
        node.outcome = self.outcomes[node.tid] = outcome

    def settle(self, node: TaskNode, outcome: Outcome) -> None:
        """Record ``outcome`` for ``node`` (unless it has one) and hand it on to its dependents."""
        ended, ready = self._ended, self._ready
        stack = [(node, outcome)]
        while stack:
            node, outcome = stack.pop()
            if node.outcome is not None:
                continue
            node.outcome = outcome
            node.release()  # freed now, a task at a time, rather than all at the run's end
            tid = node.tid
            self.outcomes[tid] = outcome
            ok = outcome.status == "succeeded"
            if ok:
                self.results[tid] = outcome.value
            ended(node)
            dependents, node.dependents = node.dependents, None
            if not dependents:
                continue
            now = outcome.finished_at
            assert now is not None
            for dep in dependents:
                if dep.outcome is not None:
                    continue
                if ok:
                    dep.waiting -= 1
                    if dep.waiting == 0:
                        ready(dep, now)
                else:
                    stack.append((dep, skipped(dep, node, self.outcomes)))
