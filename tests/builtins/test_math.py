"""The math tool: real arithmetic, and nothing but arithmetic."""

from __future__ import annotations

import math

import anyio
import pytest

from tomasulo.dispatcher import Dispatcher
from tomasulo.exceptions import ConfigError, ToolArgumentError
from tomasulo.grammar import Task
from tomasulo.tools import Toolset
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


def test_variables_are_bounded_in_number_and_size() -> None:
    with pytest.raises(ValueError, match=r"401 variables are too many \(limit 400"):
        evaluate("a", {f"v{i}": i for i in range(400)} | {"a": 1})
    with pytest.raises(ValueError, match="more than 12000 bits"):
        evaluate("a * 1", {"a": 2**12001})


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


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("round(1, -10**7)", r"round to -10000000 digits .*MathLimits\.max_round_digits"),
        ("round(2.5, 10**9)", r"MathLimits\.max_round_digits"),
        ("round(2.5, 1.5)", "number of digits must be a whole number"),
        ("[1] * 10**9", "a list is only allowed as the argument of min"),
        ("[1, 2] + [3]", "lists cannot be repeated, added or nested"),
        ("(1, 2) * 3", "lists cannot be repeated"),
        ("max([1, [2] * 10**9])", "lists cannot be repeated"),
        ("2 ** [1]", "a list is only allowed"),
        ("sqrt([4])", "a list is only allowed as the argument of min"),
        ("1 << 10**9", r"1 << 1000000000 would have about 1000000001 bits .*MathLimits\.max_int_bits"),
        ("2.5 << 1", "needs whole numbers"),
        ("1 << -1", "must not be negative"),
        ("2 ** 10**8", r"MathLimits\.max_exponent"),
        ("3 ** 7572", r"3 \*\* 7572 would have about 12002 bits"),
        ("factorial(1000) * factorial(1000)", "would have about 17060 bits"),
        ("lcm(2**6000 + 1, 2**6000 + 3, 7)", r"lcm of 3 integers .*MathLimits\.max_int_bits"),
        ("~1", "the operator ~ is not supported"),
        ("3 & 1", "the operator & is not supported"),
        ("(-8) ** (1/3)", r"\(-8\) \*\* 0\.333\d* would be a complex number"),
        ("(-2) ** 0.5", "would be a complex number"),
        ("sqrt(-1)", r"sqrt\(-1\) is not defined"),
        ("median([])", "median: needs at least one value"),
    ],
)
def test_hostile_operations_are_refused_before_they_run(expression: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        evaluate(expression)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("(-8) ** 2.0", 64.0),
        ("(-2) ** 3", -8),
        ("cbrt(-8)", -2.0),
        ("1 << 10", 1024),
        ("1024 >> 3", 128),
        ("10 >> 10**20", 0),
        ("round(123456, -3)", 123000),
        ("3 ** 7000 // 3 ** 6999", 3),
        ("sum([2**10000, 1]) - 2**10000", 1),
    ],
)
def test_real_results_near_the_bounds_still_work(expression: str, expected: float) -> None:
    assert evaluate(expression) == pytest.approx(expected)


def test_factorial_size_is_bounded_by_bits_before_it_is_computed() -> None:
    # a raised max_factorial does not let factorial(200000) (3.1 million bits) be computed
    wide = MathLimits(max_factorial=10**9)
    with pytest.raises(ValueError, match=r"factorial\(200000,\) would have about 3\d{6} bits"):
        evaluate("factorial(200000)", limits=wide)
    with pytest.raises(ValueError, match=r"comb\(10000000, 5000000\) would have about"):
        evaluate("comb(10**7, 5 * 10**6)", limits=wide)
    assert evaluate("comb(10**7, 2)", limits=wide) == 10**7 * (10**7 - 1) // 2


def test_int_bits_have_a_documented_cap() -> None:
    with pytest.raises(ConfigError, match="max_int_bits is 20000, more than 14000"):
        MathLimits(max_int_bits=20_000)
    with pytest.raises(ConfigError, match="max_round_digits must be a whole number"):
        MathLimits(max_round_digits=0)


@pytest.mark.anyio
async def test_a_hostile_expression_in_a_run_errors_within_a_2s_deadline() -> None:
    # Today's round(1, -10**7) computes 10 ** 10**7 holding the GIL for tens of seconds, so the
    # deadline below could not fire; every one of these must come back as a clear tool error.
    hostile = ["round(1, -10**7)", "1 << 10**9", "9 ** 9 ** 9", "(-8) ** (1/3)"]
    plan = [Task(i, "math", (expr,)) for i, expr in enumerate(hostile, 1)]
    with anyio.fail_after(2):
        out = await Dispatcher.run_plan(Toolset([math_tool()]), plan)
    assert [o.status for o in out.values()] == ["failed"] * len(hostile)
    messages = [out[i].message or "" for i in range(1, len(hostile) + 1)]
    for text, needle in zip(
        messages, ["max_round_digits", "max_int_bits", "max_exponent", "complex number"], strict=True
    ):
        assert needle in text, text
