"""Tool.validate: every bad field is listed with its path, what was expected and what was given."""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any, Literal

import pytest
from pydantic import BaseModel

from tomasulo.exceptions import FieldError, ToolArgumentError, ToolDefinitionError
from tomasulo.grammar import parse_plan
from tomasulo.tools import Tool, Toolset, tool, tools_from_schemas


class Item(BaseModel):
    sku: str
    qty: int


@tool
def order(
    customer: str,
    items: list[Item],
    mode: Literal["air", "sea"],
    priority: int | None = None,
    note: str = "",
) -> None:
    """Place an order."""


def test_valid_arguments_come_back_as_a_dict() -> None:
    args = {"customer": "ann", "items": [{"sku": "a1", "qty": 2}], "mode": "sea"}
    assert order.validate(args) == args
    assert order.field_errors(args) == []


def test_every_bad_field_is_listed() -> None:
    bad = {
        "items": [{"sku": 1, "qty": "2"}, {"qty": 3}],
        "mode": "rail",
        "priority": "high",
        "bogus": 1,
    }
    with pytest.raises(ToolArgumentError) as info:
        order.validate(bad)
    err = info.value
    assert err.tool == "order"
    assert sorted(err.errors, key=lambda e: e.path) == [
        FieldError(path="bogus", expected="no such property", got="integer 1"),
        FieldError(path="customer", expected="a value", got="nothing"),
        FieldError(path="items[0].qty", expected="integer", got="string '2'"),
        FieldError(path="items[0].sku", expected="string", got="integer 1"),
        FieldError(path="items[1].sku", expected="a value", got="nothing"),
        FieldError(path="mode", expected="one of 'air', 'sea'", got="string 'rail'"),
        FieldError(path="priority", expected="integer or null", got="string 'high'"),
    ]
    text = str(err)
    assert text.startswith("invalid arguments for tool 'order':")
    assert "  - items[0].qty: expected integer, got string '2'" in text


def test_error_survives_pickling() -> None:
    # executors in other processes send these back
    with pytest.raises(ToolArgumentError) as info:
        order.validate({})
    copy = pickle.loads(pickle.dumps(info.value))
    assert copy.tool == "order" and copy.errors == info.value.errors


def test_long_values_are_clipped() -> None:
    with pytest.raises(ToolArgumentError) as info:
        order.validate({"customer": "x" * 500, "items": [], "mode": "sea", "note": 7})
    [e] = info.value.errors
    assert e.path == "note" and e.got == "integer 7"
    with pytest.raises(ToolArgumentError) as info:
        order.validate({"customer": 1, "items": [], "mode": "sea", "note": "y" * 500})
    [e] = info.value.errors
    assert e.path == "customer"
    with pytest.raises(ToolArgumentError) as info:
        order.validate({"customer": ["z" * 500], "items": [], "mode": "sea"})
    [e] = info.value.errors
    assert len(e.got) < 80 and e.got.endswith("...")


def test_validate_on_a_tool_from_a_raw_schema() -> None:
    [t] = tools_from_schemas(
        [
            {
                "name": "get-weather",
                "parameters": {
                    "properties": {
                        "city": {"type": "String"},
                        "days": {"type": "int", "minimum": 1},
                        "units": {"enum": ["c", "f"]},
                    },
                    "required": ["city"],
                },
            }
        ]
    )
    assert t.validate({"city": "Oslo", "days": 3}) == {"city": "Oslo", "days": 3}
    with pytest.raises(ToolArgumentError) as info:
        t.validate({"days": 0, "units": "k"})
    assert sorted((e.path, e.expected) for e in info.value.errors) == [
        ("city", "a value"),
        ("days", "minimum 1"),
        ("units", "one of 'c', 'f'"),
    ]


# -- null for an optional parameter means "not given" -------------------------------------------

NULLS = tools_from_schemas(
    [
        {
            "name": "find",
            "parameters": {
                "properties": {
                    "query": {"type": "string"},
                    "limit": {"type": "integer", "default": None},
                    "lang": {"type": "string"},
                    "since": {"type": ["string", "null"]},
                },
                "required": ["query"],
            },
        }
    ]
)[0]


def test_null_for_an_optional_parameter_is_left_out() -> None:
    args = {"query": "x", "limit": None, "lang": None}
    assert NULLS.field_errors(args) == []
    assert NULLS.validate(args) == {"query": "x"}, "the tool gets its own defaults"


def test_null_stays_where_the_schema_takes_it_and_is_an_error_where_required() -> None:
    assert NULLS.validate({"query": "x", "since": None}) == {"query": "x", "since": None}
    with pytest.raises(ToolArgumentError) as info:
        NULLS.validate({"query": None})
    assert [(e.path, e.got) for e in info.value.errors] == [("query", "null None")]


def test_null_for_a_decorated_tools_optional_parameter_gets_the_python_default() -> None:
    args = {"customer": "ann", "items": [], "mode": "sea", "note": None}
    assert order.validate(args) == {"customer": "ann", "items": [], "mode": "sea"}
    assert order.validate({**args, "priority": None})["priority"] is None, "int | None takes null"


REF = Tool(
    name="t",
    description="d",
    input_schema={
        "type": "object",
        "$defs": {"S": {"type": "string"}, "N": {"type": ["string", "null"]}},
        "properties": {"a": {"$ref": "#/$defs/S"}, "b": {"$ref": "#/$defs/N"}},
    },
    fn=lambda a="dflt", b="x": (a, b),
)


def test_null_for_an_optional_ref_parameter_is_resolved_against_the_root_defs() -> None:
    assert REF.validate({"a": None}) == {}, "a string: null means 'not given'"
    assert REF.validate({"b": None}) == {"b": None}, "the referenced schema takes null"
    plan = parse_plan("1. t(a=null, b=null)\n2. join()", Toolset([REF]))
    assert plan.tasks[0].kwargs == {"a": None, "b": None}, "the plan parses; the tool gets its default"


def test_a_reference_that_does_not_resolve_is_a_definition_error() -> None:
    t = Tool(name="t", input_schema={"type": "object", "properties": {"a": {"$ref": "#/$defs/Gone"}}})
    with pytest.raises(ToolDefinitionError, match="does not resolve"):
        t.validate({"a": 1})
    with pytest.raises(ToolDefinitionError, match="does not resolve"):
        t.validate({"a": None})


def _names(**kwargs: Any) -> dict[str, Any]:
    return kwargs


# Keywords beside `properties` and `required` that name parameters keep the schema's own names.
PERSON = Tool(
    name="person",
    input_schema={
        "type": "object",
        "properties": {"first-name": {"type": "string"}, "last-name": {"type": "string"}},
        "anyOf": [{"required": ["first-name"]}, {"required": ["last-name"]}],
        "dependentRequired": {"first-name": ["last-name"]},
        "additionalProperties": False,
    },
    fn=_names,
)


def test_renamed_parameters_still_satisfy_the_schemas_other_keywords() -> None:
    assert PERSON.param_names == ("first_name", "last_name")
    args = PERSON.validate({"first_name": "Ann", "last_name": "Lee"})
    assert PERSON.call(args) == {"first-name": "Ann", "last-name": "Lee"}
    assert PERSON.call(PERSON.validate({"last_name": "Lee"})) == {"last-name": "Lee"}
    copy = dataclasses.replace(PERSON, name="person2")
    assert copy.validate({"last_name": "Lee"}) == {"last_name": "Lee"}, "replace keeps the way back"
    again = pickle.loads(pickle.dumps(PERSON))
    assert again.validate({"last_name": "Lee"}) == {"last_name": "Lee"}


def test_errors_about_renamed_parameters_use_the_plan_names() -> None:
    assert [(e.path, e.expected) for e in PERSON.field_errors({})] == [
        ("", "at least one of: first_name; last_name")
    ]
    assert [(e.path, e.expected) for e in PERSON.field_errors({"first_name": "Ann"})] == [
        ("last_name", "a value")
    ]
    assert sorted((e.path, e.expected) for e in PERSON.field_errors({"last_name": 1, "zz": 2})) == [
        ("last_name", "string"),
        ("zz", "no such property"),
    ]
