"""Build the plan grammar for a toolset: one IR, emitted for every engine.

The grammar admits exactly the strict text dialect's canonical layout::

    Thought: <text>                      optional, before any task or the join, at most once each
    1. search(query="x", limit=3)        `N. tool(` positional args, then keyword args `)` + "\\n"
    2. math(expression="${1.n} * 2")
    3. join()                            then optionally "\\n", "<END_OF_PLAN>", "\\n"

- ids start at ``start_id`` and rise by one; from no task (just ``join()``) to ``max_tasks``;
- one space after ``N.``; arguments and collection items separated by ``", "``; object members
  written ``"key": value``; a line ends with ``"\\n"``;
- tool names are enumerated; positional arguments follow the schema's property order, keyword
  arguments (any subset that holds every required parameter not given positionally) follow it too;
- values are typed by each parameter's JSON schema (see "tool schemas as value shapes" below for
  what is kept and what is widened), and any value position may instead hold a reference
  ``$k``, ``$k.field``, ``$k[0]`` whose id ``k`` is smaller than the task's own (earlier tasks,
  and on a replan the tasks of earlier plans); strings may hold ``${k...}`` interpolations
  likewise. Task 1 can reference nothing.
- the join may hold one string, the plan's answer template, with ``${k...}`` interpolations of
  ids below the join's own (the same lexeme as task strings: ``TSTR_i`` on line ``i``).

Size. A context-free grammar can only tie "ids below i" to task i by giving each task its own
copies of the rules that hold a value, so the grammar is built to make those copies thin:

- task i's references are one lexeme (``REF_i``: ``$`` + an id below i, written as a digit-range
  regex, + a path), and so are its strings with interpolations (``TSTR_i``);
- a typed value in task i is ``literal | REF_i``; literal lexemes (numbers, plain strings,
  integer ranges, enums) are shared by all tasks;
- argument lists nest (positional prefix, then the keyword tail) instead of listing
  combinations; a tool whose values are all regular (no free-form JSON) is one lexeme per task,
  and all such tools of a task are one lexeme together (``CALLS_i``), so the parser sees one
  symbol per task line;
- the per-task rules are one template (see :data:`._ir.CTX`), emitted once and copied as text.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..exceptions import ConfigError
from ._ast import JOIN
from ._check import as_toolset
from ._ir import (
    CTX,
    EMPTY,
    SCALARS,
    And,
    CharClass,
    Expr,
    Grammar,
    Lit,
    Not,
    Ref,
    Repeat,
    Rule,
    alt,
    opt,
    refs_in,
    seq,
)
from ._parser import END_OF_PLAN
from ._regex import chars_of, read_pattern, written
from ._shapes import STRING, Node, literal_text, normalize, tool_params

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ..tools import Tool, Toolset

__all__ = [
    "MAX_THOUGHT_CHARS",
    "Node",
    "PlanGrammar",
    "build_grammar",
    "joiner_schema",
    "normalize",
    "tool_params",
]

#: The longest ``Thought:`` text the grammar admits, in characters.
MAX_THOUGHT_CHARS = 400
#: Array length bounds up to this are kept exactly; larger ones are widened.
_MAX_UNROLL = 64
#: The most integer digits a float (a number with a fraction or exponent) may have.
_FLOAT_DIGITS = 100

_CTRL = ((0x00, 0x1F),)  # raw control characters: JSON strings escape them
_HEX = CharClass.of("", ranges=((0x30, 0x39), (0x41, 0x46), (0x61, 0x66)))
_DIGIT = CharClass.of("", ranges=((0x30, 0x39),))
_DIGIT19 = CharClass.of("", ranges=((0x31, 0x39),))
# The separator is a rule of its own so that it never merges with the keyword or literal after
# it: a lexeme ", note=" would be a prefix trap for ", null" in greedy lexers (llguidance).
_COMMA = Ref("comma")
_ESCAPE = seq(Lit("\\"), alt(CharClass.of('"\\/bfnrt'), seq(Lit("u"), _HEX, _HEX, _HEX, _HEX)))
# one string character other than "$" / other than "$" and "{"
_STR_ITEM = alt(CharClass.of('"\\$', negated=True, ranges=_CTRL), _ESCAPE)
_STR_NB = alt(CharClass.of('"\\${', negated=True, ranges=_CTRL), _ESCAPE)
_DOLLARS = Repeat(Lit("$"), 1)
_TAIL = seq(Repeat(Lit("$"), 0), Lit('"'))  # a string may end in dollars
_UINT = alt(Lit("0"), seq(_DIGIT19, Repeat(_DIGIT, 0)))
_INT = seq(opt(Lit("-")), _UINT)
_IDENT = seq(
    CharClass.of("_", ranges=((0x41, 0x5A), (0x61, 0x7A))),
    Repeat(CharClass.of("_", ranges=((0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A))), 0),
)
_PATH_ITEM = alt(seq(Lit("."), _IDENT), seq(Lit("["), _UINT, Lit("]")))


class PlanGrammar:
    """The plan grammar of one toolset, task cap and first id, with an emitter per engine.

    Build it with :func:`build_grammar`. Emitted texts are computed once and kept.

    >>> from tomasulo.tools import Toolset, tool
    >>> @tool
    ... def search(query: str) -> str:
    ...     "Search."
    ...     return query
    >>> g = build_grammar(Toolset([search]), max_tasks=4)
    >>> gbnf = g.gbnf()    # llama.cpp `grammar`, SGLang `ebnf`, vLLM (xgrammar)
    >>> lark = g.lark()    # OpenAI custom-tool grammar, vLLM guidance, llguidance, python-lark
    >>> lg = g.llguidance()    # llguidance only (TokenMasker): same language, compiles faster
    >>> g.json_schema()["type"]   # the JSON plan dialect
    'object'
    """

    def __init__(
        self,
        ir: Grammar,
        *,
        tools: Mapping[str, tuple[tuple[str, Node, bool], ...]],
        max_tasks: int,
        start_id: int,
        fingerprint: str,
        builder: _Builder | None = None,
    ) -> None:
        self.ir = ir
        self._builder = builder
        self.tools = dict(tools)
        self.max_tasks = max_tasks
        self.start_id = start_id
        self.fingerprint = fingerprint
        self._cache: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _memo(self, key: str, make: Any) -> Any:
        with self._lock:
            if key not in self._cache:
                self._cache[key] = make()
            return self._cache[key]

    @property
    def tool_names(self) -> tuple[str, ...]:
        """The tools a plan may call, in toolset order."""
        return tuple(self.tools)

    def lark(self) -> str:
        """The grammar in the portable Lark subset (start rule ``start``).

        Accepted by python-lark (``Lark(text, parser="earley", lexer="dynamic")``), llguidance
        (``LLMatcher.grammar_from_lark``) and so OpenAI custom tools (``format: {type: "grammar",
        syntax: "lark", definition: text}``) and vLLM's guidance backend. Uses only rules,
        terminals written as one ``/regex/`` each (no lookaround, lazy quantifiers, flags or
        ``\\d``-style classes), string literals, ``|``, ``?``, ``*``, ``+``; no ``%import``.
        """
        from ._emit_lark import emit_lark

        return str(self._memo("lark", lambda: emit_lark(self.ir)))

    def llguidance(self) -> str:
        """The grammar for llguidance (Lark syntax with llguidance's lexeme ``&`` and ``~``).

        Same language as :meth:`lark`, but each task's call lexeme is written as one shared
        lexeme of calls intersected with "no reference to this task or a later one", instead
        of a copy per task, so llguidance compiles it several times faster. Only llguidance
        (``LLMatcher.grammar_from_lark``) reads it; :class:`TokenMasker` uses it.
        """
        from ._emit_lark import emit_lark

        def make() -> str:
            ir = self.ir if self._builder is None else self._builder.llguidance(self.ir)
            self._builder = None  # done with it: let it go
            return emit_lark(ir)

        return str(self._memo("llguidance", make))

    def gbnf(self) -> str:
        """The grammar in GBNF (root rule ``root``): llama.cpp ``grammar``, SGLang ``ebnf``, xgrammar."""
        from ._emit_gbnf import emit_gbnf

        return str(self._memo("gbnf", lambda: emit_gbnf(self.ir)))

    def json_schema(self) -> dict[str, Any]:
        """JSON Schema of the JSON plan dialect for this toolset (see :func:`plan_json_schema`)."""
        from ._emit_json import plan_json_schema

        return dict(
            self._memo(
                "json",
                lambda: plan_json_schema(self.tools, max_tasks=self.max_tasks, start_id=self.start_id),
            )
        )

    def __len__(self) -> int:
        return len(self.ir)

    def __repr__(self) -> str:
        return (
            f"PlanGrammar(tools={len(self.tools)}, max_tasks={self.max_tasks}, "
            f"start_id={self.start_id}, rules={len(self.ir)})"
        )


def joiner_schema() -> dict[str, Any]:
    """JSON Schema of the joiner's decision: finish with an answer, or replan with feedback.

    ``{"thought": str, "action": "finish", "answer": str}`` or
    ``{"thought": str, "action": "replan", "feedback": str}``.
    """
    return {
        "title": "JoinerDecision",
        "oneOf": [
            {
                "type": "object",
                "properties": {
                    "thought": {"type": "string"},
                    "action": {"const": "finish"},
                    "answer": {"type": "string"},
                },
                "required": ["thought", "action", "answer"],
                "additionalProperties": False,
            },
            {
                "type": "object",
                "properties": {
                    "thought": {"type": "string"},
                    "action": {"const": "replan"},
                    "feedback": {"type": "string"},
                },
                "required": ["thought", "action", "feedback"],
                "additionalProperties": False,
            },
        ],
    }


# -- building -----------------------------------------------------------------------------------

_CACHE: OrderedDict[tuple[str, int, int], PlanGrammar] = OrderedDict()
_CACHE_SIZE = 64
_CACHE_LOCK = threading.Lock()


def build_grammar(tools: Toolset | Iterable[Tool], *, max_tasks: int = 32, start_id: int = 1) -> PlanGrammar:
    """The plan grammar for ``tools`` (a toolset or a list of tools): at most ``max_tasks``
    tasks, numbered from ``start_id``.

    Results are cached by ``(tools.fingerprint(), max_tasks, start_id)``, so a rebuild for an
    unchanged toolset (and each emitter's output) costs a dictionary lookup. Replans pass
    ``start_id`` = the previous plan's last id + 1; a task may reference any smaller id, so new
    tasks can use the results of earlier plans.

    Raises:
        ConfigError: ``max_tasks`` below 1 or ``start_id`` below 1, or an empty toolset.
    """
    if max_tasks < 1:
        raise ConfigError(f"max_tasks must be at least 1, got {max_tasks}")
    if start_id < 1:
        raise ConfigError(f"start_id must be at least 1, got {start_id}")
    tools = as_toolset(tools)
    if len(tools) == 0:
        raise ConfigError("cannot build a plan grammar for an empty toolset; add a tool first")
    key = (tools.fingerprint(), max_tasks, start_id)
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return hit
    params = {t.name: tool_params(t.input_schema) for t in tools}
    builder = _Builder(params, max_tasks=max_tasks, start_id=start_id)
    ir = builder.build()
    grammar = PlanGrammar(
        ir, tools=params, max_tasks=max_tasks, start_id=start_id, fingerprint=key[0], builder=builder
    )
    with _CACHE_LOCK:
        _CACHE[key] = grammar
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return grammar


def clear_cache() -> None:
    """Forget every cached grammar (benchmarks use this to time cold builds)."""
    with _CACHE_LOCK:
        _CACHE.clear()


class _Builder:
    """Builds the IR. Names: ``*_<i>`` rules belong to task ``i``'s context (references < i)."""

    def __init__(
        self,
        tools: Mapping[str, tuple[tuple[str, Node, bool], ...]],
        *,
        max_tasks: int,
        start_id: int,
    ) -> None:
        self.tools = tools
        self.max_tasks = max_tasks
        self.start = start_id
        self.rules: dict[str, Rule] = {}
        self.node_ids: dict[Node, int] = {}
        self.regular_memo: dict[Node, bool] = {}
        # context -> the rule holding that context's regular calls as one lexeme
        self.call_lexemes: dict[str | None, str] = {}

    # -- helpers --

    def rule(self, name: str, body: Expr, *, token: bool = False) -> Ref:
        if name not in self.rules:
            self.rules[name] = Rule(name, body, token)
        return Ref(name)

    def node_id(self, node: Node) -> int:
        return self.node_ids.setdefault(node, len(self.node_ids))

    @staticmethod
    def sfx(ctx: str | None) -> str:
        return "" if ctx is None else f"_{ctx}"

    def regular(self, node: Node) -> bool:
        """Whether values of ``node`` form a regular language (no unbounded nesting)."""
        hit = self.regular_memo.get(node)
        if hit is None:
            kind = node[0]
            if kind in ("any", "object_any"):
                hit = False
            elif kind == "array":
                hit = self.regular(node[1])
            elif kind == "object":
                hit = all(self.regular(sub) for _, sub, _ in node[1])
            elif kind == "union":
                hit = all(self.regular(sub) for sub in node[1])
            else:
                hit = True
            self.regular_memo[node] = hit
        return hit

    # -- lexemes shared by all tasks --

    def base(self) -> None:
        self.rule("comma", Lit(", "))
        self.rule(
            "str_plain", seq(Lit('"'), Repeat(alt(_STR_ITEM, seq(_DOLLARS, _STR_NB)), 0), _TAIL), token=True
        )
        self.rule("int", _INT, token=True)
        self.rule("uint", _UINT, token=True)
        # A number must stay finite (the parser refuses `1e999`), so a float has at most
        # _FLOAT_DIGITS integer digits and an exponent below 100 (negative ones: any): every such
        # number is below 1e199. Integers without a fraction or exponent are exact at any size.
        frac = seq(Lit("."), Repeat(_DIGIT, 1))
        exp = seq(
            CharClass.of("eE"),
            alt(seq(opt(Lit("+")), Repeat(_DIGIT, 1, 2)), seq(Lit("-"), Repeat(_DIGIT, 1))),
        )
        mantissa = alt(Lit("0"), seq(_DIGIT19, Repeat(_DIGIT, 0, _FLOAT_DIGITS - 1)))
        self.rule(
            "num",
            seq(opt(Lit("-")), alt(_UINT, seq(mantissa, alt(seq(frac, opt(exp)), exp)))),
            token=True,
        )
        first = CharClass.of(" ", negated=True, ranges=_CTRL)
        rest = CharClass.of("", negated=True, ranges=_CTRL)
        self.rule("thought_text", seq(first, Repeat(rest, 0, MAX_THOUGHT_CHARS - 1)), token=True)
        self.rule("thought", seq(Lit("Thought: "), Ref("thought_text"), Lit("\n")))

    # -- per-task references: one lexeme each --

    def refs(self, ctx: int | str) -> None:
        """``ref_<ctx>`` and ``tstr_<ctx>``; ids below ``ctx``, or any id for ``ctx="any"``."""
        bound = int_range(1, None) if ctx == _ANY_CTX else int_range(1, int(ctx) - 1)
        ids = self.rule(f"ids_{ctx}", bound, token=True)
        path = Repeat(self.rule("path_item", _PATH_ITEM, token=True), 0)
        self.rule(f"ref_{ctx}", seq(Lit("$"), ids, path), token=True)
        # a string that may interpolate earlier results; a literal "$" is never followed by "{"
        interp = seq(Lit("${"), ids, path, Lit("}"))
        chars = self.rule("str_char", alt(_STR_ITEM, seq(_DOLLARS, _STR_NB)), token=True)
        self.rule(f"tstr_{ctx}", seq(Lit('"'), Repeat(alt(chars, interp), 0), _TAIL), token=True)

    # -- values --

    def value(self, node: Node, ctx: str | None) -> Expr:
        """A value of shape ``node`` in task ``ctx`` (None: the first task, no references)."""
        if ctx is None:
            return self.literal(node, None)
        name = f"v{self.node_id(node)}_{ctx}"
        if name not in self.rules:
            self.rules[name] = Rule(name, EMPTY)  # placeholder against recursion
            body = alt(self.literal(node, ctx), Ref(f"ref_{ctx}"))
            self.rules[name] = Rule(name, body, self.regular(node))
        return Ref(name)

    def literal(self, node: Node, ctx: str | None) -> Expr:
        kind = node[0]
        if node == STRING:
            return Ref("str_plain") if ctx is None else Ref(f"tstr_{ctx}")
        if kind == "string" and len(node) > 3:
            return self.pattern_string(node, ctx)
        if kind == "string":
            return self.bounded_string(node, ctx)
        if kind == "integer":
            lo, hi = node[1], node[2]
            if lo is None and hi is None:
                return Ref("int")
            if (lo, hi) == (0, None):
                return Ref("uint")
            return self.rule(f"int{self.node_id(node)}", int_range(lo, hi), token=True)
        if kind == "number":
            if len(node) == 1:
                return Ref("num")
            return self.rule(f"num{self.node_id(node)}", _number(node), token=True)
        if kind == "boolean":
            return alt(Lit("true"), Lit("false"))
        if kind == "null":
            return Lit("null")
        if kind == "enum":
            return alt(*(Lit(t) for t in node[1]))
        if kind == "union":
            return alt(*(self.literal(n, ctx) for n in node[1]))
        if kind == "any":
            return self.any_value(ctx)
        if kind == "object_any":
            return self.object_any(ctx)
        name = f"c{self.node_id(node)}{self.sfx(ctx)}"
        if name not in self.rules:
            token = self.regular(node)
            sep = Lit(", ") if token else _COMMA
            self.rules[name] = Rule(name, EMPTY)
            if kind == "array":
                body = self.array(node, ctx, sep)
            else:
                body = self.members(node[1], ctx, sep, open_="{", close="}", keyword=False)
            self.rules[name] = Rule(name, body, token)
        return Ref(name)

    def bounded_string(self, node: Node, ctx: str | None) -> Expr:
        """A string of ``node[1]`` to ``node[2]`` characters (``minLength`` / ``maxLength``).

        A string without ``$`` is held to its bounds exactly (one character or escape per
        item). One with a ``$`` may not be followed by ``{``, which a count cannot follow, so
        such strings only have the upper bound (roughly: runs of dollars count once) and the
        check after parsing has the last word; so do strings with ``${k}`` interpolations,
        whose length is known only once the results exist.
        """
        lo, hi = node[1], node[2]
        exact = seq(Lit('"'), Repeat(_STR_ITEM, lo, hi), Lit('"'))
        options: list[Expr] = [exact]
        if hi is None or hi > 0:
            rest = Repeat(alt(_STR_ITEM, seq(_DOLLARS, _STR_NB)), 0, hi)
            options.append(
                seq(
                    Lit('"'),
                    Repeat(_STR_ITEM, 0, None if hi is None else hi - 1),
                    _DOLLARS,
                    opt(seq(_STR_NB, rest)),
                    Repeat(Lit("$"), 0),
                    Lit('"'),
                )
            )
        plain = self.rule(f"str{self.node_id(node)}", alt(*options), token=True)
        if ctx is None:
            return plain
        # with earlier results to interpolate: a template (at least one `${k}`) of any length
        interp = seq(Lit("${"), Ref(f"ids_{ctx}"), Repeat(Ref("path_item"), 0), Lit("}"))
        chars = Ref("str_char")
        body = seq(Lit('"'), Repeat(chars, 0), interp, Repeat(alt(chars, interp), 0), _TAIL)
        return alt(plain, self.rule(f"tstr1_{ctx}", body, token=True))

    def pattern_string(self, node: Node, ctx: str | None) -> Expr:
        """A string whose characters match ``node[3]`` (a ``pattern`` in :mod:`._regex`'s subset).

        The lexeme writes the characters as a plan does (JSON escapes). A literal ``$`` may never
        be followed by ``{`` (that starts an interpolation), so a pattern whose characters hold
        both is left to validation, and so is one whose unanchored side could meet a ``$``
        or ``{`` of its own there; the length bounds are left to validation too. Strings with
        ``${k}`` interpolations are checked once the results exist, as for bounded strings.
        """
        written = _pattern_text(node[3])
        if written is None:
            return self.bounded_string(node[:3], ctx) if node[1:3] != (0, None) else self.literal(STRING, ctx)
        plain = self.rule(f"str{self.node_id(node)}", seq(Lit('"'), written, Lit('"')), token=True)
        if ctx is None:
            return plain
        interp = seq(Lit("${"), Ref(f"ids_{ctx}"), Repeat(Ref("path_item"), 0), Lit("}"))
        chars = Ref("str_char")
        body = seq(Lit('"'), Repeat(chars, 0), interp, Repeat(alt(chars, interp), 0), _TAIL)
        return alt(plain, self.rule(f"tstr1_{ctx}", body, token=True))

    def any_value(self, ctx: str | None) -> Expr:
        name = f"any{self.sfx(ctx)}"
        if name not in self.rules:
            self.rules[name] = Rule(name, EMPTY)
            val = Ref(name) if ctx is None else alt(Ref(name), Ref(f"ref_{ctx}"))
            arr = seq(Lit("["), opt(seq(val, Repeat(seq(_COMMA, val), 0))), Lit("]"))
            body = alt(
                self.literal(STRING, ctx),
                Ref("num"),
                Lit("true"),
                Lit("false"),
                Lit("null"),
                arr,
                self.object_any(ctx),
            )
            self.rules[name] = Rule(name, body)
        return Ref(name)

    def object_any(self, ctx: str | None) -> Expr:
        name = f"obj{self.sfx(ctx)}"
        if name not in self.rules:
            self.rules[name] = Rule(name, EMPTY)
            self.any_value(ctx)
            val = Ref(f"any{self.sfx(ctx)}") if ctx is None else alt(Ref(f"any_{ctx}"), Ref(f"ref_{ctx}"))
            member = seq(Ref("str_plain"), Lit(": "), val)
            body = seq(Lit("{"), opt(seq(member, Repeat(seq(_COMMA, member), 0))), Lit("}"))
            self.rules[name] = Rule(name, body)
        return Ref(name)

    def array(self, node: Node, ctx: str | None, sep: Expr) -> Expr:
        _, item, lo, hi = node
        val = self.value(item, ctx)
        if hi is not None and hi > _MAX_UNROLL:
            hi = None
        if lo > _MAX_UNROLL:
            lo = _MAX_UNROLL
        if hi == 0:
            return Lit("[]")
        more = Repeat(seq(sep, val), max(lo - 1, 0), None if hi is None else hi - 1)
        items = seq(val, more)
        return seq(Lit("["), items if lo > 0 else opt(items), Lit("]"))

    def members(
        self,
        params: tuple[tuple[str, Node, bool], ...],
        ctx: str | None,
        sep: Expr,
        *,
        open_: str,
        close: str,
        keyword: bool,
        positional: bool = False,
    ) -> Expr:
        """Arguments (``keyword=True``: ``name=value``) or object members (``"name": value``).

        Members appear in schema order; optional ones may be left out. With ``positional``, a
        prefix of the parameters may be given as bare values first. The expression nests (no
        alternative repeats a whole tail), so it is small for the usual handful of parameters.
        """
        n = len(params)
        if n == 0:
            return Lit(open_ + close)
        values = [self.value(node, ctx) for _, node, _ in params]
        if keyword:  # `null` for an optional argument means "not given" (the tool's default)
            values = [
                v if req or _admits_null(node) else alt(v, Lit("null"))
                for v, (_, node, req) in zip(values, params, strict=True)
            ]
        keys = [Lit(f"{name}=" if keyword else f"{_json_key(name)}: ") for name, _, _ in params]
        required = [req for _, _, req in params]

        # tail[j]: members j..n-1 by name, each after a separator
        tail: list[Expr] = [EMPTY] * (n + 1)
        for j in range(n - 1, -1, -1):
            one = seq(sep, keys[j], values[j])
            tail[j] = seq(one if required[j] else opt(one), tail[j + 1])
        # head: the first member given has no separator before it
        head: Expr = EMPTY
        for j in range(n - 1, -1, -1):
            with_j = seq(keys[j], values[j], tail[j + 1])
            head = with_j if required[j] else alt(with_j, head) if head != EMPTY else opt(with_j)
        if not positional:
            return seq(Lit(open_), head, Lit(close))
        # after[j]: j arguments given positionally; then more positionals or the named tail
        after: Expr = EMPTY
        for j in range(n - 1, 0, -1):
            if j == n - 1:  # the last one, by position or by name: `, name=`? value
                one = seq(sep, opt(keys[j]), values[j])
                after = one if required[j] else opt(one)
            else:
                after = alt(seq(sep, values[j], after), tail[j])
        if required[0] and n == 1:
            return seq(Lit(open_), opt(keys[0]), values[0], Lit(close))
        return seq(Lit(open_), alt(head, seq(values[0], after)), Lit(close))

    # -- the plan --

    def call(self, tool: str, ctx: str | None) -> Ref:
        params = self.tools[tool]
        name = f"call{self.node_id(('tool', tool))}{self.sfx(ctx)}"
        if name not in self.rules:
            token = all(self.regular(node) for _, node, _ in params)
            body = self.members(
                params,
                ctx,
                Lit(", ") if token else _COMMA,
                open_=f"{tool}(",
                close=")",
                keyword=True,
                positional=True,
            )
            self.rules[name] = Rule(name, body, token)
        return Ref(name)

    def tcall(self, name: str, ctx: str | None) -> None:
        calls = [self.call(t, ctx) for t in self.tools]
        lexemes = [c for c in calls if self.rules[c.name].token]
        options: list[Expr] = [c for c in calls if not self.rules[c.name].token]
        if len(lexemes) > 1:
            # the regular calls of a task form one lexeme, written in place: the parser sees
            # one symbol, and llguidance compiles one terminal instead of one per tool
            bodies = [self.rules.pop(c.name).body for c in lexemes]
            options.insert(0, self.rule(f"calls{self.sfx(ctx)}", alt(*bodies), token=True))
        else:
            options[:0] = lexemes
        if lexemes and isinstance(options[0], Ref):
            self.call_lexemes[ctx] = options[0].name
        self.rule(name, alt(*options))

    def llguidance(self, ir: Grammar) -> Grammar:
        """The llguidance form of ``ir``: the same language, with one copy of the call lexeme.

        Task ``i``'s call lexeme becomes ``CALLS_ANY & ~BAD_i``: the calls with references to any
        id, minus the texts that reference an id ``>= i`` (outside strings ``$k``, inside them
        ``${k``). llguidance builds lexeme automata lazily, so each task then costs one small
        regex instead of a full copy of every tool's argument lexemes.
        """
        if not self.call_lexemes:
            return ir
        self.refs(_ANY_CTX)
        self.tcall(f"tcall_{_ANY_CTX}", _ANY_CTX)
        calls_any = self.call_lexemes[_ANY_CTX]
        rules = dict(ir.rules)
        rules.update((k, v) for k, v in self.rules.items() if k.endswith(f"_{_ANY_CTX}"))
        # BAD_i: texts that reference an id >= i. In a call, every "$" outside a string starts a
        # reference and every "${" inside one an interpolation, and ids are canonical, so a
        # digit prefix >= i means the whole id is.
        rules["bad_lead"] = Rule("bad_lead", _BAD_LEAD, True)
        rules["bad_tail"] = Rule("bad_tail", Repeat(_ANY_CHAR, 0), True)

        def not_bad(name: str, i: int) -> None:
            rules[f"ge_{i}"] = Rule(f"ge_{i}", int_range(i, None), True)
            rules[f"bad_{i}"] = Rule(f"bad_{i}", seq(Ref("bad_lead"), Ref(f"ge_{i}"), Ref("bad_tail")), True)
            rules[name] = Rule(name, And(Ref(calls_any), Not(Ref(f"bad_{i}"))), True)

        first = self.call_lexemes.get(None)
        if first is not None and self.start == 1:  # task 1: no reference at all
            not_bad(first, 1)
        template = self.call_lexemes.get(CTX)
        if template is not None:
            del rules[template]
            for i in ir.contexts:
                not_bad(template.replace(CTX, str(i)), i)
        return _prune(Grammar(rules, ir.start, ir.contexts))

    def join(self, i: int) -> Expr:
        """Line ``i``'s join: ``join()`` or ``join("answer")``, the answer interpolating ids below ``i``."""
        if i == 1:
            answer = Ref("str_plain")
        else:
            if f"tstr_{i}" not in self.rules:  # the last line's id is no task's context
                self.refs(i)
            answer = Ref(f"tstr_{i}")
        end = opt(seq(Lit("\n"), opt(seq(Lit(END_OF_PLAN), opt(Lit("\n"))))))
        return seq(Lit(f"{JOIN}("), opt(answer), Lit(")"), end)

    def build(self) -> Grammar:
        self.base()
        s, last = self.start, self.start + self.max_tasks
        # task 1 references nothing; every later task's rules are copies of one template
        contexts = tuple(range(max(s, 2), last))
        for i in contexts:
            self.refs(i)
        if s == 1:
            self.tcall("tcall_1", None)
        if contexts:
            self.tcall(f"tcall_{CTX}", CTX)
        lines: dict[int, Rule] = {}
        lines[last] = Rule(f"line_{last}", seq(opt(Ref("thought")), Lit(f"{last}. "), self.join(last)))
        for i in range(last - 1, s - 1, -1):
            task = seq(Ref(f"tcall_{i}"), Lit("\n"), Ref(f"line_{i + 1}"))
            body = alt(task, self.join(i))  # a plan may be just join(): nothing (more) to do
            lines[i] = Rule(f"line_{i}", seq(opt(Ref("thought")), Lit(f"{i}. "), body))
        rules = {"plan": Rule("plan", Ref(f"line_{s}"))}
        rules.update(self.rules)
        for i in range(s, last + 1):
            rules[lines[i].name] = lines[i]
        return Grammar(rules, "plan", contexts)


#: The llguidance form's context whose references may name any id.
_ANY_CTX = "any"
_ANY_CHAR = CharClass(SCALARS)
# one character inside a JSON string: not a quote, or an escape; outside strings, strings whole
_IN_STR = alt(CharClass.of('"\\', negated=True), seq(Lit("\\"), _ANY_CHAR))
_OUT_STR = alt(CharClass.of('"', negated=True), seq(Lit('"'), Repeat(_IN_STR, 0), Lit('"')))


# text up to where a reference's id starts: after "$" outside a string, after "${" inside one
_BAD_LEAD = seq(Repeat(_OUT_STR, 0), alt(Lit("$"), seq(Lit('"'), Repeat(_IN_STR, 0), Lit("${"))))


def _prune(grammar: Grammar) -> Grammar:
    """``grammar`` without the rules its start rule cannot reach."""
    rules = grammar.rules
    seen: set[str] = set()
    todo = [grammar.start]
    while todo:
        name = todo.pop()
        if name in seen or name not in rules:
            continue
        seen.add(name)
        for ref in refs_in(rules[name].body):
            if ref in rules:
                todo.append(ref)
            elif CTX in ref:  # a template's rule held as one concrete rule per context
                todo.extend(r for i in grammar.contexts if (r := ref.replace(CTX, str(i))) in rules)
            else:  # a concrete context's name for a template rule
                head, _, _num = ref.rpartition("_")
                todo.append(f"{head}_{CTX}")
    return Grammar({k: v for k, v in rules.items() if k in seen}, grammar.start, grammar.contexts)


def _digits(n: int) -> Expr:
    return EMPTY if n == 0 else _DIGIT if n == 1 else Repeat(_DIGIT, n, n)


def _digits_between(x: str, y: str) -> Expr:
    """Digit strings of one length from ``x`` to ``y`` (leading zeros allowed)."""
    n = len(x)
    if n == 0:
        return EMPTY
    if x == "0" * n and y == "9" * n:
        return _digits(n)
    if x[0] == y[0]:
        return seq(Lit(x[0]), _digits_between(x[1:], y[1:]))
    rest = n - 1
    parts = [seq(Lit(x[0]), _digits_between(x[1:], "9" * rest))]
    a, b = int(x[0]) + 1, int(y[0]) - 1
    if a <= b:
        parts.append(seq(CharClass(((48 + a, 48 + b),)), _digits(rest)))
    parts.append(seq(Lit(y[0]), _digits_between("0" * rest, y[1:])))
    return alt(*parts)


def _nonneg_range(lo: int, hi: int | None) -> Expr:
    """Canonical decimal integers from ``lo`` (>= 0) to ``hi`` (``None``: no upper bound)."""
    parts: list[Expr] = []
    length = len(str(lo))
    while hi is None or length <= len(str(hi)):
        first = 0 if length == 1 else 10 ** (length - 1)
        last = 10**length - 1
        a, b = max(lo, first), last if hi is None else min(hi, last)
        if a <= b:
            parts.append(_digits_between(str(a), str(b)))
        if hi is None:
            # every longer number
            parts.append(seq(_DIGIT19, Repeat(_DIGIT, length, None)))
            break
        length += 1
    return alt(*parts)


def int_range(lo: int | None, hi: int | None) -> Expr:
    """Canonical JSON integers ``lo <= n <= hi`` (either bound may be ``None``)."""
    parts: list[Expr] = []
    if hi is None or hi >= 0:
        parts.append(_nonneg_range(max(lo, 0) if lo is not None else 0, hi))
    if lo is None or lo < 0:
        top = None if lo is None else -lo
        bottom = 1 if hi is None or hi >= 0 else -hi
        parts.append(seq(Lit("-"), _nonneg_range(bottom, top)))
    if not parts:
        raise ConfigError(f"no integer lies between {lo} and {hi}")
    return alt(*parts)


# any characters of a plain string (no `${`), as written: the content of `str_plain`
_ANY_TEXT = seq(Repeat(alt(_STR_ITEM, seq(_DOLLARS, _STR_NB)), 0), Repeat(Lit("$"), 0))


def _pattern_text(pattern: str) -> Expr | None:
    """How a plan writes a string matching ``pattern`` between its quotes, or ``None`` where a
    grammar cannot hold it (see :meth:`_Builder.pattern_string`)."""
    p = read_pattern(pattern)
    if p is None:
        return None
    alphabet = chars_of(p.body)
    dollar = any(lo <= 0x24 <= hi for lo, hi in alphabet)
    brace = any(lo <= 0x7B <= hi for lo, hi in alphabet)
    if (dollar and brace) or (not p.head and brace) or (not p.tail and dollar):
        return None
    return seq(
        EMPTY if p.head else _ANY_TEXT,
        written(p.body),
        opt(Lit("\\n")) if p.newline else EMPTY,
        EMPTY if p.tail else _ANY_TEXT,
    )


def _number(node: Node) -> Expr:
    """Numbers within ``node``'s bounds where a grammar can say so: no minus sign when the
    lower bound is at least 0, a minus sign when the upper one is below 0 (or at most 0,
    exclusive), and with both bounds below 1e15 in size, no more integer digits than the
    larger one has and no positive exponent. The exact bounds are validation's."""
    _, lo, hi, ex_lo, ex_hi = node
    low = max((v for v in (lo, ex_lo) if v is not None), default=None)
    high = min((v for v in (hi, ex_hi) if v is not None), default=None)
    nonneg = low is not None and low >= 0
    negative = (hi is not None and hi < 0) or (ex_hi is not None and ex_hi <= 0)
    sign: Expr = EMPTY if nonneg else Lit("-") if negative else opt(Lit("-"))
    frac = seq(Lit("."), Repeat(_DIGIT, 1))
    if low is not None and high is not None and max(abs(low), abs(high)) < 1e15:
        most = len(str(int(max(abs(low), abs(high)))))
        uint = alt(Lit("0"), seq(_DIGIT19, Repeat(_DIGIT, 0, most - 1))) if most > 1 else _DIGIT
        exp = seq(CharClass.of("eE"), Lit("-"), Repeat(_DIGIT, 1))
        return seq(sign, uint, opt(frac), opt(exp))
    exp = seq(
        CharClass.of("eE"),
        alt(seq(opt(Lit("+")), Repeat(_DIGIT, 1, 2)), seq(Lit("-"), Repeat(_DIGIT, 1))),
    )
    mantissa = alt(Lit("0"), seq(_DIGIT19, Repeat(_DIGIT, 0, _FLOAT_DIGITS - 1)))
    return seq(sign, alt(_UINT, seq(mantissa, alt(seq(frac, opt(exp)), exp))))


def _admits_null(node: Node) -> bool:
    kind = node[0]
    if kind in ("any", "null"):
        return True
    if kind == "enum":
        return "null" in node[1]
    if kind == "union":
        return any(_admits_null(n) for n in node[1])
    return False


def _json_key(name: str) -> str:
    return literal_text(name)
