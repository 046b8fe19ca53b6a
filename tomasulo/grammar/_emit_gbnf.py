"""Emit the grammar IR as GBNF: llama.cpp's ``grammar``, SGLang's ``ebnf``, vLLM with xgrammar.

Rule names become ``[a-z0-9-]`` words (``_`` turns into ``-``) and the start rule is ``root``.
Characters outside printable ASCII are written ``\\xNN`` or ``\\uNNNN``; those from U+0100 to
U+0FFF and above U+FFFF are written as themselves (UTF-8), since llguidance's GBNF reader (vLLM's
guidance backend) misreads ``\\u0NNN`` and ``\\UNNNNNNNN``.
Token rules are ordinary rules here: GBNF engines match characters, not lexemes.
"""

from __future__ import annotations

from ._ir import CTX, Alt, And, CharClass, Expr, Grammar, Lit, Not, Ref, Repeat, Seq

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
    if cp < 0x1000:  # llguidance's GBNF reader misreads \u0NNN (it drops the zero)
        return c
    if cp < 0x10000:
        return f"\\u{cp:04X}"
    return c


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
        if isinstance(e, And | Not):
            raise ValueError("GBNF has no lexeme intersection or complement (llguidance form only)")
        item = atom(e.item)
        least, most = e.min, e.max
        if most is None:
            return f"{item}*" if least == 0 else f"{item}+" if least == 1 else f"{item}{{{least},}}"
        if least == 0 and most == 1:
            return f"{item}?"
        if least == most:
            return f"{item}{{{least}}}"
        return f"{item}{{{least},{most}}}"

    def atom(e: Expr) -> str:
        text = expr(e)
        if isinstance(e, Seq | Repeat) or (isinstance(e, Alt) and text.endswith("?")):
            return f"({text})"
        return text

    lines = [f"root ::= {_name(grammar.start)}"]
    templates: list[str] = []
    for r in grammar:
        (templates if CTX in r.name else lines).append(f"{_name(r.name)} ::= {expr(r.body, top=True)}")
    if templates and grammar.contexts:  # written once, copied per context as text
        parts = "\n".join(templates).split(CTX)
        lines.extend(str(i).join(parts) for i in grammar.contexts)
    return "\n".join(lines) + "\n"
