"""A pydantic ``ValidationError`` on a YAML file as one :class:`WorkflowError` with positions.

Workflow files and the service's configuration file both read YAML into pydantic models; this is
the one place that turns the model's errors into "line, column: what" messages, with a
did-you-mean and the allowed keys for an unknown key.
"""

from __future__ import annotations

import json
import types
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from .._text import did_you_mean
from ..exceptions import WorkflowError
from ._yaml import YamlDocument

__all__ = ["validation_error"]


def validation_error(
    doc: YamlDocument, exc: ValidationError, model: type[BaseModel], *, whole: str
) -> WorkflowError:
    """``exc`` (raised validating ``doc`` as ``model``) as one error at its first problem's line
    and column, listing the others; ``whole`` names the document in a problem at its top level
    (``"workflow"``, ``"the file"``)."""
    problems: list[tuple[int | None, int | None, str]] = []
    for err in exc.errors():
        # validator wrappers (``function-after[...]``) are not keys of the document
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        if err["type"] == "extra_forbidden":
            key = str(loc[-1])
            allowed = _allowed_keys(model, loc[:-1])
            where = _loc_text(loc[:-1]) or "the top level"
            message = f"unknown key {key!r} in {where}{did_you_mean(key, allowed)}"
            if allowed:
                message += f"; allowed keys: {', '.join(allowed)}"
            node = doc.node_at(loc, key=True)
        elif err["type"] == "missing":
            message = f"{_loc_text(loc)}: a value is required"
            node = doc.node_at(loc[:-1])
        else:
            text = err["msg"].removeprefix("Value error, ")
            got = err.get("input")
            shown = json.dumps(got, default=str) if not isinstance(got, dict | list) else ""
            message = f"{_loc_text(loc) or whole}: {text}" + (f" (got {shown})" if shown else "")
            node = doc.node_at(loc)
        line = node.start_mark.line + 1 if node is not None else None
        column = node.start_mark.column + 1 if node is not None else None
        problems.append((line, column, message))
    line, column, first = problems[0]
    if len(problems) > 1:
        first += "\n" + "\n".join(
            f"  line {ln}, column {c}: {m}" if ln is not None else f"  {m}" for ln, c, m in problems[1:]
        )
    return WorkflowError(first, path=doc.path, line=line, column=column)


def _unwrap(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys the model at ``loc`` takes (for "did you mean" on an unknown key)."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        origin = get_origin(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            fields = {info.alias or name: info.annotation for name, info in current.model_fields.items()}
            fields.update({name: info.annotation for name, info in current.model_fields.items()})
            if part not in fields:
                return []
            current = fields[part]
        elif origin is list and isinstance(part, int):
            current = get_args(current)[0]
        elif origin is dict:
            current = get_args(current)[1]
        else:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [info.alias or name for name, info in current.model_fields.items()]
    return []


def _loc_text(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
