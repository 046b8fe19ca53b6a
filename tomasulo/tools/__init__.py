"""Tool declarations: the ``@tool`` decorator, ``Tool``, ``Toolset`` and schema normalization."""

from ._tool import DEFAULT_POLICY, Tool, ToolPolicy
from ._toolset import Toolset

__all__ = ["DEFAULT_POLICY", "Tool", "ToolPolicy", "Toolset"]
