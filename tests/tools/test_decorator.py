"""@tool: schemas from type hints and docstrings, options, conversion, and bad definitions."""

from __future__ import annotations

import enum
import functools
import inspect
import json
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any, Literal, NamedTuple

import anyio
import jsonschema
import pytest
from pydantic import BaseModel, Field

from tomasulo.exceptions import ConfigError, ToolArgumentError, ToolDefinitionError
from tomasulo.tools import Tool, ToolPolicy, tool


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Point(BaseModel):
    """A point on the plane."""

    x: float
    y: float = 0.0


class Box(BaseModel):
    corner: Point
    size: Point


class Tree(BaseModel):
    label: str
    children: list[Tree] = []


def props(t: Tool) -> dict[str, Any]:
    return t.input_schema["properties"]  # type: ignore[no-any-return]


# -- bare and with options ----------------------------------------------------------------------


def test_bare_decorator_on_sync_function() -> None:
    @tool
    def add(a: int, b: int = 1) -> int:
        """Add two numbers."""
        return a + b

    assert isinstance(add, Tool)
    assert add.name == "add"
    assert add.description == "Add two numbers."
    assert add.input_schema == {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer", "default": 1}},
        "required": ["a"],
        "additionalProperties": False,
    }
    assert add.output_schema == {"type": "integer"}
    assert add.policy == ToolPolicy()
    assert not add.is_async
    assert add(2, 3) == 5  # still callable like the function
    assert add.call({"a": 2}) == 3


def test_options_set_name_description_and_policy() -> None:
    @tool(
        name="math.add",
        description="Sum.",
        timeout=2.5,
        retries=3,
        max_concurrency=4,
        sequential=True,
        idempotent=True,
    )
    def add(a: int, b: int) -> int:
        """Ignored because a description is given."""
        return a + b

    assert add.name == "math.add"
    assert add.description == "Sum."
    assert add.policy == ToolPolicy(
        timeout=2.5, retries=3, max_concurrency=4, sequential=True, idempotent=True
    )


def test_called_as_a_function_with_options() -> None:
    def get_weather(city: str) -> str:
        return city

    t = tool(get_weather, name="get-weather")
    assert t.name == "get-weather"
    assert t.fn is get_weather


@pytest.mark.anyio
async def test_async_function() -> None:
    @tool(timeout=1)
    async def fetch(url: str, retries: int = 2) -> dict[str, int]:
        """Fetch a page."""
        await anyio.lowlevel.checkpoint()
        return {url: retries}

    assert fetch.is_async
    assert fetch.output_schema == {"type": "object", "additionalProperties": {"type": "integer"}}
    with anyio.fail_after(5):
        result = fetch.call({"url": "u"})
        assert inspect.isawaitable(result)
        assert await result == {"u": 2}


def test_callable_object_and_partial() -> None:
    class Multiplier:
        """Multiply by a factor."""

        def __init__(self, factor: int) -> None:
            self.factor = factor

        def __call__(self, x: int) -> int:
            return x * self.factor

    t = tool(Multiplier(3))
    assert t.name == "Multiplier"
    assert t.description == "Multiply by a factor."
    assert t.param_names == ("x",)
    assert t.call({"x": 2}) == 6

    def power(base: int, exp: int) -> int:
        """Raise base to exp.

        Args:
            base: the base.
            exp: the exponent.
        """
        return int(base**exp)

    sq = tool(functools.partial(power, exp=2), name="square")
    assert sq.description == "Raise base to exp."
    assert props(sq)["base"] == {"type": "integer", "description": "the base."}
    assert sq.call({"base": 5}) == 25


# -- type hints ---------------------------------------------------------------------------------


def test_every_kind_of_hint() -> None:
    @tool
    def f(  # type: ignore[no-untyped-def]
        text: str,
        n: int,
        ratio: float,
        flag: bool,
        color: Color,
        mode: Literal["fast", "slow"],
        maybe: int | None,
        tags: list[str],
        counts: dict[str, int],
        pair: tuple[int, str],
        point: Point,
        anything: Any,
        unannotated,
        limit: Annotated[int, Field(ge=1, le=10, description="at most this many")] = 5,
    ) -> None:
        pass

    assert props(f) == {
        "text": {"type": "string"},
        "n": {"type": "integer"},
        "ratio": {"type": "number"},
        "flag": {"type": "boolean"},
        "color": {"type": "string", "enum": ["red", "green"]},
        "mode": {"type": "string", "enum": ["fast", "slow"]},
        "maybe": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        "tags": {"type": "array", "items": {"type": "string"}},
        "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
        "pair": {
            "type": "array",
            "maxItems": 2,
            "minItems": 2,
            "prefixItems": [{"type": "integer"}, {"type": "string"}],
        },
        "point": {
            "type": "object",
            "properties": {"x": {"type": "number"}, "y": {"type": "number", "default": 0.0}},
            "required": ["x"],
            "description": "A point on the plane.",
        },
        "anything": {},
        "unannotated": {},
        "limit": {
            "type": "integer",
            "default": 5,
            "description": "at most this many",
            "maximum": 10,
            "minimum": 1,
        },
    }
    # properties in parameter order: positional arguments in plans bind in this order
    assert f.param_names[:3] == ("text", "n", "ratio")
    assert f.required == f.param_names[:-1]
    assert f.output_schema == {"type": "null"}
    jsonschema.Draft202012Validator.check_schema(f.input_schema)


def test_nested_models_are_inlined_without_defs_or_titles() -> None:
    @tool
    def draw(box: Box, shapes: list[Point] | None = None) -> Box:
        return box

    text = repr(draw.input_schema)
    assert "$ref" not in text and "$defs" not in text and "title" not in text
    point = {
        "type": "object",
        "properties": {"x": {"type": "number"}, "y": {"type": "number", "default": 0.0}},
        "required": ["x"],
        "description": "A point on the plane.",
    }
    assert props(draw)["box"] == {
        "type": "object",
        "properties": {"corner": point, "size": point},
        "required": ["corner", "size"],
    }
    assert props(draw)["shapes"] == {
        "anyOf": [{"type": "array", "items": point}, {"type": "null"}],
        "default": None,
    }
    assert draw.output_schema is not None and "$ref" not in repr(draw.output_schema)


def test_recursive_model_is_rejected_clearly() -> None:
    with pytest.raises(ToolDefinitionError, match=r"tool 'walk'.*recursive"):

        @tool
        def walk(tree: Tree) -> int:
            return 0


def test_parameter_named_like_pydantic_internals() -> None:
    @tool
    def f(json: str, model_config: int, schema: bool) -> None:
        pass

    assert f.param_names == ("json", "model_config", "schema")
    assert f.convert is not None
    assert f.convert({"json": "a", "model_config": 1, "schema": True}) == {
        "json": "a",
        "model_config": 1,
        "schema": True,
    }


def test_string_annotations_are_resolved() -> None:
    # this module uses `from __future__ import annotations`, so every hint here is a string
    @tool
    def f(p: Point, c: Color) -> Color:
        return c

    assert props(f)["c"] == {"type": "string", "enum": ["red", "green"]}
    assert f.output_schema == {"type": "string", "enum": ["red", "green"]}


def test_no_return_annotation_means_no_output_schema() -> None:
    @tool
    def f(x: int):  # type: ignore[no-untyped-def]
        return x

    @tool
    def g(x: int) -> Any:
        return x

    class Opaque:
        pass

    @tool
    def h(x: int) -> Opaque:
        return Opaque()

    assert f.output_schema is None
    assert g.output_schema is None
    assert h.output_schema is None  # not describable as JSON: known only at run time


# -- convert ------------------------------------------------------------------------------------


def test_convert_builds_models_enums_and_defaults() -> None:
    seen: dict[str, Any] = {}

    @tool
    def f(
        p: Point,
        c: Color,
        pair: tuple[int, int],
        maybe: Color | None = None,
        limit: int = Field(7, description="how many"),
    ) -> None:
        seen.update(p=p, c=c, pair=pair, maybe=maybe, limit=limit)

    args = f.validate({"p": {"x": 1.5}, "c": "green", "pair": [1, 2]})
    f.call(args)
    assert seen == {
        "p": Point(x=1.5, y=0.0),
        "c": Color.GREEN,
        "pair": (1, 2),
        "maybe": None,
        "limit": 7,  # a Field(...) default is filled in, not passed as a FieldInfo
    }
    assert props(f)["limit"] == {"type": "integer", "default": 7, "description": "how many"}


def test_convert_reports_every_bad_field() -> None:
    @tool
    def f(p: Point, c: Color) -> None:
        pass

    assert f.convert is not None
    with pytest.raises(ToolArgumentError) as info:
        f.convert({"p": {"x": "far"}, "c": "blue"})
    paths = [e.path for e in info.value.errors]
    assert paths == ["p.x", "c"]
    assert info.value.errors[1].got == "string 'blue'"


# -- docstrings ---------------------------------------------------------------------------------


def google(query: str, limit: int = 3) -> list[str]:
    """Search the web.

    Returns the best pages first.

    Args:
        query: what to look for,
            over two lines.
        limit: how many results.

    Returns:
        The page titles.
    """
    return []


def numpy(query: str, limit: int = 3) -> list[str]:
    """Search the web.

    Returns the best pages first.

    Parameters
    ----------
    query : str
        what to look for,
        over two lines.
    limit : int, optional
        how many results.

    Returns
    -------
    list of str
        The page titles.
    """
    return []


def sphinx(query: str, limit: int = 3) -> list[str]:
    """Search the web.

    Returns the best pages first.

    :param query: what to look for,
        over two lines.
    :param limit: how many results.
    :returns: The page titles.
    """
    return []


@pytest.mark.parametrize("fn", [google, numpy, sphinx], ids=["google", "numpy", "sphinx"])
def test_docstring_styles(fn: Any) -> None:
    t = tool(fn)
    assert t.description == "Search the web.\n\nReturns the best pages first."
    assert props(t) == {
        "query": {"type": "string", "description": "what to look for, over two lines."},
        "limit": {"type": "integer", "default": 3, "description": "how many results."},
    }
    assert t.output_schema == {
        "type": "array",
        "items": {"type": "string"},
        "description": "The page titles.",
    }


def test_field_description_wins_over_docstring() -> None:
    @tool
    def f(a: Annotated[int, Field(description="from Field")], b: int) -> None:
        """Do it.

        Args:
            a: from the docstring.
            b: from the docstring too.
        """

    assert props(f)["a"]["description"] == "from Field"
    assert props(f)["b"]["description"] == "from the docstring too."


def test_no_docstring_means_empty_description() -> None:
    @tool
    def f(a: int) -> None:
        pass

    assert f.description == ""
    assert "description" not in props(f)["a"]


# -- bad definitions ----------------------------------------------------------------------------


def test_var_positional_is_rejected() -> None:
    def f(*items: int) -> int:
        return 0

    with pytest.raises(ToolDefinitionError, match=r"\*items.*take a list instead"):
        tool(f)


def test_var_keyword_is_rejected() -> None:
    def f(a: int, **extra: Any) -> int:
        return 0

    with pytest.raises(ToolDefinitionError, match=r"\*\*extra.*declare each argument"):
        tool(f)


def test_positional_only_is_rejected() -> None:
    def f(a: int, /, b: int) -> int:
        return 0

    with pytest.raises(ToolDefinitionError, match=r"parameter 'a'.*positional-only.*remove the '/'"):
        tool(f)


def test_generators_are_rejected() -> None:
    async def agen(n: int) -> AsyncIterator[int]:
        yield n

    def gen(n: int) -> Iterator[int]:
        yield n

    with pytest.raises(ToolDefinitionError, match=r"async generator.*return a list"):
        tool(agen)
    with pytest.raises(ToolDefinitionError, match=r"is a generator.*return a list"):
        tool(gen)


def test_unusable_parameter_type_is_named() -> None:
    class Opaque:
        pass

    def f(ok: int, thing: Opaque) -> None:
        pass

    with pytest.raises(ToolDefinitionError, match=r"tool 'f', parameter 'thing'"):
        tool(f)


def test_unresolvable_hint_is_reported() -> None:
    def f(x: NotDefinedAnywhere) -> None:  # type: ignore[name-defined]  # noqa: F821
        pass

    with pytest.raises(ToolDefinitionError, match="cannot resolve the type hints of tool 'f'"):
        tool(f)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("join", "reserved"),
        ("two words", "cannot be written in a plan"),
        ("1st", "cannot be written in a plan"),
        ("", "non-empty string"),
    ],
)
def test_bad_names_are_rejected(name: str, message: str) -> None:
    def f() -> None:
        pass

    with pytest.raises(ToolDefinitionError, match=message):
        tool(f, name=name)


def test_lambda_class_and_double_decoration_are_rejected() -> None:
    with pytest.raises(ToolDefinitionError, match="lambda has no name"):
        tool(lambda x: x)
    with pytest.raises(ToolDefinitionError, match="not the class"):
        tool(Point)
    with pytest.raises(ToolDefinitionError, match="already a Tool"):
        tool(tool(google))
    with pytest.raises(ToolDefinitionError, match="takes a function"):
        tool(42)  # type: ignore[call-overload]


@pytest.mark.parametrize(
    "options",
    [{"timeout": 0}, {"timeout": float("inf")}, {"retries": -1}, {"max_concurrency": 0}],
)
def test_bad_policy_options(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        tool(**options)


def test_schema_only_tool_cannot_be_called() -> None:
    t = Tool(name="remote")
    with pytest.raises(ToolDefinitionError, match="no function to call"):
        t.call({})


def test_methods_need_binding() -> None:
    class Store:
        def __init__(self) -> None:
            self.items: dict[str, int] = {"a": 1}

        def lookup(self, key: str) -> int:
            """Look a key up."""
            return self.items[key]

    with pytest.raises(ToolDefinitionError, match=r"is a method.*tool\(instance.method\)"):
        tool(Store.lookup)
    bound = tool(Store().lookup)
    assert bound.name == "lookup"
    assert bound.param_names == ("key",)
    assert bound.description == "Look a key up."
    assert bound.call({"key": "a"}) == 1


# -- results as JSON values (to_json_value, the rule in Tool's docstring) -------------------------


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Pair(NamedTuple):
    a: int
    b: tuple[int, int]


class Items(list):  # type: ignore[type-arg]
    """A list subclass, as some client libraries return."""


class Record(dict):  # type: ignore[type-arg]
    """A dict subclass, as some client libraries return."""


def test_results_json_dumps_accepts_become_plain_json_values() -> None:
    import collections

    import numpy as np

    from tomasulo.tools._tool import to_json_value

    value = {
        "pair": Pair(1, (2, 3)),
        "items": Items([1, (2,)]),
        "record": Record(a=Level.HIGH),
        "levels": {Level.LOW: "low"},
        "queue": collections.deque([1, 2]),
        "array": np.arange(3),
        "matrix": np.array([[1.5, 2.0]]),
        "scalars": [np.int64(7), np.float32(0.5), np.bool_(True)],
    }
    out = to_json_value(value)
    assert out == {
        "pair": [1, [2, 3]],
        "items": [1, [2]],
        "record": {"a": 2},
        "levels": {"1": "low"},
        "queue": [1, 2],
        "array": [0, 1, 2],
        "matrix": [[1.5, 2.0]],
        "scalars": [7, 0.5, True],
    }
    assert json.loads(json.dumps(out)) == out
    assert type(out["items"]) is list and type(out["record"]) is dict  # plain JSON containers


def test_a_plain_json_result_is_returned_as_it_is() -> None:
    from tomasulo.tools._tool import to_json_value

    value = {"title": "x", "score": 0.5, "tags": ["a", "b"], "n": None, "ok": True}
    assert to_json_value(value) is value
    assert to_json_value(value)["tags"] is value["tags"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({1: "a", "1": "b"}, "the keys 1 and '1' both become the JSON key '1'"),
        ({"x": {True: 1, "true": 2}}, "at x: the keys True and 'true' both become the JSON key 'true'"),
        ({"a": [1, {"b": float("nan")}]}, "at a[1].b: nan is not a JSON number"),
        ([0, [1, object()]], "at [1][1]: a object is not a JSON value"),
    ],
)
def test_a_result_that_is_not_a_json_value_is_refused_saying_where(value: Any, message: str) -> None:
    from tomasulo.tools._tool import NotJSONError, to_json_value

    with pytest.raises(NotJSONError) as info:
        to_json_value(value)
    assert message in str(info.value)


def test_a_result_that_contains_itself_along_many_paths_is_refused_at_once() -> None:
    from tomasulo.tools._tool import NotJSONError, to_json_value

    loop: list[Any] = []
    loop += [loop, loop]  # walked naively to the depth bound, 2**200 paths
    with pytest.raises(NotJSONError, match=r"at \[0\]: the value contains itself"):
        to_json_value(loop)
