"""Compat mode reads what LLMCompiler's own prompts teach and what models write, and never in a
way that depends on where the server cut the stream."""

from __future__ import annotations

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tomasulo.dispatcher import Dispatcher
from tomasulo.exceptions import PlanError, PlanSyntaxError
from tomasulo.grammar import PlanStream, Ref, Task, Template, parse_plan
from tomasulo.tools import Tool, Toolset

from .plan_tools import plan_tools

TOOLS = plan_tools()


def tasks_of(text: str, tools: Toolset | None = None) -> list[Task]:
    return list(parse_plan(text, tools, compat=True).tasks)


def chunked(text: str, cuts: list[int], tools: Toolset | None = None) -> tuple[list[Task], bool]:
    """Feed ``text`` cut at ``cuts``; the tasks and whether the plan joined."""
    stream = PlanStream(tools, compat=True)
    out: list[Task] = []
    last = 0
    for cut in [*sorted(set(cuts)), len(text)]:
        out += stream.feed(text[last:cut])
        last = cut
    out += stream.close()
    return out, stream.joined


@pytest.mark.parametrize(
    ("line", "args", "kwargs"),
    [
        ("search(Austin Powers)", ("Austin Powers",), {}),
        ("search(query=Austin Powers)", (), {"query": "Austin Powers"}),
        ("search(what's the weather in Paris, France?)", ("what's the weather in Paris, France?",), {}),
        ("search(2001 a space odyssey)", ("2001 a space odyssey",), {}),
        ("search(Austin (TX) Powers)", ("Austin (TX) Powers",), {}),
    ],
)
def test_unquoted_string_arguments_are_one_string(
    line: str, args: tuple[str, ...], kwargs: dict[str, str]
) -> None:
    [task] = tasks_of(f"1. {line}\n2. join()\n", TOOLS)
    assert (task.args, dict(task.kwargs)) == (args, kwargs)


def test_unquoted_text_with_a_reference_interpolates_it() -> None:
    [_, task] = tasks_of("1. search('x')\n2. search(population of $1 in 2020)\n", TOOLS)
    assert task.args == (Template(("population of ", Ref(1), " in 2020")),)


def test_strict_mode_still_refuses_unquoted_text() -> None:
    with pytest.raises(PlanSyntaxError, match="unexpected word 'Austin'"):
        parse_plan("1. search(Austin Powers)\n", TOOLS)


def test_values_that_are_broken_are_not_read_as_text() -> None:
    """Only bare words fall back to text: an overflow or deep nesting stays an error."""
    with pytest.raises(PlanSyntaxError, match="too large"):
        tasks_of("1. search(1e999)\n")
    with pytest.raises(PlanSyntaxError, match="nesting deeper"):
        tasks_of("1. search(" + "[" * 100 + "]" * 100 + ")\n")


@pytest.mark.parametrize(
    "line",
    [
        '1. search("x") # look it up',
        '1. search("x")  #search_tool',
        "1. search(Austin Powers) # a film (1997)",
    ],
)
def test_comments_after_a_call_are_ignored(line: str) -> None:
    [task] = tasks_of(line + "\n2. join()\n", TOOLS)
    assert task.tool == "search" and task.args and "#" not in str(task.args[0])


def test_numbers_as_python_writes_them() -> None:
    [task] = tasks_of("1. math('x', [.5, -.25, 1_000, 2_500.000_1, 5., 1e3])\n", TOOLS)
    assert task.args[1] == [0.5, -0.25, 1000, 2500.0001, 5.0, 1000.0]
    assert type(task.args[1][2]) is int


def test_a_leading_zero_is_never_dropped_from_a_number() -> None:
    geo = Toolset([Tool(name="geo", input_schema={"type": "object", "properties": {"zip": {}}})])
    assert tasks_of("1. geo(zip=02134)\n", geo)[0].kwargs == {"zip": "02134"}, "read as text"
    assert tasks_of("1. geo(007)\n", geo)[0].args == ("007",)
    assert tasks_of("1. geo(0_1)\n", geo)[0].args == ("0_1",)
    assert tasks_of("1. geo([0, -0, 0.5])\n", geo)[0].args == ([0, 0, 0.5],), "a lone zero is a number"
    with pytest.raises(PlanSyntaxError, match="the number 02134 has a leading zero"):
        tasks_of("1. geo(zip=[02134])\n", geo)


def test_tuples_are_arrays() -> None:
    first, second = tasks_of("1. math('x', (1, 2, 3))\n2. search(('a', 'b'),)\n", None)
    assert first.args[1] == [1, 2, 3] and second.args == (["a", "b"],)


@pytest.mark.parametrize("bullet", ["- ", "* ", "• ", "  - "])
def test_bulleted_task_lines_are_read_not_dropped(bullet: str) -> None:
    text = f"Plan:\n{bullet}1. search('a')\n{bullet}2. search(\"$1\")\n{bullet}3. join()\n"
    plan = parse_plan(text, TOOLS, compat=True)
    assert [t.id for t in plan.tasks] == [1, 2] and plan.joined
    assert plan.tasks[1].column == len(bullet) + 1, "columns still point into the original line"


@pytest.mark.parametrize(
    "after",
    [
        "That is all.\n",
        "3. search('more')\n",
        "3. join()\n",
        "<END_OF_PLAN>\nThought: done\n4. search(x\n",
        "Here is why: f(1, 2)) and [unclosed\n",
    ],
)
def test_text_after_join_is_ignored_in_compat_mode(after: str) -> None:
    text = f"1. search('a')\n2. join() and then some words\n{after}"
    plan = parse_plan(text, TOOLS, compat=True)
    assert [t.id for t in plan.tasks] == [1] and plan.joined
    strict = f'1. search("a")\n2. join()\n{after}'  # the join line itself is clean
    assert parse_plan('1. search("a")\n2. join()\n', TOOLS).joined, "without the text: a plan"
    with pytest.raises(PlanError) as info:
        parse_plan(strict, TOOLS)
    # strict mode says so, at the first line that may not follow (<END_OF_PLAN> itself may)
    assert info.value.line == (4 if after.startswith("<END_OF_PLAN>") else 3)


QUOTED = Toolset(
    [
        Tool(
            name="count",
            input_schema={"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
            fn=lambda n: {"n": n, "items": list(range(n))},
        ),
        Tool(
            name="echo",
            input_schema={
                "type": "object",
                "properties": {"text": {"type": "string"}, "data": {}},
                "required": ["text"],
            },
            fn=lambda text, data=None: [text, data],
        ),
    ]
)


def test_a_whole_quoted_reference_into_a_string_parameter_becomes_text() -> None:
    text = '1. count(3)\n2. echo("$1", data="$1")\n3. echo("${1.n}")\n4. join()\n'
    plan = parse_plan(text, QUOTED, compat=True)
    assert plan.tasks[1].args == (Template((Ref(1),)),), "a string parameter gets the value as text"
    assert plan.tasks[1].kwargs == {"data": Ref(1)}, "a parameter of any type gets the typed value"
    assert plan.tasks[2].args == (Template((Ref(1, ("n",)),)),)


@pytest.mark.anyio
async def test_a_quoted_reference_reaches_a_string_parameter_as_text() -> None:
    plan = parse_plan('1. count(2)\n2. echo("$1", data="$1")\n3. echo("${1.n}")\n', QUOTED, compat=True)
    with anyio.fail_after(5):
        out = await Dispatcher.run_plan(QUOTED, plan)
    assert [o.status for o in out.values()] == ["succeeded"] * 3, [o.error for o in out.values()]
    assert out[2].value == ['{"n":2,"items":[0,1]}', {"n": 2, "items": [0, 1]}]
    assert out[3].value == ["2", None]


# -- any chunking gives the same plan ----------------------------------------------------------------

COMPAT_PLAN = (
    "Here is the plan:\n"
    "- 1. search(Austin Powers) # the film (1997)\n"
    "* 2. math('$1 * 2', (.5, 1_000,),)\n"
    '3. search(query="$1")  #search\n'
    "4. join() the rest is ignored: 5. search(x\n"
    "<END_OF_PLAN>\n"
    "Thought: any text (here).\n"
)


def test_the_compat_plan_parses_whole() -> None:
    tasks, joined = chunked(COMPAT_PLAN, [], TOOLS)
    assert joined and [t.tool for t in tasks] == ["search", "math", "search"]
    assert tasks[0].args == ("Austin Powers",)
    assert tasks[1].args == (Template((Ref(1), " * 2")), [0.5, 1000])
    assert tasks[2].kwargs == {"query": Template((Ref(1),))}


@pytest.mark.parametrize("cut", range(len(COMPAT_PLAN) + 1))
def test_every_single_cut_gives_the_same_plan(cut: int) -> None:
    assert chunked(COMPAT_PLAN, [cut], TOOLS) == chunked(COMPAT_PLAN, [], TOOLS)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, len(COMPAT_PLAN)), max_size=30))
def test_any_chunking_gives_the_same_plan(cuts: list[int]) -> None:
    assert chunked(COMPAT_PLAN, cuts, TOOLS) == chunked(COMPAT_PLAN, [], TOOLS)


@settings(max_examples=100, deadline=None)
@given(
    words=st.lists(st.from_regex(r"[A-Za-z][A-Za-z0-9?!'&]{0,8}", fullmatch=True), min_size=1, max_size=5),
    cuts=st.lists(st.integers(0, 200), max_size=10),
)
def test_unquoted_text_is_chunking_proof(words: list[str], cuts: list[int]) -> None:
    text = f"1. search({' '.join(words)})\n2. join()\ntrailing words ) (\n"
    whole, joined = chunked(text, [])
    assert joined and whole[0].args == (" ".join(words),)
    assert chunked(text, [c for c in cuts if c <= len(text)]) == (whole, joined)


@pytest.mark.parametrize(
    "text",
    [
        "Step 1: search('x')\nStep 2: join()\n",
        "Task 1 - search('x')\n",
        "1) search('x')\n",
        "**Step 1:** search('x')\n",
        "- Step 1: search('x')\n",
    ],
)
def test_task_lines_in_a_form_compat_does_not_read_are_an_error_not_an_empty_plan(text: str) -> None:
    with pytest.raises(PlanSyntaxError) as info:
        parse_plan(text, TOOLS, compat=True)
    assert info.value.line == 1
    with pytest.raises(PlanSyntaxError) as streamed:
        chunked(text, list(range(len(text))))
    assert streamed.value.line == 1, "streamed char by char: the same"


def test_a_task_like_line_is_noticed_only_at_its_start() -> None:
    # a prose line that merely contains `1a(` later on is prose, not an unread task line
    assert tasks_of("We tried 3 things: see f(x) and more.\n", TOOLS) == []
    assert tasks_of("It is a" + "1a" * 20000 + "(\n", TOOLS) == [], "long prose lines are cheap"


@pytest.mark.parametrize("text", ["**1.** search('x')\n2. join()\n", "**1. search('x')**\n2. join()\n"])
def test_a_bold_task_line_is_a_clear_error_whole_or_streamed(text: str) -> None:
    with pytest.raises(PlanSyntaxError) as whole:
        parse_plan(text, TOOLS, compat=True)
    assert whole.value.line == 1
    with pytest.raises(PlanSyntaxError) as streamed:
        chunked(text, list(range(len(text))))
    assert (streamed.value.line, streamed.value.column) == (whole.value.line, whole.value.column)


def test_a_plan_of_only_prose_is_still_not_an_error_but_is_empty() -> None:
    plan = parse_plan("I think we should search for it.\n", TOOLS, compat=True)
    assert plan.tasks == () and not plan.joined


def test_bad_lines_in_compat_mode_are_still_plan_errors() -> None:
    with pytest.raises(PlanError):
        parse_plan("1. search('a')\n3. search('b')\n", TOOLS, compat=True)
