"""A small grammar IR: the one source every engine's grammar is emitted from.

Expressions are immutable values::

    Lit("search(")                      a literal string
    CharClass(((0x61, 0x7A),), False)   one character in (or, negated, not in) the ranges
    Seq((a, b, c))                      a then b then c
    Alt((a, b))                         a or b
    Repeat(a, 0, None)                  a, between ``min`` and ``max`` times (``None``: unbounded)
    Ref("value_int")                    the rule of that name

A :class:`Grammar` holds named :class:`Rule` s and a start rule. A rule marked ``token=True`` is a
lexeme: its language is regular (it may only refer to other token rules) and it must be
greedy-safe (no valid continuation of a match also extends the match), so lexer-based engines
(Lark terminals, llguidance lexemes) can match it as one regular expression. Emitters that have no
lexer (GBNF) treat token rules like any other rule.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

__all__ = [
    "Alt",
    "CharClass",
    "Expr",
    "Grammar",
    "Lit",
    "Ref",
    "Repeat",
    "Rule",
    "Seq",
    "alt",
    "opt",
    "seq",
]


@dataclass(frozen=True, slots=True)
class Lit:
    """A literal string."""

    text: str


@dataclass(frozen=True, slots=True)
class CharClass:
    """One character within ``ranges`` (inclusive code point pairs), or outside them if ``negated``."""

    ranges: tuple[tuple[int, int], ...]
    negated: bool = False

    @classmethod
    def of(cls, chars: str, *, negated: bool = False, ranges: tuple[tuple[int, int], ...] = ()) -> CharClass:
        """A class from single characters plus explicit ranges: ``CharClass.of("_", ranges=((97, 122),))``."""
        return cls(tuple((ord(c), ord(c)) for c in chars) + ranges, negated)


@dataclass(frozen=True, slots=True)
class Seq:
    """The items one after another."""

    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Alt:
    """Any one of the options."""

    options: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Repeat:
    """``item`` repeated between ``min`` and ``max`` times (``max=None``: no upper bound)."""

    item: Expr
    min: int = 0
    max: int | None = None

    def __post_init__(self) -> None:
        if self.min < 0 or (self.max is not None and self.max < self.min):
            raise ValueError(f"bad repetition bounds {{{self.min},{self.max}}}")


@dataclass(frozen=True, slots=True)
class Ref:
    """A reference to the rule called ``name``."""

    name: str


Expr = Lit | CharClass | Seq | Alt | Repeat | Ref

EMPTY = Lit("")


def seq(*items: Expr) -> Expr:
    """A sequence, flattened, with empty literals dropped and adjacent literals merged."""
    out: list[Expr] = []
    for item in items:
        parts = item.items if isinstance(item, Seq) else (item,)
        for p in parts:
            if isinstance(p, Lit):
                if not p.text:
                    continue
                if out and isinstance(out[-1], Lit):
                    out[-1] = Lit(out[-1].text + p.text)
                    continue
            out.append(p)
    if not out:
        return EMPTY
    return out[0] if len(out) == 1 else Seq(tuple(out))


def alt(*options: Expr) -> Expr:
    """Alternatives, flattened and de-duplicated (order kept)."""
    out: list[Expr] = []
    for o in options:
        for p in o.options if isinstance(o, Alt) else (o,):
            if p not in out:
                out.append(p)
    return out[0] if len(out) == 1 else Alt(tuple(out))


def opt(item: Expr) -> Expr:
    """``item`` or nothing."""
    return Repeat(item, 0, 1)


@dataclass(frozen=True, slots=True)
class Rule:
    """A named rule; ``token=True`` marks a greedy-safe regular lexeme (see the module docstring)."""

    name: str
    body: Expr
    token: bool = False


@dataclass(frozen=True, slots=True)
class Grammar:
    """Named rules and the start rule's name. Rule names match ``[a-z][a-z0-9_]*``."""

    rules: Mapping[str, Rule]
    start: str

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules.values())

    def __len__(self) -> int:
        return len(self.rules)

    def check(self) -> None:
        """Raise ``ValueError`` for a dangling reference or a token rule that uses a non-token rule."""
        if self.start not in self.rules:
            raise ValueError(f"no start rule {self.start!r}")
        for rule in self.rules.values():
            for name in refs_in(rule.body):
                target = self.rules.get(name)
                if target is None:
                    raise ValueError(f"rule {rule.name!r} refers to missing rule {name!r}")
                if rule.token and not target.token:
                    raise ValueError(f"token rule {rule.name!r} refers to non-token rule {name!r}")


def refs_in(expr: Expr) -> Iterator[str]:
    """Names of the rules ``expr`` refers to, directly."""
    if isinstance(expr, Ref):
        yield expr.name
    elif isinstance(expr, Seq):
        for item in expr.items:
            yield from refs_in(item)
    elif isinstance(expr, Alt):
        for item in expr.options:
            yield from refs_in(item)
    elif isinstance(expr, Repeat):
        yield from refs_in(expr.item)
