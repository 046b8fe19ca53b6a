"""One owner of JSON Schema semantics: the draft, the types, the one validator cache."""

from __future__ import annotations

import ast
import gc
from pathlib import Path
from typing import Any

import pytest

from tomasulo.tools import JSON_TYPES, Tool, schema_validator
from tomasulo.tools._jsonschema import _validators

PACKAGE = Path(__file__).resolve().parents[2] / "tomasulo"
OWNER = PACKAGE / "tools" / "_jsonschema.py"
#: Modules that build validators on their own, and why.
ELSEWHERE = {
    # tomasulo.testing ships on its own (it imports nothing of tomasulo): the simulated server
    # checks tool-call arguments the way a real server would, not the way tomasulo does.
    PACKAGE / "testing" / "_toolcalls.py",
}


def test_a_schema_without_draft_is_2020_12_and_bool_is_not_a_number() -> None:
    v = schema_validator({"type": "object", "properties": {"n": {"type": "number"}}})
    assert type(v).__name__ == "Draft202012Validator"
    assert v.is_valid({"n": 1}) and v.is_valid({"n": 1.5}) and not v.is_valid({"n": True})
    assert bool not in JSON_TYPES["number"] and bool not in JSON_TYPES["integer"]


def test_one_validator_per_owner_and_schema_while_the_owner_lives() -> None:
    tool = Tool(name="t", input_schema={"type": "object", "properties": {"a": {"type": "string"}}})
    schema: dict[str, Any] = {"type": "integer"}
    first = schema_validator(schema, owner=tool, key="output")
    assert schema_validator(schema, owner=tool, key="output") is first
    assert schema_validator({"type": "integer"}, owner=tool, key="output") is not first  # a new schema
    assert tool._get_validator() is tool._get_validator()
    tool.input_schema = {"type": "object", "properties": {"b": {"type": "string"}}}
    assert tool.field_errors({"b": 1})  # the replaced schema is the one checked
    assert tool in _validators
    del tool
    gc.collect()
    assert not any(getattr(t, "name", None) == "t" for t in _validators)


def test_plan_literals_may_be_tuples_and_parameters_see_the_root_defs() -> None:
    root = {"$defs": {"N": {"type": "integer"}}, "type": "object"}
    param = {"type": "array", "items": {"$ref": "#/$defs/N"}}
    v = schema_validator(param, defs_from=root, tuples_are_arrays=True)
    assert v.is_valid((1, 2)) and not v.is_valid((1, "x"))
    assert not schema_validator({"type": "array"}).is_valid((1, 2))


def test_a_schema_building_function_needs_a_source() -> None:
    with pytest.raises(TypeError, match="source"):
        schema_validator(lambda: {"type": "string"}, owner=Tool(name="x"), key="k")


def test_no_other_module_builds_validators() -> None:
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path in (OWNER, *ELSEWHERE):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", None)
            if isinstance(node, ast.alias):
                name = node.name
            draft = name is not None and name.startswith("Draft") and name.endswith("Validator")
            if name == "validator_for" or draft:
                bad.append(f"{path.relative_to(PACKAGE)}:{getattr(node, 'lineno', '?')}: {name}")
    assert not bad, "use tomasulo.tools.schema_validator:\n" + "\n".join(bad)
