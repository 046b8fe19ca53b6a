"""The math tool: real arithmetic, and nothing but arithmetic."""

from __future__ import annotations

import math

import pytest

from tomasulo.exceptions import ToolArgumentError
from tomasulo.tools.builtins import MathLimits, evaluate, math_tool


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("2 ** 10", 1024),
        ("2^10 + 1", 1025),
        ("-2^2", -4),
        ("7 // 2 + 7 % 2", 4),
        ("sqrt(16) + abs(-3)", 7.0),
        ("round(pi, 3)", 3.142),
        ("log(8, 2)", 3.0),
        ("factorial(10)", 3628800),
        ("max(3, 9, 4) - min([5, 2])", 7),
        ("mean([1, 2, 3, 4])", 2.5),
        ("comb(10, 3)", 120),
    ],
)
def test_arithmetic_and_functions(expression: str, expected: float) -> None:
    assert evaluate(expression) == pytest.approx(expected)


def test_variables_bind_typed_values() -> None:
    assert evaluate("a / b", {"a": 8849, "b": 5895}) == pytest.approx(8849 / 5895)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("__import__('os')", "unknown function '__import__'"),
        ("__import__('os').system('echo hi')", "Attribute is not allowed"),
        ("(1).__class__", "Attribute is not allowed"),
        ("().__class__.__bases__[0]", "is not allowed"),
        ("lambda: 1", "Lambda is not allowed"),
        ("[x for x in [1, 2]]", "ListComp is not allowed"),
        ("open", "unknown name 'open'"),
        ("'a' * 3", "only numbers are allowed"),
        ("eval('1')", "unknown function 'eval'"),
        ("x := 3", "not an arithmetic expression"),
        ("1 if 1 else 2", "IfExp is not allowed"),
        ("[1, 2][0]", "Subscript is not allowed"),
        ("sqrt(x=4)", "positional arguments only"),
    ],
)
def test_eval_like_input_is_refused(expression: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        evaluate(expression)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("9 ** 9 ** 9", "exponent"),
        ("10 ** 5000", "bits"),
        ("2 ** 6000 * 2 ** 6000 * 2 ** 6000", "bits"),
        ("factorial(100000)", "too large"),
        ("comb(10**6, 3)", "too large"),
        ("1.5 ** 5000", "too large"),
        ("exp(1000)", "too large"),
        ("1 / 0", "division by zero"),
        ("+".join(["1"] * 500), "too complex"),
        ("1" * 3000, "characters"),
    ],
)
def test_bounds(expression: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        evaluate(expression)


def test_limits_are_configurable() -> None:
    with pytest.raises(ValueError, match="limit 5"):
        evaluate("factorial(6)", limits=MathLimits(max_factorial=5))


def test_tool_schema_and_call() -> None:
    tool = math_tool()
    assert tool.name == "math"
    assert tool.param_names == ("expression", "variables")
    args = tool.validate({"expression": "a * 2", "variables": {"a": 21}})
    assert tool.fn is not None
    assert tool.fn(**args) == 42
    with pytest.raises(ToolArgumentError, match=r"variables\.a"):
        tool.validate({"expression": "a", "variables": {"a": "forty"}})
    assert math.isclose(tool.fn(expression="tau / 2"), math.pi)
