"""The Orchestrator: wires planner, dispatcher and executors into runs."""

from ._events import JoinerDecided, PlanFinished, PlanStarted, RunFinished, UserMessage
from ._orchestrator import Orchestrator, RunHandle
from ._result import DEFAULT_BUDGET, Budget, RunResult, RunStatus, TaskRecord
from ._run import Mode

__all__ = [
    "DEFAULT_BUDGET",
    "Budget",
    "JoinerDecided",
    "Mode",
    "Orchestrator",
    "PlanFinished",
    "PlanStarted",
    "RunFinished",
    "RunHandle",
    "RunResult",
    "RunStatus",
    "TaskRecord",
    "UserMessage",
]
