"""Specs as tools: the shared example specs, Swagger 2.0, 3.0 and 3.1 details, names and clashes."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import anyio
import lark
import pytest

from tomasulo.exceptions import OpenAPIError
from tomasulo.grammar import build_grammar, parse_plan
from tomasulo.tools import OpenAPITools, Toolset

from .conftest import LOOPBACK, Served

pytestmark = pytest.mark.anyio

# ../shared beside the repository (a worktree sits one level deeper, so look up the tree)
DATASETS = next(
    (
        p / "shared" / "datasets" / "openapi"
        for p in Path(__file__).resolve().parents
        if (p / "shared").is_dir()
    ),
    Path("shared/datasets/openapi"),
)
SPECS = sorted(DATASETS.glob("*.yaml"))


def test_the_shared_specs_are_there() -> None:
    assert len(SPECS) >= 6


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_every_shared_spec_converts_and_every_operation_compiles(path: Path) -> None:
    source = OpenAPITools.from_spec(path, base_url="https://api.example.com")
    tools = source.tools()
    assert tools, f"{path.name} gave no tools"
    assert len({t.name for t in tools}) == len(tools)
    for t in tools:
        grammar = build_grammar(Toolset([t]), max_tasks=2)
        parser = lark.Lark(grammar.lark(), parser="earley", lexer="dynamic")
        args = ", ".join(f"{name}={_sample(t.input_schema['properties'][name])}" for name in t.required)
        plan = f"1. {t.name}({args})\n2. join()"
        parser.parse(plan)  # the grammar accepts a call with the required arguments
        parse_plan(plan, Toolset([t]))  # and so does the parser


def _sample(schema: Any) -> str:
    from tomasulo.grammar import value_to_text

    if "examples" in schema:
        return value_to_text(schema["examples"][0])
    if "default" in schema:
        return value_to_text(schema["default"])
    if "enum" in schema:
        return value_to_text(schema["enum"][0])
    kind = schema.get("type", "string")
    return {"integer": "1", "number": "1.5", "boolean": "true", "array": "[]", "object": "{}"}.get(
        kind if isinstance(kind, str) else "string", '"x"'
    )


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_argument_schemas_validate_the_specs_own_examples(path: Path) -> None:
    source = OpenAPITools.from_spec(path, base_url="https://api.example.com")
    checked = 0
    for op, t in zip(source.operations, source.tools(), strict=True):
        for name, example in op.examples.items():
            sub = t.input_schema["properties"][name]
            import jsonschema

            jsonschema.Draft202012Validator(sub).validate(example)
            checked += 1
        if op.examples and all(r in op.examples for r in t.required):
            t.validate(op.examples)
    if path.name in ("callback-example.yaml", "uspto.yaml"):
        assert checked >= 1


def test_names_come_from_operation_ids_or_method_and_path() -> None:
    spec = {
        "openapi": "3.0.3",
        "info": {"title": "t", "version": "1"},
        "paths": {
            "/users/{id}/keys": {"get": {"responses": {"200": {"description": "ok"}}}},
            "/join": {"post": {"operationId": "join", "responses": {"200": {"description": "ok"}}}},
            "/a b": {"get": {"operationId": "get weather", "responses": {"200": {"description": "ok"}}}},
            "/again": {"get": {"operationId": "get weather", "responses": {"200": {"description": "ok"}}}},
        },
    }
    names = [t.name for t in OpenAPITools.from_spec(spec, base_url="http://h").tools()]
    assert names == ["get_users_id_keys", "join_", "get_weather", "get_weather_2"]


SWAGGER2: dict[str, Any] = {
    "swagger": "2.0",
    "info": {"title": "pets", "version": "1"},
    "host": "pets.example.com",
    "basePath": "/v2",
    "schemes": ["https"],
    "consumes": ["application/json"],
    "paths": {
        "/pets/{petId}": {
            "parameters": [{"name": "petId", "in": "path", "required": True, "type": "integer"}],
            "get": {
                "operationId": "getPet",
                "parameters": [
                    {
                        "name": "fields",
                        "in": "query",
                        "type": "array",
                        "items": {"type": "string"},
                        "collectionFormat": "multi",
                    },
                ],
                "responses": {"200": {"description": "ok", "schema": {"$ref": "#/definitions/Pet"}}},
            },
            "post": {
                "operationId": "updatePetForm",
                "consumes": ["multipart/form-data"],
                "parameters": [
                    {"name": "name", "in": "formData", "type": "string", "required": True},
                    {"name": "photo", "in": "formData", "type": "file"},
                ],
                "responses": {"200": {"description": "ok"}},
            },
        },
        "/pets": {
            "post": {
                "operationId": "addPet",
                "parameters": [
                    {"name": "pet", "in": "body", "required": True, "schema": {"$ref": "#/definitions/Pet"}}
                ],
                "responses": {"200": {"description": "ok"}},
            }
        },
    },
    "definitions": {
        "Pet": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "id": {"type": "integer", "readOnly": True},
                "name": {"type": "string", "example": "Rex"},
                "owner": {"$ref": "#/definitions/Person", "x-nullable": True},
            },
        },
        "Person": {"type": "object", "properties": {"name": {"type": "string"}}},
    },
    "securityDefinitions": {"key": {"type": "apiKey", "in": "header", "name": "X-Key"}},
}


def test_swagger2_is_converted() -> None:
    source = OpenAPITools.from_spec(SWAGGER2)
    tools = {t.name: t for t in source.tools()}
    assert set(tools) == {"getPet", "updatePetForm", "addPet"}
    assert tools["getPet"].signature() == "getPet(petId: integer, fields?: array[string])"
    assert tools["addPet"].param_names == ("name", "owner")  # body flattened, readOnly id left out
    assert tools["updatePetForm"].param_names == ("petId", "name", "photo")
    ops = {op.name: op for op in source.operations}
    assert ops["updatePetForm"].body_mode == "multipart"
    assert ops["addPet"].body_mode == "json"
    req = __import__("tomasulo.tools.openapi._tools", fromlist=["build_request"]).build_request(
        ops["getPet"], "https://pets.example.com/v2", {"petId": 3, "fields": ["a", "b"]}, {}
    )
    assert req.url == "https://pets.example.com/v2/pets/3" and req.params == [
        ("fields", "a"),
        ("fields", "b"),
    ]


def _spec(schema: dict[str, Any], version: str = "3.0.3", **extra: Any) -> dict[str, Any]:
    return {
        "openapi": version,
        "info": {"title": "t", "version": "1"},
        "paths": {
            "/things/{id}": {
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "post": {
                    "operationId": "make",
                    "parameters": [
                        {"name": "id", "in": "query", "schema": {"type": "integer"}},
                        {"name": "id", "in": "header", "schema": {"type": "string"}},
                    ],
                    "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
                    "responses": {"200": {"description": "ok"}},
                },
            }
        },
        "components": {"schemas": extra},
    }


def test_clashing_names_across_locations_get_the_location_as_a_prefix() -> None:
    body = {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}, "x": {}}}
    [t] = OpenAPITools.from_spec(_spec(body), base_url="http://h").tools()
    assert t.param_names == ("id", "query_id", "header_id", "body_id", "x")
    assert t.required == ("id", "body_id")


def test_nullable_in_the_30_and_31_styles() -> None:
    body30 = {"type": "object", "properties": {"n": {"type": "integer", "nullable": True}}}
    body31 = {"type": "object", "properties": {"n": {"type": ["integer", "null"]}}}
    for spec in (_spec(body30), _spec(body31, "3.1.0")):
        [t] = OpenAPITools.from_spec(spec, base_url="http://h").tools()
        assert t.field_errors({"id": "a", "n": None}) == []
        assert t.field_errors({"id": "a", "n": 3}) == []
        assert t.field_errors({"id": "a", "n": "three"}) != []
        parse_plan('1. make(id="a", n=null)\n2. join()', Toolset([t]))


def test_all_of_is_merged_and_one_of_any_of_are_kept() -> None:
    body = {
        "allOf": [
            {"$ref": "#/components/schemas/Base"},
            {"type": "object", "properties": {"b": {"type": "string"}}},
        ]
    }
    spec = _spec(
        body,
        Base={"type": "object", "required": ["a"], "properties": {"a": {"type": "integer"}}},
        Shape={"oneOf": [{"type": "string"}, {"type": "integer"}]},
    )
    [t] = OpenAPITools.from_spec(spec, base_url="http://h").tools()
    assert t.param_names == ("id", "query_id", "header_id", "a", "b")
    assert "a" in t.required
    union = _spec(
        {"anyOf": [{"$ref": "#/components/schemas/Shape"}, {"type": "boolean"}]},
        Shape={"oneOf": [{"type": "string"}, {"type": "integer"}]},
    )
    [u] = OpenAPITools.from_spec(union, base_url="http://h").tools()
    assert u.param_names[-1] == "body"  # a union body is one argument
    assert u.field_errors({"id": "a", "body": 3}) == [] and u.field_errors({"id": "a", "body": []}) != []
    parse_plan('1. make(id="a", body=true)\n2. join()', Toolset([u]))


def test_recursive_schemas_are_cut_after_max_depth() -> None:
    node = {
        "type": "object",
        "properties": {
            "label": {"type": "string"},
            "kids": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}},
        },
    }
    spec = _spec({"$ref": "#/components/schemas/Node"}, Node=node)
    for depth in (1, 3):
        [t] = OpenAPITools.from_spec(spec, base_url="http://h", max_depth=depth).tools()
        level, schema = 0, t.input_schema["properties"]["kids"]
        while "properties" in schema.get("items", {}):
            schema = schema["items"]["properties"]["kids"]
            level += 1
        assert level == depth - 1
        assert schema["items"]["type"] == "object"  # open below the cut
        build_grammar(Toolset([t]), max_tasks=2).lark()


def test_a_reference_that_points_nowhere_is_an_error_naming_it() -> None:
    spec = _spec({"$ref": "#/components/schemas/Missing"})
    with pytest.raises(OpenAPIError, match="Missing"):
        OpenAPITools.from_spec(spec, base_url="http://h")


def test_references_to_files_beside_the_spec_are_followed(tmp_path: Path) -> None:
    (tmp_path / "common.yaml").write_text(
        "Thing:\n  type: object\n  properties:\n    size: {type: integer}\n"
    )
    spec = copy.deepcopy(_spec({"$ref": "common.yaml#/Thing"}))
    import json

    (tmp_path / "api.json").write_text(json.dumps(spec))
    [t] = OpenAPITools.from_spec(tmp_path / "api.json", base_url="http://h").tools()
    assert t.param_names[-1] == "size"


def test_a_document_that_is_not_openapi_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text("hello: world\n")
    with pytest.raises(OpenAPIError, match="openapi"):
        OpenAPITools.from_spec(tmp_path / "x.yaml")


async def test_a_spec_from_a_url_is_fetched_through_the_ssrf_check(api: Served) -> None:
    with anyio.fail_after(20):
        async with OpenAPITools.from_spec(
            api.url + "/openapi.json", policy=LOOPBACK, include=["getPet"]
        ) as src:
            [t] = await src.list_tools()
            assert await t.call({"pet_id": 1}) == {"id": 1, "name": "Rex", "tag": "dog"}
    refused = OpenAPITools.from_spec(api.url + "/openapi.json")
    with anyio.fail_after(20), pytest.raises(Exception, match="loopback"):
        async with refused:
            pass


def test_mutually_recursive_schemas_stay_small() -> None:
    refs = [{"$ref": f"#/components/schemas/S{j}"} for j in range(4)]
    schemas = {
        f"S{i}": {"type": "object", "properties": {f"p{j}": refs[j] for j in range(4)}} for i in range(4)
    }
    spec = _spec({"$ref": "#/components/schemas/S0"}, **schemas)
    [t] = OpenAPITools.from_spec(spec, base_url="http://h", max_depth=3).tools()
    assert len(repr(t.input_schema)) < 2_000_000  # 4 branches x 4 schemas x 3 levels, bounded
    build_grammar(Toolset([t]), max_tasks=2)
