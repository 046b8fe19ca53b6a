"""Toolset: add, get, iterate, subset, merge; clashes; dotted and dashed names; public names."""

from __future__ import annotations

import pickle

import pytest

import tomasulo.tools
from tomasulo.exceptions import ToolsetError, UserError
from tomasulo.tools import Tool, Toolset, tool


@tool
def search(query: str) -> list[str]:
    """Search the web."""
    return [query]


@tool(name="math.factorial")
def factorial(n: int) -> int:
    """n!"""
    out = 1
    for k in range(2, n + 1):
        out *= k
    return out


@tool(name="get-weather")
def weather(city: str) -> str:
    return city


def test_add_get_iterate_in_order() -> None:
    ts = Toolset()
    assert ts.add(search) is search
    ts.add(factorial)
    ts.add(weather)
    assert len(ts) == 3
    assert ts.names == ("search", "math.factorial", "get-weather")
    assert list(ts) == [search, factorial, weather]
    assert ts["math.factorial"] is factorial
    assert ts.get("get-weather") is weather
    assert ts.get("nope") is None
    assert "search" in ts and "nope" not in ts
    assert repr(ts) == "Toolset([search, math.factorial, get-weather])"


def test_dotted_and_dashed_names_work_as_written() -> None:
    ts = Toolset([factorial, weather])
    assert ts["math.factorial"].call({"n": 5}) == 120
    assert ts["get-weather"].signature() == "get-weather(city: string)"


def test_missing_tool_lists_the_known_ones() -> None:
    ts = Toolset([search])
    with pytest.raises(ToolsetError, match=r"no tool named 'serch' \(known tools: search\)"):
        ts["serch"]
    with pytest.raises(KeyError):  # a ToolsetError is also a KeyError
        ts["serch"]


def test_name_clash_is_an_error() -> None:
    @tool(name="search")
    def other(q: str) -> str:
        return q

    ts = Toolset([search])
    with pytest.raises(ToolsetError, match="already in the toolset"):
        ts.add(other)
    with pytest.raises(ToolsetError, match="already in the toolset"):
        Toolset([search, other])
    with pytest.raises(ToolsetError, match="already in the toolset"):
        ts.merge([other])
    with pytest.raises(ToolsetError):
        ts | Toolset([other])
    assert ts.names == ("search",)  # a failed merge leaves the original alone


def test_subset_keeps_the_given_order() -> None:
    ts = Toolset([search, factorial, weather])
    sub = ts.subset(["get-weather", "search"])
    assert sub.names == ("get-weather", "search")
    assert ts.names == ("search", "math.factorial", "get-weather")
    with pytest.raises(ToolsetError, match="no tool named 'x'"):
        ts.subset(["x"])


def test_merge_makes_a_new_toolset() -> None:
    a = Toolset([search])
    b = Toolset([factorial])
    merged = a.merge(b, [weather])
    assert merged.names == ("search", "math.factorial", "get-weather")
    assert (a | b).names == ("search", "math.factorial")
    assert a.names == ("search",)


def test_only_tools_and_no_reserved_names() -> None:
    def plain(x: int) -> int:
        return x

    with pytest.raises(ToolsetError, match="decorate the function with @tool"):
        Toolset().add(plain)  # type: ignore[arg-type]
    with pytest.raises(ToolsetError, match="reserved"):
        Toolset([Tool(name="join")])
    assert issubclass(ToolsetError, UserError)


def test_fingerprint_tracks_schemas() -> None:
    a = Toolset([search, factorial])
    b = Toolset([search, factorial])
    assert a.fingerprint() == b.fingerprint()
    assert Toolset([factorial, search]).fingerprint() != a.fingerprint()

    @tool(name="search")
    def search2(query: str, limit: int = 3) -> list[str]:
        """Search the web."""
        return [query]

    assert Toolset([search2, factorial]).fingerprint() != a.fingerprint()


def test_public_names() -> None:
    assert sorted(tomasulo.tools.__all__) == [
        "DEFAULT_POLICY",
        "DEFAULT_RETRY",
        "HttpLimits",
        "JSON_TYPES",
        "MAX_MESSAGE_CHARS",
        "MAX_RESULT_DEPTH",
        "MCPAudio",
        "MCPImage",
        "MCPResource",
        "MCPResourceLink",
        "MCPTools",
        "NetPolicy",
        "NotJSONError",
        "OpenAPITools",
        "RetryPolicy",
        "RunContext",
        "StaticTools",
        "Tool",
        "ToolLoadError",
        "ToolPolicy",
        "ToolSource",
        "Toolset",
        "check_ip",
        "check_schema",
        "check_url",
        "collect",
        "function_ref",
        "guarded_client",
        "guarded_transport",
        "http_tool",
        "legal_name",
        "load_tools",
        "normalize_parameters",
        "normalize_schema",
        "prefixed",
        "schema_validator",
        "to_json_value",
        "tool",
        "tools_from_schemas",
    ]
    for name in tomasulo.tools.__all__:
        assert getattr(tomasulo.tools, name).__doc__, name


def test_decorated_module_level_tools_pickle() -> None:
    # process executors send tools to workers; @tool shadows the function in its module,
    # so pickling must not look the function up by name and find the Tool instead
    for t in (factorial, search):
        copy = pickle.loads(pickle.dumps(t))
        assert copy.fn is t.fn
        assert (copy.name, copy.input_schema, copy.policy) == (t.name, t.input_schema, t.policy)
    assert pickle.loads(pickle.dumps(factorial)).call({"n": 4}) == 24
    assert factorial.convert is not None
    assert pickle.loads(pickle.dumps(factorial.convert))({"n": 3}) == {"n": 3}


# -- a real-world schema, from the plan to the call ----------------------------------------------


def book_car(**kwargs: object) -> dict[str, object]:
    return {"got": kwargs}


REAL_WORLD = [
    {
        "type": "function",
        "function": {
            "name": "rent car",
            "parameters": {
                "type": "object",
                "properties": {
                    "first-name": {"type": "String"},
                    "año_vehiculo": {"type": "long", "default": None},
                    "$type": {"type": "string", "enum": ["suv", "van"]},
                    "extras": {"type": "List<String>"},
                },
                "required": ["first-name"],
            },
        },
    }
]


@pytest.mark.anyio
async def test_a_real_world_schema_runs_from_plan_text_to_the_call() -> None:
    import anyio

    from tomasulo.dispatcher import Dispatcher
    from tomasulo.grammar import build_grammar, parse_plan

    tools = Toolset.from_schemas(REAL_WORLD, functions={"rent car": book_car})
    t = tools["rent_car"]
    assert "first_name=" in build_grammar(tools).lark() and "año_vehiculo=" in build_grammar(tools).lark()
    plan = parse_plan(
        '1. rent_car("Ann", año_vehiculo=2020, _type="suv", extras=["gps"])\n'
        '2. rent_car(first_name="Bob", año_vehiculo=null, _type=null)\n3. join()\n',
        tools,
    )
    with anyio.fail_after(5):
        out = await Dispatcher.run_plan(tools, plan)
    assert [o.status for o in out.values()] == ["succeeded"] * 2, [o.error for o in out.values()]
    assert out[1].value == {
        "got": {"first-name": "Ann", "año_vehiculo": 2020, "$type": "suv", "extras": ["gps"]}
    }
    assert out[2].value == {"got": {"first-name": "Bob"}}, "null means not given; names map back"
    copy = pickle.loads(pickle.dumps(t))  # a process executor gets the way back too
    assert copy.param_names == t.param_names and copy.convert is not None
    assert copy.convert({"first_name": "C", "_type": "van"}) == {"first-name": "C", "$type": "van"}


def test_plan_names_are_the_keywords_the_parser_reads() -> None:
    from tomasulo.grammar import _parser
    from tomasulo.tools._tool import PLAN_NAME

    assert _parser._IDENT_EQ.pattern.startswith(f"({PLAN_NAME.pattern})")
