"""Tool declarations: `@tool`, `Tool`, `Toolset`, schema normalization and tool sources.

JSON Schema semantics (the draft, the types, the validator cache) live in one module here,
:func:`schema_validator`; everything that validates a value against a schema goes through it.

The MCP names (``MCPTools`` and its content types) load the ``mcp`` SDK on first use.
"""

import typing as _typing
from typing import Any

from ._context import RunContext
from ._decorator import tool
from ._http_tool import HttpLimits, http_tool
from ._jsonschema import JSON_TYPES, check_schema, schema_validator
from ._loader import ToolLoadError, load_tools
from ._net import NetPolicy, check_ip, check_url, guarded_client, guarded_transport
from ._retry import DEFAULT_RETRY, RetryPolicy
from ._schemas import normalize_parameters, normalize_schema, tools_from_schemas
from ._source import StaticTools, ToolSource, collect, legal_name, prefixed
from ._tool import (
    DEFAULT_POLICY,
    MAX_MESSAGE_CHARS,
    MAX_RESULT_DEPTH,
    NotJSONError,
    Tool,
    ToolPolicy,
    function_ref,
    to_json_value,
)
from ._toolset import Toolset
from .openapi import OpenAPITools

if _typing.TYPE_CHECKING:
    from ._mcp import MCPTools
    from ._mcp_content import MCPAudio, MCPImage, MCPResource, MCPResourceLink

_LAZY = {
    "MCPTools": "._mcp",
    "MCPAudio": "._mcp_content",
    "MCPImage": "._mcp_content",
    "MCPResource": "._mcp_content",
    "MCPResourceLink": "._mcp_content",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_POLICY",
    "DEFAULT_RETRY",
    "JSON_TYPES",
    "MAX_MESSAGE_CHARS",
    "MAX_RESULT_DEPTH",
    "HttpLimits",
    "MCPAudio",
    "MCPImage",
    "MCPResource",
    "MCPResourceLink",
    "MCPTools",
    "NetPolicy",
    "NotJSONError",
    "OpenAPITools",
    "RetryPolicy",
    "RunContext",
    "StaticTools",
    "Tool",
    "ToolLoadError",
    "ToolPolicy",
    "ToolSource",
    "Toolset",
    "check_ip",
    "check_schema",
    "check_url",
    "collect",
    "function_ref",
    "guarded_client",
    "guarded_transport",
    "http_tool",
    "legal_name",
    "load_tools",
    "normalize_parameters",
    "normalize_schema",
    "prefixed",
    "schema_validator",
    "to_json_value",
    "tool",
    "tools_from_schemas",
]
