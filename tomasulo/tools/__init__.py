"""Tool declarations: `@tool`, `Tool`, `Toolset`, schema normalization and tool sources."""

from ._decorator import tool
from ._net import NetPolicy, check_ip, check_url, guarded_client, guarded_transport
from ._schemas import normalize_parameters, normalize_schema, tools_from_schemas
from ._source import StaticTools, ToolSource, collect, legal_name, prefixed
from ._tool import DEFAULT_POLICY, Tool, ToolPolicy
from ._toolset import Toolset

__all__ = [
    "DEFAULT_POLICY",
    "NetPolicy",
    "StaticTools",
    "Tool",
    "ToolPolicy",
    "ToolSource",
    "Toolset",
    "check_ip",
    "check_url",
    "collect",
    "guarded_client",
    "guarded_transport",
    "legal_name",
    "normalize_parameters",
    "normalize_schema",
    "prefixed",
    "tool",
    "tools_from_schemas",
]
