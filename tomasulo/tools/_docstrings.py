"""Descriptions of a tool and its parameters, read from a docstring (Google, NumPy or Sphinx)."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import docstring_parser

__all__ = ["DocInfo", "read_docstring"]


@dataclass(frozen=True, slots=True)
class DocInfo:
    """What a docstring says about a function.

    Attributes:
        description: the summary and the long description, without the sections.
        params: parameter name -> its description (whitespace collapsed to single spaces).
        returns: the description of the return value, if any.
    """

    description: str = ""
    params: dict[str, str] = field(default_factory=dict)
    returns: str | None = None


def _flat(text: str | None) -> str:
    return " ".join((text or "").split())


def read_docstring(fn: Any) -> DocInfo:
    """Parse ``fn``'s docstring in whichever of the Google, NumPy and Sphinx styles it uses.

    >>> def f(x):
    ...     '''Double a number.
    ...
    ...     Args:
    ...         x: the number.
    ...     '''
    >>> read_docstring(f).params
    {'x': 'the number.'}
    """
    doc = inspect.getdoc(fn)
    if not doc:
        return DocInfo()
    try:
        parsed = docstring_parser.parse(doc)
    except docstring_parser.ParseError:
        return DocInfo(description=doc.strip())
    parts = [p.strip() for p in (parsed.short_description, parsed.long_description) if p]
    params = {p.arg_name.lstrip("*"): _flat(p.description) for p in parsed.params if p.description}
    returns = _flat(parsed.returns.description) if parsed.returns else None
    return DocInfo(description="\n\n".join(parts), params=params, returns=returns or None)
