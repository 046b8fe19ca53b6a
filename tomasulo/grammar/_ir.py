"""A small grammar IR: the one source every engine's grammar is emitted from.

Expressions are immutable values::

    Lit("search(")                      a literal string
    CharClass(((0x61, 0x7A),), False)   one character in (or, negated, not in) the ranges
    Seq((a, b, c))                      a then b then c
    Alt((a, b))                         a or b
    Repeat(a, 0, None)                  a, between ``min`` and ``max`` times (``None``: unbounded)
    Ref("value_int")                    the rule of that name
    And(a, b), Not(a)                   llguidance only, in lexemes: both match / a does not match

A :class:`Grammar` holds named :class:`Rule` s and a start rule. A rule marked ``token=True`` is a
lexeme: its language is regular (it may only refer to other token rules) and it must be
greedy-safe (no valid continuation of a match also extends the match), so lexer-based engines
(Lark terminals, llguidance lexemes) can match it as one regular expression. Emitters that have no
lexer (GBNF) treat token rules like any other rule. :class:`And` and :class:`Not` exist only in
the llguidance form of a grammar (llguidance's lexeme ``&`` and ``~``); the portable emitters
never see them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

__all__ = [
    "CTX",
    "SCALARS",
    "Alt",
    "And",
    "CharClass",
    "Expr",
    "Grammar",
    "Lit",
    "Not",
    "Ref",
    "Repeat",
    "Rule",
    "Seq",
    "alt",
    "complement",
    "opt",
    "seq",
]


@dataclass(frozen=True, slots=True)
class Lit:
    """A literal string."""

    text: str


@dataclass(frozen=True, slots=True)
class CharClass:
    """One character within ``ranges`` (inclusive code point pairs), or outside them if ``negated``.

    Build negated classes with :meth:`of`, which writes them as the complement within
    :data:`SCALARS` (every Unicode scalar value: no surrogate, nothing above U+10FFFF): an engine
    that decodes UTF-8 byte by byte (llama.cpp) then cannot let an invalid sequence through a
    ``[^...]`` class, since every range an emitter writes is made of whole valid characters.
    """

    ranges: tuple[tuple[int, int], ...]
    negated: bool = False

    @classmethod
    def of(cls, chars: str, *, negated: bool = False, ranges: tuple[tuple[int, int], ...] = ()) -> CharClass:
        """A class from single characters plus explicit ranges: ``CharClass.of("_", ranges=((97, 122),))``.

        ``negated=True`` gives the positive class of every scalar value not listed.
        """
        listed = tuple((ord(c), ord(c)) for c in chars) + ranges
        return cls(complement(listed)) if negated else cls(listed)


#: Every Unicode scalar value (what UTF-8 can encode): code points less the surrogates.
SCALARS: tuple[tuple[int, int], ...] = ((0x0, 0xD7FF), (0xE000, 0x10FFFF))


def complement(ranges: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    """The scalar values (:data:`SCALARS`) outside ``ranges``, as sorted disjoint ranges."""
    out: list[tuple[int, int]] = []
    for lo, hi in SCALARS:
        start = lo
        for a, b in sorted(ranges):
            if b < start or a > hi:
                continue
            if a > start:
                out.append((start, a - 1))
            start = max(start, b + 1)
        if start <= hi:
            out.append((start, hi))
    return tuple(out)


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


@dataclass(frozen=True, slots=True)
class And:
    """Text that both ``left`` and ``right`` match (llguidance lexemes only)."""

    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class Not:
    """Any text that ``item`` does not match (llguidance lexemes only)."""

    item: Expr


Expr = Lit | CharClass | Seq | Alt | Repeat | Ref | And | Not

#: Stands for the context number in the names of template rules (never appears in emitted text).
CTX = "\x00"

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
    """Named rules, the start rule's name and the contexts templates are copied for.

    Rule names match ``[a-z][a-z0-9_]*``, templates' names hold :data:`CTX` too; an instance
    of template ``name`` is ``name.replace(CTX, str(i))`` for each ``i`` in ``contexts``.
    """

    rules: Mapping[str, Rule]
    start: str
    contexts: tuple[int, ...] = ()

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules.values())

    def __len__(self) -> int:
        """The number of rules, counting each copy of a template."""
        templates = sum(1 for name in self.rules if CTX in name)
        return len(self.rules) - templates + templates * len(self.contexts)

    def lookup(self, name: str) -> Rule:
        """The rule called ``name``: a plain rule, a template, or (for an instance) its template.

        Raises ``KeyError`` when there is none.
        """
        rule = self.rules.get(name)
        if rule is not None:
            return rule
        if CTX in name:  # a template name whose instances are plain rules
            if self.contexts:
                return self.rules[name.replace(CTX, str(self.contexts[0]))]
            raise KeyError(name)
        head, _, num = name.rpartition("_")
        if num.isdigit() and int(num) in self.contexts:
            return self.rules[f"{head}_{CTX}"]
        raise KeyError(name)

    def check(self) -> None:
        """Raise ``ValueError`` for a dangling reference or a token rule that uses a non-token rule."""
        if self.start not in self.rules:
            raise ValueError(f"no start rule {self.start!r}")
        for rule in self.rules.values():
            for name in refs_in(rule.body):
                names = [name]
                if CTX in name and CTX not in rule.name:
                    raise ValueError(f"rule {rule.name!r} refers to template {name!r} outside a template")
                if CTX in name and name not in self.rules:
                    names = [name.replace(CTX, str(i)) for i in self.contexts]
                for n in names:
                    try:
                        target = self.lookup(n)
                    except KeyError:
                        raise ValueError(f"rule {rule.name!r} refers to missing rule {n!r}") from None
                    if rule.token and not target.token:
                        raise ValueError(f"token rule {rule.name!r} refers to non-token rule {n!r}")


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
    elif isinstance(expr, Repeat | Not):
        yield from refs_in(expr.item)
    elif isinstance(expr, And):
        yield from refs_in(expr.left)
        yield from refs_in(expr.right)
