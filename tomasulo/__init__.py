"""tomasulo: a parallel function-calling orchestrator.

An LLM planner streams a plan (a numbered DAG of tool calls) under grammar-constrained decoding;
a dispatcher starts each task the moment its inputs exist, while the plan is still streaming;
interrupts replan without throwing away work.

>>> from tomasulo import Toolset, parse_plan, tool
>>> @tool
... def search(query: str) -> str:
...     '''Search the web.'''
...     return query
>>> plan = parse_plan('1. search(query="x")\\n2. join()', Toolset([search]))
>>> [t.tool for t in plan]
['search']
"""

from . import exceptions
from ._logging import configure_logging
from ._version import __version__
from .dispatcher import Dispatcher, Event, Limits, Outcome, RunJournal
from .exceptions import (
    BudgetExceeded,
    Interrupt,
    PlanError,
    Replan,
    RunCancelled,
    RunFailed,
    TomasuloError,
    ToolError,
    UserError,
)
from .grammar import Plan, PlanStream, Ref, Task, Template, build_grammar, parse_plan
from .planner import LLM, Prices, Usage
from .runtime import Budget, InMemoryRunStore, Orchestrator, RunHandle, RunResult, RunStore
from .tools import RunContext, Tool, ToolPolicy, Toolset, tool

__all__ = [
    "LLM",
    "Budget",
    "BudgetExceeded",
    "Dispatcher",
    "Event",
    "InMemoryRunStore",
    "Interrupt",
    "Limits",
    "Orchestrator",
    "Outcome",
    "Plan",
    "PlanError",
    "PlanStream",
    "Prices",
    "Ref",
    "Replan",
    "RunCancelled",
    "RunContext",
    "RunFailed",
    "RunHandle",
    "RunJournal",
    "RunResult",
    "RunStore",
    "Task",
    "Template",
    "TomasuloError",
    "Tool",
    "ToolError",
    "ToolPolicy",
    "Toolset",
    "Usage",
    "UserError",
    "__version__",
    "build_grammar",
    "configure_logging",
    "exceptions",
    "parse_plan",
    "tool",
]
