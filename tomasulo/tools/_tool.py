"""A tool: a name, a description, JSON schemas for its input and output, a policy, a callable."""

from __future__ import annotations

import dataclasses
import enum
import importlib
import inspect
import json
import math
import re
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from jsonschema.exceptions import ValidationError
from referencing.exceptions import Unresolvable

from .._text import MAX_MESSAGE_CHARS, clip_text, describe_value, json_path, preview, safe_str
from ..exceptions import ConfigError, FieldError, ToolArgumentError, ToolDefinitionError
from ._jsonschema import schema_validator

__all__ = [
    "DEFAULT_POLICY",
    "MAX_MESSAGE_CHARS",
    "MAX_RESULT_DEPTH",
    "PLAN_NAME",
    "RESERVED_NAMES",
    "NotJSONError",
    "Tool",
    "ToolPolicy",
    "clip_text",
    "describe_value",
    "function_ref",
    "json_path",
    "plan_name",
    "preview",
    "safe_str",
    "to_json_value",
]

#: A tool's result may nest lists and objects this deep; deeper ones are refused.
MAX_RESULT_DEPTH = 200

#: What a parameter name must look like to be written as a plan keyword (``name=``): an
#: identifier, Unicode letters included (``año_vehiculo``). The plan parser's keyword pattern is
#: the same (``tomasulo.grammar._parser._IDENT_EQ``; a test keeps the two equal).
PLAN_NAME = re.compile(r"[^\W\d]\w*")
_NOT_WORD = re.compile(r"\W")
#: Names no tool may take: the plan language's own words.
RESERVED_NAMES = frozenset({"join"})


def plan_name(name: str, taken: set[str] | frozenset[str] = frozenset()) -> str:
    """A name the plan language can write for ``name``, not in ``taken``.

    Characters that cannot appear in an identifier become ``_``, and a name that does not start
    with a letter or ``_`` gets a leading ``_``; a clash gets ``_2``, ``_3``, ...

    >>> plan_name("first-name"), plan_name("$type"), plan_name("2nd"), plan_name("año")
    ('first_name', '_type', '_2nd', 'año')
    """
    if PLAN_NAME.fullmatch(name) and name not in taken:
        return name
    base = _NOT_WORD.sub("_", name)
    if not PLAN_NAME.fullmatch(base):
        base = "_" + base
    out, n = base, 2
    while out in taken:
        out, n = f"{base}_{n}", n + 1
    return out


class _Rename:
    """Maps plan parameter names back to the names the tool's own schema uses, then applies
    the tool's converter (a class, not a closure, so a tool still pickles for other processes)."""

    __slots__ = ("inner", "names")

    def __init__(self, names: Mapping[str, str], inner: Callable[[dict[str, Any]], dict[str, Any]] | None):
        self.names = dict(names)
        self.inner = inner

    def __call__(self, args: dict[str, Any]) -> dict[str, Any]:
        names = self.names
        out = {names.get(k, k): v for k, v in args.items()}
        return self.inner(out) if self.inner is not None else out

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Rename, (self.names, self.inner))


@dataclass(frozen=True, slots=True)
class ToolPolicy:
    """How the dispatcher runs a tool.

    Attributes:
        timeout: seconds one attempt may take (``None``: no per-call timeout; the run's deadline
            still applies).
        retries: extra attempts after the first one fails. Failures are retried only when the tool
            is ``idempotent`` or the error is marked retryable.
        max_concurrency: at most this many calls of the tool at once (``None``: no tool limit).
        sequential: calls run one at a time, in plan order (for side-effecting tools).
        idempotent: calling twice with the same arguments is harmless, so any failure may be
            retried.
    """

    timeout: float | None = None
    retries: int = 0
    max_concurrency: int | None = None
    sequential: bool = False
    idempotent: bool = False

    def __post_init__(self) -> None:
        if self.timeout is not None and not (self.timeout > 0 and math.isfinite(self.timeout)):
            raise ConfigError(f"timeout must be a positive number of seconds, got {self.timeout!r}")
        if self.retries < 0:
            raise ConfigError(f"retries must be 0 or more, got {self.retries!r}")
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise ConfigError(f"max_concurrency must be at least 1, got {self.max_concurrency!r}")


DEFAULT_POLICY = ToolPolicy()


def _expected(err: ValidationError) -> str:
    v = err.validator
    vv: Any = err.validator_value
    if v == "type":
        return " or ".join(vv) if isinstance(vv, list) else str(vv)
    if v == "enum":
        return "one of " + ", ".join(repr(x) for x in vv)
    if v == "const":
        return f"the constant {vv!r}"
    if v == "required":
        return "required property " + err.message.split(" is a required")[0]
    if v == "additionalProperties":
        return "no additional properties"
    if v in ("anyOf", "oneOf") and isinstance(vv, list):
        return " or ".join(_type_text(s) for s in vv)
    return f"{v} {vv!r}"


@dataclass(eq=False)
class Tool:
    """A tool the planner may call.

    Build one with the :func:`~tomasulo.tools.tool` decorator, or from a raw schema with
    :meth:`Toolset.from_schemas <tomasulo.tools.Toolset.from_schemas>`.

    Attributes:
        name: the name the plan uses (``search``, ``math.factorial``, ``get-weather``).
        description: what the tool does, for the planner's prompt.
        input_schema: JSON schema of the arguments: an object whose ``properties`` are in
            parameter order (positional arguments bind in this order).
        output_schema: JSON schema of the result, when known.
        policy: timeout, retries and concurrency.
        fn: the callable, sync or async; ``None`` for a schema-only tool that cannot run.
        takes_model: the callable wants one pydantic model or keyword arguments (set by ``@tool``).

    What a tool returns becomes a JSON value before later tasks, the joiner or the store see it
    (:func:`to_json_value`), by this rule:

    - strings, integers, booleans, ``None`` and finite floats stay as they are (subclasses such
      as ``IntEnum`` members or ``numpy.float64`` become their plain value); lists and dicts with
      string keys too (the same objects: nothing is copied);
    - tuples (named tuples included), deques and subclasses of ``list`` become lists; sets and
      frozensets become sorted lists (items of mixed kinds are ordered by their JSON text);
      subclasses of ``dict`` and other mappings become dicts;
    - dict keys that are integers, floats, booleans, ``None`` or enum members become their JSON
      text (``{1: "a"}`` becomes ``{"1": "a"}``, an ``IntEnum`` key its number), as
      ``json.dumps`` does; two keys that become the same text (``{1: "a", "1": "b"}``) are
      refused rather than one silently lost; other keys are refused;
    - pydantic models become ``model_dump(mode="json")``; dataclass instances become an object
      of their fields; enum members become their value; objects with a ``tolist()`` or an
      ``item()`` method (numpy arrays and scalars, ``array.array``) become what it returns;
    - refused, failing the task with :class:`~tomasulo.exceptions.ToolOutputError` that says
      where inside the value and why: ``NaN`` and infinities, ``bytes`` (decode them, or
      base64-encode them), a value that contains itself (a cycle), nesting deeper than
      :data:`MAX_RESULT_DEPTH`, and any other object.

    Error messages a tool raises are kept to :data:`MAX_MESSAGE_CHARS` characters in outcomes
    and reasons (with a note of the full length).
    """

    name: str
    description: str = ""
    input_schema: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    output_schema: dict[str, Any] | None = None
    policy: ToolPolicy = DEFAULT_POLICY
    fn: Callable[..., Any] | None = None
    #: Turns validated JSON arguments into the keyword arguments ``fn`` takes (pydantic models).
    convert: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    #: Plan name -> the parameter's name in the schema the tool came with, for each parameter
    #: whose own name a plan cannot write (``first-name``, ``$type``, ``2nd``). Filled in when
    #: the tool is built: :attr:`input_schema` then uses the plan names (so the grammar, the
    #: parser, the prompt and validation all see those), and :attr:`convert` maps them back
    #: before ``fn`` is called.
    source_names: Mapping[str, str] = field(default_factory=dict)
    #: The tool's name where it came from (a raw schema, an MCP server, a renamed source) when
    #: that differs from :attr:`name` (``get weather`` for ``get_weather``); ``None`` otherwise.
    source_name: str | None = None
    #: The parameter of :attr:`fn` that takes the call's :class:`~tomasulo.tools.RunContext`
    #: (set by ``@tool`` for a parameter annotated ``RunContext``); the dispatcher passes it by
    #: keyword on every call. It is not in :attr:`input_schema`. ``None``: the tool takes none.
    context_param: str | None = None

    def __post_init__(self) -> None:
        self._null_ok: dict[str, bool] = {}
        props = self.input_schema.get("properties") if isinstance(self.input_schema, Mapping) else None
        if isinstance(props, Mapping) and not all(
            isinstance(n, str) and PLAN_NAME.fullmatch(n) for n in props
        ):
            self._rename_params(props)

    def _rename_params(self, props: Mapping[str, Any]) -> None:
        """Give every parameter a name the plan language can write; keep the way back."""
        taken = {n for n in props if PLAN_NAME.fullmatch(n)}
        renamed: dict[str, str] = {}  # source name -> plan name
        for n in props:
            if not PLAN_NAME.fullmatch(n):
                renamed[n] = plan_name(n, taken)
                taken.add(renamed[n])
        schema = dict(self.input_schema)
        schema["properties"] = {renamed.get(n, n): sub for n, sub in props.items()}
        if isinstance(schema.get("required"), list):
            schema["required"] = [renamed.get(n, n) for n in schema["required"]]
        self.input_schema = schema
        back = {plan: source for source, plan in renamed.items()}
        self.source_names = {**self.source_names, **back}
        self.convert = _Rename(back, self.convert)

    @property
    def param_names(self) -> tuple[str, ...]:
        """Parameter names in order: positional arguments bind to these."""
        return tuple(self.input_schema.get("properties", {}))

    @property
    def required(self) -> tuple[str, ...]:
        """Names of the required parameters."""
        return tuple(self.input_schema.get("required", ()))

    @property
    def is_async(self) -> bool:
        """Whether calling the tool returns an awaitable."""
        fn = self.fn
        if fn is None:
            return False
        return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)  # noqa: B004 - callable objects with async __call__
        )

    def _source_schema(self) -> dict[str, Any]:
        """The input schema with the parameters' own names (the schema the tool came with).

        Renaming touches only ``properties`` and the top-level ``required``; every other keyword
        (``anyOf``/``oneOf``/``allOf`` with ``required``, ``dependentRequired``,
        ``dependencies``, ``if``/``then``) still speaks of the original names, so arguments are
        validated against this schema once their names are mapped back.
        """
        back = self.source_names
        props = self.input_schema.get("properties")
        if not back or not isinstance(props, Mapping):
            return self.input_schema
        schema = dict(self.input_schema)
        schema["properties"] = {back.get(n, n): sub for n, sub in props.items()}
        if isinstance(schema.get("required"), list):
            schema["required"] = [back.get(n, n) for n in schema["required"]]
        return schema

    def _get_validator(self) -> Any:
        # Renaming sets input_schema anew, so its identity says the validator is current.
        return schema_validator(self._source_schema, owner=self, key="input", source=self.input_schema)

    def is_unset(self, name: str, value: Any) -> bool:
        """Whether ``name=value`` means "not given": ``null`` for an optional parameter whose
        schema does not itself take ``null`` (the tool then gets its default).

        Models write ``null`` for optional parameters they mean to leave out; a schema that
        does admit ``null`` (``Optional[...]`` with another default) gets the ``null``.
        """
        if value is not None or name in self.required:
            return False
        hit = self._null_ok.get(name)
        if hit is None:
            sub = self.input_schema.get("properties", {}).get(name)
            if sub is None:
                return False  # not a parameter: validation reports it
            # The root's validator, narrowed to the parameter: a `$ref` in it (`#/$defs/...`)
            # still resolves against the whole schema.
            try:
                hit = bool(self._get_validator().evolve(schema=sub).is_valid(None))
            except Unresolvable:
                hit = True  # keep the null: validation reports the broken reference
            self._null_ok[name] = hit
        return not hit

    def drop_unset(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """``args`` without the optional parameters given as ``null`` (see :meth:`is_unset`)."""
        if not any(v is None for v in args.values()):
            return dict(args)
        return {k: v for k, v in args.items() if not self.is_unset(k, v)}

    def field_errors(self, args: Mapping[str, Any]) -> list[FieldError]:
        """Every bad field in ``args`` (empty when they fit the input schema); optional
        parameters given as ``null`` count as not given (:meth:`drop_unset`)."""
        validator = self._get_validator()
        errors: list[FieldError] = []
        args = self.drop_unset(args)
        back = self.source_names
        to_plan = {source: plan for plan, source in back.items()}
        if back:
            props = self.input_schema.get("properties", {})
            args = {back.get(k, k) if k in props else k: v for k, v in args.items()}

        def plan_path(err: ValidationError) -> str:
            # Errors speak of the source names; report the names the plan wrote.
            items = list(err.absolute_path)
            if items and isinstance(items[0], str):
                items[0] = to_plan.get(items[0], items[0])
            return json_path(items)

        try:
            found = sorted(validator.iter_errors(args), key=lambda e: list(map(str, e.path)))
        except Unresolvable as exc:
            raise ToolDefinitionError(
                f"tool {self.name!r}: its input schema has a reference that does not resolve "
                f"({safe_str(exc, 200)}); put the referenced schema under the root's '$defs'"
            ) from None
        for err in found:
            path = plan_path(err)
            if err.validator in ("required", "dependentRequired", "dependencies"):
                missing = err.message.split(" is a")[0].strip("'\"")
                if not path:
                    missing = to_plan.get(missing, missing)
                errors.append(
                    FieldError(
                        path=f"{path}.{missing}" if path else missing,
                        expected="a value",
                        got="nothing",
                    )
                )
                continue
            if err.validator == "additionalProperties":
                extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
                for key in extra:
                    errors.append(
                        FieldError(
                            path=f"{path}.{key}" if path else to_plan.get(key, key),
                            expected="no such property",
                            got=describe_value(err.instance[key]),
                        )
                    )
                continue
            expected = _expected(err)
            alts: Any = err.validator_value
            if (
                err.validator in ("anyOf", "oneOf")
                and isinstance(alts, list)
                and all(isinstance(a, Mapping) and isinstance(a.get("required"), list) for a in alts)
            ):  # `anyOf: [{"required": ["a"]}, {"required": ["b"]}]`: which parameters to give
                names = [
                    " and ".join(to_plan.get(n, n) if not path else n for n in a["required"]) for a in alts
                ]
                expected = f"{'one' if err.validator == 'oneOf' else 'at least one'} of: " + "; ".join(names)
            errors.append(FieldError(path=path, expected=expected, got=describe_value(err.instance)))
        return errors

    def validate(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """Check ``args`` against the input schema and return them as a dict.

        Optional parameters given as ``null`` are left out of the result, so the tool gets its
        default (:meth:`drop_unset`).

        Raises:
            ToolArgumentError: listing every bad field (path, expected, got).
        """
        args = self.drop_unset(args)
        errors = self.field_errors(args)
        if errors:
            raise ToolArgumentError(self.name, errors)
        return args

    def call(self, args: Mapping[str, Any]) -> Any:
        """Call the function with validated JSON arguments, converted by :attr:`convert`.

        Returns what the function returns: an awaitable when it is async.

        Raises:
            ToolDefinitionError: the tool has no callable (a schema-only tool).
        """
        if self.fn is None:
            raise ToolDefinitionError(
                f"tool {self.name!r} has no function to call; pass one in "
                "Toolset.from_schemas(..., functions={name: fn})"
            )
        kwargs = self.convert(dict(args)) if self.convert is not None else dict(args)
        return self.fn(**kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function directly, as if it had not been decorated."""
        if self.fn is None:
            raise ToolDefinitionError(f"tool {self.name!r} has no function to call")
        return self.fn(*args, **kwargs)

    def signature(self) -> str:
        """A one-line signature for prompts: ``search(query: string, limit?: integer)``."""
        props = self.input_schema.get("properties", {})
        req = set(self.required)
        parts = []
        for name, schema in props.items():
            opt = "" if name in req else "?"
            parts.append(f"{name}{opt}: {_type_text(schema)}")
        return f"{self.name}({', '.join(parts)})"

    def __repr__(self) -> str:
        return f"Tool({self.signature()})"

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        # A module-level function decorated with @tool is shadowed by its Tool, so plain pickle
        # cannot find it by name; send it as a reference that the receiving side resolves.
        state = {f.name: getattr(self, f.name) for f in fields(self)}
        state["fn"] = function_ref(self.fn)
        return (_rebuild_tool, (state,))


def _rebuild_tool(state: dict[str, Any]) -> Tool:
    return Tool(**state)


class _FunctionRef:
    """Pickles as ``module:qualname`` and unpickles as the function behind the Tool found there."""

    __slots__ = ("module", "qualname")

    def __init__(self, module: str, qualname: str) -> None:
        self.module = module
        self.qualname = qualname

    def __reduce__(self) -> tuple[Any, ...]:
        return (_resolve_function, (self.module, self.qualname))


def _lookup(module: str, qualname: str) -> Any:
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _resolve_function(module: str, qualname: str) -> Any:
    obj = _lookup(module, qualname)
    return obj.fn if isinstance(obj, Tool) else obj


def function_ref(fn: Any, *, main: bool = False) -> Any:
    """``fn``, or a picklable reference to it when a :class:`Tool` shadows it in its module.

    A function of ``__main__`` is referenced only with ``main=True``: for workers that load the
    parent's main script as their ``__main__`` (anyio's and multiprocessing's process workers);
    elsewhere (Ray) another process has another ``__main__``, and cloudpickle copies the function.
    """
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or "<locals>" in qualname:
        return fn
    if module == "__main__" and not main:
        return fn
    try:
        found = _lookup(module, qualname)
    except (ImportError, AttributeError):
        return fn
    if isinstance(found, Tool) and found.fn is fn:
        return _FunctionRef(module, qualname)
    return fn


def _type_text(schema: Any) -> str:
    if not isinstance(schema, dict):
        return "any"
    if "enum" in schema:
        return " | ".join(repr(v) for v in schema["enum"])
    if "const" in schema:
        return repr(schema["const"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " | ".join(_type_text(s) for s in schema[key])
    t = schema.get("type")
    if t == "array":
        return f"array[{_type_text(schema.get('items', {}))}]"
    if isinstance(t, list):
        return " | ".join(str(x) for x in t)
    return str(t) if t else "any"


class NotJSONError(ValueError):
    """A tool's result that :func:`to_json_value` refuses; ``path`` says where inside it."""

    def __init__(self, path: str, why: str) -> None:
        self.path = path
        self.why = why
        where = f" at {path}" if path else ""
        super().__init__(f"the result is not a JSON value{where}: {why}")


class _Refused(Exception):
    """Raised inside the conversion; each level adds its key or index on the way out, so the
    path is built only for a value that is refused (building it per item costs microseconds)."""

    def __init__(self, why: str) -> None:
        self.why = why
        self.steps: list[str | int] = []  # innermost first

    def path(self) -> str:
        text = ""
        for step in reversed(self.steps):
            if isinstance(step, int):
                text += f"[{step}]"
            else:
                text += f".{step}" if text else step
        return text


def to_json_value(value: Any) -> Any:
    """``value`` as a JSON value, by the rule in :class:`Tool`'s docstring.

    Returns ``value`` itself when it already is one (nothing is copied). Raises
    :class:`NotJSONError` (a ``ValueError``) naming where inside the value the first part that
    cannot be converted is.

    >>> to_json_value({"a": (1, 2), "b": {3, 1}})
    {'a': [1, 2], 'b': [1, 3]}
    """
    t = type(value)
    if t is str or t is int or t is bool or value is None:
        return value
    if (t is dict or t is list) and _plain(value, [_PLAIN_BUDGET]):
        return value
    try:
        return _to_json(value, set(), 0)
    except _Refused as exc:
        raise NotJSONError(exc.path(), exc.why) from None


#: The fast check looks at this many lists and dicts at most, then leaves the value to the full
#: conversion (a value that contains itself would otherwise be walked until the depth bound,
#: along every path).
_PLAIN_BUDGET = 5000


def _plain(value: list[Any] | dict[Any, Any], budget: list[int], depth: int = 0) -> bool:
    """Whether ``value`` is a JSON value of plain types only (``str``, ``int``, ``bool``,
    ``None``, finite ``float``, ``list``, ``dict`` with ``str`` keys), so it needs no copy: the
    common case, checked without tracking a path or a stack."""
    budget[0] -= 1
    if budget[0] < 0 or depth >= MAX_RESULT_DEPTH:
        return False
    isfinite = math.isfinite
    if type(value) is dict:
        for k, item in value.items():
            if type(k) is not str:
                return False
            t = type(item)
            if t is str or t is int or t is bool or item is None:
                continue
            if t is float:
                if not isfinite(item):
                    return False
            elif not ((t is dict or t is list) and _plain(item, budget, depth + 1)):
                return False
        return True
    for item in value:
        t = type(item)
        if t is str or t is int or t is bool or item is None:
            continue
        if t is float:
            if not isfinite(item):
                return False
        elif not ((t is dict or t is list) and _plain(item, budget, depth + 1)):
            return False
    return True


def _to_json(value: Any, stack: set[int], depth: int) -> Any:
    t = type(value)
    if t is str or t is int or t is bool or value is None:
        return value
    if t is float:
        if math.isfinite(value):
            return value
        raise _Refused(f"{value!r} is not a JSON number; return null or a string instead")
    if t is dict or t is list or t is tuple:
        return _container(value, t, stack, depth)
    if isinstance(value, enum.Enum):
        return _to_json(value.value, stack, depth + 1)
    for base in (bool, int, float, str):  # subclasses of the JSON scalars
        if isinstance(value, base):
            return _to_json(base(value), stack, depth)
    if isinstance(value, Mapping | list | tuple | set | frozenset | deque):
        return _container(value, t, stack, depth)
    if isinstance(value, bytes | bytearray | memoryview):
        raise _Refused(f"{t.__name__} is not a JSON value; decode it to text, or base64-encode it")
    if isinstance(value, type):
        raise _Refused(_NOT_JSON.format(name=t.__name__))
    dump = getattr(value, "model_dump", None)
    if callable(dump):  # a pydantic model
        try:
            dumped = dump(mode="json")
        except Exception as exc:
            raise _Refused(f"{t.__name__}.model_dump() failed: {safe_str(exc, 200)}") from None
        return _to_json(dumped, stack, depth + 1)
    if dataclasses.is_dataclass(value):
        key = id(value)
        if key in stack:
            raise _Refused(_CYCLE)
        stack.add(key)
        try:
            fields_ = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
            return _to_json_dict(fields_, stack, depth + 1)
        finally:
            stack.discard(key)
    for method in ("tolist", "item"):  # numpy arrays and scalars, array.array, tensors
        convert = getattr(value, method, None)
        if callable(convert):
            try:
                plain = convert()
            except Exception as exc:
                raise _Refused(f"{t.__name__}.{method}() failed: {safe_str(exc, 200)}") from None
            if type(plain) is t:  # would convert forever
                break
            return _to_json(plain, stack, depth + 1)
    raise _Refused(_NOT_JSON.format(name=t.__name__))


_CYCLE = "the value contains itself (a cycle); return a copy without the cycle"
_NOT_JSON = (
    "a {name} is not a JSON value; return strings, numbers, booleans, null, lists, "
    "dicts, dataclasses or pydantic models"
)


def _container(value: Any, t: type, stack: set[int], depth: int) -> Any:
    if depth >= MAX_RESULT_DEPTH:
        raise _Refused(f"it nests deeper than {MAX_RESULT_DEPTH} levels")
    key = id(value)
    if key in stack:
        raise _Refused(_CYCLE)
    stack.add(key)
    try:
        if t is list:
            return _to_json_list(value, stack, depth, False)
        if t is dict:
            return _to_json_dict(value, stack, depth)
        if isinstance(value, set | frozenset):
            items = _to_json_list(value, stack, depth, True)
            try:
                return sorted(items)
            except TypeError:  # mixed kinds: ordered by their JSON text
                return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
        if isinstance(value, Mapping):
            return _to_json_dict(value, stack, depth)
        return _to_json_list(value, stack, depth, True)  # tuples, namedtuples, list subclasses, deques
    finally:
        stack.discard(key)


def _to_json_list(value: Any, stack: set[int], depth: int, copy: bool) -> list[Any]:
    """The items as a JSON array: ``value`` itself (a list) when every item already is one,
    else a new list (always one when ``copy``)."""
    out: list[Any] | None = list(value) if copy else None
    depth += 1
    isfinite = math.isfinite
    for i, item in enumerate(value if out is None else out):
        t = type(item)
        if t is str or t is int or t is bool or item is None or (t is float and isfinite(item)):
            continue  # the common case, without a call
        try:
            new = _to_json(item, stack, depth)
        except _Refused as exc:
            exc.steps.append(i)
            raise
        if new is not item:
            if out is None:
                out = list(value)
            out[i] = new
    return value if out is None else out


def _to_json_dict(value: Any, stack: set[int], depth: int) -> dict[str, Any]:
    """The items as a JSON object: ``value`` itself (a dict) when every key is a string and
    every value already is one, else a new dict."""
    out: dict[str, Any] | None = None if type(value) is dict else {}
    depth += 1
    isfinite = math.isfinite
    for k, item in value.items():
        name = k if type(k) is str else _json_key(k)
        t = type(item)
        if t is str or t is int or t is bool or item is None or (t is float and isfinite(item)):
            new = item  # the common case, without a call
        else:
            try:
                new = _to_json(item, stack, depth)
            except _Refused as exc:
                exc.steps.append(name)
                raise
        if out is None and (new is not item or name is not k):
            out = {}
            for k2, v2 in value.items():  # the keys before this one were fine as they are
                if k2 is k:
                    break
                out[k2] = v2
        if out is not None:
            if name in out:
                raise _Refused(_collision(value, name))
            out[name] = new
    return value if out is None else out


def _json_key(k: Any) -> str:
    """A key that is not a ``str`` as a JSON object key, as ``json.dumps`` writes it."""
    if isinstance(k, enum.Enum):
        k = k.value
    if isinstance(k, str):
        return str.__str__(k)  # the text itself, for a str subclass too
    if isinstance(k, bool) or k is None:
        return json.dumps(k)
    if isinstance(k, int):
        return int.__repr__(int(k))
    if isinstance(k, float):
        if not math.isfinite(k):
            raise _Refused(f"the object key {k!r} is not a JSON number")
        return float.__repr__(float(k))
    raise _Refused(f"an object key must be a string, got a {type(k).__name__} key; use string keys")


def _collision(value: Any, name: str) -> str:
    """Why two keys of ``value`` cannot both be kept: they become the same JSON key."""
    same = [k for k in value if (k if type(k) is str else _json_key(k)) == name]
    shown = " and ".join(repr(k) for k in same[:2])
    return (
        f"the keys {shown} both become the JSON key {name!r}, so one would be lost; "
        "give them distinct string keys"
    )
