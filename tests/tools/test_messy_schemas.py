"""Raw tool schemas from the wild: each is normalized to an exact schema or rejected exactly."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from tomasulo.exceptions import SchemaError, ToolArgumentError
from tomasulo.tools import Tool, ToolPolicy, Toolset, normalize_schema, tools_from_schemas

NO_ARGS = {"type": "object", "properties": {}, "additionalProperties": False}


def obj(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    """The normalized top-level schema with these properties."""
    out: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        out["required"] = required
    out["additionalProperties"] = False
    return out


def bare(parameters: Any) -> dict[str, Any]:
    return {"name": "t", "description": "A tool.", "parameters": parameters}


# (id, raw schema, expected input schema)
NORMALIZED: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "openai-wrapped",
        {
            "type": "function",
            "function": {
                "name": "t",
                "description": "A tool.",
                "parameters": {
                    "type": "object",
                    "properties": {"q": {"type": "string"}},
                    "required": ["q"],
                },
            },
        },
        obj({"q": {"type": "string"}}, ["q"]),
    ),
    (
        "openai-bare",
        bare({"type": "object", "properties": {"q": {"type": "string"}}}),
        obj({"q": {"type": "string"}}),
    ),
    (
        "openai-responses-flat",
        {"type": "function", "name": "t", "parameters": {"properties": {"n": {"type": "integer"}}}},
        obj({"n": {"type": "integer"}}),
    ),
    (
        "anthropic",
        {
            "name": "t",
            "description": "A tool.",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
        obj({"city": {"type": "string"}}),
    ),
    (
        "mcp",
        {
            "name": "t",
            "inputSchema": {"type": "object", "properties": {"path": {"type": "string"}}},
            "outputSchema": {"type": "object", "properties": {"size": {"type": "int"}}},
        },
        obj({"path": {"type": "string"}}),
    ),
    (
        "legacy-dict-float-int",
        bare({"type": "dict", "properties": {"a": {"type": "float"}, "b": {"type": "int"}}}),
        obj({"a": {"type": "number"}, "b": {"type": "integer"}}),
    ),
    (
        "legacy-tuple-list",
        bare(
            {
                "properties": {
                    "xs": {"type": "tuple", "items": {"type": "str"}},
                    "ys": {"type": "list"},
                }
            }
        ),
        obj({"xs": {"type": "array", "items": {"type": "string"}}, "ys": {"type": "array"}}),
    ),
    (
        "legacy-any",
        bare({"properties": {"v": {"type": "any", "description": "Anything."}}}),
        obj({"v": {"description": "Anything."}}),
    ),
    (
        "capitalized-type-names",
        bare(
            {
                "type": "Object",
                "properties": {
                    "s": {"type": "String"},
                    "i": {"type": "Integer"},
                    "b": {"type": "BOOLEAN"},
                    "n": {"type": "Number"},
                },
            }
        ),
        obj(
            {
                "s": {"type": "string"},
                "i": {"type": "integer"},
                "b": {"type": "boolean"},
                "n": {"type": "number"},
            }
        ),
    ),
    (
        "legacy-bool-str-double-none",
        bare(
            {
                "properties": {
                    "f": {"type": "bool"},
                    "s": {"type": "str"},
                    "d": {"type": "double"},
                    "z": {"type": "None"},
                }
            }
        ),
        obj(
            {
                "f": {"type": "boolean"},
                "s": {"type": "string"},
                "d": {"type": "number"},
                "z": {"type": "null"},
            }
        ),
    ),
    (
        "missing-type-with-properties",
        bare({"properties": {"opts": {"properties": {"deep": {"type": "boolean"}}}}}),
        obj({"opts": {"type": "object", "properties": {"deep": {"type": "boolean"}}}}),
    ),
    (
        "missing-type-with-items",
        bare({"properties": {"ids": {"items": {"type": "integer"}}}}),
        obj({"ids": {"type": "array", "items": {"type": "integer"}}}),
    ),
    (
        "missing-type-unconstrained",
        bare({"properties": {"v": {"description": "Any value."}}}),
        obj({"v": {"description": "Any value."}}),
    ),
    (
        "required-names-absent-property",
        bare({"properties": {"city": {"type": "string"}}, "required": ["city", "country"]}),
        obj({"city": {"type": "string"}}, ["city"]),
    ),
    (
        "required-duplicates",
        bare({"properties": {"a": {"type": "string"}}, "required": ["a", "a"]}),
        obj({"a": {"type": "string"}}, ["a"]),
    ),
    (
        "nested-object-without-properties",
        bare({"properties": {"meta": {"type": "object", "description": "Free-form."}}}),
        obj({"meta": {"type": "object", "description": "Free-form."}}),
    ),
    (
        "enum-mixed-types-widens-type",
        bare({"properties": {"level": {"type": "string", "enum": ["low", 2, None]}}}),
        obj({"level": {"type": ["string", "integer", "null"], "enum": ["low", 2, None]}}),
    ),
    (
        "enum-numbers-fit-number",
        bare({"properties": {"k": {"type": "number", "enum": [1, 2.5]}}}),
        obj({"k": {"type": "number", "enum": [1, 2.5]}}),
    ),
    (
        "enum-duplicates-and-no-type",
        bare({"properties": {"k": {"enum": ["a", "b", "a", 1, True]}}}),
        obj({"k": {"enum": ["a", "b", 1, True]}}),
    ),
    (
        "openapi-nullable",
        bare({"properties": {"note": {"type": "string", "nullable": True, "description": "N."}}}),
        obj({"note": {"anyOf": [{"type": "string"}, {"type": "null"}], "description": "N."}}),
    ),
    (
        "openapi-nullable-false",
        bare({"properties": {"note": {"type": "string", "nullable": False}}}),
        obj({"note": {"type": "string"}}),
    ),
    (
        "type-list",
        bare({"properties": {"v": {"type": ["String", "null", "string"]}}}),
        obj({"v": {"type": ["string", "null"]}}),
    ),
    (
        "type-list-with-any",
        bare({"properties": {"v": {"type": ["string", "any"]}}}),
        obj({"v": {}}),
    ),
    ("missing-parameters", {"name": "t", "description": "No arguments."}, NO_ARGS),
    ("null-parameters", bare(None), NO_ARGS),
    ("empty-parameters", bare({}), NO_ARGS),
    (
        "local-ref-definitions",
        bare(
            {
                "type": "object",
                "properties": {"a": {"$ref": "#/definitions/Addr"}, "b": {"$ref": "#/definitions/Addr"}},
                "definitions": {"Addr": {"type": "dict", "properties": {"zip": {"type": "string"}}}},
            }
        ),
        obj(
            {
                "a": {"type": "object", "properties": {"zip": {"type": "string"}}},
                "b": {"type": "object", "properties": {"zip": {"type": "string"}}},
            }
        ),
    ),
    (
        "ref-with-sibling-description-and-nullable",
        bare(
            {
                "$defs": {"Mode": {"type": "string", "enum": ["a", "b"], "description": "Mode."}},
                "properties": {"m": {"$ref": "#/$defs/Mode", "description": "How.", "nullable": True}},
            }
        ),
        obj(
            {
                "m": {
                    "anyOf": [{"type": "string", "enum": ["a", "b"]}, {"type": "null"}],
                    "description": "How.",
                }
            }
        ),
    ),
    (
        "root-ref",
        bare(
            {
                "$ref": "#/definitions/Args",
                "definitions": {"Args": {"properties": {"x": {"type": "int"}}, "required": ["x"]}},
            }
        ),
        obj({"x": {"type": "integer"}}, ["x"]),
    ),
    (
        "draft3-required-true-in-property",
        bare(
            {
                "properties": {
                    "q": {"type": "string", "required": True},
                    "n": {"type": "integer", "required": False},
                }
            }
        ),
        obj({"q": {"type": "string"}, "n": {"type": "integer"}}, ["q"]),
    ),
    (
        "draft4-tuple-items",
        bare(
            {
                "properties": {
                    "pt": {
                        "type": "array",
                        "items": [{"type": "number"}, {"type": "number"}],
                        "additionalItems": False,
                    }
                }
            }
        ),
        obj({"pt": {"type": "array", "prefixItems": [{"type": "number"}] * 2, "items": False}}),
    ),
    (
        "draft4-exclusive-bounds",
        bare(
            {
                "properties": {
                    "p": {
                        "type": "number",
                        "minimum": 0,
                        "exclusiveMinimum": True,
                        "maximum": 1,
                        "exclusiveMaximum": False,
                    }
                }
            }
        ),
        obj({"p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1}}),
    ),
    (
        "schema-and-id-dropped-title-kept",
        bare(
            {
                "$schema": "http://json-schema.org/draft-04/schema#",
                "$id": "urn:x",
                "title": "Args",
                "properties": {"q": {"type": "string", "title": "Query"}},
            }
        ),
        {
            "type": "object",
            "properties": {"q": {"type": "string", "title": "Query"}},
            "title": "Args",
            "additionalProperties": False,
        },
    ),
    (
        "explicit-additional-properties-kept",
        bare({"type": "object", "properties": {}, "additionalProperties": {"type": "str"}}),
        {"type": "object", "properties": {}, "additionalProperties": {"type": "string"}},
    ),
    (
        "nested-anyof-and-items-normalized",
        bare(
            {"properties": {"v": {"anyOf": [{"type": "int"}, {"type": "list", "items": {"type": "float"}}]}}}
        ),
        obj({"v": {"anyOf": [{"type": "integer"}, {"type": "array", "items": {"type": "number"}}]}}),
    ),
    # Type names as Java, C#, TypeScript and Python write them (public function-calling sets)
    *[
        (f"type-{raw}", bare({"properties": {"v": {"type": raw}}}), obj({"v": {"type": want}}))
        for raw, want in [
            ("long", "integer"),
            ("int", "integer"),
            ("short", "integer"),
            ("byte", "integer"),
            ("char", "string"),
            ("double", "number"),
            ("float", "number"),
            ("Boolean", "boolean"),
            ("String", "string"),
            ("ArrayList", "array"),
            ("HashMap", "object"),
            ("Set", "array"),
            ("dict", "object"),
            ("tuple", "array"),
        ]
    ],
    (
        "type-empty",
        bare({"properties": {"v": {"type": "", "description": "d"}}}),
        obj({"v": {"description": "d"}}),
    ),
    ("type-any", bare({"properties": {"v": {"type": "any"}}}), obj({"v": {}})),
    (
        "type-java-list",
        bare({"properties": {"v": {"type": "List<String>"}, "w": {"type": "java.util.ArrayList<Integer>"}}}),
        obj(
            {
                "v": {"type": "array", "items": {"type": "string"}},
                "w": {"type": "array", "items": {"type": "integer"}},
            }
        ),
    ),
    (
        "type-java-map",
        bare(
            {
                "properties": {
                    "v": {"type": "Map<String, List<Double>>"},
                    "w": {"type": "HashMap<String,long>"},
                }
            }
        ),
        obj(
            {
                "v": {
                    "type": "object",
                    "additionalProperties": {"type": "array", "items": {"type": "number"}},
                },
                "w": {"type": "object", "additionalProperties": {"type": "integer"}},
            }
        ),
    ),
    (
        "type-python-generics",
        bare(
            {
                "properties": {
                    "a": {"type": "list[str]"},
                    "b": {"type": "Optional[int]"},
                    "c": {"type": "String[]"},
                }
            }
        ),
        obj(
            {
                "a": {"type": "array", "items": {"type": "string"}},
                "b": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
                "c": {"type": "array", "items": {"type": "string"}},
            }
        ),
    ),
    (
        "type-generic-explicit-items-win",
        bare({"properties": {"v": {"type": "List<String>", "items": {"type": "integer"}}}}),
        obj({"v": {"type": "array", "items": {"type": "integer"}}}),
    ),
]

# (id, raw schemas, functions, expected tool name in the error, expected field)
REJECTED: list[tuple[str, list[Any], dict[str, Any], str | None, str | None]] = [
    ("no-name", [{"parameters": {}}], {}, None, "/name"),
    ("wrapped-no-name", [{"type": "function", "function": {"parameters": {}}}], {}, None, "/function/name"),
    ("name-not-a-string", [{"name": 7}], {}, None, "/name"),
    ("reserved-join", [{"name": "join"}], {}, "join", "/name"),
    ("parameters-not-object-type", [bare({"type": "string"})], {}, "t", "/parameters/type"),
    ("parameters-a-list", [bare([{"name": "q"}])], {}, "t", "/parameters"),
    ("parameters-array-legacy", [bare({"type": "list", "items": {}})], {}, "t", "/parameters/type"),
    (
        "unknown-type-name",
        [bare({"properties": {"when": {"type": "datetime"}}})],
        {},
        "t",
        "/parameters/properties/when/type",
    ),
    (
        "unknown-type-in-list",
        [bare({"properties": {"v": {"type": ["string", "date"]}}})],
        {},
        "t",
        "/parameters/properties/v/type/1",
    ),
    (
        "type-not-a-string",
        [bare({"properties": {"v": {"type": 5}}})],
        {},
        "t",
        "/parameters/properties/v/type",
    ),
    (
        "empty-type-list",
        [bare({"properties": {"v": {"type": []}}})],
        {},
        "t",
        "/parameters/properties/v/type",
    ),
    (
        "required-a-string",
        [bare({"properties": {"q": {}}, "required": "q"})],
        {},
        "t",
        "/parameters/required",
    ),
    (
        "required-item-not-string",
        [bare({"properties": {"q": {}}, "required": [1]})],
        {},
        "t",
        "/parameters/required/0",
    ),
    ("duplicate-tool-names", [{"name": "a"}, {"name": "b"}, {"name": "a"}], {}, "a", "/name"),
    (
        "recursive-ref",
        [
            bare(
                {
                    "properties": {"tree": {"$ref": "#/$defs/T"}},
                    "$defs": {"T": {"properties": {"kids": {"items": {"$ref": "#/$defs/T"}}}}},
                }
            )
        ],
        {},
        "t",
        "/parameters/$defs/T/properties/kids/items/$ref",
    ),
    (
        "remote-ref",
        [bare({"properties": {"a": {"$ref": "https://example.com/s.json"}}})],
        {},
        "t",
        "/parameters/properties/a/$ref",
    ),
    (
        "dangling-ref",
        [bare({"properties": {"a": {"$ref": "#/definitions/Nope"}}})],
        {},
        "t",
        "/parameters/properties/a/$ref",
    ),
    ("empty-enum", [bare({"properties": {"k": {"enum": []}}})], {}, "t", "/parameters/properties/k/enum"),
    ("properties-a-list", [bare({"properties": ["a", "b"]})], {}, "t", "/parameters/properties"),
    (
        "property-schema-a-string",
        [bare({"properties": {"a": "string"}})],
        {},
        "t",
        "/parameters/properties/a",
    ),
    ("empty-anyof", [bare({"properties": {"a": {"anyOf": []}}})], {}, "t", "/parameters/properties/a/anyOf"),
    (
        "top-level-oneof",
        [bare({"oneOf": [{"properties": {"a": {}}}, {"properties": {"b": {}}}]})],
        {},
        "t",
        "/parameters/oneOf",
    ),
    ("top-level-nullable", [bare({"properties": {}, "nullable": True})], {}, "t", "/parameters/nullable"),
    (
        "nullable-not-bool",
        [bare({"properties": {"a": {"type": "string", "nullable": "yes"}}})],
        {},
        "t",
        "/parameters/properties/a/nullable",
    ),
    (
        "invalid-after-normalizing",
        [bare({"properties": {"s": {"type": "str", "minLength": "3"}}})],
        {},
        "t",
        "/parameters/properties/s/minLength",
    ),
    ("two-input-schemas", [{"name": "t", "parameters": {}, "input_schema": {}}], {}, "t", "/input_schema"),
    ("description-not-string", [{"name": "t", "description": ["a"]}], {}, "t", "/description"),
    ("function-for-unknown-tool", [{"name": "t"}], {"nope": print}, "nope", None),
    ("function-not-callable", [{"name": "t"}], {"t": 3}, "t", None),
    ("entry-not-an-object", ["search"], {}, None, None),
    ("bad-output-schema", [{"name": "t", "outputSchema": {"type": "thing"}}], {}, "t", "/outputSchema/type"),
]


@pytest.mark.parametrize(
    ("raw", "expected"), [(raw, exp) for _, raw, exp in NORMALIZED], ids=[c[0] for c in NORMALIZED]
)
def test_normalized(raw: dict[str, Any], expected: dict[str, Any]) -> None:
    [t] = tools_from_schemas([raw])
    assert t.name == "t"
    assert t.input_schema == expected
    jsonschema.Draft202012Validator.check_schema(t.input_schema)


@pytest.mark.parametrize(
    ("raw", "functions", "tool", "field"),
    [(raw, fns, tool, field) for _, raw, fns, tool, field in REJECTED],
    ids=[c[0] for c in REJECTED],
)
def test_rejected(raw: list[Any], functions: dict[str, Any], tool: str | None, field: str | None) -> None:
    with pytest.raises(SchemaError) as info:
        tools_from_schemas(raw, functions)
    err = info.value
    assert (err.tool, err.field) == (tool, field)
    # the message names the tool and the field, so a user can find the problem
    if tool is not None:
        assert repr(tool) in str(err)
    if field is not None:
        assert repr(field) in str(err)


def test_corpus_is_big_enough() -> None:
    assert len(NORMALIZED) + len(REJECTED) >= 30
    assert len(NORMALIZED) >= 30


def test_error_messages_say_what_to_do() -> None:
    cases = {
        "unknown type 'datetime'; use string, number": [bare({"properties": {"when": {"type": "datetime"}}})],
        "recursive schema cannot be inlined": [bare({"properties": {"a": {"$ref": "#"}}})],
        "reserved by the plan language": [{"name": "join"}],
        "'required' must be a list of property names": [bare({"required": "q"})],
        "wrap a single value in an object": [bare({"type": "string"})],
    }
    for message, raw in cases.items():
        with pytest.raises(SchemaError, match=message):
            tools_from_schemas(raw)


def test_output_schema_and_mcp_annotations() -> None:
    [t] = tools_from_schemas(
        [
            {
                "name": "fs.read",
                "inputSchema": {"type": "object", "properties": {"path": {"type": "string"}}},
                "outputSchema": {"properties": {"size": {"type": "int"}}},
                "annotations": {"readOnlyHint": True},
            }
        ]
    )
    assert t.output_schema == {"type": "object", "properties": {"size": {"type": "integer"}}}
    assert t.policy == ToolPolicy(idempotent=True)
    [u] = tools_from_schemas([{"name": "fs.write", "annotations": {"readOnlyHint": False}}])
    assert u.policy == ToolPolicy()


def test_functions_attach_by_name_and_run() -> None:
    def weather(city: str) -> str:
        return f"sunny in {city}"

    ts = Toolset.from_schemas(
        [
            {
                "type": "function",
                "function": {
                    "name": "get-weather",
                    "parameters": {"properties": {"city": {"type": "String"}}, "required": ["city"]},
                },
            },
            {"name": "math.factorial", "input_schema": {"properties": {"n": {"type": "int"}}}},
        ],
        {"get-weather": weather},
    )
    assert ts.names == ("get-weather", "math.factorial")
    assert ts["get-weather"].call(ts["get-weather"].validate({"city": "Oslo"})) == "sunny in Oslo"
    assert ts["math.factorial"].fn is None and ts["math.factorial"].convert is None


def test_normalized_schemas_validate_as_users_expect() -> None:
    [t] = tools_from_schemas(
        [
            bare(
                {
                    "properties": {
                        "meta": {"type": "object"},
                        "level": {"type": "string", "enum": ["low", 2]},
                        "note": {"type": "string", "nullable": True},
                    },
                    "required": ["meta", "ghost"],
                }
            )
        ]
    )
    # any object for a nested object without properties; the enum's integer is accepted;
    # null is accepted where the schema said nullable; "ghost" is not required
    t.validate({"meta": {"anything": [1, 2]}, "level": 2, "note": None})
    with pytest.raises(ToolArgumentError) as info:
        t.validate({"meta": "x", "level": "mid", "extra": 1})
    assert sorted(e.path for e in info.value.errors) == ["extra", "level", "meta"]


def test_input_is_not_mutated() -> None:
    raw = bare({"properties": {"a": {"type": "str", "nullable": True, "required": True}}})
    snapshot = repr(raw)
    tools_from_schemas([raw])
    assert repr(raw) == snapshot


def test_not_a_list_of_schemas() -> None:
    with pytest.raises(SchemaError, match="expected a list of tool schemas"):
        tools_from_schemas({"name": "t"})  # type: ignore[arg-type]


def test_normalize_schema_alone() -> None:
    assert normalize_schema({"type": "List", "items": {"type": "Float", "nullable": True}}) == {
        "type": "array",
        "items": {"anyOf": [{"type": "number"}, {"type": "null"}]},
    }
    assert normalize_schema(True) is True
    assert isinstance(Tool(name="x").input_schema, dict)


@pytest.mark.parametrize(
    ("written", "schema"),
    [
        ("Tuple[int, ...]", {"type": "array", "items": {"type": "integer"}}),
        ("Literal['a', 'b']", {"enum": ["a", "b"]}),
        ('Literal["a,b", 1, None]', {"enum": ["a,b", 1, None]}),
        ("int | None", {"anyOf": [{"type": "integer"}, {"type": "null"}]}),
        ("str|list[str]", {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}),
        ("List[int | str]", {"type": "array", "items": {"anyOf": [{"type": "integer"}, {"type": "string"}]}}),
    ],
)
def test_python_type_names_python_programmers_write(written: str, schema: dict[str, Any]) -> None:
    [t] = tools_from_schemas([bare({"properties": {"v": {"type": written}}})])
    assert t.input_schema["properties"]["v"] == schema


def test_a_literal_type_without_literal_values_says_so() -> None:
    with pytest.raises(SchemaError, match=r"must list literal values .* as in Literal\['a', 'b'\]"):
        tools_from_schemas([bare({"properties": {"v": {"type": "Literal[x]"}}})])


def test_generic_type_that_takes_no_parameters_says_so() -> None:
    with pytest.raises(SchemaError, match="the type 'Boolean<String>' takes no type parameters"):
        tools_from_schemas([bare({"properties": {"v": {"type": "Boolean<String>"}}})])
    with pytest.raises(SchemaError, match="unknown type 'Person'"):
        tools_from_schemas([bare({"properties": {"v": {"type": "List<Person>"}}})])


# -- names a plan cannot write -------------------------------------------------------------------


def test_tool_names_a_plan_cannot_write_are_mapped_and_their_functions_still_attach() -> None:
    tools = tools_from_schemas(
        [{"name": "get weather"}, {"name": "1tool"}, {"name": "files/read"}],
        functions={"get weather": lambda: "sunny", "1tool": lambda: 1},
    )
    assert [t.name for t in tools] == ["get_weather", "_1tool", "files_read"]
    assert tools[0].call({}) == "sunny" and tools[1].call({}) == 1


def test_two_tool_names_that_map_to_one_are_refused_naming_both() -> None:
    with pytest.raises(SchemaError, match=r"schema #1 \('get_weather'\) and schema #0 \('get weather'\)"):
        tools_from_schemas([{"name": "get weather"}, {"name": "get_weather"}])


def test_parameter_names_a_plan_cannot_write_are_mapped_and_back() -> None:
    seen: dict[str, Any] = {}

    def book(**kwargs: Any) -> str:
        seen.update(kwargs)
        return "ok"

    [t] = tools_from_schemas(
        [
            {
                "name": "book",
                "parameters": {
                    "properties": {
                        "first-name": {"type": "string"},
                        "first_name": {"type": "string"},
                        "$type": {"type": "string"},
                        "2nd": {"type": "integer"},
                        "año_vehiculo": {"type": "long"},
                    },
                    "required": ["first-name", "2nd"],
                },
            }
        ],
        functions={"book": book},
    )
    assert t.param_names == ("first_name_2", "first_name", "_type", "_2nd", "año_vehiculo")
    assert t.required == ("first_name_2", "_2nd")
    assert t.signature().startswith("book(first_name_2: string, first_name?: string, _type?: string")
    args = t.validate({"first_name_2": "Ann", "_type": "vip", "_2nd": 2, "año_vehiculo": 2020})
    assert t.call(args) == "ok"
    assert seen == {"first-name": "Ann", "$type": "vip", "2nd": 2, "año_vehiculo": 2020}
    assert t.source_names == {"first_name_2": "first-name", "_type": "$type", "_2nd": "2nd"}
