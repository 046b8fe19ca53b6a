"""Checks a parsed task against the toolset and the plan so far.

What is checked here, each with its own :class:`~tomasulo.exceptions.PlanError` subclass: the
tool exists; no more positional arguments than parameters; no unknown or repeated keyword; every
required argument is given; literal values fit the parameter's schema (values that come from
references are checked at dispatch, when they exist); references name only earlier tasks.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..exceptions import (
    ArgumentTypeError,
    DuplicateArgumentError,
    ForwardReferenceError,
    MissingArgumentError,
    PlanSyntaxError,
    TooManyPositionalError,
    UnknownKeywordError,
    UnknownToolError,
)
from ..tools import schema_validator
from ._ast import JOIN, Ref, Task, Template, Value, iter_refs
from ._parser import ArgNode, CallLine

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ..tools import Tool, Toolset

__all__ = ["as_toolset", "check_answer", "check_refs", "check_tool_call", "did_you_mean"]


def as_toolset(tools: Toolset | Iterable[Tool]) -> Toolset:
    """``tools`` as a :class:`~tomasulo.tools.Toolset`: a list of tools (as ``Orchestrator``
    takes them) becomes one; a toolset is returned as it is."""
    from ..tools import Toolset

    return tools if isinstance(tools, Toolset) else Toolset(tools)


def did_you_mean(word: str, choices: Any) -> str:
    """`` (did you mean 'x'?)`` when a close match exists, else ``""``."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean {match[0]!r}?" if match else ""


class _Deferred:
    """Stands in for a value known only at dispatch (a reference's result)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<reference>"


_DEFERRED = _Deferred()


class _TemplateText(str):
    """A template's text stands in for the rendered string: it is a string of unknown content."""

    __slots__ = ()


_CONTENT_CHECKS = frozenset({"enum", "const", "pattern", "minLength", "maxLength", "format"})


def _stand_in(value: Value) -> Any:
    if isinstance(value, Ref):
        return _DEFERRED
    if isinstance(value, Template):
        return _TemplateText("".join(p for p in value.parts if isinstance(p, str)))
    if isinstance(value, list | tuple):
        return [_stand_in(v) for v in value]
    if isinstance(value, dict):
        return {k: _stand_in(v) for k, v in value.items()}
    return value


def _has_deferred(value: Any) -> bool:
    if value is _DEFERRED:
        return True
    if isinstance(value, list):
        return any(_has_deferred(v) for v in value)
    if isinstance(value, dict):
        return any(_has_deferred(v) for v in value.values())
    return False


def _validator(tool: Tool, param: str, schema: Mapping[str, Any]) -> Any:
    # A parameter's schema may point into the tool schema's own definitions ("#/$defs/X");
    # plan literals may hold tuples where the schema says array.
    return schema_validator(
        schema, owner=tool, key=("param", param), defs_from=tool.input_schema, tuples_are_arrays=True
    )


def _literal_problem(tool: Tool, param: str, schema: Mapping[str, Any], value: Value) -> str | None:
    """Why a literal does not fit its schema, or ``None`` (parts from references are skipped)."""
    stand_in = _stand_in(value)
    for err in _validator(tool, param, schema).iter_errors(stand_in):
        inst = err.instance
        if inst is _DEFERRED or (err.validator in ("anyOf", "oneOf") and _has_deferred(inst)):
            continue
        if isinstance(inst, _TemplateText) and err.validator in _CONTENT_CHECKS:
            continue
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path)
        return f"{param}{where}: {err.message}"
    return None


def check_refs(call: CallLine, values: list[ArgNode], text: str, lineno: int) -> None:
    """Every reference names an earlier task (ids from 1 up to the task's own, exclusive)."""
    for node in values:
        for ref in iter_refs(node.value):
            if ref.task_id >= call.task_id or ref.task_id < 1:
                which = "itself" if ref.task_id == call.task_id else f"task {ref.task_id}"
                who = f"task {call.task_id}"
                if call.tool == JOIN:
                    who, which = f"the answer of join() (task {call.task_id})", f"task {ref.task_id}"
                raise ForwardReferenceError(
                    f"{who} refers to {which}, which does not come before it",
                    line=lineno,
                    column=_ref_column(text, node.column, ref),
                    text=text,
                )


def check_answer(call: CallLine, text: str, lineno: int) -> Template | None:
    """The answer template of a ``join(...)`` line: ``None`` for ``join()``, else its one string.

    ``join("Everest is ${5} times as tall")`` takes one positional string, which may interpolate
    the results of earlier tasks (ids below the join's own), as a task's strings may.

    Raises:
        PlanSyntaxError: more than one argument, a keyword, or a value that is not a string.
        ForwardReferenceError: the template names the join itself or a later id.
    """
    if not call.args:
        return None
    first = call.args[0]
    if len(call.args) > 1 or first.keyword is not None:
        node = call.args[1] if first.keyword is None else first
        raise PlanSyntaxError(
            "join() takes at most one argument: the answer as a string",
            line=lineno,
            column=node.column,
            text=text,
            hint='write `N. join()` or `N. join("the answer, with ${k} for task k\'s result")`',
        )
    value = first.value
    if type(value) is Ref and value.quoted:  # compat `join("$3")`: the result as text
        value = Template((value,))
    if isinstance(value, str):
        value = Template((value,) if value else ())
    if not isinstance(value, Template):
        raise PlanSyntaxError(
            "the answer in join(...) must be a string",
            line=lineno,
            column=first.column,
            text=text,
            hint='quote it: join("the answer is ${3}")',
        )
    check_refs(call, [first], text, lineno)
    return value


def _ref_column(text: str, start: int, ref: Ref) -> int:
    for needle in (f"${{{ref.task_id}", f"${ref.task_id}"):
        idx = text.find(needle, start - 1)
        if idx >= 0:
            return idx + 1
    return start


def check_tool_call(call: CallLine, tools: Toolset, text: str, lineno: int) -> dict[str, Value]:
    """Check a call against its tool's schema; returns the arguments bound to parameter names."""
    tool = tools.get(call.tool)
    if tool is None:
        hint = did_you_mean(call.tool, tools.names) or f"known tools: {', '.join(tools.names)}"
        raise UnknownToolError(
            f"unknown tool {call.tool!r}", line=lineno, column=call.tool_column, text=text, hint=hint
        )
    props: Mapping[str, Any] = tool.input_schema.get("properties", {})
    names = list(props)
    bound: dict[str, Value] = {}
    columns: dict[str, int] = {}
    nodes: dict[str, ArgNode] = {}
    positional = [a for a in call.args if a.keyword is None]
    if len(positional) > len(names):
        extra = positional[len(names)]
        raise TooManyPositionalError(
            f"{tool.name} takes {len(names)} positional argument{'s' * (len(names) != 1)}, "
            f"got {len(positional)}",
            line=lineno,
            column=extra.column,
            text=text,
            hint=f"signature: {tool.signature()}",
        )
    for name, node in zip(names, positional, strict=False):
        bound[name] = node.value
        columns[name] = node.column
        nodes[name] = node
    for node in call.args:
        if node.keyword is None:
            continue
        name = node.keyword
        if name not in props and not _allows_extra(tool):
            hint = did_you_mean(name, names) or f"signature: {tool.signature()}"
            raise UnknownKeywordError(
                f"{tool.name} has no parameter {name!r}",
                line=lineno,
                column=node.column,
                text=text,
                hint=hint,
            )
        if name in bound:
            raise DuplicateArgumentError(
                f"{tool.name} got argument {name!r} twice", line=lineno, column=node.column, text=text
            )
        bound[name] = node.value
        columns[name] = node.column
        nodes[name] = node
    for name in tool.required:
        if name not in bound:
            raise MissingArgumentError(
                f"{tool.name} needs argument {name!r}",
                line=lineno,
                column=call.close_column,
                text=text,
                hint=f"signature: {tool.signature()}",
            )
    for name, value in bound.items():
        schema = props.get(name)
        if not isinstance(schema, Mapping) or not schema:
            continue
        if value is None and tool.is_unset(name, value):
            continue  # null for an optional parameter: not given, the tool gets its default
        if type(value) is Ref and value.quoted and _takes_only_text(schema):
            # compat `"$1"`: LLMCompiler pastes the result in as text; so does a template
            bound[name] = nodes[name].value = Template((value,))
            continue
        problem = _literal_problem(tool, name, schema, value)
        if problem is not None:
            raise ArgumentTypeError(
                f"wrong value for {tool.name}: {problem}", line=lineno, column=columns[name], text=text
            )
    return bound


def _takes_only_text(schema: Mapping[str, Any]) -> bool:
    kind = schema.get("type")
    return kind == "string" or kind == ["string"]


def _allows_extra(tool: Tool) -> bool:
    extra = tool.input_schema.get("additionalProperties", False)
    return extra is not False


def make_task(call: CallLine, thought: str | None, lineno: int) -> Task:
    """The :class:`Task` for a checked call."""
    args = tuple(a.value for a in call.args if a.keyword is None)
    kwargs = {a.keyword: a.value for a in call.args if a.keyword is not None}
    return Task(
        id=call.task_id,
        tool=call.tool,
        args=args,
        kwargs=kwargs,
        thought=thought,
        line=lineno,
        column=call.id_column,
    )
