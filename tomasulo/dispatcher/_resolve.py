"""Argument resolution: references become upstream values, templates become text.

``$k`` passes task k's result as it is (a typed value, not text); ``$k.field`` and ``$k[0]``
select inside it (:meth:`Ref.select <tomasulo.grammar.Ref.select>`). ``"...${k}..."`` renders
the value into the string with :func:`~tomasulo.grammar.stringify`. Both work at any depth
inside lists and dicts. The resolved arguments are then validated against the tool's schema.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from .._text import preview, safe_str
from ..exceptions import ReferenceResolutionError, ToolArgumentError
from ..grammar import Ref, Task, Template, iter_refs
from ..tools import JSON_TYPES, Tool

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
            if not value.path:
                return lookup(value.task_id)
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


def _describe_error(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"no key {exc.args[0]!r}" if exc.args else "no such key"
    if isinstance(exc, IndexError):
        return "index out of range"
    return safe_str(exc, 300)


def _shape(value: Any) -> str:
    """What a value is, for a path that does not fit it: its kind, its fields or length, and a
    short preview."""
    if isinstance(value, Mapping):
        keys = list(value)
        if not keys:
            what = "an empty object"
        else:
            shown = ", ".join(repr(k) for k in keys[:8])
            more = f" and {len(keys) - 8} more" if len(keys) > 8 else ""
            what = f"an object with field{'s' if len(keys) > 1 else ''} {shown}{more}"
    elif isinstance(value, list | tuple):
        n = len(value)
        what = (
            "an empty array"
            if not n
            else f"an array of {n} item{'s' if n > 1 else ''} (indexes 0 to {n - 1})"
        )
    else:
        what = {
            str: "a string",
            bool: "a boolean",
            int: "an integer",
            float: "a number",
            type(None): "null",
        }.get(type(value), f"a {type(value).__name__}")
    return f"{what}: {preview(value, 80)}"


def _explain(ref: Ref, root: Any) -> str:
    """Why ``ref``'s path does not fit ``root`` (task k's result): the first step that fails,
    and what the value there is."""
    value = root
    here = Ref(ref.task_id)
    for step in ref.path:
        at = f"at {here.to_text()} the value is" if here.path else "the result is"
        if isinstance(step, int):
            if not isinstance(value, list | tuple):
                return f"[{step}] needs an array, but {at} {_shape(value)}"
            if not -len(value) <= step < len(value):
                return f"there is no item [{step}] (index out of range): {at} {_shape(value)}"
            value = value[step]
        elif isinstance(value, Mapping):
            if step not in value:
                return f"there is no field {step!r}: {at} {_shape(value)}"
            value = value[step]
        else:
            hint = " (to take an item, write [0])" if isinstance(value, list | tuple) else ""
            return f"the field {step!r} needs an object, but {at} {_shape(value)}{hint}"
        here = Ref(ref.task_id, (*here.path, step))
    return "the path does not fit the value"


def resolve_args(task: Task, tool: Tool, lookup: Lookup) -> dict[str, Any]:
    """The task's arguments by name with every reference resolved, validated for ``tool``.

    ``lookup(k)`` returns task k's result. Raises :class:`ReferenceResolutionError` naming the
    task, the argument and the reference when a path does not fit the upstream value, or when a
    resolved value does not fit the schema; :class:`ToolArgumentError` for bad literal arguments.
    """
    return BoundArgs(task, tool).resolve(lookup)


_SCALAR_TYPES = (str, int, float, bool, type(None))


class BoundArgs:
    """A task's arguments bound to the tool's parameter names, to resolve at call time.

    The dispatcher builds one per task when it is submitted, and resolves it once, when the
    task starts (retries reuse the arguments). ``resolve_args(task, tool, lookup)`` is
    ``BoundArgs(task, tool).resolve(lookup)``.
    """

    __slots__ = ("_bind_error", "_bound", "_checker", "_names", "deps", "task", "tool")

    def __init__(
        self,
        task: Task,
        tool: Tool,
        param_names: tuple[str, ...] | None = None,
        checker: Checker | Literal[False] | None = False,
    ) -> None:
        self.task = task
        self.tool = tool
        self._names = tool.param_names if param_names is None else param_names
        self._checker = checker_for(tool) if checker is False else checker
        self._bound: dict[str, Any] | None = None  # bound at the first resolve
        self._bind_error: ValueError | None = None
        #: Ids of the tasks whose results the arguments use.
        self.deps = task.deps

    def bind(self) -> dict[str, Any]:
        """The arguments by parameter name, as planned (bound once; ``{}`` when they do not
        fit the parameters, which :meth:`resolve` then reports)."""
        if self._bound is not None:
            return self._bound
        task = self.task
        names = self._names
        args = task.args
        if not task.kwargs and len(args) <= len(names):
            bound = dict(zip(names, args))  # noqa: B905 (Task.bind's result, without its checks)
        else:
            try:
                bound = task.bind(names)
            except ValueError as exc:
                self._bind_error = exc
                bound = {}
        self._bound = bound
        return bound

    def release(self) -> None:
        """Drop what only resolving needs, once the task has ended (its run keeps the node); a
        later :meth:`resolve` would bind again."""
        self._bound = None

    def resolve(self, lookup: Lookup) -> dict[str, Any]:
        """The arguments with every reference resolved, validated; see :func:`resolve_args`."""
        task, tool = self.task, self.tool
        bound = self._bound if self._bound is not None else self.bind()
        if self._bind_error is not None:
            raise ReferenceResolutionError(
                str(self._bind_error), tool=tool.name, task_id=task.id
            ) from self._bind_error
        resolved = dict(bound)
        try:
            for name, value in bound.items():  # replacing values, not adding keys
                kind = type(value)
                if kind is Ref:
                    resolved[name] = _resolve_value(value, lookup) if value.path else lookup(value.task_id)
                elif kind is list or kind is tuple:
                    resolved[name] = [
                        lookup(item.task_id)
                        if type(item) is Ref and not item.path
                        else _resolve_value(item, lookup)
                        for item in value
                    ]
                elif not isinstance(value, _SCALAR_TYPES):
                    resolved[name] = _resolve_value(value, lookup)
        except (_RefFailed, LookupError, TypeError, AttributeError):
            # Resolved again, one argument at a time, to say which reference failed and why.
            resolved = dict(bound)
            self._resolve_names(resolved, [n for n, v in bound.items() if _refs_in(v)], lookup)
        checker = self._checker
        if checker is not None and checker(resolved):
            return resolved
        try:
            return tool.validate(resolved)
        except ToolArgumentError as exc:
            from_refs = [name for name, value in bound.items() if _refs_in(value)]
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

    def _resolve_names(self, resolved: dict[str, Any], names: Iterable[str], lookup: Lookup) -> None:
        """Resolve the named arguments in place, walking their values."""
        for name in names:
            try:
                resolved[name] = _resolve_value(resolved[name], lookup)
            except _RefFailed as exc:
                ref = exc.ref
                try:
                    detail = _explain(ref, lookup(ref.task_id))
                except Exception:  # the result itself is missing
                    detail = _describe_error(exc.cause)
                raise ReferenceResolutionError(
                    f"argument {name!r}: cannot take {ref.to_text()} from the result of task "
                    f"{ref.task_id}: {detail}",
                    tool=self.tool.name,
                    task_id=self.task.id,
                ) from exc.cause


# The types come from the one owner of JSON Schema semantics (tomasulo.tools); the checker only
# ever answers "valid" where that validation would (tests/dispatcher: a property test and an
# exhaustive one hold the two together).
_JSON_TYPES = JSON_TYPES
_PLAIN_KEYS = frozenset({"type", "title", "description", "default", "examples"})
_OBJECT_KEYS = frozenset({"type", "properties", "required", "additionalProperties", "title", "description"})

Checker = Callable[[dict[str, Any]], bool]
_checkers: weakref.WeakKeyDictionary[Tool, Checker | None] = weakref.WeakKeyDictionary()


def _type_spec(schema: Any) -> tuple[tuple[type, ...], bool] | None:
    """For a property schema made only of ``type`` (and annotations): the Python types it takes
    and whether ``bool`` is one of them (``bool`` is an ``int`` to ``isinstance``); else ``None``."""
    if not isinstance(schema, dict) or not set(schema) <= _PLAIN_KEYS:
        return None
    kind = schema.get("type")
    names = [kind] if isinstance(kind, str) else kind
    if not isinstance(names, list) or not names or any(n not in _JSON_TYPES for n in names):
        return None
    return tuple(t for n in names for t in _JSON_TYPES[n]), "boolean" in names


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
    specs: dict[str, tuple[tuple[type, ...], bool]] = {}
    for name, sub in props.items():
        spec = _type_spec(sub)
        if spec is None:
            return None
        specs[name] = spec
    required = tuple(schema.get("required", ()))
    extra = schema.get("additionalProperties", True)
    if extra is not True and extra is not False:  # not `in (True, False)`: 0 == False
        return None
    closed = extra is False

    def checker(args: dict[str, Any]) -> bool:
        for key in required:
            if key not in args:
                return False
        for key, value in args.items():
            spec = specs.get(key)
            if spec is None:
                if closed:
                    return False
            elif not isinstance(value, spec[0]) or (type(value) is bool and not spec[1]):
                return False
        return True

    return checker


def checker_for(tool: Tool) -> Checker | None:
    """The fast accept-test for the tool's input schema (cached per tool), or ``None``."""
    try:
        return _checkers[tool]
    except KeyError:
        checker = _checkers[tool] = _compile_checker(tool.input_schema)
        return checker


def _refs_in(value: Any) -> list[Ref]:
    return list(iter_refs(value))
