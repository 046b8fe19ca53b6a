"""Plans no parser should choke on: deep nesting, numbers that overflow, trailing commas, and
hand-built tasks that no parser could have produced. Each ends in a typed PlanError with a place."""

from __future__ import annotations

import math

import pytest

from tomasulo.exceptions import ArgumentTypeError, PlanError, PlanSyntaxError, TaskIdError
from tomasulo.grammar import Ref, Task, Template, parse_json_plan, parse_plan
from tomasulo.grammar._ast import MAX_NESTING

from .plan_tools import plan_tools

TOOLS = plan_tools()
DEEP = 10_000


def feed_in_chunks(text: str, size: int, *, compat: bool) -> None:
    from tomasulo.grammar import PlanStream

    stream = PlanStream(compat=compat)
    for i in range(0, len(text), size):
        stream.feed(text[i : i + size])
    stream.close()


@pytest.mark.parametrize(
    "value",
    ["[" * DEEP + "]" * DEEP, '{"a": ' * DEEP + "1" + "}" * DEEP, '[{"k": ' * DEEP],
    ids=["arrays", "objects", "unclosed"],
)
@pytest.mark.parametrize("compat", [False, True], ids=["strict", "compat"])
@pytest.mark.parametrize("how", ["whole", "streamed"])
def test_deep_nesting_is_a_plan_error_with_line_and_column(value: str, compat: bool, how: str) -> None:
    text = f'1. math(expression="x")\n2. math(expression="x", context={value})\n3. join()\n'
    with pytest.raises(PlanSyntaxError) as info:
        if how == "whole":
            parse_plan(text, compat=compat)
        else:
            feed_in_chunks(text, 7, compat=compat)
    err = info.value
    assert f"nesting deeper than {MAX_NESTING} levels" in err.message
    assert err.line == 2
    before = err.text[: err.column - 1]
    assert err.text[err.column - 1] in "[{", "points at an opening bracket"
    assert before.count("[") + before.count("{") == MAX_NESTING, "the one that is a level too deep"


def test_nesting_up_to_the_bound_is_accepted() -> None:
    value = "[" * MAX_NESTING + "]" * MAX_NESTING
    plan = parse_plan(f"1. now({value})\n2. join()\n")
    assert plan.tasks[0].args[0] == eval(value)


@pytest.mark.parametrize(
    "value",
    ["[" * DEEP + "]" * DEEP, '{"a": ' * DEEP + "1" + "}" * DEEP],
    ids=["arrays", "objects"],
)
def test_deep_nesting_in_the_json_dialect_is_a_plan_error(value: str) -> None:
    text = '{"tasks": [\n{"id": 1, "tool": "now", "args": {"a": ' + value + "}}\n]}"
    with pytest.raises(PlanSyntaxError) as info:
        parse_json_plan(text)
    assert f"nesting deeper than {MAX_NESTING} levels" in info.value.message
    assert info.value.line == 2 and info.value.column > 1


def test_json_dialect_nesting_up_to_the_bound_is_accepted() -> None:
    value = "[" * MAX_NESTING + "]" * MAX_NESTING
    plan = parse_json_plan('{"tasks": [{"id": 1, "tool": "now", "args": {"a": ' + value + "}}]}")
    assert plan.tasks[0].kwargs["a"] == eval(value)


@pytest.mark.parametrize("number", ["1e999", "9E572820", "-1e400", "1.5e308000"])
@pytest.mark.parametrize("compat", [False, True], ids=["strict", "compat"])
def test_numbers_that_overflow_are_refused_never_inf(number: str, compat: bool) -> None:
    with pytest.raises(PlanSyntaxError) as info:
        parse_plan(f'1. math(expression="x", context=[1, {number}])\n2. join()\n', compat=compat)
    assert "too large" in info.value.message and number in info.value.message
    assert info.value.column == len('1. math(expression="x", context=[1, ') + 1


def test_an_integer_too_long_to_read_is_a_plan_error() -> None:
    with pytest.raises(PlanSyntaxError, match="digits, too many to read"):
        parse_plan(f'1. math(expression="x", context=[{"9" * 5000}])\n2. join()\n')


@pytest.mark.parametrize("number", ["1e999", "-1e400", "NaN", "Infinity", "-Infinity"])
def test_json_dialect_refuses_numbers_that_are_not_finite(number: str) -> None:
    text = '{"tasks": [{"id": 1, "tool": "now", "args": {"a": [1, ' + number + "]}}]}"
    with pytest.raises(PlanSyntaxError) as info:
        parse_json_plan(text)
    assert "tasks[0]" in info.value.message and number in info.value.message


def test_large_finite_numbers_still_parse() -> None:
    plan = parse_plan('1. math(expression="x", context=[1e308, -2.5e-300, 123456789012345678901234567890])\n')
    assert plan.tasks[0].kwargs["context"] == [1e308, -2.5e-300, 123456789012345678901234567890]


@pytest.mark.parametrize(
    ("line", "what", "column"),
    [
        ('1. search("x", )', "trailing comma before ')' in the argument list", 14),
        ('1. search(query="x",)', "trailing comma before ')' in the argument list", 20),
        ('1. math(expression="x", context=[1, 2, ])', "trailing comma before ']' in the array", 38),
        ('1. book({"name": "a", })', "trailing comma before '}' in the object", 21),
    ],
)
def test_a_trailing_comma_gets_a_message_that_says_so(line: str, what: str, column: int) -> None:
    with pytest.raises(PlanSyntaxError) as info:
        parse_plan(line + "\n2. join()\n", TOOLS)
    assert info.value.message == what
    assert info.value.column == column
    assert "remove the comma" in info.value.hint


def test_compat_mode_still_takes_trailing_commas() -> None:
    plan = parse_plan("1. search('x', )\n2. math('y', [1, 2, ],)\n", TOOLS, compat=True)
    assert plan.tasks[1].args == ("y", [1, 2])


# -- hand-built tasks ------------------------------------------------------------------------------


@pytest.mark.parametrize("task_id", [0, -1, True, 1.0, "1"])
def test_hand_built_task_with_a_bad_id_is_refused(task_id: object) -> None:
    with pytest.raises(TaskIdError, match="ids are whole numbers from 1 up") as info:
        Task(task_id, "search", kwargs={"query": "x"})  # type: ignore[arg-type]
    assert str(info.value).startswith(f"task id {task_id!r}"), "no 'line 0, column 0' for a hand-built task"


class Opaque:
    pass


@pytest.mark.parametrize(
    ("args", "kwargs", "where"),
    [
        (({1, 2},), {}, "argument 1: a value of type set"),
        ((), {"q": math.nan}, "argument 'q': nan is not a JSON number"),
        ((), {"q": math.inf}, "argument 'q': inf is not a JSON number"),
        ((), {"q": [1, {"deep": Opaque()}]}, "argument 'q'[1]['deep']: a value of type Opaque"),
        ((), {"q": {1: "x"}}, "argument 'q': the object key 1 is not a string"),
        ((b"bytes",), {}, "argument 1: a value of type bytes"),
        ((), {"q": eval("[" * 70 + "]" * 70)}, "argument 'q': nesting deeper than 64 levels"),
    ],
    ids=["set", "nan", "inf", "object", "int-key", "bytes", "deep"],
)
def test_hand_built_task_with_values_that_are_not_json_is_refused(
    args: tuple[object, ...], kwargs: dict[str, object], where: str
) -> None:
    with pytest.raises(ArgumentTypeError) as info:
        Task(3, "search", args, kwargs)
    assert isinstance(info.value, PlanError)
    assert f"task 3 (search), {where}" in info.value.message


def test_hand_built_tasks_with_json_refs_and_templates_are_fine() -> None:
    t = Task(2, "math", ("x", 1, 2.5, True, None), {"c": [Ref(1), {"k": Template(("a", Ref(1)))}]})
    assert t.deps == {1}


# -- a path into a value that has no such part -----------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "value", "message"),
    [
        (Ref(1, ("a", "b")), {"a": {"c": 1, "d": 2}}, "no key 'b' in an object with keys 'c', 'd' (at $1.a)"),
        (
            Ref(1, ("items", 3)),
            {"items": [1, 2]},
            "index out of range: [3] into an array of 2 items (at $1.items)",
        ),
        (Ref(1, ("name",)), "Everest", "no key 'name': the value is string 'Everest'"),
        (Ref(1, (0,)), 8848, "cannot index integer 8848 with [0]"),
        (Ref(1, ("q",)), {}, "no key 'q' in an empty object"),
    ],
)
def test_a_path_that_does_not_fit_says_what_the_value_is(ref: Ref, value: object, message: str) -> None:
    with pytest.raises((LookupError, TypeError)) as info:
        ref.select(value)
    assert str(info.value) == message


@pytest.mark.anyio
async def test_the_task_that_uses_a_bad_path_fails_saying_what_the_value_is() -> None:
    import anyio

    from tomasulo.dispatcher import Dispatcher
    from tomasulo.tools import Tool, Toolset

    tools = Toolset(
        [
            Tool(name="peak", fn=lambda: {"name": "Everest", "height_m": 8849}),
            Tool(
                name="show",
                input_schema={"type": "object", "properties": {"x": {}}, "required": ["x"]},
                fn=lambda x: x,
            ),
        ]
    )
    plan = parse_plan("1. peak()\n2. show($1.height)\n3. show($1.name[0])\n", tools)
    with anyio.fail_after(5):
        out = await Dispatcher.run_plan(tools, plan)
    assert [out[i].status for i in (1, 2, 3)] == ["succeeded", "failed", "failed"]
    assert "there is no field 'height': the result is an object with fields 'name', 'height_m'" in str(
        out[2].error
    )
    assert '[0] needs an array, but at $1.name the value is a string: "Everest"' in str(out[3].error)
