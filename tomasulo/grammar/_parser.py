"""Syntax of one plan line: ``N. tool(positional, keyword=value)``.

The line parser is a small recursive-descent reader over one line of text. Scalars go through
the C-accelerated pieces of the ``json`` module (``scanstring``, the number regex), so a task
line costs a few microseconds. It knows nothing of tools; :mod:`._check` validates the result.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from json.decoder import scanstring  # type: ignore[attr-defined]

from ..exceptions import PlanSyntaxError
from ._ast import MAX_NESTING, PathItem, Ref, Template, Value

__all__ = ["END_OF_PLAN", "ArgNode", "CallLine", "parse_call_line", "parse_path"]

END_OF_PLAN = "<END_OF_PLAN>"

_TASK_HEAD = re.compile(r"\s*(\d+)\s*\.\s*([A-Za-z_][A-Za-z0-9_.\-]*)\s*\(")
# A keyword is any identifier (Unicode letters too, as in Python: `año_vehiculo=`)
_IDENT_EQ = re.compile(r"([^\W\d]\w*)\s*=(?!=)")
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?")
# compat: Python-style numbers as well: `.5`, `5.`, `1_000`
_LEADING_ZERO = re.compile(r"-?0\d")  # compat `02134`, `0_1`: refused, never read as 2134
_COMPAT_NUMBER = re.compile(r"-?(?=\.?\d)(?:\d(?:_?\d)*)?(\.(?:\d(?:_?\d)*)?)?([eE][-+]?\d(?:_?\d)*)?")
_WS = re.compile(r"[ \t\r]*")
_DQ_STRING = re.compile(r'"((?:[^"\\\n]|\\.)*)"')
_SQ_STRING = re.compile(r"'((?:[^'\\\n]|\\.)*)'")
_REF = re.compile(r"\$(\d+)((?:\.[A-Za-z_][A-Za-z0-9_]*|\[\d+\])*)")
_BRACED_REF = re.compile(r"\$\{(\d+)((?:\.[A-Za-z_][A-Za-z0-9_]*|\[\d+\])*)\}")
_PATH_ITEM = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")
_COMPAT_BARE_REF = re.compile(r"\$(\d+)(?![\d{])")
_COMPAT_INLINE_REF = re.compile(rf"{_BRACED_REF.pattern}|{_COMPAT_BARE_REF.pattern}")
_KEYWORDS = {"true": True, "false": False, "null": None}
_COMPAT_KEYWORDS = {"True": True, "False": False, "None": None}
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_path(text: str) -> tuple[PathItem, ...]:
    """``.a[0].b`` (a leading dot is optional) as ``("a", 0, "b")``; ``ValueError`` if malformed."""
    if text and not text.startswith((".", "[")):
        text = "." + text
    items: list[PathItem] = []
    pos = 0
    while pos < len(text):
        m = _PATH_ITEM.match(text, pos)
        if m is None:
            raise ValueError(f"bad path {text!r} at character {pos + 1}")
        items.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
        pos = m.end()
    return tuple(items)


def split_interpolations(text: str, decode: Callable[[str], str] = str) -> list[str | Ref]:
    """``"a ${1.x} b"`` as ``["a ", Ref(1, ("x",)), " b"]``; ``decode`` maps each literal piece."""
    parts: list[str | Ref] = []
    last = 0
    for m in _BRACED_REF.finditer(text):
        if m.start() > last:
            parts.append(decode(text[last : m.start()]))
        parts.append(Ref(int(m.group(1)), parse_path(m.group(2))))
        last = m.end()
    if last < len(text):
        parts.append(decode(text[last:]))
    return parts


@dataclass(slots=True)
class ArgNode:
    """One argument as written: its value, the keyword (if any) and its 0-based column."""

    value: Value
    column: int
    keyword: str | None = None


@dataclass(slots=True)
class CallLine:
    """A parsed task line, before any check against tools or numbering."""

    task_id: int
    id_column: int
    tool: str
    tool_column: int
    args: list[ArgNode] = field(default_factory=list)
    close_column: int = 0
    rest: str = ""
    rest_column: int = 0


class _LineReader:
    """Reads argument values from one line; ``pos`` is a 0-based index into ``text``."""

    __slots__ = ("bare", "compat", "depth", "lineno", "pos", "task_id", "text")

    def __init__(self, text: str, lineno: int, compat: bool, task_id: int) -> None:
        self.text = text
        self.lineno = lineno
        self.compat = compat
        self.task_id = task_id
        self.pos = 0
        self.depth = 0  # arrays and objects the reader is inside
        #: the last error was bare text where an argument should be (compat reads it as a string)
        self.bare = False

    def error(self, message: str, pos: int | None = None, hint: str | None = None) -> PlanSyntaxError:
        col = (self.pos if pos is None else pos) + 1
        return PlanSyntaxError(message, line=self.lineno, column=col, text=self.text, hint=hint)

    def skip_ws(self) -> None:
        m = _WS.match(self.text, self.pos)
        if m is not None:
            self.pos = m.end()

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def value(self) -> Value:
        self.skip_ws()
        c = self.peek()
        if c == '"':
            return self.string('"')
        if c == "'" and self.compat:
            return self.string("'")
        if c == "$":
            return self.reference()
        if c == "[":
            return self.array()
        if c == "{":
            return self.obj()
        if c == "-" or c.isdigit():
            return self.number()
        if self.compat and c == "(":
            return self.array(close=")", what="tuple")
        if self.compat and c == "." and self.text[self.pos + 1 : self.pos + 2].isdigit():
            return self.number()
        m = _WORD.match(self.text, self.pos)
        if m is not None:
            word = m.group(0)
            if word in _KEYWORDS:
                self.pos = m.end()
                return _KEYWORDS[word]
            if self.compat and word in _COMPAT_KEYWORDS:
                self.pos = m.end()
                return _COMPAT_KEYWORDS[word]
            self.bare = self.depth == 0
            hint = 'strings need double quotes, e.g. "text"; references are written $1'
            if word in _COMPAT_KEYWORDS:
                hint = "use JSON literals true, false and null"
            raise self.error(f"unexpected word {word!r} where a value should be", hint=hint)
        if not c:
            raise self.error("the line ends where a value should be")
        if c == "'":
            raise self.error("single-quoted string", hint='strings use double quotes: "text"')
        self.bare = self.depth == 0 and c not in ",)]}"
        raise self.error(f"unexpected {c!r} where a value should be")

    def number(self) -> int | float:
        start = self.pos
        m = (_COMPAT_NUMBER if self.compat else _NUMBER).match(self.text, self.pos)
        if m is None or not m.group(0).strip("-"):
            raise self.error("malformed number")
        text = m.group(0).replace("_", "")
        if _LEADING_ZERO.match(text):
            # compat `02134`: not a number Python or JSON reads, and dropping the zero would pass
            # a different value; at the top level the text is read as a string instead
            self.bare = self.depth == 0
            raise self.error(
                f"the number {m.group(0)} has a leading zero",
                hint=f'write it as a string ("{m.group(0)}") or without the zero',
            )
        self.pos = m.end()
        if m.group(1) is None and m.group(2) is None:
            try:
                return int(text)
            except ValueError:  # more digits than int() converts (sys.get_int_max_str_digits)
                raise self.error(
                    f"the integer has {len(text.lstrip('-'))} digits, too many to read",
                    pos=start,
                    hint="pass very large numbers as strings",
                ) from None
        value = float(text)
        if not math.isfinite(value):
            raise self.error(
                f"the number {m.group(0)} is too large (it overflows a 64-bit float)",
                pos=start,
                hint="numbers must be finite; pass very large numbers as strings",
            )
        return value

    def reference(self) -> Ref:
        start = self.pos
        m = _REF.match(self.text, self.pos)
        if m is None and self.compat:
            m = _BRACED_REF.match(self.text, self.pos)
        if m is None:
            raise self.error(
                "malformed reference",
                hint="write $k, $k.field or $k[0] for task k's result; ${k} only inside strings",
            )
        self.pos = m.end()
        try:
            return Ref(int(m.group(1)), parse_path(m.group(2)))
        except ValueError as e:  # pragma: no cover - the regex admits only valid paths
            raise self.error(str(e), pos=start) from None

    def string(self, quote: str) -> Value:
        start = self.pos
        m = (_DQ_STRING if quote == '"' else _SQ_STRING).match(self.text, self.pos)
        if m is None:
            raise self.error("unterminated string", hint="close the string on the same line")
        raw = m.group(1)
        self.pos = m.end()
        if quote == "'":
            return self._compat_text(self._decode_single(raw, start), start)
        if "${" not in raw:
            text = self._decode(raw, start)
            return self._compat_text(text, start) if self.compat and "$" in text else text
        parts = split_interpolations(raw, lambda segment: self._decode(segment, start))
        if self.compat and len(parts) == 1 and isinstance(parts[0], Ref):
            return Ref(parts[0].task_id, parts[0].path, quoted=True)
        if len(parts) == 1 and isinstance(parts[0], str):
            return parts[0]
        return Template(tuple(parts))

    def _decode(self, raw: str, start: int) -> str:
        if "\\" not in raw:
            return raw
        try:
            decoded: str = scanstring(raw + '"', 0)[0]
            return decoded
        except json.JSONDecodeError as e:
            raise self.error(f"bad escape in string: {e.msg}", pos=start + 1 + e.pos) from None

    def _decode_single(self, raw: str, start: int) -> str:
        if "\\" not in raw:
            return raw
        try:
            out = ast.literal_eval("'" + raw + "'")
        except (ValueError, SyntaxError):
            raise self.error("bad escape in string", pos=start) from None
        assert isinstance(out, str)
        return out

    def _compat_text(self, text: str, start: int) -> Value:
        """LLMCompiler style: ``"$1"`` is task 1's result, ``"... $1 ..."`` interpolates it."""
        if "$" not in text:
            return text
        whole = _REF.fullmatch(text) or _BRACED_REF.fullmatch(text)
        if whole is not None and int(whole.group(1)) < self.task_id:
            return Ref(int(whole.group(1)), parse_path(whole.group(2)), quoted=True)
        parts: list[str | Ref] = []
        last = 0
        for m in _COMPAT_INLINE_REF.finditer(text):
            braced = m.group(1) is not None
            k = int(m.group(1) if braced else m.group(3))
            if not braced and k >= self.task_id:
                continue  # "$100" is money, not a reference to a later task
            if m.start() > last:
                parts.append(text[last : m.start()])
            parts.append(Ref(k, parse_path(m.group(2)) if braced else ()))
            last = m.end()
        if not parts:
            return text
        if last < len(text):
            parts.append(text[last:])
        return Template(tuple(parts))

    def _items(self, close: str, what: str, item: Callable[[], None]) -> None:
        """Read ``item, item, ...`` up to ``close`` (a trailing comma only in compat mode)."""
        if self.depth >= MAX_NESTING:
            raise self.error(
                f"nesting deeper than {MAX_NESTING} levels",
                hint="flatten the value, or pass deep data as a string",
            )
        self.depth += 1
        self.pos += 1
        self.skip_ws()
        if self.peek() == close:
            self.pos += 1
            self.depth -= 1
            return
        while True:
            item()
            self.skip_ws()
            c = self.peek()
            if c == ",":
                comma = self.pos
                self.pos += 1
                self.skip_ws()
                if self.peek() == close:
                    if not self.compat:
                        raise self.error(
                            f"trailing comma before '{close}' in the {what}",
                            pos=comma,
                            hint="remove the comma after the last item",
                        )
                    self.pos += 1
                    break
                continue
            if c == close:
                self.pos += 1
                break
            raise self.error(
                f"expected ',' or '{close}' in the {what}" if c else f"the line ends inside an {what}"
            )
        self.depth -= 1

    def array(self, close: str = "]", what: str = "array") -> list[Value]:
        out: list[Value] = []
        self._items(close, what, lambda: out.append(self.value()))
        return out

    def obj(self) -> dict[str, Value]:
        out: dict[str, Value] = {}

        def member() -> None:
            self.skip_ws()
            key_pos = self.pos
            c = self.peek()
            if c == '"' or (c == "'" and self.compat):
                key = self.string(c)
                if not isinstance(key, str):
                    raise self.error("object keys cannot hold references", pos=key_pos)
            else:
                raise self.error(
                    "expected a double-quoted key in the object" if c else "the line ends inside an object"
                )
            if key in out:
                raise self.error(f"duplicate key {key!r} in the object", pos=key_pos)
            self.skip_ws()
            if self.peek() != ":":
                raise self.error("expected ':' after the object key")
            self.pos += 1
            out[key] = self.value()

        self._items("}", "object", member)
        return out


def match_task_head(line: str) -> re.Match[str] | None:
    """The ``N. tool(`` start of a task line, or ``None``."""
    return _TASK_HEAD.match(line)


def parse_call_line(line: str, lineno: int, *, compat: bool = False, complete: bool = True) -> CallLine:
    """Parse ``N. tool(args)`` plus whatever follows the closing parenthesis (``rest``).

    In compat mode a complete line (``complete``) whose arguments are not values is read the
    way LLMCompiler reads it: everything up to the line's last ``)`` is one string argument
    (``search(Austin Powers)``), optionally after one ``name=``. A line still streaming in
    (``complete=False``) never takes that reading, so it cannot depend on where a chunk ends.

    Raises:
        PlanSyntaxError: the line is not a well-formed task line.
    """
    head = _TASK_HEAD.match(line)
    if head is None:
        stripped = line.lstrip()
        col = len(line) - len(stripped) + 1
        hint = None
        m = re.match(r"\s*(\d+)\s*\.\s*", line)
        if m is not None:
            col = m.end() + 1
            message = "expected a tool call `name(...)` after the task number"
        elif stripped[:1].isdigit():
            message = "expected `N.` at the start of a task line"
            hint = "number each task like `1. search(...)`"
        else:
            message = f"unexpected text {stripped[:40]!r}"
        raise PlanSyntaxError(message, line=lineno, column=col, text=line, hint=hint)
    task_id = int(head.group(1))
    call = CallLine(
        task_id=task_id,
        id_column=head.start(1) + 1,
        tool=head.group(2),
        tool_column=head.start(2) + 1,
    )
    r = _LineReader(line, lineno, compat, task_id)
    r.pos = head.end()
    try:
        _read_args(r, call)
    except PlanSyntaxError:
        if not (compat and complete and r.bare) or not _read_bare_text(r, call, head.end()):
            raise
    call.close_column = r.pos
    call.rest = line[r.pos :]
    call.rest_column = r.pos + 1
    return call


def _read_args(r: _LineReader, call: CallLine) -> None:
    line = r.text
    r.skip_ws()
    seen_keyword = False
    if r.peek() == ")":
        r.pos += 1
        return
    while True:
        r.skip_ws()
        arg_pos = r.pos
        kw = _IDENT_EQ.match(line, r.pos)
        if kw is not None:
            r.pos = kw.end()
            call.args.append(ArgNode(r.value(), arg_pos + 1, kw.group(1)))
            seen_keyword = True
        else:
            if seen_keyword:
                raise r.error(
                    "positional argument after a keyword argument",
                    hint="put positional arguments first, as in Python",
                )
            call.args.append(ArgNode(r.value(), arg_pos + 1))
        r.skip_ws()
        c = r.peek()
        if c == ",":
            comma = r.pos
            r.pos += 1
            r.skip_ws()
            if r.peek() == ")":
                if not r.compat:
                    raise r.error(
                        "trailing comma before ')' in the argument list",
                        pos=comma,
                        hint="remove the comma after the last argument",
                    )
                r.pos += 1
                return
            continue
        if c == ")":
            r.pos += 1
            return
        if not c:
            raise r.error("the line ends before the closing ')'")
        r.bare = True
        raise r.error(f"expected ',' or ')' after an argument, found {c!r}")


def _read_bare_text(r: _LineReader, call: CallLine, start: int) -> bool:
    """Compat: the arguments up to the line's last ``)`` as one string; ``False`` if no ``)``."""
    line = r.text
    close = line.rfind(")")
    comment = line.find("#", start)
    if 0 <= comment < close and line.rfind(")", start, comment) >= 0:
        close = line.rfind(")", start, comment)  # `f(a b) # (see above)`: the comment is not an argument
    if close < start:
        return False
    call.args.clear()
    text = line[start:close]
    keyword = None
    kw = _IDENT_EQ.match(text.lstrip())
    if kw is not None:
        keyword = kw.group(1)
        text = text.lstrip()[kw.end() :]
    value = text.strip()
    column = start + len(line[start:close]) - len(line[start:close].lstrip()) + 1
    if value or keyword is not None:
        call.args.append(ArgNode(r._compat_text(value, column - 1), column, keyword))
    r.pos = close + 1
    return True
