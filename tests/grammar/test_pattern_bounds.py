"""String ``pattern`` and number bounds in every plan grammar.

A corpus of plans, each labelled valid or not, is judged by the parser (which validates the
schema) and by every grammar engine; they must all agree with the labels. The cases are the ones
a grammar can decide; a bound it cannot hold exactly (``price=150`` under ``maximum: 100``) is
left to validation, and tests below show that validation still has the last word.
"""

from __future__ import annotations

import functools
import json
import random
import re

import pytest

from tomasulo.exceptions import PlanError
from tomasulo.grammar import build_grammar, parse_plan
from tomasulo.grammar._emit_lark import regex_of
from tomasulo.grammar._ir import Grammar
from tomasulo.grammar._regex import read_pattern
from tomasulo.tools import Toolset

from . import grammar_support as gs
from .test_engines import (
    MAX_TASKS,
    engine_disagreements,
    llama,  # noqa: F401  (the fixture)
    llama_disagreements,
    requires_llama,
)

SKU = r"^[A-Z]{3}-\d{2}$"


@functools.cache
def pattern_tools() -> Toolset:
    return Toolset.from_schemas(
        [
            {
                "name": "code",
                "parameters": {
                    "properties": {
                        "sku": {"type": "string", "pattern": SKU},
                        "tag": {"type": "string", "pattern": "^#[a-z]+"},
                        "quote": {"type": "string", "pattern": '^"[a-z]*"$'},
                        "cost": {"type": "string", "pattern": r"^\$\d+(\.\d\d)?$"},
                        "word": {"type": "string", "pattern": "(cat|dog)s?$"},
                        "price": {"type": "number", "minimum": 0, "maximum": 100},
                        "delta": {"type": "number", "exclusiveMaximum": 0},
                        "note": {"type": "string", "pattern": "(?=x)"},
                    },
                    "required": ["sku"],
                },
            }
        ]
    )


def _plan(*calls: str) -> str:
    lines = [f"{i}. code({c})" for i, c in enumerate(calls, 1)]
    return "\n".join([*lines, f"{len(calls) + 1}. join()"]) + "\n"


PATTERNS: list[tuple[str, str, bool]] = [
    ("matches", _plan('"ABC-12"'), True),
    ("too few letters", _plan('"AB-12"'), False),
    ("too many digits", _plan('"ABC-123"'), False),
    ("lowercase", _plan('"abc-12"'), False),
    ("a trailing newline ($ admits one)", _plan('"ABC-12\\n"'), True),
    ("two trailing newlines", _plan('"ABC-12\\n\\n"'), False),
    ("by name", _plan('sku="XYZ-00"'), True),
    ("head anchor, free tail", _plan('"ABC-12", tag="#abc and more"'), True),
    ("head anchor missed", _plan('"ABC-12", tag="abc"'), False),
    ("escaped quotes", _plan('"ABC-12", quote="\\"ab\\""'), True),
    ("unescaped content", _plan('"ABC-12", quote="ab"'), False),
    ("a dollar", _plan('"ABC-12", cost="$12.50"'), True),
    ("no dollar", _plan('"ABC-12", cost="12"'), False),
    ("tail anchor, free head", _plan('"ABC-12", word="hot dogs"'), True),
    ("tail anchor missed", _plan('"ABC-12", word="dogsled"'), False),
    ("a reference", '1. code("ABC-12")\n2. code($1)\n3. join()\n', True),
    ("an interpolation is checked later", '1. code("ABC-12")\n2. code("${1}")\n3. join()\n', True),
    ("in range", _plan('"ABC-12", price=99.5'), True),
    ("zero", _plan('"ABC-12", price=0'), True),
    ("negative under minimum 0", _plan('"ABC-12", price=-1'), False),
    ("more digits than the maximum has", _plan('"ABC-12", price=1000'), False),
    ("a positive exponent past a small maximum", _plan('"ABC-12", price=1e5'), False),
    ("a negative exponent", _plan('"ABC-12", price=5e-1'), True),
    ("negative under exclusiveMaximum 0", _plan('"ABC-12", delta=-0.5'), True),
    ("positive under exclusiveMaximum 0", _plan('"ABC-12", delta=0.5'), False),
]


@pytest.mark.parametrize("engine", ["parser", "python-lark", "llguidance-lark", "llguidance-gbnf"])
def test_patterns_and_number_bounds_every_engine_agrees_with_labels(engine: str) -> None:
    assert engine_disagreements(engine, pattern_tools(), PATTERNS) == []


@pytest.mark.llamacpp
@requires_llama
def test_patterns_and_number_bounds_llama_cpp_grammar_sampler_agrees(llama: gs.LlamaGrammarEngine) -> None:  # noqa: F811
    assert llama_disagreements(llama, pattern_tools(), PATTERNS) == []


@pytest.mark.parametrize("engine", ["python-lark", "llguidance-lark", "llguidance-gbnf"])
def test_what_the_grammar_cannot_hold_is_left_to_validation(engine: str) -> None:
    """A bound inside the digit cap, and a pattern outside the subset: the grammar lets them
    through, and the parser's validation refuses them, naming the parameter."""
    tools = pattern_tools()
    g = build_grammar(tools, max_tasks=MAX_TASKS)
    for args, where in (('"ABC-12", price=150', "price"), ('"ABC-12", note="abc"', "note")):
        text = _plan(args)
        assert gs.lark_accepts(g, text) if engine == "python-lark" else gs.llg_accepts(g, engine[11:], text)
        with pytest.raises(PlanError, match=where):
            parse_plan(text, tools)
    assert parse_plan(_plan('"ABC-12", note="xyz"'), tools).tasks[0].kwargs["note"] == "xyz"


def test_the_json_plan_schema_has_the_pattern_and_exact_number_bounds() -> None:
    schema = build_grammar(pattern_tools(), max_tasks=2).json_schema()
    args = schema["properties"]["tasks"]["items"]["properties"]["args"]["properties"]
    sku = args["sku"]["anyOf"][0]
    assert sku["anyOf"][0]["pattern"] == SKU  # the pattern as given, or an interpolation
    assert args["price"]["anyOf"][0] == {"type": "number", "minimum": 0, "maximum": 100}
    assert args["delta"]["anyOf"][0] == {"type": "number", "exclusiveMaximum": 0}
    assert args["note"]["anyOf"][0] == {"type": "string"}  # outside the subset: not sent
    from jsonschema import Draft202012Validator

    plan = {"tasks": [{"id": 1, "tool": "code", "args": {"sku": "ABC-12", "price": 100.5}}]}
    assert not Draft202012Validator(schema).is_valid(plan)
    plan["tasks"][0]["args"]["price"] = 100
    assert Draft202012Validator(schema).is_valid(plan)
    plan["tasks"][0]["args"]["sku"] = "ABC"
    assert not Draft202012Validator(schema).is_valid(plan)


PATTERN_SUBSET = [
    r"^[a-z]+$",
    r"^\d{3}-\d{4}$",
    r"ab",
    r"^(ab|cd)*$",
    r"x{2,3}",
    r"^.{0,5}$",
    r"^[^a]*$",
    r"^\w+@\w+\.com$",
    r"a{,2}b",
    r"^\s?x$",
    r"^[\-.]{2}$",
    r"^\$\d+\Z",
    r"\{",
    r"^(?P<n>a|b)+?c$",
]


@pytest.mark.parametrize("pattern", PATTERN_SUBSET)
def test_a_read_pattern_matches_the_strings_re_search_matches(pattern: str) -> None:
    """Random strings over an alphabet that hits every class: the IR's language is exactly
    what ``re.search`` (JSON Schema validation) accepts."""
    read = read_pattern(pattern)
    assert read is not None
    rx = re.compile(regex_of(read.chars(), Grammar({}, "x")), re.DOTALL)
    rng = random.Random(pattern)
    alphabet = "ab cdx-@.com0123\n$a{\u0663\u00e9_"
    wrong = []
    for _ in range(2000):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 7)))
        if (rx.fullmatch(s) is not None) != (re.search(pattern, s) is not None):
            wrong.append(s)
    assert wrong == []


@pytest.mark.parametrize(
    "pattern", [r"(?=x)", r"(a)\1", r"(?i)abc", r"\bword", r"^a|b$", r"a{300}", r"[[:alpha:]]", r"a**"]
)
def test_patterns_outside_the_subset_are_not_read(pattern: str) -> None:
    assert read_pattern(pattern) is None


def test_a_pattern_that_holds_dollar_and_brace_is_left_to_validation() -> None:
    """``${`` would start an interpolation, so such a pattern is not put in the grammar."""
    tools = Toolset.from_schemas(
        [{"name": "t", "parameters": {"properties": {"s": {"type": "string", "pattern": r"^[${]+$"}}}}]
    )
    g = build_grammar(tools, max_tasks=2)
    assert gs.lark_accepts(g, '1. t("x")\n2. join()\n')
    assert json.dumps(g.json_schema()).count("[${]") == 1


def test_the_planner_prompt_states_each_pattern_and_bound() -> None:
    """Also the ones the grammar leaves to validation: the model should know them first."""
    from tomasulo.planner import tool_catalog

    catalog = tool_catalog(pattern_tools())
    assert f"sku: string (matching {json.dumps(SKU)})" in catalog
    assert "price: number (>= 0, <= 100)" in catalog and "delta: number (< 0)" in catalog
    assert 'note: string (matching "(?=x)")' in catalog
