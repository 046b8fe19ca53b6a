"""A safe subset of regular expressions, read into the grammar IR (string ``pattern``).

A string parameter's ``pattern`` is validated by Python's ``re`` (``re.search``, as JSON Schema
validators do). Where the pattern stays inside the subset below, the plan grammar holds strings
to it too, so an engine cannot emit a value that validation would refuse:

- literal characters and escapes (``\\.``, ``\\n``, ``\\t``, ``\\xHH``, ``\\uHHHH``), ``.``,
- character classes ``[a-z_]``, ``[^"]``, and ``\\d \\w \\s \\D \\W \\S`` (Unicode, as ``re`` has them),
- groups ``(...)``, ``(?:...)``, ``(?P<name>...)`` and alternation ``|``,
- quantifiers ``* + ? {m} {m,} {m,n}`` (lazy ones too: a whole-string match is the same),
- ``^``/``\\A`` at the very start and ``$``/``\\Z`` at the very end. A side without an anchor
  admits any text there, as ``re.search`` does; ``$`` also admits one trailing newline.

Anything else (lookaround, backreferences, flags, ``\\b``, anchors inside, bounds above
:data:`MAX_REPEAT`) is outside the subset: :func:`pattern_expr` returns ``None``, the grammar
admits any string there, and validation after parsing (or at dispatch, for references) still
applies the pattern.

The IR read here is over the string's *characters*; :func:`written` turns it into the IR of the
text a plan writes between the quotes (JSON escapes for ``"``, ``\\`` and control characters).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from ._ir import EMPTY, SCALARS, Alt, CharClass, Expr, Lit, Repeat, Seq, alt, complement, seq

__all__ = ["MAX_REPEAT", "Pattern", "read_pattern", "written"]

#: Quantifier bounds up to this are kept; a larger upper bound is widened to "no bound", a
#: larger lower bound puts the pattern outside the subset.
MAX_REPEAT = 256
#: A pattern longer than this is not read (it is still validated).
MAX_PATTERN = 1000

_Ranges = tuple[tuple[int, int], ...]


class _Unsupported(Exception):
    """The pattern uses something outside the subset."""


@functools.cache
def _category(name: str) -> _Ranges:
    """The code point ranges of ``re``'s ``\\d``, ``\\w`` or ``\\s`` (Unicode), found by ``re``
    itself over every scalar value, so they are exactly what validation matches."""
    out: list[tuple[int, int]] = []
    for lo, text in _scalar_texts():
        out.extend((lo + m.start(), lo + m.end() - 1) for m in re.finditer(f"\\{name}+", text))
    return tuple(out)


@functools.cache
def _scalar_texts() -> tuple[tuple[int, str], ...]:
    """Every scalar value as text, one string per range of :data:`SCALARS` (built once)."""
    return tuple((lo, "".join(map(chr, range(lo, hi + 1)))) for lo, hi in SCALARS)


def _union(*parts: _Ranges) -> _Ranges:
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(r for p in parts for r in p):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return tuple(merged)


_DOT = complement(((0x0A, 0x0A),))  # any character but a newline
_ESCAPES = {"n": 0x0A, "t": 0x09, "r": 0x0D, "f": 0x0C, "v": 0x0B, "a": 0x07, "0": 0x00}


class _Reader:
    """A recursive-descent reader of one pattern (without its end anchors)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def take(self) -> str:
        c = self.peek()
        if not c:
            raise _Unsupported("unexpected end")
        self.pos += 1
        return c

    def alternation(self) -> Expr:
        options = [self.sequence()]
        while self.peek() == "|":
            self.pos += 1
            options.append(self.sequence())
        return alt(*options)

    def sequence(self) -> Expr:
        items: list[Expr] = []
        while self.peek() not in ("", "|", ")"):
            items.append(self.quantified(self.atom()))
        return seq(*items)

    def quantified(self, item: Expr) -> Expr:
        c = self.peek()
        if c in ("*", "+", "?"):
            self.pos += 1
            lo, hi = {"*": (0, None), "+": (1, None), "?": (0, 1)}[c]
        elif c == "{" and self._bounds() is not None:
            lo, hi = self._bounds_taken()
        else:
            return item
        if self.peek() == "?":  # lazy: the same strings match as a whole
            self.pos += 1
        if self.peek() in ("*", "+", "?", "{"):
            raise _Unsupported("a quantifier after a quantifier")
        if lo > MAX_REPEAT:
            raise _Unsupported("a repetition bound too large for a grammar")
        if hi is not None and hi > MAX_REPEAT:
            hi = None
        return Repeat(item, lo, hi)

    def _bounds(self) -> tuple[int, int | None, int] | None:
        """``{m}``, ``{m,}``, ``{m,n}`` at the cursor: (m, n, its length), or None (a literal ``{``)."""
        end = self.text.find("}", self.pos)
        if end < 0:
            return None
        body = self.text[self.pos + 1 : end]
        lo_s, comma, hi_s = body.partition(",")
        if not (lo_s or hi_s) or not (lo_s + hi_s).isascii():
            return None
        if (lo_s and not lo_s.isdigit()) or (hi_s and not hi_s.isdigit()):
            return None
        lo = int(lo_s) if lo_s else 0  # `{,n}` is `{0,n}` to `re`
        hi = int(hi_s) if hi_s else (None if comma else lo)
        if hi is not None and hi < lo:
            raise _Unsupported("bad bounds")
        return lo, hi, end + 1 - self.pos

    def _bounds_taken(self) -> tuple[int, int | None]:
        got = self._bounds()
        assert got is not None
        self.pos += got[2]
        return got[0], got[1]

    def atom(self) -> Expr:
        c = self.take()
        if c == "(":
            if self.peek() == "?":
                if self.text.startswith("?:", self.pos):
                    self.pos += 2
                elif self.text.startswith("?P<", self.pos):
                    end = self.text.find(">", self.pos)
                    if end < 0:
                        raise _Unsupported("bad group name")
                    self.pos = end + 1
                else:
                    raise _Unsupported("lookaround, flags or other (?...) groups")
            inner = self.alternation()
            if self.take() != ")":
                raise _Unsupported("unclosed group")
            return inner
        if c == "[":
            return CharClass(self.char_class())
        if c == ".":
            return CharClass(_DOT)
        if c == "\\":
            ranges = self.escape(in_class=False)
            if len(ranges) == 1 and ranges[0][0] == ranges[0][1]:
                return Lit(chr(ranges[0][0]))
            return CharClass(ranges)
        if c in ("^", "$"):
            raise _Unsupported("an anchor inside the pattern")
        if c in ("*", "+", "?", ")"):
            raise _Unsupported(f"nothing to repeat before {c!r}")
        if c == "{" and self._bounds_at(self.pos - 1):
            raise _Unsupported("nothing to repeat")
        return Lit(c)

    def _bounds_at(self, pos: int) -> bool:
        saved, self.pos = self.pos, pos
        try:
            return self._bounds() is not None
        finally:
            self.pos = saved

    def escape(self, *, in_class: bool) -> _Ranges:
        """The characters of the escape after a ``\\`` (one character, or a class)."""
        c = self.take()
        if c in "dws":
            return _category(c)
        if c in "DWS":
            return complement(_category(c.lower()))
        if c in _ESCAPES and (c != "0" or not self.peek().isdigit()):
            cp = _ESCAPES[c]
            return ((cp, cp),)
        if c == "b" and in_class:
            return ((0x08, 0x08),)
        if c in ("x", "u"):
            n = 2 if c == "x" else 4
            digits = self.text[self.pos : self.pos + n]
            if len(digits) != n or any(d not in "0123456789abcdefABCDEF" for d in digits):
                raise _Unsupported("bad \\x or \\u escape")
            self.pos += n
            cp = int(digits, 16)
            if 0xD800 <= cp <= 0xDFFF:
                raise _Unsupported("a surrogate")
            return ((cp, cp),)
        if c.isascii() and c.isalnum():
            raise _Unsupported(f"the escape \\{c}")  # \b \B \A \Z \1 \p ... : not in the subset
        return ((ord(c), ord(c)),)

    def char_class(self) -> _Ranges:
        negated = self.peek() == "^"
        if negated:
            self.pos += 1
        parts: list[_Ranges] = []
        first = True
        while True:
            c = self.take()
            if c == "]" and not first:
                break
            first = False
            if c == "[" and self.peek() in (":", "=", "."):
                raise _Unsupported("POSIX classes")
            lo_r = self.escape(in_class=True) if c == "\\" else ((ord(c), ord(c)),)
            if self.peek() == "-" and self.text[self.pos + 1 : self.pos + 2] not in ("]", ""):
                self.pos += 1
                h = self.take()
                hi_r = self.escape(in_class=True) if h == "\\" else ((ord(h), ord(h)),)
                if len(lo_r) != 1 or len(hi_r) != 1 or lo_r[0][0] != lo_r[0][1] or hi_r[0][0] != hi_r[0][1]:
                    raise _Unsupported("a range between classes")
                if hi_r[0][0] < lo_r[0][0]:
                    raise _Unsupported("a reversed range")
                parts.append(((lo_r[0][0], hi_r[0][0]),))
            else:
                parts.append(lo_r)
        ranges = _union(*parts)
        # a class holds scalar values only (no surrogates), as the IR requires
        ranges = _union(*(_clip(r) for r in ranges))
        return complement(ranges) if negated else ranges


def _clip(r: tuple[int, int]) -> _Ranges:
    out = []
    for lo, hi in SCALARS:
        a, b = max(lo, r[0]), min(hi, r[1])
        if a <= b:
            out.append((a, b))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Pattern:
    """A pattern inside the subset: ``body`` (IR over characters) and its anchors.

    ``head``/``tail``: anchored at the start/end (else any text may come before/after);
    ``newline``: a ``$`` end, which also admits one trailing newline.
    """

    body: Expr
    head: bool
    tail: bool
    newline: bool

    def chars(self) -> Expr:
        """The IR of every string the pattern accepts (the unanchored sides as any text)."""
        anything = Repeat(CharClass(SCALARS), 0)
        return seq(
            EMPTY if self.head else anything,
            self.body,
            Repeat(Lit("\n"), 0, 1) if self.newline else EMPTY,
            EMPTY if self.tail else anything,
        )


@functools.lru_cache(maxsize=256)
def read_pattern(pattern: str) -> Pattern | None:
    """``pattern`` read into the IR, or ``None`` when it is outside the subset (see the module
    docstring) or accepts every string.

    >>> read_pattern("^[ab]{2}$") is not None, read_pattern("(?=x)") is None
    (True, True)
    """
    if not isinstance(pattern, str) or len(pattern) > MAX_PATTERN:
        return None
    text, head, tail, newline = pattern, False, False, False
    if text.startswith("^"):
        text, head = text[1:], True
    elif text.startswith("\\A"):
        text, head = text[2:], True
    if text.endswith("\\Z") and _escapes_before(text, len(text) - 2) % 2 == 0:
        text, tail = text[:-2], True
    elif text.endswith("$") and _escapes_before(text, len(text) - 1) % 2 == 0:
        text, tail, newline = text[:-1], True, True
    reader = _Reader(text)
    try:
        options = [reader.sequence()]
        while reader.peek() == "|":
            reader.pos += 1
            options.append(reader.sequence())
        if reader.pos != len(text):
            raise _Unsupported("an unmatched )")
        if len(options) > 1 and (head or tail):
            raise _Unsupported("`^a|b$` anchors one alternative each")
        body = alt(*options)
    except (_Unsupported, RecursionError):
        return None
    if not head and not tail and _nullable(body):
        return None  # every string matches
    return Pattern(body, head, tail, newline)


def _escapes_before(text: str, end: int) -> int:
    """How many backslashes come right before ``text[end]``."""
    return end - len(text[:end].rstrip("\\"))


def _nullable(e: Expr) -> bool:
    if isinstance(e, Lit):
        return not e.text
    if isinstance(e, Seq):
        return all(_nullable(i) for i in e.items)
    if isinstance(e, Alt):
        return any(_nullable(o) for o in e.options)
    if isinstance(e, Repeat):
        return e.min == 0 or _nullable(e.item)
    return False


def chars_of(e: Expr) -> _Ranges:
    """Every character ``e`` may hold (its alphabet)."""
    if isinstance(e, Lit):
        return _union(*(((ord(c), ord(c)),) for c in e.text))
    if isinstance(e, CharClass):
        return e.ranges
    if isinstance(e, Seq):
        return _union(*(chars_of(i) for i in e.items))
    if isinstance(e, Alt):
        return _union(*(chars_of(o) for o in e.options))
    if isinstance(e, Repeat):
        return chars_of(e.item) if e.max != 0 else ()
    return ()


def _holds(ranges: _Ranges, c: str) -> bool:
    return any(lo <= ord(c) <= hi for lo, hi in ranges)


_SHORT = {0x08: "\\b", 0x0C: "\\f", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x22: '\\"', 0x5C: "\\\\"}
#: Characters a JSON string writes escaped: control characters, the quote, the backslash.
_ESCAPED: _Ranges = ((0x00, 0x1F), (0x22, 0x22), (0x5C, 0x5C))


def _written_class(ranges: _Ranges) -> Expr:
    raw = _minus(ranges, _ESCAPED)
    options: list[Expr] = [CharClass(raw)] if raw else []
    for lo, hi in ranges:
        for cp in range(max(lo, 0), min(hi, 0x5C) + 1):
            if _holds(_ESCAPED, chr(cp)):
                options.append(Lit(_SHORT.get(cp, f"\\u{cp:04x}")))
    if not options:
        raise ValueError("an empty character class")
    return alt(*options)


def _minus(ranges: _Ranges, cut: _Ranges) -> _Ranges:
    keep = complement(cut)
    out = []
    for lo, hi in ranges:
        for a, b in keep:
            x, y = max(lo, a), min(hi, b)
            if x <= y:
                out.append((x, y))
    return tuple(out)


def written(e: Expr) -> Expr:
    """The IR of how a plan writes the characters ``e`` matches inside a JSON string (the
    canonical escapes of ``json.dumps``: ``\\"``, ``\\\\``, ``\\n`` ..., ``\\u00XX``)."""
    if isinstance(e, Lit):
        return seq(*(_written_class(((ord(c), ord(c)),)) for c in e.text)) if e.text else EMPTY
    if isinstance(e, CharClass):
        return _written_class(e.ranges)
    if isinstance(e, Seq):
        return seq(*(written(i) for i in e.items))
    if isinstance(e, Alt):
        return alt(*(written(o) for o in e.options))
    if isinstance(e, Repeat):
        return Repeat(written(e.item), e.min, e.max)
    raise TypeError(f"no written form for {type(e).__name__}")
