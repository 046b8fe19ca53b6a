"""The plan language: AST, parser, streaming parser, and (later) grammars for constrained decoding."""

from ._ast import JOIN, Plan, Ref, Task, Template, Value, iter_refs, stringify

__all__ = ["JOIN", "Plan", "Ref", "Task", "Template", "Value", "iter_refs", "stringify"]
