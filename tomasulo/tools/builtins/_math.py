"""The ``math`` tool: arithmetic and common functions through a whitelist evaluator, never ``eval``.

The expression is parsed with Python's own parser (:func:`ast.parse` in ``eval`` mode) and the tree
is walked by a small interpreter that knows only numbers, a fixed set of operators, a fixed set of
functions and a few constants. Anything else (names, attribute access, subscripts, lambdas,
comprehensions, strings, comparisons) is refused before anything runs.

What it gives: an ``int`` or a finite ``float``. Never a list, a complex number (a negative number
to a fractional power is an error that says so), ``inf`` or ``nan``.

Every operation's cost is bounded *before* it runs, from the sizes of its operands, so no
expression can hold the interpreter (and with it the event loop) for long or allocate much; an
operation that would pass a bound is refused with a ``ValueError`` naming the bound. The bounds,
all fields of :class:`MathLimits` (pass ``math_tool(limits=MathLimits(...))`` to change them):

- ``max_length`` (2,000) characters of text and ``max_nodes`` (400) syntax-tree nodes (and
  variables), so the number of operations is bounded;
- ``max_int_bits`` (12,000; at most :data:`MAX_INT_BITS_CAP`) bits of any integer, checked
  before ``*``, ``**``, ``<<``, ``factorial``, ``comb``, ``perm`` and ``lcm`` from the operands'
  sizes; every other operation cannot grow an integer by more than a bit or two, and its result
  is checked too;
- ``max_exponent`` (10,000): the largest absolute exponent of ``**`` (also written ``^``);
- ``max_factorial`` (1,000): the largest argument of ``factorial``, ``comb`` and ``perm``;
- ``max_round_digits`` (400): the largest absolute ``ndigits`` of ``round`` (``round(x, -n)``
  computes ``10 ** n``).

Lists exist only as the argument of ``min``, ``max``, ``sum``, ``mean`` and ``median`` and hold
only numbers: there is no repetition, concatenation or nesting, so the largest thing ever held is
one list of at most ``max_nodes`` numbers of at most ``max_int_bits`` bits each.
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


#: The largest ``MathLimits.max_int_bits``: Python refuses to print integers of more than 4,300
#: decimal digits (about 14,280 bits), so a larger result could not be returned.
MAX_INT_BITS_CAP = 14_000


@dataclass(frozen=True, slots=True)
class MathLimits:
    """Bounds on what one expression may cost.

    Attributes:
        max_length: characters in the expression.
        max_nodes: nodes in its syntax tree.
        max_exponent: largest absolute exponent of ``**`` (and ``^``).
        max_factorial: largest argument of ``factorial``, ``comb`` and ``perm``.
        max_int_bits: bits of any integer computed along the way (at most
            :data:`MAX_INT_BITS_CAP`).
        max_round_digits: largest absolute ``ndigits`` of ``round``.

    >>> evaluate("factorial(20)", limits=MathLimits(max_factorial=10))
    Traceback (most recent call last):
    ValueError: factorial of 20 is too large (limit 10, MathLimits.max_factorial)
    """

    max_length: int = 2000
    max_nodes: int = 400
    max_exponent: int = 10_000
    max_factorial: int = 1000
    max_int_bits: int = 12_000
    max_round_digits: int = 400

    def __post_init__(self) -> None:
        for name in (
            "max_length",
            "max_nodes",
            "max_exponent",
            "max_factorial",
            "max_int_bits",
            "max_round_digits",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"MathLimits.{name} must be a whole number of at least 1, got {value!r}")
        if self.max_int_bits > MAX_INT_BITS_CAP:
            raise ConfigError(
                f"MathLimits.max_int_bits is {self.max_int_bits}, more than {MAX_INT_BITS_CAP}: "
                "a result that large could not even be written out as decimal digits"
            )


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

_BINOPS: dict[type[ast.operator], tuple[str, Callable[[Any, Any], Any]]] = {
    ast.Add: ("+", operator.add),
    ast.Sub: ("-", operator.sub),
    ast.Mult: ("*", operator.mul),
    ast.Div: ("/", operator.truediv),
    ast.FloorDiv: ("//", operator.floordiv),
    ast.Mod: ("%", operator.mod),
    ast.Pow: ("**", operator.pow),
    ast.LShift: ("<<", operator.lshift),
    ast.RShift: (">>", operator.rshift),
}

#: Functions that take one list of numbers (or the numbers themselves).
_LIST_FUNCTIONS = frozenset({"min", "max", "sum", "mean", "median"})

_LN2 = _m.log(2)


def _bits(value: Number) -> int:
    return abs(value).bit_length() if isinstance(value, int) else 0


def _factorial_bits(n: int) -> float:
    """log2(n!), from the log-gamma function: what ``factorial(n)`` would weigh, without computing it."""
    return _m.lgamma(n + 1) / _LN2 if n > 1 else 0.0


class _Evaluator:
    def __init__(self, limits: MathLimits, variables: Mapping[str, Number]) -> None:
        self.limits = limits
        self.variables = variables

    def number(self, value: Any) -> Number:
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, complex):
            raise ValueError("the result would be a complex number; math works with real numbers only")
        if isinstance(value, int):
            if value.bit_length() > self.limits.max_int_bits:
                raise ValueError(
                    f"an intermediate integer has more than {self.limits.max_int_bits} bits "
                    "(MathLimits.max_int_bits)"
                )
            return value
        if isinstance(value, float):
            if not _m.isfinite(value):
                raise ValueError("the result is not a finite number")
            return value
        raise ValueError(f"{type(value).__name__} is not a number")

    def too_big(self, what: str, bits: float) -> ValueError:
        return ValueError(
            f"{what} would have about {int(bits)} bits (limit {self.limits.max_int_bits}, "
            "MathLimits.max_int_bits)"
        )

    def visit(self, node: ast.AST) -> Number:
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
        if isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, ast.UAdd | ast.USub):
                raise ValueError(f"the operator {_UNARY_TEXT.get(type(node.op), '?')} is not supported")
            value = self.visit(node.operand)
            return self.number(-value if isinstance(node.op, ast.USub) else +value)
        if isinstance(node, ast.BinOp):
            if type(node.op) not in _BINOPS:
                raise ValueError(
                    f"the operator {_BINARY_TEXT.get(type(node.op), '?')} is not supported; "
                    "use + - * / // % ** (or ^) << >>"
                )
            symbol, apply = _BINOPS[type(node.op)]
            left, right = self.visit(node.left), self.visit(node.right)
            self.check_binop(symbol, left, right)
            return self.number(apply(left, right))
        if isinstance(node, ast.List | ast.Tuple):
            raise ValueError(
                "a list is only allowed as the argument of min, max, sum, mean or median, "
                "such as max([1, 2]); lists cannot be repeated, added or nested"
            )
        if isinstance(node, ast.Call):
            return self.call(node)
        raise ValueError(f"{type(node).__name__} is not allowed in a math expression")

    def check_binop(self, symbol: str, left: Number, right: Number) -> None:
        """Refuse ``left symbol right`` if its result would pass a bound, before computing it."""
        if symbol == "**":
            self.check_power(left, right)
        elif symbol == "*" and isinstance(left, int) and isinstance(right, int):
            if _bits(left) + _bits(right) - 1 > self.limits.max_int_bits:
                raise self.too_big(
                    f"the product of a {_bits(left)}-bit and a {_bits(right)}-bit integer",
                    _bits(left) + _bits(right),
                )
        elif symbol in ("<<", ">>"):
            if not (isinstance(left, int) and isinstance(right, int)):
                raise ValueError(f"{symbol} needs whole numbers on both sides")
            if right < 0:
                raise ValueError(f"the shift count of {symbol} must not be negative")
            if symbol == "<<" and left and _bits(left) + right > self.limits.max_int_bits:
                raise self.too_big(f"{left} << {right}", _bits(left) + right)

    def check_power(self, base: Number, exponent: Number) -> None:
        if abs(exponent) > self.limits.max_exponent:
            raise ValueError(
                f"exponent {exponent!r} is larger than {self.limits.max_exponent} (MathLimits.max_exponent)"
            )
        if base < 0 and isinstance(exponent, float) and not exponent.is_integer():
            raise ValueError(
                f"({base!r}) ** {exponent!r} would be a complex number: a negative number has no "
                "real fractional power (for a real cube root use cbrt)"
            )
        if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
            bits = exponent * _m.log2(abs(base))  # the result has floor(bits) + 1 bits
            if bits >= self.limits.max_int_bits:
                raise self.too_big(f"{base} ** {exponent}", bits + 1)

    def argument(self, node: ast.AST, name: str) -> Number | list[Number]:
        if isinstance(node, ast.List | ast.Tuple) and name in _LIST_FUNCTIONS:
            return [self.visit(item) for item in node.elts]
        return self.visit(node)

    def call(self, node: ast.Call) -> Number:
        if not isinstance(node.func, ast.Name):
            raise ValueError(f"{type(node.func).__name__} is not allowed in a math expression")
        if node.func.id not in _FUNCTIONS:
            what = node.func.id
            raise ValueError(f"unknown function {what!r}; known functions: {', '.join(sorted(_FUNCTIONS))}")
        if node.keywords:
            raise ValueError("functions take positional arguments only")
        name = node.func.id
        args = [self.argument(a, name) for a in node.args]
        if name == "factorial" and len(args) == 1 and isinstance(args[0], float):
            if not args[0].is_integer():
                raise ValueError("factorial needs a whole number")
            args = [int(args[0])]
        self.check_call(name, [a for a in args if not isinstance(a, list)])
        try:
            return self.number(_FUNCTIONS[name](*args))
        except TypeError as exc:
            raise ValueError(f"{name}: {exc}") from None
        except OverflowError:
            raise ValueError(f"{name}: the result is too large") from None
        except ValueError as exc:
            if str(exc) == "math domain error":
                shown = ", ".join(repr(a) for a in args)
                raise ValueError(f"{name}({shown}) is not defined (outside the function's domain)") from None
            raise ValueError(f"{name}: {exc}") from None

    def check_call(self, name: str, args: list[Number]) -> None:
        """Refuse a call whose result would pass a bound, from its arguments, before making it."""
        limits = self.limits
        if name in ("factorial", "comb", "perm"):
            for a in args:
                if isinstance(a, int) and a > limits.max_factorial:
                    raise ValueError(
                        f"{name} of {a} is too large (limit {limits.max_factorial}, MathLimits.max_factorial)"
                    )
            whole = [a for a in args if isinstance(a, int) and a >= 0]
            if len(whole) == len(args) and args:
                n = whole[0]
                k = whole[1] if len(whole) > 1 else None
                if name == "factorial" or k is None:
                    bits = _factorial_bits(n)
                elif k > n:
                    bits = 0.0
                elif name == "perm":
                    bits = _factorial_bits(n) - _factorial_bits(n - k)
                else:
                    bits = _factorial_bits(n) - _factorial_bits(k) - _factorial_bits(n - k)
                if bits > limits.max_int_bits:
                    raise self.too_big(f"{name}{tuple(args)}", bits)
        elif name == "lcm":
            bits = sum(_bits(a) for a in args)
            if bits > limits.max_int_bits:
                raise ValueError(
                    f"the lcm of {len(args)} integers of {bits} bits in all could pass "
                    f"{limits.max_int_bits} bits (MathLimits.max_int_bits)"
                )
        elif name == "round" and len(args) == 2:
            digits = args[1]
            if not isinstance(digits, int):
                raise ValueError("round: the number of digits must be a whole number")
            if abs(digits) > limits.max_round_digits:
                raise ValueError(
                    f"round to {digits} digits is out of range (limit {limits.max_round_digits}, "
                    "MathLimits.max_round_digits)"
                )


_UNARY_TEXT: dict[type[ast.unaryop], str] = {ast.Invert: "~", ast.Not: "not"}
_BINARY_TEXT: dict[type[ast.operator], str] = {
    ast.BitAnd: "&",
    ast.BitOr: "|",
    ast.BitXor: "^",
    ast.MatMult: "@",
}


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
    if variables and len(variables) > limits.max_nodes:
        raise ValueError(
            f"{len(variables)} variables are too many (limit {limits.max_nodes}, MathLimits.max_nodes)"
        )
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
    return result


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

    Operators ``+ - * / // % ** << >>`` (and ``^`` for power), parentheses, the constants ``pi``, ``e``
    and ``tau``, and the functions of :data:`FUNCTIONS`. Pass upstream results as typed values
    with ``variables`` (``math(expression="a / b", variables={"a": $1, "b": $2})``) rather than
    interpolating them into the text.
    """

    def run_math(expression: str, variables: dict[str, Number] | None = None) -> Number:
        return evaluate(expression, variables, limits=limits)

    return Tool(
        name=name,
        description=(
            "Evaluate an arithmetic expression: + - * / // % ** (or ^) << >>, parentheses, "
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
