"""The ``math`` tool: arithmetic and common functions through a whitelist evaluator, never ``eval``.

The expression is parsed with Python's own parser (:func:`ast.parse` in ``eval`` mode) and the tree
is walked by a small interpreter that knows only numbers, a fixed set of operators, a fixed set of
functions and a few constants. Anything else (names, attribute access, subscripts, lambdas,
comprehensions, strings) is refused before anything runs. Sizes are bounded: the text, the number
of nodes, exponents, factorials and the bits of any integer result.
"""

from __future__ import annotations

import ast
import math as _m
import operator
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ...exceptions import ConfigError
from .._tool import Tool, ToolPolicy

__all__ = ["MathLimits", "evaluate", "math_tool"]

Number = int | float


@dataclass(frozen=True, slots=True)
class MathLimits:
    """Bounds on what one expression may cost.

    Attributes:
        max_length: characters in the expression.
        max_nodes: nodes in its syntax tree.
        max_exponent: largest absolute exponent of ``**`` (and ``^``).
        max_factorial: largest argument of ``factorial``, ``comb`` and ``perm``.
        max_int_bits: bits of any integer computed along the way.
    """

    max_length: int = 2000
    max_nodes: int = 400
    max_exponent: int = 10_000
    max_factorial: int = 1000
    max_int_bits: int = 12_000

    def __post_init__(self) -> None:
        for name in ("max_length", "max_nodes", "max_exponent", "max_factorial", "max_int_bits"):
            if getattr(self, name) < 1:
                raise ConfigError(f"MathLimits.{name} must be at least 1")


DEFAULT_MATH_LIMITS = MathLimits()

_CONSTANTS: dict[str, Number] = {"pi": _m.pi, "e": _m.e, "tau": _m.tau}


def _log(x: Number, base: Number | None = None) -> float:
    return _m.log(x) if base is None else _m.log(x, base)


def _round(x: Number, ndigits: int | None = None) -> Number:
    return round(x) if ndigits is None else round(x, ndigits)


def _seq(fn: Callable[[list[Number]], Number]) -> Callable[..., Number]:
    def call(*args: Any) -> Number:
        items = list(args[0]) if len(args) == 1 and isinstance(args[0], list) else list(args)
        if not items:
            raise ValueError("needs at least one value")
        return fn(items)

    return call


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs,
    "round": _round,
    "floor": _m.floor,
    "ceil": _m.ceil,
    "trunc": _m.trunc,
    "sqrt": _m.sqrt,
    "cbrt": _m.cbrt,
    "exp": _m.exp,
    "log": _log,
    "ln": _m.log,
    "log10": _m.log10,
    "log2": _m.log2,
    "sin": _m.sin,
    "cos": _m.cos,
    "tan": _m.tan,
    "asin": _m.asin,
    "acos": _m.acos,
    "atan": _m.atan,
    "atan2": _m.atan2,
    "sinh": _m.sinh,
    "cosh": _m.cosh,
    "tanh": _m.tanh,
    "hypot": _m.hypot,
    "degrees": _m.degrees,
    "radians": _m.radians,
    "gcd": _m.gcd,
    "lcm": _m.lcm,
    "factorial": _m.factorial,
    "comb": _m.comb,
    "perm": _m.perm,
    "min": _seq(min),
    "max": _seq(max),
    "sum": _seq(lambda xs: sum(xs)),
    "mean": _seq(statistics.fmean),
    "median": _seq(statistics.median),
}

_BINOPS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}


class _Evaluator:
    def __init__(self, limits: MathLimits, variables: Mapping[str, Number]) -> None:
        self.limits = limits
        self.variables = variables

    def number(self, value: Any) -> Any:
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, int) and value.bit_length() > self.limits.max_int_bits:
            raise ValueError(f"an intermediate integer has more than {self.limits.max_int_bits} bits")
        if isinstance(value, float) and not _m.isfinite(value):
            raise ValueError("the result is not a finite number")
        return value

    def visit(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return self.visit(node.body)
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int | float):
                raise ValueError(f"only numbers are allowed, not {node.value!r}")
            return self.number(node.value)
        if isinstance(node, ast.Name):
            if node.id in self.variables:
                return self.number(self.variables[node.id])
            if node.id in _CONSTANTS:
                return _CONSTANTS[node.id]
            raise ValueError(f"unknown name {node.id!r}")
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd | ast.USub):
            value = self.visit(node.operand)
            return self.number(-value if isinstance(node.op, ast.USub) else +value)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left, right = self.visit(node.left), self.visit(node.right)
            if isinstance(node.op, ast.Pow):
                self.check_power(left, right)
            return self.number(_BINOPS[type(node.op)](left, right))
        if isinstance(node, ast.List | ast.Tuple):
            return [self.visit(item) for item in node.elts]
        if isinstance(node, ast.Call):
            return self.call(node)
        raise ValueError(f"{type(node).__name__} is not allowed in a math expression")

    def check_power(self, base: Any, exponent: Any) -> None:
        if abs(exponent) > self.limits.max_exponent:
            raise ValueError(f"exponent {exponent!r} is larger than {self.limits.max_exponent}")
        if isinstance(base, int) and isinstance(exponent, int) and exponent > 0:
            bits = max(abs(base), 1).bit_length() * exponent
            if bits > self.limits.max_int_bits:
                raise ValueError(
                    f"{base} ** {exponent} would have about {bits} bits (limit {self.limits.max_int_bits})"
                )

    def call(self, node: ast.Call) -> Any:
        if not isinstance(node.func, ast.Name):
            raise ValueError(f"{type(node.func).__name__} is not allowed in a math expression")
        if node.func.id not in _FUNCTIONS:
            what = node.func.id
            raise ValueError(f"unknown function {what!r}; known functions: {', '.join(sorted(_FUNCTIONS))}")
        if node.keywords:
            raise ValueError("functions take positional arguments only")
        name = node.func.id
        args = [self.visit(a) for a in node.args]
        if name in ("factorial", "comb", "perm"):
            for a in args:
                if isinstance(a, int) and a > self.limits.max_factorial:
                    raise ValueError(f"{name} of {a} is too large (limit {self.limits.max_factorial})")
        if name == "factorial" and len(args) == 1 and isinstance(args[0], float):
            if not args[0].is_integer():
                raise ValueError("factorial needs a whole number")
            args = [int(args[0])]
        try:
            return self.number(_FUNCTIONS[name](*args))
        except TypeError as exc:
            raise ValueError(f"{name}: {exc}") from None


def evaluate(
    expression: str,
    variables: Mapping[str, Number] | None = None,
    *,
    limits: MathLimits = DEFAULT_MATH_LIMITS,
) -> Number:
    """Evaluate an arithmetic expression safely.

    >>> evaluate("sqrt(16) + 2^3")
    12.0
    >>> evaluate("a / b", {"a": 8849, "b": 5895})
    1.501102629346904

    Raises:
        ValueError: for anything that is not plain arithmetic, or goes past ``limits``.
    """
    if not isinstance(expression, str):
        raise ValueError("the expression must be a string")
    if len(expression) > limits.max_length:
        raise ValueError(f"the expression has {len(expression)} characters (limit {limits.max_length})")
    for name, value in (variables or {}).items():
        if not name.isidentifier() or name in _FUNCTIONS:
            raise ValueError(f"{name!r} cannot be used as a variable name")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"variable {name!r} must be a number, got {type(value).__name__}")
    try:
        # Calculators write 2^10; with no strings allowed, every ^ can only mean power.
        tree = ast.parse(expression.strip().replace("^", "**"), mode="eval")
    except SyntaxError as exc:
        where = f" at column {exc.offset}" if exc.offset else ""
        raise ValueError(f"not an arithmetic expression: {exc.msg}{where}") from None
    nodes = sum(1 for _ in ast.walk(tree))
    if nodes > limits.max_nodes:
        raise ValueError(f"the expression is too complex ({nodes} nodes, limit {limits.max_nodes})")
    try:
        result = _Evaluator(limits, variables or {}).visit(tree)
    except ZeroDivisionError:
        raise ValueError("division by zero") from None
    except OverflowError:
        raise ValueError("the result is too large") from None
    if isinstance(result, list):
        raise ValueError("the expression must give a number, not a list")
    return result  # type: ignore[no-any-return]


_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "expression": {
            "type": "string",
            "description": "arithmetic such as `(a + 2) * sqrt(b) / 3`",
        },
        "variables": {
            "type": "object",
            "additionalProperties": {"type": "number"},
            "description": "numbers to bind to names used in the expression",
        },
    },
    "required": ["expression"],
    "additionalProperties": False,
}


def math_tool(*, limits: MathLimits = DEFAULT_MATH_LIMITS, name: str = "math") -> Tool:
    """The ``math`` tool: ``math(expression, variables?)`` returns a number.

    Operators ``+ - * / // % **`` (and ``^`` for power), parentheses, the constants ``pi``, ``e``
    and ``tau``, and the functions of :data:`FUNCTIONS`. Pass upstream results as typed values
    with ``variables`` (``math(expression="a / b", variables={"a": $1, "b": $2})``) rather than
    interpolating them into the text.
    """

    def run_math(expression: str, variables: dict[str, Number] | None = None) -> Number:
        return evaluate(expression, variables, limits=limits)

    return Tool(
        name=name,
        description=(
            "Evaluate an arithmetic expression: + - * / // % ** (or ^), parentheses, "
            "pi, e, tau and the functions " + ", ".join(sorted(_FUNCTIONS)) + ". "
            "Bind numbers to names with `variables`."
        ),
        input_schema=_SCHEMA,
        output_schema={"type": "number"},
        policy=ToolPolicy(timeout=5.0, idempotent=True),
        fn=run_math,
    )


#: Names of the functions the ``math`` tool knows.
FUNCTIONS = tuple(sorted(_FUNCTIONS))
