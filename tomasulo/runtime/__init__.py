"""The Orchestrator: wires planner, dispatcher and executors into runs."""

from ._config import RunConfig
from ._events import (
    JoinerDecided,
    LLMCallFinished,
    LLMCallStarted,
    PlanDelta,
    PlanFinished,
    PlanStarted,
    RunFinished,
    RunStarted,
    UserMessage,
)
from ._orchestrator import Orchestrator, RunHandle
from ._result import DEFAULT_BUDGET, Budget, RunResult, RunStatus, TaskRecord
from ._run import PLAN_DELTA_INTERVAL
from ._store import DEFAULT_MAX_RUNS, InMemoryRunStore, RunStore, RunSummary
from ._strategies import Mode

__all__ = [
    "DEFAULT_BUDGET",
    "DEFAULT_MAX_RUNS",
    "PLAN_DELTA_INTERVAL",
    "Budget",
    "InMemoryRunStore",
    "JoinerDecided",
    "LLMCallFinished",
    "LLMCallStarted",
    "Mode",
    "Orchestrator",
    "PlanDelta",
    "PlanFinished",
    "PlanStarted",
    "RunConfig",
    "RunFinished",
    "RunHandle",
    "RunResult",
    "RunStarted",
    "RunStatus",
    "RunStore",
    "RunSummary",
    "TaskRecord",
    "UserMessage",
]
