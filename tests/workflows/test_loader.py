"""Loading workflow files: the examples load, and every kind of mistake is reported with a position."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tomasulo.exceptions import WorkflowError
from tomasulo.workflows import SCHEMA_PATH, load_workflow, loads_workflow
from tomasulo.workflows._schema import schema_text

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(text: str) -> None:
    loads_workflow(textwrap.dedent(text), path=EXAMPLES / "inline.yaml")


def error(text: str) -> WorkflowError:
    with pytest.raises(WorkflowError) as info:
        load(text)
    return info.value


GOOD = """\
tools: [math, echo]
inputs:
  x: {type: number, default: 2}
steps:
  - id: double
    plan: |
      1. input("x")
      2. math(expression="x * 2", variables={"x": $1})
      3. join()
"""


@pytest.mark.parametrize("name", ["research", "flaky", "batch", "ask"])
def test_examples_load(name: str) -> None:
    wf = load_workflow(EXAMPLES / f"{name}.yaml")
    assert wf.step_ids
    for sid, plan in wf.plans.items():
        assert plan.joined, sid


def test_schema_file_is_up_to_date() -> None:
    assert SCHEMA_PATH.read_text(encoding="utf-8") == schema_text(), (
        "workflow.schema.json is stale: run `python -m tomasulo.workflows`"
    )
    schema = json.loads(SCHEMA_PATH.read_text())
    assert {"tools", "model", "limits", "inputs", "steps", "outputs"} <= set(schema["properties"])


def test_yaml_syntax_error_has_line_and_column() -> None:
    err = error("steps:\n  - plan: [1, 2\n  - id: x\n")
    assert "YAML syntax error" in str(err)
    assert err.line == 3 and err.column is not None


def test_duplicate_key() -> None:
    err = error("steps: []\nsteps: []\n")
    assert "duplicate key 'steps'" in str(err) and err.line == 2


def test_unknown_top_level_key_suggests() -> None:
    err = error(GOOD + "outptus: {}\n")
    assert "unknown key 'outptus'" in str(err)
    assert "did you mean 'outputs'?" in str(err)
    assert err.line == 10 and err.column == 1


def test_unknown_nested_key_suggests() -> None:
    err = error(GOOD.replace("    plan: |", "    plann: |"))
    assert "unknown key 'plann' in steps[0] (did you mean 'plan'?)" in str(err)
    assert err.line == 6


def test_wrong_type_names_path_and_line() -> None:
    err = error(GOOD + "limits:\n  max_concurrency: many\n")
    assert "limits.max_concurrency" in str(err) and "valid integer" in str(err)
    assert err.line == 11


def test_step_needs_plan_or_query() -> None:
    err = error("steps:\n  - id: nothing\n")
    assert "exactly one of `plan` or `query`" in str(err)


def test_unknown_builtin_suggests() -> None:
    err = error(GOOD.replace("tools: [math, echo]", "tools:\n  - maths"))
    assert "unknown built-in tool 'maths' (did you mean 'math'?)" in str(err)
    assert err.line == 2


def test_unknown_builtin_option_suggests() -> None:
    err = error(GOOD.replace("tools: [math, echo]", "tools:\n  - builtin: sql\n    dbs: x.sql"))
    assert "built-in 'sql' has no option 'dbs' (did you mean 'db'?)" in str(err)
    assert err.line == 3


def test_unknown_import() -> None:
    err = error(GOOD.replace("tools: [math, echo]", "tools: [math, echo, 'no_such_mod:tools']"))
    assert "cannot import module 'no_such_mod'" in str(err)
    err = error(GOOD.replace("tools: [math, echo]", "tools: [math, echo, 'flaky_tools:toolsett']"))
    assert "has no attribute 'toolsett' (did you mean 'toolset'?)" in str(err)


def test_plan_error_points_into_the_yaml_file() -> None:
    err = error(GOOD.replace('2. math(expression="x * 2"', '2. mth(expression="x * 2"'))
    assert err.line == 8 and err.column == 10
    assert "step 'double': unknown tool 'mth'" in str(err)
    assert "did you mean 'math'?" in str(err)
    assert '      2. mth(expression="x * 2"' in str(err)


def test_plan_forward_reference() -> None:
    err = error(GOOD.replace('variables={"x": $1}', 'variables={"x": $3}'))
    assert "refers to task 3" in str(err) and err.line == 8


def test_plan_reading_an_unknown_input_is_refused() -> None:
    err = error(GOOD.replace('input("x")', 'input("y")'))
    assert err.line == 7 and "step 'double'" in str(err)


def test_later_steps_may_read_earlier_outputs_but_not_later_ones() -> None:
    two_steps = GOOD + '  - id: again\n    plan: |\n      1. input("double")\n'
    load(two_steps)
    err = error(GOOD.replace('input("x")', 'input("double")'))
    assert "step 'double'" in str(err)


def test_outputs_must_name_inputs_or_steps() -> None:
    err = error(GOOD + "outputs:\n  r: dubble.value\n")
    assert "refers to 'dubble'" in str(err) and "did you mean 'double'?" in str(err)
    assert err.line == 11


def test_step_output_must_name_a_task() -> None:
    err = error(GOOD.replace("  - id: double\n", "  - id: double\n    output: $7\n"))
    assert "names task 7" in str(err)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(WorkflowError, match="cannot read the workflow file"):
        load_workflow(tmp_path / "nope.yaml")


def test_inputs_are_checked_and_defaulted() -> None:
    wf = load_workflow(EXAMPLES / "research.yaml")
    assert wf.bind_inputs({"first": "Japan"}) == {"first": "Japan", "second": "Tanzania"}
    with pytest.raises(WorkflowError, match=r"unknown input 'frist' \(did you mean 'first'\?\)"):
        wf.bind_inputs({"frist": "Japan"})
    with pytest.raises(WorkflowError, match="input 'first': 3 is not of type 'string'"):
        wf.bind_inputs({"first": 3})
    batch = load_workflow(EXAMPLES / "batch.yaml")
    with pytest.raises(WorkflowError, match="missing input 'country'"):
        batch.bind_inputs({})


def test_command_line_values_are_coerced() -> None:
    wf = loads_workflow(
        'inputs: {n: integer, f: number, b: boolean, xs: array}\nsteps:\n  - plan: |\n      1. input("n")\n'
    )
    assert wf.coerce("n", "3") == 3
    assert wf.coerce("f", "2.5") == 2.5
    assert wf.coerce("b", "yes") is True
    assert wf.coerce("xs", "[1, 2]") == [1, 2]
    with pytest.raises(WorkflowError, match="needs an integer, got 'three'"):
        wf.coerce("n", "three")
