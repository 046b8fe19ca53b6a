"""Emit the grammar IR as GBNF: llama.cpp's ``grammar``, SGLang's ``ebnf``, vLLM with xgrammar.

Rule names become ``[a-z0-9-]`` words (``_`` turns into ``-``) and the start rule is ``root``.
Characters outside printable ASCII are written ``\\xNN``, ``\\uNNNN`` or ``\\UNNNNNNNN``.
Token rules are ordinary rules here: GBNF engines match characters, not lexemes.
"""

from __future__ import annotations

from ._ir import Alt, CharClass, Expr, Grammar, Lit, Ref, Repeat, Seq

__all__ = ["emit_gbnf"]

_SAFE_CLASS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


def _esc(cp: int, *, in_class: bool) -> str:
    c = chr(cp)
    if in_class:
        if c in _SAFE_CLASS:
            return c
    elif 0x20 <= cp < 0x7F and c not in '"\\':
        return c
    if c == "\n":
        return "\\n"
    if cp < 0x100:
        return f"\\x{cp:02X}"
    if cp < 0x10000:
        return f"\\u{cp:04X}"
    return f"\\U{cp:08X}"


def _name(rule: str) -> str:
    return rule.replace("_", "-")


def emit_gbnf(grammar: Grammar) -> str:
    """The grammar as GBNF text with start rule ``root``."""
    grammar.check()

    def expr(e: Expr, top: bool = False) -> str:
        if isinstance(e, Lit):
            return '"' + "".join(_esc(ord(c), in_class=False) for c in e.text) + '"'
        if isinstance(e, CharClass):
            parts = []
            for lo, hi in e.ranges:
                a = _esc(lo, in_class=True)
                parts.append(a if lo == hi else f"{a}-{_esc(hi, in_class=True)}")
            return "[" + ("^" if e.negated else "") + "".join(parts) + "]"
        if isinstance(e, Ref):
            return _name(e.name)
        if isinstance(e, Seq):
            return " ".join(atom(i) for i in e.items)
        if isinstance(e, Alt):
            opts = [o for o in e.options if o != Lit("")]
            body = " | ".join(expr(o) for o in opts)
            if len(opts) < len(e.options):
                return f"({body})?"
            return body if top else f"({body})"
        assert isinstance(e, Repeat)
        item = atom(e.item)
        lo, hi = e.min, e.max
        if (lo, hi) == (0, 1):
            return f"{item}?"
        if (lo, hi) == (0, None):
            return f"{item}*"
        if (lo, hi) == (1, None):
            return f"{item}+"
        if hi is None:
            return f"{item}{{{lo},}}"
        if lo == hi:
            return f"{item}{{{lo}}}"
        return f"{item}{{{lo},{hi}}}"

    def atom(e: Expr) -> str:
        text = expr(e)
        if isinstance(e, Seq | Repeat) or (isinstance(e, Alt) and text.endswith("?")):
            return f"({text})"
        return text

    lines = [f"root ::= {_name(grammar.start)}"]
    lines.extend(f"{_name(r.name)} ::= {expr(r.body, top=True)}" for r in grammar)
    return "\n".join(lines) + "\n"
