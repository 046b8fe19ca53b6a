"""Emit the grammar IR as portable Lark and as regular expressions for its terminals.

The output sticks to the subset shared by python-lark, llguidance (and so OpenAI custom-tool
grammars and vLLM's guidance backend): lowercase rules, uppercase terminals each defined by one
``/regex/``, double-quoted literals, ``|``, ``?``, ``*``, ``+``, parentheses. Regexes use only
character classes, ``(?:...)`` groups, ``|`` and ``? * + {m,n}``, with every character other than
a printable ASCII character written as ``\\xNN``, ``\\uNNNN`` or ``\\UNNNNNNNN`` and every
metacharacter escaped with a backslash, so that Python's ``re`` (after Lark's own unescaping) and
Rust's ``regex`` read them the same way.
"""

from __future__ import annotations

from ._ir import Alt, CharClass, Expr, Grammar, Lit, Ref, Repeat, Seq

__all__ = ["emit_lark", "regex_of"]


_META = set("\\.+*?()|[]{}^$/-")


def _rx_char(cp: int, *, in_class: bool = False) -> str:
    # Lark evaluates \x, \u, \U, \n, \t, \r, \f escapes before compiling a /regex/, so
    # metacharacters are escaped with a backslash and only non-printable characters use \xNN
    c = chr(cp)
    if c in _META or (in_class and c in "&~"):
        return "\\" + c
    if 0x20 <= cp < 0x7F:
        return c
    if cp < 0x100:
        return f"\\x{cp:02x}"
    if cp < 0x10000:
        return f"\\u{cp:04x}"
    return f"\\U{cp:08x}"


def _rx_class(cc: CharClass) -> str:
    parts = []
    for lo, hi in cc.ranges:
        a = _rx_char(lo, in_class=True)
        parts.append(a if lo == hi else f"{a}-{_rx_char(hi, in_class=True)}")
    return "[" + ("^" if cc.negated else "") + "".join(parts) + "]"


def _rx_quant(lo: int, hi: int | None) -> str:
    if (lo, hi) == (0, None):
        return "*"
    if (lo, hi) == (1, None):
        return "+"
    if (lo, hi) == (0, 1):
        return "?"
    if hi is None:
        return f"{{{lo},}}"
    if lo == hi:
        return f"{{{lo}}}"
    return f"{{{lo},{hi}}}"


def _width(e: Expr, grammar: Grammar) -> tuple[int, float]:
    """The shortest and longest match of a token expression (``inf``: unbounded)."""
    if isinstance(e, Lit):
        return len(e.text), len(e.text)
    if isinstance(e, CharClass):
        return 1, 1
    if isinstance(e, Seq):
        lo, hi = 0, 0.0
        for item in e.items:
            a, b = _width(item, grammar)
            lo, hi = lo + a, hi + b
        return lo, hi
    if isinstance(e, Alt):
        widths = [_width(o, grammar) for o in e.options]
        return min(w[0] for w in widths), max(w[1] for w in widths)
    if isinstance(e, Repeat):
        a, b = _width(e.item, grammar)
        return a * e.min, (float("inf") if e.max is None and b > 0 else b * (e.max or 0))
    return _width(grammar.rules[e.name].body, grammar)


def _width_key(e: Expr, grammar: Grammar) -> tuple[float, int]:
    lo, hi = _width(e, grammar)
    return -hi, -lo


def regex_of(expr: Expr, grammar: Grammar) -> str:
    """A regular expression for a token expression (token rules it refers to are inlined)."""

    def go(e: Expr) -> str:
        if isinstance(e, Lit):
            return "".join(_rx_char(ord(c)) for c in e.text)
        if isinstance(e, CharClass):
            return _rx_class(e)
        if isinstance(e, Seq):
            return "".join(go(i) for i in e.items)
        if isinstance(e, Alt):
            # leftmost-first engines (Python re, which python-lark's lexer uses) take the first
            # alternative that matches, not the longest: try the longest alternatives first
            opts = sorted(e.options, key=lambda o: _width_key(o, grammar))
            return "(?:" + "|".join(go(o) for o in opts) + ")"
        if isinstance(e, Repeat):
            inner = go(e.item)
            atomic = isinstance(e.item, CharClass) or (isinstance(e.item, Lit) and len(e.item.text) == 1)
            base = inner if atomic else f"(?:{inner})"
            return base + _rx_quant(e.min, e.max)
        rule = grammar.rules[e.name]
        return "(?:" + go(rule.body) + ")"

    return go(expr)


def _lit(text: str) -> str:
    out = []
    for c in text:
        if c == '"':
            out.append('\\"')
        elif c == "\\":
            out.append("\\\\")
        elif c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or c in "\u2028\u2029":
            raise ValueError(f"literal {text!r} holds a control character")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def emit_lark(grammar: Grammar) -> str:
    """The grammar as Lark text with start rule ``start``."""
    grammar.check()
    used_tokens: set[str] = set()
    lines: list[str] = []

    def expr(e: Expr, top: bool = False) -> str:
        if isinstance(e, Lit):
            return _lit(e.text)
        if isinstance(e, CharClass):
            return "/" + _rx_class(e) + "/"
        if isinstance(e, Ref):
            target = grammar.rules[e.name]
            if target.token:
                used_tokens.add(e.name)
                return e.name.upper()
            return e.name
        if isinstance(e, Seq):
            return " ".join(atom(i) for i in e.items)
        if isinstance(e, Alt):
            opts = [o for o in e.options if o != Lit("")]
            body = " | ".join(expr(o) for o in opts)
            if len(opts) < len(e.options):
                return f"({body})?"
            return body if top else f"({body})"
        # Repeat
        lo, hi = e.min, e.max
        item = atom(e.item)
        if (lo, hi) == (0, 1):
            return f"{item}?"
        if (lo, hi) == (0, None):
            return f"{item}*"
        if (lo, hi) == (1, None):
            return f"{item}+"
        parts = [item] * lo
        if hi is None:
            parts.append(f"{item}*")
        else:
            tail = ""
            for _ in range(hi - lo):
                tail = f"({item} {tail})?" if tail else f"{item}?"
            if tail:
                parts.append(tail)
        return " ".join(parts) if parts else '""'

    def atom(e: Expr) -> str:
        text = expr(e)
        if isinstance(e, Seq | Repeat) or (isinstance(e, Alt) and text.endswith("?")):
            return f"({text})"
        return text

    if grammar.start != "start":
        lines.append(f"start: {grammar.start}")
    for rule in grammar:
        if rule.token:
            continue
        lines.append(f"{rule.name}: {expr(rule.body, top=True)}")
    term_lines = [
        f"{name.upper()}: /{regex_of(grammar.rules[name].body, grammar)}/" for name in sorted(used_tokens)
    ]
    return "\n".join(lines + sorted(term_lines)) + "\n"
