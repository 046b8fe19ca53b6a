"""Grammar constraints for the simulated server, checked and sampled with llguidance.

A :class:`GrammarConstraint` wraps one grammar (Lark, GBNF, a JSON schema or a regex) compiled by
llguidance over a byte-level tokenizer built in-process: 256 one-byte tokens plus an end-of-text
token. Byte tokens make two things exact: checking a whole text (feed it byte by byte; the first
byte the grammar refuses is the offending position) and sampling (every grammar-allowed next byte
is a candidate).

:func:`find_constraint` reads whichever request field a dialect uses (vLLM ``structured_outputs``
and ``guided_*``, llama.cpp ``grammar`` / ``json_schema``, SGLang ``ebnf``, OpenAI
``response_format``, Ollama ``format``, Responses custom tools and ``text.format``).
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import llguidance

__all__ = [
    "ConstraintKind",
    "GrammarConstraint",
    "GrammarMismatch",
    "InvalidGrammar",
    "find_constraint",
]

ConstraintKind = Literal["lark", "gbnf", "json_schema", "regex", "choice"]

_EOS = 256
_CLOSERS = frozenset(b')]}"\n')
_SPACES = frozenset(b" \t\r\n")


class _ByteTokenizer:
    """The smallest tokenizer llguidance accepts: one token per byte, plus end of text."""

    def __init__(self) -> None:
        self.tokens = [bytes([i]) for i in range(256)] + [b"<|end|>"]
        self.eos_token_id = _EOS
        self.bos_token_id = None
        self.special_token_ids = [_EOS]

    def __call__(self, text: str | bytes) -> list[int]:
        return list(text.encode("utf-8") if isinstance(text, str) else text)


@lru_cache(maxsize=1)
def _tokenizer() -> Any:
    return llguidance.LLTokenizer(llguidance.TokenizerWrapper(_ByteTokenizer()))


class InvalidGrammar(ValueError):
    """The grammar in a request could not be compiled; ``field`` names where it was found."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"invalid grammar in {field!r}: {message}")


@dataclass(frozen=True, slots=True)
class GrammarMismatch:
    """Where a text leaves its grammar.

    Attributes:
        offset: 0-based character offset of the first character the grammar refuses (or the
            length of the text when the text stopped short of a complete match).
        line, column: the same position, 1-based.
        incomplete: True when every character was allowed but the text ended too early.
        field: the request field that carried the grammar.
        context: up to 40 characters of text before the position.
    """

    offset: int
    line: int
    column: int
    incomplete: bool
    field: str
    context: str

    def __str__(self) -> str:
        if self.incomplete:
            what = "the reply ends before the grammar is satisfied"
        else:
            what = "the grammar does not allow this character"
        return (
            f"scripted reply does not match the grammar in {self.field!r}: {what} at "
            f"offset {self.offset} (line {self.line}, column {self.column}), after {self.context!r}"
        )


class GrammarConstraint:
    """One compiled grammar that can check texts and sample texts.

    Example::

        c = GrammarConstraint("lark", 'start: "a"+', field="grammar")
        assert c.check("aaa") is None
        assert c.check("ab").offset == 1
        text = c.sample(random.Random(0))
    """

    def __init__(self, kind: ConstraintKind, source: str | Mapping[str, Any], *, field: str) -> None:
        self.kind = kind
        self.field = field
        self.source = source
        text = source if isinstance(source, str) else json.dumps(source)
        try:
            fmt = "grammar" if kind == "gbnf" else kind
            self._grammar = llguidance.grammar_from(fmt, text)
        except ValueError as exc:
            raise InvalidGrammar(field, str(exc)) from None
        error = llguidance.LLMatcher.validate_grammar(self._grammar, _tokenizer())
        if error:
            raise InvalidGrammar(field, error.strip())
        self._proto: Any = None

    def _matcher(self) -> Any:
        # compiling a matcher costs milliseconds; a fresh copy of a compiled one costs nothing
        if self._proto is None:
            self._proto = llguidance.LLMatcher(_tokenizer(), self._grammar, log_level=0)
        return self._proto.deep_copy()

    def check(self, text: str, *, prefix: bool = False) -> GrammarMismatch | None:
        """Return None when ``text`` is a complete match (with ``prefix``: the start of one,
        as an answer cut off at ``max_tokens`` is), else where it goes wrong."""
        matcher = self._matcher()
        data = text.encode("utf-8")
        for index, byte in enumerate(data):
            if not matcher.consume_token(byte):
                return self._mismatch(data, index, incomplete=False)
        if not prefix and not matcher.is_accepting():
            return self._mismatch(data, len(data), incomplete=True)
        return None

    def _mismatch(self, data: bytes, index: int, *, incomplete: bool) -> GrammarMismatch:
        before = data[:index].decode("utf-8", errors="replace")
        line = before.count("\n") + 1
        column = len(before) - (before.rfind("\n") + 1) + 1
        return GrammarMismatch(
            offset=len(before),
            line=line,
            column=column,
            incomplete=incomplete,
            field=self.field,
            context=before[-40:],
        )

    def sample(self, rng: random.Random, *, max_bytes: int = 2000, stop_bias: float = 0.2) -> str:
        """A random text the grammar accepts (seeded by ``rng``).

        Each step picks among the bytes the grammar allows next, preferring printable ASCII.
        Where the grammar may end, it ends with probability ``stop_bias``; past ``max_bytes`` it
        prefers ending and closing characters, and gives up (returning what it has) at twice that.
        """
        matcher = self._matcher()
        out = bytearray()
        while len(out) < 2 * max_bytes:
            forced = matcher.compute_ff_bytes()
            if forced:
                matcher.consume_tokens(list(forced))
                out += forced
                continue
            if matcher.is_stopped():
                break
            allowed = _allowed(matcher.compute_bitmask())
            can_stop = _EOS in allowed
            bytes_ok = [b for b in allowed if b != _EOS]
            if not bytes_ok or (can_stop and (len(out) >= max_bytes or rng.random() < stop_bias)):
                break
            printable = [b for b in bytes_ok if 32 <= b < 127 or b == 10]
            pool = printable or bytes_ok
            solid = [b for b in pool if b not in _SPACES]
            if solid and rng.random() < 0.9:  # optional whitespace would swamp JSON otherwise
                pool = solid
            if len(out) >= max_bytes or rng.random() < stop_bias:
                pool = [b for b in pool if b in _CLOSERS] or pool
            choice = rng.choice(pool)
            matcher.consume_token(choice)
            out.append(choice)
        return out.decode("utf-8", errors="replace")


def _allowed(mask: bytes) -> list[int]:
    return [
        index for index in range(_EOS + 1) if index // 8 < len(mask) and mask[index // 8] >> (index % 8) & 1
    ]


# -- finding the grammar in a request ------------------------------------------------------------


#: Which constraint fields each real server reads; the rest it ignores (see SimulatedLLM's
#: ``server=``). ``response_format:json_schema`` / ``:json_object`` name the two forms.
SERVER_FIELDS: Mapping[str, frozenset[str]] = {
    "vllm": frozenset(
        {
            "structured_outputs.grammar",
            "structured_outputs.json",
            "structured_outputs.regex",
            "structured_outputs.choice",
            "response_format:json_schema",
            "response_format:json_object",
        }
    ),
    "llama-server": frozenset(
        {"grammar", "json_schema", "response_format:json_schema", "response_format:json_object"}
    ),
    "llama-cpp-python": frozenset({"grammar", "response_format:json_object"}),
    "sglang": frozenset({"ebnf", "regex", "json_schema", "response_format:json_schema"}),
    "ollama": frozenset({"response_format:json_schema", "response_format:json_object"}),
    "openai": frozenset(
        {"response_format:json_schema", "response_format:json_object", "tools", "text.format"}
    ),
}
#: Forms a server refuses outright, with its complaint.
SERVER_REFUSES: Mapping[str, Mapping[str, str]] = {
    "llama-cpp-python": {
        "response_format:json_schema": "response_format.type must be 'text' or 'json_object'",
    },
}


def find_constraint(
    path: str, body: Mapping[str, Any], *, server: str | None = None
) -> GrammarConstraint | None:
    """The grammar a request carries, in any dialect's field, or None.

    With ``server`` (a key of :data:`SERVER_FIELDS`), only the fields that server reads count:
    a constraint anywhere else is ignored, as that server ignores it.

    Raises:
        InvalidGrammar: the grammar cannot be compiled, two fields carry grammars, or
            ``server`` refuses the form used.
    """
    found = _responses_fields(body) if path.endswith("/responses") else _completion_fields(body)
    if server is not None:
        found = _read_by(server, body, found)
    if not found:
        return None
    if len(found) > 1:
        names = ", ".join(field for field, _, _ in found)
        raise InvalidGrammar(names, "a request may carry one grammar, not several")
    field, kind, source = found[0]
    text = source if isinstance(source, str) else json.dumps(source)
    return _compiled(kind, text, field)


@lru_cache(maxsize=64)
def _compiled(kind: ConstraintKind, text: str, field: str) -> GrammarConstraint:
    """Compile each distinct grammar once: requests of a run repeat the same grammar, and its
    conversion takes a tenth of a second or more, which would stall the server's event loop."""
    return GrammarConstraint(kind, text, field=field)


_Found = list[tuple[str, ConstraintKind, Any]]


def _completion_fields(body: Mapping[str, Any]) -> _Found:
    found: _Found = []
    structured = body.get("structured_outputs")
    if isinstance(structured, Mapping):
        for key, kind in _VLLM_KEYS:
            if structured.get(key) is not None:
                found.append((f"structured_outputs.{key}", kind, _normalize(kind, structured[key])))
    for key, kind in _FLAT_KEYS:
        if body.get(key) is not None:
            found.append((key, kind, _normalize(kind, body[key])))
    fmt = body.get("response_format")
    if isinstance(fmt, Mapping):
        if fmt.get("type") == "json_schema":
            schema = (fmt.get("json_schema") or {}).get("schema", {})
            found.append(("response_format", "json_schema", schema))
        elif fmt.get("type") == "json_object":  # with "schema": llama.cpp's form of json_schema
            found.append(("response_format", "json_schema", fmt.get("schema") or {"type": "object"}))
    ollama = body.get("format")
    if isinstance(ollama, Mapping):
        found.append(("format", "json_schema", ollama))
    elif ollama == "json":
        found.append(("format", "json_schema", {"type": "object"}))
    return found


_VLLM_KEYS: Sequence[tuple[str, ConstraintKind]] = (
    ("grammar", "gbnf"),
    ("json", "json_schema"),
    ("regex", "regex"),
    ("choice", "choice"),
)
_FLAT_KEYS: Sequence[tuple[str, ConstraintKind]] = (
    ("guided_grammar", "gbnf"),
    ("guided_json", "json_schema"),
    ("guided_regex", "regex"),
    ("guided_choice", "choice"),
    ("grammar", "gbnf"),  # llama.cpp
    ("json_schema", "json_schema"),  # llama.cpp (object) and SGLang (string)
    ("ebnf", "gbnf"),  # SGLang
    ("regex", "regex"),  # SGLang
)


def _read_by(server: str, body: Mapping[str, Any], found: _Found) -> _Found:
    if server not in SERVER_FIELDS:
        raise ValueError(f"unknown server {server!r}; choose one of {', '.join(SERVER_FIELDS)}")
    reads, refuses = SERVER_FIELDS[server], SERVER_REFUSES.get(server, {})
    kept: _Found = []
    for item in found:
        name = item[0]
        if name == "response_format":
            fmt = body.get("response_format") or {}
            name = f"response_format:{fmt.get('type')}"
        elif name.startswith("tools["):
            name = "tools"
        if name in refuses:
            raise InvalidGrammar(item[0], f"{server} refuses this form: {refuses[name]}")
        if name in reads:
            kept.append(item)
    return kept


def _normalize(kind: ConstraintKind, value: Any) -> Any:
    if kind == "json_schema" and isinstance(value, str):
        return json.loads(value)
    if kind == "choice" and not isinstance(value, str):
        return json.dumps(list(value))
    return value


def _responses_fields(body: Mapping[str, Any]) -> _Found:
    found: _Found = []
    tool = custom_tool(body)
    if tool is not None:
        fmt = tool.get("format") or {}
        if fmt.get("type") == "grammar":
            syntax = fmt.get("syntax", "lark")
            kind: ConstraintKind = "regex" if syntax == "regex" else "lark"
            found.append((f"tools[{tool['name']}].format", kind, fmt.get("definition", "")))
        return found
    text = body.get("text")
    fmt = text.get("format") if isinstance(text, Mapping) else None
    if isinstance(fmt, Mapping) and fmt.get("type") == "json_schema":
        found.append(("text.format", "json_schema", fmt.get("schema", {})))
    return found


def custom_tool(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The custom tool a Responses request makes the model call, or None.

    That is the one named by ``tool_choice``, or the only custom tool when there is one.
    """
    tools = [t for t in body.get("tools") or () if isinstance(t, Mapping)]
    custom = [t for t in tools if t.get("type") == "custom"]
    choice = body.get("tool_choice")
    if isinstance(choice, Mapping) and choice.get("type") == "custom":
        named = [t for t in custom if t.get("name") == choice.get("name")]
        return named[0] if named else None
    return custom[0] if len(custom) == 1 and choice != "none" else None
