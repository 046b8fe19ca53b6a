"""Tool declarations: the ``@tool`` decorator, ``Tool``, ``Toolset`` and schema normalization."""

from ._decorator import tool
from ._schemas import normalize_parameters, normalize_schema, tools_from_schemas
from ._tool import DEFAULT_POLICY, Tool, ToolPolicy
from ._toolset import Toolset

__all__ = [
    "DEFAULT_POLICY",
    "Tool",
    "ToolPolicy",
    "Toolset",
    "normalize_parameters",
    "normalize_schema",
    "tool",
    "tools_from_schemas",
]
