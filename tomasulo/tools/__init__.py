"""Tool declarations: `@tool`, `Tool`, `Toolset`, schema normalization and tool sources."""

from ._decorator import tool
from ._http_tool import HttpLimits, http_tool
from ._schemas import normalize_parameters, normalize_schema, tools_from_schemas
from ._source import StaticTools, ToolSource, collect, legal_name, prefixed
from ._tool import DEFAULT_POLICY, Tool, ToolPolicy
from ._toolset import Toolset
from .openapi import OpenAPITools

__all__ = [
    "DEFAULT_POLICY",
    "HttpLimits",
    "OpenAPITools",
    "StaticTools",
    "Tool",
    "ToolPolicy",
    "ToolSource",
    "Toolset",
    "collect",
    "http_tool",
    "legal_name",
    "normalize_parameters",
    "normalize_schema",
    "prefixed",
    "tool",
    "tools_from_schemas",
]
