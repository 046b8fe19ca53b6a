"""The service layer: tomasulo as an MCP server (``tomasulo mcp``).

The names load the ``mcp`` SDK on first use.
"""

from typing import Any

__all__ = ["build_mcp_server", "serve_mcp_http"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import _mcp_server

        return getattr(_mcp_server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
