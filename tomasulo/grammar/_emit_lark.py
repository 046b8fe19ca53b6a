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

from ._ir import CTX, Alt, And, CharClass, Expr, Grammar, Lit, Not, Ref, Repeat, Rule, Seq, refs_in

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


class _Regexes:
    """Regular expressions (and match widths) of token rules, each computed once."""

    def __init__(self, grammar: Grammar) -> None:
        self.grammar = grammar
        self.widths: dict[str, tuple[int, float]] = {}
        self.texts: dict[str, str] = {}

    def width(self, e: Expr) -> tuple[int, float]:
        """The shortest and longest match of a token expression (``inf``: unbounded)."""
        if isinstance(e, Lit):
            return len(e.text), len(e.text)
        if isinstance(e, CharClass):
            return 1, 1
        if isinstance(e, Seq):
            lo, hi = 0, 0.0
            for item in e.items:
                a, b = self.width(item)
                lo, hi = lo + a, hi + b
            return lo, hi
        if isinstance(e, Alt):
            widths = [self.width(o) for o in e.options]
            return min(w[0] for w in widths), max(w[1] for w in widths)
        if isinstance(e, And | Not):
            raise ValueError("a lexeme with & or ~ has no plain regular expression")
        if isinstance(e, Repeat):
            a, b = self.width(e.item)
            return a * e.min, (float("inf") if e.max is None and b > 0 else b * (e.max or 0))
        hit = self.widths.get(e.name)
        if hit is None:
            hit = self.widths[e.name] = self.width(self.grammar.lookup(e.name).body)
        return hit

    def _key(self, e: Expr) -> tuple[float, int]:
        lo, hi = self.width(e)
        return -hi, -lo

    def regex(self, e: Expr) -> str:
        if isinstance(e, Lit):
            return "".join(_rx_char(ord(c)) for c in e.text)
        if isinstance(e, CharClass):
            return _rx_class(e)
        if isinstance(e, Seq):
            return "".join(self.regex(i) for i in e.items)
        if isinstance(e, Alt):
            # leftmost-first engines (Python re, which python-lark's lexer uses) take the first
            # alternative that matches, not the longest: try the longest alternatives first
            opts = sorted(e.options, key=self._key)
            return "(?:" + "|".join(self.regex(o) for o in opts) + ")"
        if isinstance(e, And | Not):
            raise ValueError("a lexeme with & or ~ has no plain regular expression")
        if isinstance(e, Repeat):
            inner = self.regex(e.item)
            atomic = isinstance(e.item, CharClass) or (isinstance(e.item, Lit) and len(e.item.text) == 1)
            return (inner if atomic else f"(?:{inner})") + _rx_quant(e.min, e.max)
        hit = self.texts.get(e.name)
        if hit is None:
            hit = self.texts[e.name] = "(?:" + self.regex(self.grammar.lookup(e.name).body) + ")"
        return hit


def regex_of(expr: Expr, grammar: Grammar) -> str:
    """A regular expression for a token expression (token rules it refers to are inlined)."""
    return _Regexes(grammar).regex(expr)


def _quote_safe(regex: str) -> str:
    """``regex`` with each escaped backslash before a quote written ``\\["]``: Lark reads
    ``\\"`` in a ``/regex/`` as an escaped quote and drops the backslash."""
    return regex.replace('\\\\"', '\\\\["]')


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
    """The grammar as Lark text with start rule ``start``.

    A token rule made of other token rules is written in terms of them (Lark composes
    terminals), so that a lexeme shared by many others is written once; the other token rules
    are one ``/regex/`` each. Templates are written once and copied per context as text.
    """
    grammar.check()
    lookup = grammar.lookup

    def expr(e: Expr, top: bool = False) -> str:
        if isinstance(e, Lit):
            return _lit(e.text)
        if isinstance(e, CharClass):
            return "/" + _rx_class(e) + "/"
        if isinstance(e, Ref):
            return e.name.upper() if lookup(e.name).token else e.name
        if isinstance(e, Seq):
            return " ".join(atom(i) for i in e.items)
        if isinstance(e, Alt):
            opts = [o for o in e.options if o != Lit("")]
            body = " | ".join(expr(o) for o in opts)
            if len(opts) < len(e.options):
                return f"({body})?"
            return body if top else f"({body})"
        if isinstance(e, And):  # llguidance lexemes only (see emit_llguidance)
            return f"{atom(e.left)} & {atom(e.right)}"
        if isinstance(e, Not):
            return f"~{atom(e.item)}"
        lo, hi = e.min, e.max
        item = atom(e.item, inner=True)
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

    def atom(e: Expr, inner: bool = False) -> str:
        # a repetition is an atom in a sequence, but needs parentheses to be repeated again
        text = expr(e)
        if isinstance(e, Seq | And) or (inner and (isinstance(e, Repeat) or text.endswith("?"))):
            return f"({text})"
        return text

    rx = _Regexes(grammar)

    def line(rule: Rule) -> str:
        if not rule.token:
            return f"{rule.name}: {expr(rule.body, top=True)}"
        if any(True for _ in refs_in(rule.body)):  # a token refers to tokens only
            return f"{rule.name.upper()}: {expr(rule.body, top=True)}"
        return f"{rule.name.upper()}: /{_quote_safe(rx.regex(rule.body))}/"

    lines = [] if grammar.start == "start" else [f"start: {grammar.start}"]
    templates: list[str] = []
    for rule in grammar:
        (templates if CTX in rule.name else lines).append(line(rule))
    if templates and grammar.contexts:
        parts = "\n".join(templates).split(CTX)
        lines.extend(str(i).join(parts) for i in grammar.contexts)
    return "\n".join(lines) + "\n"
