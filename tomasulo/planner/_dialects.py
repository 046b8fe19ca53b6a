"""Where each kind of server wants the grammar: one request shape per dialect.

=========  =====================================================  ==============================
dialect    grammar field (text plans)                              JSON schema field (joiner)
=========  =====================================================  ==============================
vllm       ``structured_outputs.grammar`` (GBNF, else Lark)        ``structured_outputs.json``
llamacpp   ``grammar`` (GBNF)                                      ``response_format`` json_object
sglang     ``ebnf`` (GBNF)                                         ``response_format`` json_schema
openai     Responses custom tool, ``format: grammar/lark``         ``response_format`` strict
ollama     (none: JSON schemas only)                               ``response_format`` json_schema
plain      (none: compat parsing and a repair round)               (none)
=========  =====================================================  ==============================

The JSON schema goes in chat ``response_format`` (``{"type": "json_schema", "json_schema":
{"name", "schema", "strict"}}``) wherever the server's OpenAI-compatible endpoint reads it; Ollama's
``/v1`` endpoint ignores its native ``format`` field. The ``llamacpp`` dialect sends
``{"type": "json_object", "schema": ...}``, the one form both llama.cpp's ``llama-server`` and
llama-cpp-python read: llama-cpp-python refuses ``"type": "json_schema"`` (422) and ignores the
top-level ``json_schema`` field. docs/servers.md lists what each server was tested with.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from ..exceptions import ConfigError

__all__ = [
    "DEFAULT_DIALECT",
    "DIALECTS",
    "Dialect",
    "GrammarForm",
    "GrammarSpec",
    "OutputFormat",
    "RequestShape",
    "shape_request",
]

Dialect = Literal["vllm", "llamacpp", "sglang", "openai", "ollama", "plain"]
DIALECTS: tuple[Dialect, ...] = get_args(Dialect)

#: The dialect of an ``LLM``, a workflow and the CLI when none is named: no grammar is sent and
#: plans are read in compat mode and repaired, so any OpenAI-compatible server works. Name the
#: server's dialect to get grammar-constrained plans.
DEFAULT_DIALECT: Dialect = "plain"

OutputFormat = Literal["text", "json"]
"""What the model's answer will be: the text plan dialect, or the JSON one."""

GrammarForm = Literal["gbnf", "lark", "json_schema"]
"""The form of the plan grammar a model reads: GBNF or Lark text (the model writes text plans),
or a JSON schema (it writes JSON plans)."""


def grammar_form(dialect: Dialect, *, custom_tools: bool = True) -> GrammarForm | None:
    """The one form of the plan grammar a ``dialect`` server reads (what :func:`shape_request`
    sends of a full :class:`GrammarSpec`), or ``None`` for ``plain``, which takes none."""
    if dialect in ("vllm", "llamacpp", "sglang"):
        return "gbnf"
    if dialect == "openai":
        return "lark" if custom_tools else "json_schema"
    if dialect == "ollama":
        return "json_schema"
    return None


@dataclass(frozen=True, slots=True)
class GrammarSpec:
    """The same constraint in the forms different servers take; fill the ones you have.

    The grammar builder fills it (``build_grammar(...)``'s ``.gbnf()``, ``.lark()``,
    ``.json_schema()``); each dialect picks the form its server understands.

    Attributes:
        gbnf: a GBNF grammar (llama.cpp ``grammar``, SGLang ``ebnf``, vLLM).
        lark: a Lark grammar (OpenAI custom tools, vLLM).
        json_schema: a JSON schema for the JSON plan dialect (OpenAI strict, Ollama).
        name: the custom tool's or the JSON schema's name.
        description: the custom tool's description.

    Example::

        GrammarSpec(gbnf='root ::= "yes" | "no"', lark='start: "yes" | "no"')
    """

    gbnf: str | None = None
    lark: str | None = None
    json_schema: Mapping[str, Any] | None = None
    name: str = "plan"
    description: str = "Write the plan."

    def __post_init__(self) -> None:
        if self.gbnf is None and self.lark is None and self.json_schema is None:
            raise ConfigError("GrammarSpec needs at least one of gbnf, lark or json_schema")


@dataclass(frozen=True, slots=True)
class RequestShape:
    """How to send one constrained request.

    Attributes:
        api: ``"chat"`` (chat completions) or ``"responses"`` (the Responses API).
        output: whether the answer will be a text plan or a JSON plan.
        field: the request field that carries the constraint (for logs), or None.
        extra_body: fields merged into the JSON body.
        response_format: the chat ``response_format``, if any.
        tool: the Responses custom tool the model must call, if any.
    """

    api: Literal["chat", "responses"] = "chat"
    output: OutputFormat = "text"
    field: str | None = None
    extra_body: dict[str, Any] = dataclasses.field(default_factory=dict)
    response_format: dict[str, Any] | None = None
    tool: dict[str, Any] | None = None


def shape_request(
    dialect: Dialect, grammar: GrammarSpec | None, *, custom_tools: bool = True
) -> RequestShape:
    """The request shape for ``grammar`` on a ``dialect`` server.

    Text grammars (GBNF, Lark) win over the JSON schema where the server takes them.
    ``custom_tools`` says whether an ``openai`` model takes Responses custom tools with grammars.

    Raises:
        ConfigError: the dialect takes none of the forms ``grammar`` holds.
    """
    if dialect not in DIALECTS:
        raise ConfigError(f"unknown LLM dialect {dialect!r}; choose one of {', '.join(DIALECTS)}")
    if grammar is None or dialect == "plain":
        return RequestShape()
    schema = dict(grammar.json_schema) if grammar.json_schema is not None else None
    if dialect == "vllm":
        text = grammar.gbnf or grammar.lark
        if text is not None:
            return _extra("structured_outputs.grammar", {"structured_outputs": {"grammar": text}})
        return _extra("structured_outputs.json", {"structured_outputs": {"json": schema}}, "json")
    if dialect == "llamacpp":
        if grammar.gbnf is not None:
            return _extra("grammar", {"grammar": grammar.gbnf})
        if schema is not None:
            return RequestShape(
                output="json",
                field="response_format",
                response_format={"type": "json_object", "schema": schema},
            )
    if dialect == "sglang":
        if grammar.gbnf is not None:
            return _extra("ebnf", {"ebnf": grammar.gbnf})
        if schema is not None:
            return _response_format(grammar.name, schema)
    if dialect == "openai":
        if grammar.lark is not None and custom_tools:
            tool = {
                "type": "custom",
                "name": grammar.name,
                "description": grammar.description,
                "format": {"type": "grammar", "syntax": "lark", "definition": grammar.lark},
            }
            return RequestShape(api="responses", field=f"tools[{grammar.name}].format", tool=tool)
        if schema is not None:
            return _response_format(grammar.name, schema)
    if dialect == "ollama" and schema is not None:
        return _response_format(grammar.name, schema)
    have = [n for n in ("gbnf", "lark", "json_schema") if getattr(grammar, n) is not None]
    raise ConfigError(
        f"the {dialect!r} dialect cannot take a grammar given only as {' and '.join(have)}; "
        f"add the form it needs to the GrammarSpec (see tomasulo.planner dialect table)"
    )


def _response_format(name: str, schema: dict[str, Any]) -> RequestShape:
    strict = {"name": name, "schema": schema, "strict": True}
    return RequestShape(
        output="json",
        field="response_format",
        response_format={"type": "json_schema", "json_schema": strict},
    )


def _extra(field: str, body: dict[str, Any], output: OutputFormat = "text") -> RequestShape:
    return RequestShape(output=output, field=field, extra_body=body)
