"""OpenAPI specs as tool sources: one tool per operation (see :class:`OpenAPITools`)."""

from ._operations import Argument, Operation
from ._tools import OpenAPITools

__all__ = ["Argument", "OpenAPITools", "Operation"]
