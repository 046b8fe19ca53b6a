"""The ``@tool`` decorator: a typed Python function becomes a :class:`Tool`."""

from __future__ import annotations

import functools
import inspect
import sys
import typing
import warnings
from collections.abc import Callable
from typing import Annotated, Any, overload

import pydantic
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model
from pydantic.fields import FieldInfo
from pydantic.json_schema import PydanticJsonSchemaWarning

from ..exceptions import FieldError, SchemaError, ToolArgumentError, ToolDefinitionError
from ._context import is_run_context
from ._docstrings import DocInfo, read_docstring
from ._schemas import check_tool_name, normalize_parameters, normalize_schema
from ._tool import Tool, ToolPolicy, describe_value, function_ref, json_path

__all__ = ["tool"]

_SCHEMA_ERRORS = (pydantic.PydanticSchemaGenerationError, pydantic.PydanticInvalidForJsonSchema)


@overload
def tool(
    fn: Callable[..., Any],
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    retries: int = 0,
    max_concurrency: int | None = None,
    sequential: bool = False,
    idempotent: bool = False,
) -> Tool: ...


@overload
def tool(
    fn: None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    retries: int = 0,
    max_concurrency: int | None = None,
    sequential: bool = False,
    idempotent: bool = False,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    retries: int = 0,
    max_concurrency: int | None = None,
    sequential: bool = False,
    idempotent: bool = False,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Turn a function (sync or async) into a :class:`Tool`.

    The input schema comes from the parameters' type hints (anything pydantic understands:
    models, enums, ``Literal``, ``Optional``, lists, dicts, ``Annotated[..., Field(...)]``),
    with properties in parameter order, ``required`` for parameters without defaults and no
    additional properties. Descriptions come from the docstring (Google, NumPy or Sphinx
    style); a ``Field(description=...)`` wins over the docstring. The output schema comes from
    the return annotation, when there is one that pydantic can describe.

    The decorated tool can still be called like the function. Its :attr:`Tool.convert` turns
    validated JSON arguments into what the function takes (dicts into models, strings into
    enums), filling in defaults.

    >>> @tool
    ... def add(a: int, b: int = 1) -> int:
    ...     '''Add two numbers.'''
    ...     return a + b
    >>> add.signature()
    'add(a: integer, b?: integer)'
    >>> add(2, 3)
    5

    >>> @tool(name="math.sqrt", timeout=5, idempotent=True)
    ... async def sqrt(x: float) -> float:
    ...     return x**0.5

    Args:
        fn: the function; leave it out to get a decorator that takes the options.
        name: the tool's name (default: the function's name).
        description: what the tool does (default: the docstring without its sections).
        timeout: seconds one attempt may take.
        retries: extra attempts after a failure.
        max_concurrency: at most this many calls at once.
        sequential: run calls one at a time, in plan order.
        idempotent: any failure may be retried.

    Raises:
        ToolDefinitionError: for a function that cannot become a tool (``*args``, ``**kwargs``,
            positional-only parameters, a generator, a type pydantic cannot describe, a name the
            plan language cannot write).
        ConfigError: for a bad timeout, retry count or concurrency limit.
    """
    policy = ToolPolicy(
        timeout=timeout,
        retries=retries,
        max_concurrency=max_concurrency,
        sequential=sequential,
        idempotent=idempotent,
    )

    def decorate(f: Callable[..., Any]) -> Tool:
        return _build(f, name=name, description=description, policy=policy, localns=_caller_locals())

    if fn is None:
        return decorate
    return _build(fn, name=name, description=description, policy=policy, localns=_caller_locals())


def _caller_locals() -> dict[str, Any]:
    """The local names where the decorator was applied: string annotations (``from __future__
    import annotations``) may name classes defined in that function's body."""
    frame = sys._getframe(2)
    try:
        return dict(frame.f_locals)
    finally:
        del frame


def _source(fn: Any) -> Any:
    """The plain function whose hints and docstring describe ``fn``."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.isfunction(fn) or inspect.ismethod(fn):
        return fn
    call = getattr(type(fn), "__call__", None)  # noqa: B004 - callable objects
    return call if call is not None else fn


def _check_callable(fn: Any) -> None:
    if isinstance(fn, Tool):
        raise ToolDefinitionError(f"{fn.name!r} is already a Tool; apply @tool to the function only once")
    if inspect.isclass(fn):
        raise ToolDefinitionError(
            f"@tool takes a function, not the class {fn.__name__!r}; write a function that "
            "builds and returns it"
        )
    if not callable(fn):
        raise ToolDefinitionError(f"@tool takes a function, got {describe_value(fn)}")
    src = _source(fn)
    if inspect.isasyncgenfunction(src) or inspect.isasyncgenfunction(fn):
        raise ToolDefinitionError(
            f"{_label(fn)} is an async generator; a tool returns one result: collect the items "
            "and return a list (async def ... -> list[...])"
        )
    if inspect.isgeneratorfunction(src) or inspect.isgeneratorfunction(fn):
        raise ToolDefinitionError(
            f"{_label(fn)} is a generator; a tool returns one result: return a list instead"
        )


def _label(fn: Any) -> str:
    return repr(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or fn)


def _build(
    fn: Callable[..., Any],
    *,
    name: str | None,
    description: str | None,
    policy: ToolPolicy,
    localns: dict[str, Any],
) -> Tool:
    _check_callable(fn)
    src = _source(fn)
    if name is not None:
        tool_name: str | None = name
    elif src is not fn and getattr(src, "__name__", None) == "__call__":
        tool_name = type(fn).__name__  # a callable object: named after its class
    else:
        tool_name = getattr(src, "__name__", None)
    if tool_name == "<lambda>":
        raise ToolDefinitionError("a lambda has no name; give it one with tool(fn, name=...)")
    why = check_tool_name(tool_name)
    if why is not None:
        raise ToolDefinitionError(f"{why}; pass another with @tool(name=...)")
    assert isinstance(tool_name, str)

    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as err:
        raise ToolDefinitionError(
            f"cannot read the signature of {_label(fn)}: {err}; wrap it in a plain function"
        ) from None
    first = next(iter(sig.parameters), None)
    parts = getattr(fn, "__qualname__", "").split(".")
    if inspect.isfunction(fn) and first in ("self", "cls") and len(parts) > 1 and parts[-2] != "<locals>":
        raise ToolDefinitionError(
            f"{_label(fn)} is a method; a tool cannot be given {first!r}: decorate the bound method "
            "instead, tool(instance.method), or use a @staticmethod"
        )
    try:
        hints = typing.get_type_hints(src, localns=localns, include_extras=True)
    except Exception as err:  # NameError for an undefined forward reference, and worse
        raise ToolDefinitionError(
            f"cannot resolve the type hints of tool {tool_name!r}: {err}; define or import every "
            "type the signature names at module level"
        ) from None

    doc = read_docstring(src)
    if src is not fn and not inspect.isfunction(fn) and not inspect.getdoc(src):
        doc = read_docstring(type(fn))  # a callable object documented on its class
    model, aliases, annotations, context = _arguments_model(tool_name, sig, hints, doc)
    input_schema = _input_schema(tool_name, model, annotations)
    output_schema = _output_schema(tool_name, sig, hints, doc)

    return Tool(
        name=tool_name,
        description=description if description is not None else doc.description,
        input_schema=input_schema,
        output_schema=output_schema,
        policy=policy,
        fn=fn,
        convert=_Converter(tool_name, fn, model, aliases, context),
        context_param=context,
    )


class _Converter:
    """Validated JSON arguments -> the keyword arguments the function takes (defaults filled).

    The :class:`~tomasulo.tools.RunContext` the dispatcher adds under ``context`` (the name of
    the parameter that asks for it) is passed on as it is, outside validation.

    Pickles by reference to the function (the arguments model is rebuilt on unpickling), so a
    tool can travel to a worker process.
    """

    __slots__ = ("aliases", "context", "fn", "model", "tool_name")

    def __init__(
        self,
        tool_name: str,
        fn: Callable[..., Any],
        model: type[BaseModel],
        aliases: dict[str, str],
        context: str | None = None,
    ) -> None:
        self.tool_name = tool_name
        self.fn = fn
        self.model = model
        self.aliases = aliases
        self.context = context

    def __call__(self, args: dict[str, Any]) -> dict[str, Any]:
        context = self.context
        if context is not None and context in args:
            ctx = args[context]
            out = self._convert({k: v for k, v in args.items() if k != context})
            out[context] = ctx
            return out
        return self._convert(args)

    def _convert(self, args: dict[str, Any]) -> dict[str, Any]:
        try:
            validated = self.model.model_validate(args)
        except pydantic.ValidationError as err:
            raise ToolArgumentError(
                self.tool_name,
                [
                    FieldError(path=json_path(e["loc"]), expected=e["msg"], got=describe_value(e["input"]))
                    for e in err.errors()
                ],
            ) from None
        return {alias: getattr(validated, field) for field, alias in self.aliases.items()}

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_converter, (self.tool_name, function_ref(self.fn)))


def _rebuild_converter(tool_name: str, fn: Callable[..., Any]) -> _Converter:
    src = _source(fn)
    hints = typing.get_type_hints(src, include_extras=True)
    sig = inspect.signature(fn)
    model, aliases, _, context = _arguments_model(tool_name, sig, hints, read_docstring(src))
    return _Converter(tool_name, fn, model, aliases, context)


def _has_description(annotation: Any, default: Any) -> bool:
    if isinstance(default, FieldInfo) and default.description:
        return True
    if typing.get_origin(annotation) is Annotated:
        return any(isinstance(m, FieldInfo) and m.description for m in annotation.__metadata__)
    return False


def _arguments_model(
    tool_name: str, sig: inspect.Signature, hints: dict[str, Any], doc: DocInfo
) -> tuple[type[BaseModel], dict[str, str], dict[str, Any], str | None]:
    """A pydantic model of the arguments; fields ``p0, p1, ...`` aliased to the parameter names
    (so a parameter may be called ``json`` or ``model_config`` without clashing with pydantic).

    The parameter annotated :class:`~tomasulo.tools.RunContext` is left out (its name is
    returned last): the dispatcher fills it in, so it has no place in the schema."""
    fields: dict[str, Any] = {}
    aliases: dict[str, str] = {}
    annotations: dict[str, Any] = {}
    context: str | None = None
    for i, (pname, param) in enumerate(sig.parameters.items()):
        where = f"tool {tool_name!r}, parameter {pname!r}"
        if is_run_context(hints.get(pname)):
            if context is not None:
                raise ToolDefinitionError(
                    f"{where}: the tool already takes the RunContext as {context!r}; ask for it once"
                )
            if param.kind not in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY):
                raise ToolDefinitionError(
                    f"{where}: the RunContext is passed by keyword; make it an ordinary parameter "
                    f"({pname}: RunContext[...])"
                )
            context = pname
            continue
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            raise ToolDefinitionError(
                f"{where}: *{pname} cannot be planned, because every argument has a name; take "
                f"a list instead ({pname}: list[...])"
            )
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            raise ToolDefinitionError(
                f"{where}: **{pname} cannot be described by a schema; declare each argument as "
                f"a parameter, or take one dict ({pname}: dict[str, ...])"
            )
        if param.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise ToolDefinitionError(
                f"{where}: the parameter is positional-only, but tools are called with keyword "
                "arguments; remove the '/' from the signature"
            )
        annotation = hints.get(pname, Any)
        annotations[pname] = annotation
        default = param.default
        extra: dict[str, Any] = {"alias": pname}
        if pname in doc.params and not _has_description(annotation, default):
            extra["description"] = doc.params[pname]
        typed = Annotated[annotation, Field(**extra)]  # type: ignore[valid-type]
        if default is inspect.Parameter.empty:
            fields[f"p{i}"] = (typed, ...)
        else:
            fields[f"p{i}"] = (typed, default)
        aliases[f"p{i}"] = pname
    try:
        model = create_model("Arguments", __config__=ConfigDict(extra="forbid"), **fields)
    except (*_SCHEMA_ERRORS, pydantic.PydanticUserError, TypeError) as err:
        raise _blame(tool_name, annotations, err) from None
    return model, aliases, annotations, context


def _blame(tool_name: str, annotations: dict[str, Any], err: Exception) -> ToolDefinitionError:
    """An error naming the parameter whose type pydantic cannot describe as JSON."""
    for pname, annotation in annotations.items():
        try:
            adapter = TypeAdapter(annotation)
            _json_schema(adapter.json_schema)
        except Exception as sub:
            first = str(sub).splitlines()[0]
            return ToolDefinitionError(
                f"tool {tool_name!r}, parameter {pname!r}: the type cannot be described as JSON "
                f"({first}); use JSON types, enums, Literal or pydantic models"
            )
    first = str(err).splitlines()[0]
    return ToolDefinitionError(f"tool {tool_name!r}: the parameters cannot be described as JSON ({first})")


def _json_schema(generate: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    with warnings.catch_warnings():
        # a default that is not JSON (a sentinel object) is left out of the schema, quietly
        warnings.simplefilter("ignore", PydanticJsonSchemaWarning)
        return generate()


def _input_schema(tool_name: str, model: type[BaseModel], annotations: dict[str, Any]) -> dict[str, Any]:
    try:
        raw = _json_schema(lambda: model.model_json_schema(by_alias=True))
    except _SCHEMA_ERRORS as err:
        raise _blame(tool_name, annotations, err) from None
    try:
        return normalize_parameters(raw, tool=tool_name, strip_titles=True, check=False)
    except SchemaError as err:
        raise ToolDefinitionError(str(err)) from None


def _output_schema(
    tool_name: str, sig: inspect.Signature, hints: dict[str, Any], doc: DocInfo
) -> dict[str, Any] | None:
    if "return" not in hints or hints["return"] is Any:
        return None
    try:
        adapter = TypeAdapter(hints["return"])
        raw = _json_schema(lambda: adapter.json_schema(mode="serialization"))
        schema = normalize_schema(raw, tool=tool_name, strip_titles=True, check=False)
    except (*_SCHEMA_ERRORS, pydantic.PydanticUserError, SchemaError):
        return None  # the result is not JSON-describable: known only at run time
    if not isinstance(schema, dict):
        return None
    if doc.returns and "description" not in schema:
        schema["description"] = doc.returns
    return schema
