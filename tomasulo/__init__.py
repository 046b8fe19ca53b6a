"""tomasulo: a parallel function-calling orchestrator.

An LLM planner streams a plan (a numbered DAG of tool calls) under grammar-constrained decoding;
a dispatcher starts each task the moment its inputs exist, while the plan is still streaming.

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
from .exceptions import Interrupt, PlanError, Replan, TomasuloError, ToolError, UserError
from .grammar import Plan, PlanStream, Ref, Task, Template, parse_plan
from .tools import Tool, ToolPolicy, Toolset, tool

__version__ = "0.1.0"

__all__ = [
    "Interrupt",
    "Plan",
    "PlanError",
    "PlanStream",
    "Ref",
    "Replan",
    "Task",
    "Template",
    "TomasuloError",
    "Tool",
    "ToolError",
    "ToolPolicy",
    "Toolset",
    "UserError",
    "__version__",
    "exceptions",
    "parse_plan",
    "tool",
]
