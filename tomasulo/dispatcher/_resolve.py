"""Argument resolution: references become upstream values, templates become text.

``$k`` passes task k's result as it is (a typed value, not text); ``$k.field`` and ``$k[0]``
select inside it (:meth:`Ref.select <tomasulo.grammar.Ref.select>`). ``"...${k}..."`` renders
the value into the string with :func:`~tomasulo.grammar.stringify`. Both work at any depth
inside lists and dicts. The resolved arguments are then validated against the tool's schema.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from ..exceptions import ReferenceResolutionError, ToolArgumentError
from ..grammar import Ref, Task, Template, iter_refs
from ..tools import Tool

__all__ = ["resolve_args"]

Lookup = Callable[[int], Any]


class _RefFailed(Exception):
    def __init__(self, ref: Ref, cause: BaseException) -> None:
        self.ref = ref
        self.cause = cause
        super().__init__(str(cause))


def _resolve_value(value: Any, lookup: Lookup) -> Any:
    if isinstance(value, Ref):
        try:
            return value.select(lookup(value.task_id))
        except (LookupError, TypeError, AttributeError) as exc:
            raise _RefFailed(value, exc) from exc
    if isinstance(value, Template):

        def one(ref: Ref) -> Any:
            try:
                return ref.select(lookup(ref.task_id))
            except (LookupError, TypeError, AttributeError) as exc:
                raise _RefFailed(ref, exc) from exc

        return value.render(one)
    if isinstance(value, list | tuple):
        return [_resolve_value(v, lookup) for v in value]
    if isinstance(value, dict):
        return {k: _resolve_value(v, lookup) for k, v in value.items()}
    return value


def _has_refs(value: Any) -> bool:
    if isinstance(value, Ref | Template):
        return True
    if isinstance(value, list | tuple):
        return any(_has_refs(v) for v in value)
    if isinstance(value, dict):
        return any(_has_refs(v) for v in value.values())
    return False


def _describe_error(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"no key {exc.args[0]!r}" if exc.args else "no such key"
    if isinstance(exc, IndexError):
        return "index out of range"
    return str(exc)


def resolve_args(task: Task, tool: Tool, lookup: Lookup) -> dict[str, Any]:
    """The task's arguments by name with every reference resolved, validated for ``tool``.

    ``lookup(k)`` returns task k's result. Raises :class:`ReferenceResolutionError` naming the
    task, the argument and the reference when a path does not fit the upstream value, or when a
    resolved value does not fit the schema; :class:`ToolArgumentError` for bad literal arguments.
    """
    try:
        bound = task.bind(tool.param_names)
    except ValueError as exc:
        raise ReferenceResolutionError(str(exc), tool=tool.name, task_id=task.id) from exc
    resolved: dict[str, Any] = {}
    from_refs: set[str] = set()
    for name, value in bound.items():
        if isinstance(value, str | int | float | bool) or value is None:
            resolved[name] = value
            continue
        if _has_refs(value):
            from_refs.add(name)
        try:
            resolved[name] = _resolve_value(value, lookup)
        except _RefFailed as exc:
            ref = exc.ref
            raise ReferenceResolutionError(
                f"argument {name!r}: cannot take {ref.to_text()} from the result of task "
                f"{ref.task_id}: {_describe_error(exc.cause)}",
                tool=tool.name,
                task_id=task.id,
            ) from exc.cause
    if _fast_valid(tool, resolved):
        return resolved
    try:
        return tool.validate(resolved)
    except ToolArgumentError as exc:
        bad = [e for e in exc.errors if e.path.split(".")[0].split("[")[0] in from_refs]
        if not bad:
            raise
        lines = "; ".join(str(e) for e in bad)
        origin = ", ".join(
            f"{name} <- {' '.join(r.to_text() for r in _refs_in(bound[name]))}"
            for name in sorted(from_refs)
            if any(e.path.split(".")[0].split("[")[0] == name for e in bad)
        )
        raise ReferenceResolutionError(
            f"an upstream result does not fit the tool's arguments: {lines} (from {origin})",
            tool=tool.name,
            task_id=task.id,
        ) from exc


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
    "null": (type(None),),
}
_PLAIN_KEYS = frozenset({"type", "title", "description", "default", "examples"})
_OBJECT_KEYS = frozenset({"type", "properties", "required", "additionalProperties", "title", "description"})

Checker = Callable[[dict[str, Any]], bool]
_checkers: weakref.WeakKeyDictionary[Tool, Checker | None] = weakref.WeakKeyDictionary()


def _type_check(schema: Any) -> Callable[[Any], bool] | None:
    """A check for a property schema made only of ``type`` (and annotations), else ``None``."""
    if not isinstance(schema, dict) or not set(schema) <= _PLAIN_KEYS:
        return None
    kind = schema.get("type")
    names = [kind] if isinstance(kind, str) else kind
    if not isinstance(names, list) or not names or any(n not in _JSON_TYPES for n in names):
        return None
    types = tuple(t for n in names for t in _JSON_TYPES[n])
    bool_ok = "boolean" in names

    def check(value: Any) -> bool:
        return isinstance(value, types) and (bool_ok or not isinstance(value, bool))

    return check


def _compile_checker(schema: dict[str, Any]) -> Checker | None:
    """A fast, exact accept-test for simple object schemas; ``None`` when the schema is richer.

    It only ever answers "valid" when full JSON Schema validation would; anything it cannot
    vouch for goes to the full validator (which also writes the error messages).
    """
    if schema.get("type") != "object" or not set(schema) <= _OBJECT_KEYS:
        return None
    props = schema.get("properties", {})
    if not isinstance(props, dict):
        return None
    checks: dict[str, Callable[[Any], bool]] = {}
    for name, sub in props.items():
        check = _type_check(sub)
        if check is None:
            return None
        checks[name] = check
    required = tuple(schema.get("required", ()))
    extra = schema.get("additionalProperties", True)
    if extra not in (True, False):
        return None
    closed = extra is False

    def checker(args: dict[str, Any]) -> bool:
        for key in required:
            if key not in args:
                return False
        for key, value in args.items():
            check = checks.get(key)
            if check is None:
                if closed:
                    return False
            elif not check(value):
                return False
        return True

    return checker


def _fast_valid(tool: Tool, args: dict[str, Any]) -> bool:
    try:
        checker = _checkers[tool]
    except KeyError:
        checker = _checkers[tool] = _compile_checker(tool.input_schema)
    return checker is not None and checker(args)


def _refs_in(value: Any) -> list[Ref]:
    return list(iter_refs(value))
