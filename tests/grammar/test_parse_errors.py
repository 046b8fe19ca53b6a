"""A corpus of malformed plans: each names its error class, line and column."""

from __future__ import annotations

import pytest

from tomasulo.exceptions import (
    ArgumentTypeError,
    DuplicateArgumentError,
    DuplicateJoinError,
    ForwardReferenceError,
    IncompletePlanError,
    MissingArgumentError,
    PlanError,
    PlanSyntaxError,
    TaskIdError,
    TextAfterJoinError,
    TooManyPositionalError,
    TooManyTasksError,
    UnknownKeywordError,
    UnknownToolError,
)
from tomasulo.grammar import PlanStream, parse_json_plan, parse_plan

from .plan_tools import plan_tools

TOOLS = plan_tools()

# (plan text, error class, line, column)
CORPUS: list[tuple[str, type[PlanError], int, int]] = [
    # syntax
    ('1 search(query="x")', PlanSyntaxError, 1, 1),
    ("1. search query", PlanSyntaxError, 1, 4),
    ('search(query="x")', PlanSyntaxError, 1, 1),
    ("1. search(query=x)", PlanSyntaxError, 1, 17),
    ("1. search(query='x')", PlanSyntaxError, 1, 17),
    ('1. search(query="x" limit=2)', PlanSyntaxError, 1, 21),
    ('1. search("x"\n2. join()', PlanSyntaxError, 1, 14),
    ('1. search(query="unterminated)\n2. join()', PlanSyntaxError, 1, 17),
    ("1. search(query=)", PlanSyntaxError, 1, 17),
    ('1. math("1", [1, 2)', PlanSyntaxError, 1, 19),
    ('1. book({name: "x"})', PlanSyntaxError, 1, 10),
    ('1. book({"name" "x"})', PlanSyntaxError, 1, 17),
    ('1. book({"name": "x", "name": "y"})', PlanSyntaxError, 1, 23),
    ('1. search(query="x"),', PlanSyntaxError, 1, 21),
    ('1. search(query="bad \\q escape")', PlanSyntaxError, 1, 22),
    ('1. search(1, query="x", 2)', PlanSyntaxError, 1, 25),
    ("1. book({}, vip=True)", PlanSyntaxError, 1, 17),
    ("1. search(query=$)", PlanSyntaxError, 1, 17),
    ("1. now()\n2. now(x=$1.)", PlanSyntaxError, 2, 12),
    ("1. now()\n\n  hello there\n2. join()", PlanSyntaxError, 3, 3),
    ("1. now()\n<END_OF_PLAN>", PlanSyntaxError, 2, 1),
    ("1. now() 2. now()", PlanSyntaxError, 1, 10),
    ("1. now()\n2. join(1)", PlanSyntaxError, 2, 9),
    ('1. search(query="a", limit=1.5.2)', PlanSyntaxError, 1, 31),
    # numbering
    ("2. now()", TaskIdError, 1, 1),
    ("1. now()\n3. now()", TaskIdError, 2, 1),
    ("1. now()\n1. now()", TaskIdError, 2, 1),
    ("1. now()\n2. now()\n4. join()", TaskIdError, 3, 1),
    ("1. now()\n   0. now()", TaskIdError, 2, 4),
    # references
    ("1. search(query=$1)", ForwardReferenceError, 1, 17),
    ("1. now()\n2. search(query=$3)", ForwardReferenceError, 2, 17),
    ('1. now()\n2. math(expression="x ${2.a}")', ForwardReferenceError, 2, 23),
    ('1. now()\n2. math("1", [$1, $5])', ForwardReferenceError, 2, 19),
    ('1. now()\n2. book({"name": $0})', ForwardReferenceError, 2, 18),
    # join
    ("1. now()\n2. join()\n3. join()", DuplicateJoinError, 3, 1),
    ("1. now()\n2. join()\n3. now()", TextAfterJoinError, 3, 1),
    ("1. join()\nThought: more", TextAfterJoinError, 2, 1),
    ("1. now()\n2. join()\n<END_OF_PLAN>\n  x", TextAfterJoinError, 4, 3),
    # tools and arguments
    ('1. serch(query="x")', UnknownToolError, 1, 4),
    ('1. now()\n2. weather(city="Oslo")', UnknownToolError, 2, 4),
    ('1. search("a", 2, 3)', TooManyPositionalError, 1, 19),
    ("1. now(1)", TooManyPositionalError, 1, 8),
    ('1. search(qurey="x")', UnknownKeywordError, 1, 11),
    ('1. search("x", query="y")', DuplicateArgumentError, 1, 16),
    ("1. search(limit=3)", MissingArgumentError, 1, 18),
    ("1. book(nights=1)", MissingArgumentError, 1, 17),
    ("1. search(query=3)", ArgumentTypeError, 1, 11),
    ('1. search(query="x", limit="five")', ArgumentTypeError, 1, 22),
    ('1. search(query="x", limit=0)', ArgumentTypeError, 1, 22),
    ('1. get-weather(city="Oslo", unit="kelvin")', ArgumentTypeError, 1, 29),
    ('1. book({"age": 3})', ArgumentTypeError, 1, 9),
    ('1. book({"name": 1})', ArgumentTypeError, 1, 9),
    ('1. book({"name": "a"}, vip="yes")', ArgumentTypeError, 1, 24),
    ('1. book({"name": "a"}, tags=["x", 2])', ArgumentTypeError, 1, 24),
    ("1. math.factorial(n=2.5)", ArgumentTypeError, 1, 19),
    ('1. now()\n2. math.factorial(n="${1}")', ArgumentTypeError, 2, 19),
    # cut off
    ('1. search(query="x', IncompletePlanError, 1, 17),
    ("1. now()\n2. search(", IncompletePlanError, 2, 11),
    ('1. now()\n2. book({"name": ', IncompletePlanError, 2, 18),
]


@pytest.mark.parametrize(("text", "error", "line", "column"), CORPUS)
def test_malformed_plan(text: str, error: type[PlanError], line: int, column: int) -> None:
    with pytest.raises(PlanError) as info:
        parse_plan(text, TOOLS)
    got = info.value
    assert type(got) is error, str(got)
    assert (got.line, got.column) == (line, column), str(got)
    assert got.text, "the error shows the offending line"


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 40


def test_too_many_tasks() -> None:
    text = "".join(f"{i}. now()\n" for i in range(1, 5))
    with pytest.raises(TooManyTasksError) as info:
        parse_plan(text, TOOLS, max_tasks=3)
    assert (info.value.line, info.value.column) == (4, 1)


def test_error_message_names_the_place_and_gives_a_hint() -> None:
    with pytest.raises(UnknownToolError) as info:
        parse_plan('1. serch(query="x")', TOOLS)
    text = str(info.value)
    assert "line 1, column 4" in text
    assert "unknown tool 'serch'" in text
    assert "did you mean 'search'?" in text
    assert '1. serch(query="x")' in text


def test_streaming_reports_errors_at_the_same_place() -> None:
    for text, error, line, column in CORPUS:
        s = PlanStream(TOOLS)
        with pytest.raises(PlanError) as info:
            for ch in text:
                s.feed(ch)
            s.close()
        assert type(info.value) is error, text
        assert (info.value.line, info.value.column) == (line, column), text


JSON_CORPUS: list[tuple[str, type[PlanError], int, int]] = [
    ('{"tasks": [{"id": 2, "tool": "now"}]}', TaskIdError, 1, 12),
    ('{"tasks": [\n  {"id": 1, "tool": "nope"}]}', UnknownToolError, 2, 3),
    (
        '{"tasks": [{"id": 1, "tool": "search", "args": {"query": {"$ref": 1}}}]}',
        ForwardReferenceError,
        1,
        12,
    ),
    ('{"tasks": [{"id": 1, "tool": "search", "args": {"query": 5}}]}', ArgumentTypeError, 1, 12),
    ('{"tasks": [{"id": 1, "tool": "search", "args": {}}]}', MissingArgumentError, 1, 12),
    ('{"tasks": [{"id": 1, "tool": "search", "args": {"query": "a", "x": 1}}]}', UnknownKeywordError, 1, 12),
    ('{"tasks": [{"id": 1, "tool": "now", "extra": 1}]}', PlanSyntaxError, 1, 12),
    ('{"tasks": [{"id": "1", "tool": "now"}]}', PlanSyntaxError, 1, 12),
    ('{"tasks": [{"id": 1, "tool": "now"}', IncompletePlanError, 1, 36),
    ('{"steps": []}', PlanSyntaxError, 1, 1),
    ('{"tasks": [{"id": 1, "tool": "now"}] x}', PlanSyntaxError, 1, 38),
]


@pytest.mark.parametrize(("text", "error", "line", "column"), JSON_CORPUS)
def test_malformed_json_plan(text: str, error: type[PlanError], line: int, column: int) -> None:
    with pytest.raises(PlanError) as info:
        parse_json_plan(text, TOOLS)
    assert type(info.value) is error, str(info.value)
    assert (info.value.line, info.value.column) == (line, column), str(info.value)


def test_literal_check_follows_refs_into_the_tool_schemas_definitions() -> None:
    from tomasulo.tools import Tool, Toolset

    tool = Tool(
        name="place",
        input_schema={
            "type": "object",
            "$defs": {
                "Point": {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}
            },
            "properties": {"at": {"$ref": "#/$defs/Point"}},
            "required": ["at"],
        },
    )
    tools = Toolset([tool])
    assert parse_plan('1. place({"x": 1})', tools).tasks[0].args == ({"x": 1},)
    with pytest.raises(ArgumentTypeError, match=r"at\.x"):
        parse_plan('1. place({"x": "one"})', tools)


def test_an_error_on_a_very_long_line_shows_a_window_around_its_column() -> None:
    from tomasulo.exceptions import EXCERPT_CHARS, PlanSyntaxError

    text = "1. f(" + "x" * 5000 + "!" + "y" * 5000 + ")"
    err = PlanSyntaxError("unexpected '!'", line=1, column=text.index("!") + 1, text=text)
    _, shown, caret, *_ = str(err).splitlines()
    assert len(shown.strip()) <= EXCERPT_CHARS + 6
    assert shown[caret.index("^")] == "!"
    short = PlanSyntaxError("unexpected ')'", line=1, column=6, text="1. f()")
    assert str(short).splitlines()[1].strip() == "1. f()"
