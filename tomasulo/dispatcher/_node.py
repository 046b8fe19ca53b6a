"""Per-run state of tools and tasks inside the dispatcher."""

from __future__ import annotations

from typing import Any

import anyio
from anyio import CancelScope

from ..grammar import Task
from ..tools import Tool
from ._events import Outcome
from ._resolve import BoundArgs, checker_for

__all__ = ["RestoredNode", "TaskNode", "ToolInfo"]


class ToolInfo:
    """What the dispatcher needs of a tool on every call, looked up once per run."""

    __slots__ = (
        "checker",
        "checks_output",
        "context",
        "direct",
        "limited",
        "name",
        "on_loop",
        "param_names",
        "policy",
        "sequential",
        "tool",
    )

    def __init__(self, tool: Tool) -> None:
        self.tool = tool
        self.name = tool.name
        self.policy = tool.policy
        self.sequential = tool.policy.sequential
        self.limited = tool.policy.max_concurrency is not None
        self.checks_output = bool(tool.output_schema)
        self.param_names = tool.param_names
        self.checker = checker_for(tool)
        #: The parameter that takes the call's RunContext, if the tool asks for one.
        self.context = tool.context_param
        #: An async function: a local run awaits it on the event loop.
        self.on_loop = tool.is_async
        #: The async function a local run may await directly: no conversion, timeout, retries
        #: or output check to go through (the dispatcher also checks the executor is local).
        policy = tool.policy
        plain = (
            tool.convert is None and policy.timeout is None and policy.retries == 0 and self.context is None
        )
        self.direct = tool.fn if plain and not self.checks_output and tool.is_async else None


class TaskNode(BoundArgs):
    """A task's state in the run: its bound arguments, inputs, times and outcome."""

    __slots__ = (
        "attempts",
        "data_ready",
        "dependents",
        "done",
        "info",
        "name",
        "outcome",
        "planned_at",
        "queued",
        "rank",
        "ready_at",
        "scope",
        "started_at",
        "tid",
        "waiting",
    )

    def __init__(self, task: Task, info: ToolInfo, planned_at: float) -> None:
        super().__init__(task, info.tool, info.param_names, info.checker)
        self.tid = task.id
        self.info = info
        self.name = info.name
        self.planned_at = planned_at
        self.waiting = 0  # inputs without an outcome yet
        self.dependents: list[TaskNode] | None = None  # created with the first one
        self.outcome: Outcome | None = None
        self.ready_at: float | None = None
        self.started_at: float | None = None
        self.attempts = 0
        self.scope: CancelScope | None = None
        self.done: anyio.Event | None = None
        self.data_ready = False  # inputs done (a sequential task may still wait for its turn)
        self.queued = False
        self.rank = 0  # how urgent among ready tasks: a higher rank starts first (0: in order)

    def planned_args(self) -> dict[str, Any]:
        """The task's arguments by parameter name, as planned (for its ``TaskPlanned`` event)."""
        task = self.task
        names = self.info.param_names
        if not task.kwargs and len(task.args) <= len(names):
            return dict(zip(names, task.args))  # noqa: B905 (Task.bind's result, without its checks)
        try:
            return task.bind(names)
        except ValueError:  # the task fails when it is resolved, saying why
            return {}


class RestoredNode:
    """A task that ended in an earlier run, restored with its outcome: references to it
    resolve, and it never runs again."""

    __slots__ = ("name", "outcome", "tid")

    #: What the dispatcher reads of every node, fixed for a restored one.
    scope: CancelScope | None = None
    dependents: list[TaskNode] | None = None
    done: anyio.Event | None = None

    def __init__(self, outcome: Outcome) -> None:
        self.tid = outcome.task_id
        self.name = outcome.tool
        self.outcome: Outcome | None = outcome
