"""The text dialect: parsing, printing, compat mode and the streaming contract."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tomasulo.grammar import (
    Plan,
    PlanStream,
    Ref,
    Task,
    Template,
    aiter_tasks,
    iter_refs,
    parse_plan,
)

from .plan_tools import plan_tools

TOOLS = plan_tools()

EXAMPLE = """Thought: Both searches are independent.
1. search(query="Mount Everest")
2. search(query="Mount Kilimanjaro")
3. math(expression="${1.height_m} / ${2.height_m}")
4. join()
"""


def test_example_plan_from_the_design() -> None:
    plan = parse_plan(EXAMPLE, TOOLS)
    assert [t.tool for t in plan] == ["search", "search", "math"]
    assert plan.tasks[0].thought == "Both searches are independent."
    assert plan.joined and plan.join_id == 4
    expr = plan.tasks[2].kwargs["expression"]
    assert expr == Template((Ref(1, ("height_m",)), " / ", Ref(2, ("height_m",))))
    assert plan.tasks[2].deps == {1, 2}


def test_positional_then_keyword_and_typed_references() -> None:
    plan = parse_plan(
        '1. search("a", 3)\n2. book({"name": $1.items[0], "age": 30}, nights=$1.count, tags=["x", $1])\n',
        TOOLS,
    )
    task = plan.tasks[1]
    assert task.args == ({"name": Ref(1, ("items", 0)), "age": 30},)
    assert task.kwargs == {"nights": Ref(1, ("count",)), "tags": ["x", Ref(1)]}
    assert task.bind(TOOLS["book"].param_names) == {
        "guest": {"name": Ref(1, ("items", 0)), "age": 30},
        "nights": Ref(1, ("count",)),
        "tags": ["x", Ref(1)],
    }


def test_tool_names_with_dots_and_dashes() -> None:
    plan = parse_plan('1. get-weather(city="Oslo", unit="celsius")\n2. math.factorial(n=5)\n', TOOLS)
    assert [t.tool for t in plan] == ["get-weather", "math.factorial"]


def test_escapes_and_literal_dollar_braces_in_strings() -> None:
    plan = parse_plan('1. search(query="tab\\t \\"q\\" \\u0024{1} $5 \\u00e9")\n')
    assert plan.tasks[0].kwargs["query"] == 'tab\t "q" ${1} $5 é'
    assert parse_plan(plan.to_text()) == plan


def test_numbers_booleans_null_and_nesting() -> None:
    plan = parse_plan('1. book({"name": "a"}, 2, true, [], null)\n2. math("1", [1.5, -2, 3e2])\n')
    assert plan.tasks[0].args == ({"name": "a"}, 2, True, [], None)
    assert plan.tasks[1].args == ("1", [1.5, -2, 300.0])


def test_replan_continues_numbering_and_may_use_old_results() -> None:
    plan = parse_plan('5. math(expression="${2} + 1")\n6. join()\n', TOOLS, start_id=5)
    assert plan.ids == (5,)
    assert plan.tasks[0].deps == {2}


def test_plan_without_join_and_blank_lines() -> None:
    plan = parse_plan("\n\n1. now()\n\n   \n2. now()\n")
    assert plan.ids == (1, 2) and not plan.joined


def test_end_of_plan_marker_after_join() -> None:
    for text in ("1. now()\n2. join()<END_OF_PLAN>", "1. now()\n2. join()\n<END_OF_PLAN>\n"):
        assert parse_plan(text).joined


COMPAT_PLANS = [
    (
        # LLMCompiler's own few-shot style
        """Question: If cheetahs were 1.3 times faster, how fast would they run?
Thought: I need the speed of a cheetah first.
1. search("cheetah top speed")
Thought: Then multiply it.
2. math("1.3 * $1", ["$1"])
Thought: I can answer now.
3. join()<END_OF_PLAN>""",
        [
            Task(1, "search", ("cheetah top speed",), thought="I need the speed of a cheetah first."),
            Task(
                2,
                "math",
                (Template(("1.3 * ", Ref(1))), [Ref(1)]),
                thought="Then multiply it.",
            ),
        ],
    ),
    (
        "1. search('Leonardo DiCaprio\\'s age')\n"
        "2. search('Barack Obama age', None)\n"
        "3. math('$1 - $2', ['$1', '$2'],)\n"
        "4. join()\n<END_OF_PLAN>",
        [
            Task(1, "search", ("Leonardo DiCaprio's age",)),
            Task(2, "search", ("Barack Obama age", None)),
            Task(3, "math", (Template((Ref(1), " - ", Ref(2))), [Ref(1), Ref(2)])),
        ],
    ),
    (
        "1. book({'name': 'Ann', 'vip': True,}, nights=2)\n2. math(\"costs $100 plus ${1}\")\n3. join()",
        [
            Task(1, "book", ({"name": "Ann", "vip": True},), {"nights": 2}),
            Task(2, "math", (Template(("costs $100 plus ", Ref(1))),)),
        ],
    ),
    (
        "Here is my plan:\n1. search(query=\"x\")\n2. math(expression='$1 * 2')\n3. join()",
        [
            Task(1, "search", kwargs={"query": "x"}),
            Task(2, "math", kwargs={"expression": Template((Ref(1), " * 2"))}),
        ],
    ),
    (
        "1. search('a')\n2. get-weather(city=\"$1\")\n<END_OF_PLAN>",
        [Task(1, "search", ("a",)), Task(2, "get-weather", kwargs={"city": Ref(1)})],
    ),
]


@pytest.mark.parametrize(("text", "expected"), COMPAT_PLANS)
def test_llmcompiler_style_plans_parse_in_compat_mode(text: str, expected: list[Task]) -> None:
    plan = parse_plan(text, compat=True)
    assert list(plan.tasks) == expected


def test_compat_mode_still_validates_against_tools() -> None:
    from tomasulo.exceptions import UnknownToolError

    with pytest.raises(UnknownToolError):
        parse_plan("1. serch('x')\n2. join()", TOOLS, compat=True)


def test_strict_mode_refuses_compat_syntax() -> None:
    from tomasulo.exceptions import PlanSyntaxError

    for text in ("1. search('x')", "1. book({}, vip=True)", '1. search("a",)'):
        with pytest.raises(PlanSyntaxError):
            parse_plan(text)


def test_graph_generations_and_critical_path() -> None:
    plan = parse_plan(
        '1. now()\n2. now()\n3. math(expression="${1}")\n4. math(expression="${3} ${2}")\n5. now()\n'
    )
    g = plan.graph()
    assert set(g.edges) == {(1, 3), (3, 4), (2, 4)}
    assert plan.generations() == [[1, 2, 5], [3], [4]]
    path, length = plan.critical_path({1: 1.0, 2: 5.0, 3: 1.0, 4: 1.0, 5: 2.0})
    assert path == [2, 4] and length == 6.0
    path, length = plan.critical_path()
    assert path == [1, 3, 4] and length == 3.0


# -- streaming -----------------------------------------------------------------------------------


def test_task_is_emitted_at_its_closing_parenthesis() -> None:
    s = PlanStream(TOOLS)
    assert s.feed('1. search(query="a)b"') == []
    assert [t.id for t in s.feed(")")] == [1]
    assert s.feed("  \n2. search(") == []
    assert [t.id for t in s.feed('"c")')] == [2]
    assert s.feed("\n3. join()\n") == []
    assert s.close() == [] and s.joined


def test_error_after_early_emit_is_still_reported() -> None:
    from tomasulo.exceptions import PlanSyntaxError

    s = PlanStream()
    assert [t.id for t in s.feed("1. now()")] == [1]
    with pytest.raises(PlanSyntaxError) as e:
        s.feed(" trailing words\n")
    assert (e.value.line, e.value.column) == (1, 10)


# -- properties -----------------------------------------------------------------------------------

_names = st.sampled_from(["search", "math", "now", "get-weather", "math.factorial", "a_b"])
_keys = st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True)
_text = st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=12)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    _text,
)


def _values(max_ref: int) -> st.SearchStrategy[object]:
    refs: st.SearchStrategy[object] = st.nothing()
    if max_ref >= 1:
        path = st.lists(st.one_of(_keys, st.integers(0, 9)), max_size=2).map(tuple)
        refs = st.builds(Ref, st.integers(1, max_ref), path)
        templates = st.lists(st.one_of(_text.filter(bool), refs), min_size=1, max_size=4).map(_template)
        refs = st.one_of(refs, templates)
    base = st.one_of(_scalars, refs)
    return st.recursive(
        base,
        lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_text, inner, max_size=3)),
        max_leaves=6,
    )


def _template(parts: list[object]) -> object:
    merged: list[object] = []
    for p in parts:
        if merged and isinstance(p, str) and isinstance(merged[-1], str):
            merged[-1] += p
        else:
            merged.append(p)
    if len(merged) == 1 and isinstance(merged[0], str):
        return merged[0]
    return Template(tuple(merged))  # type: ignore[arg-type]


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    n = draw(st.integers(0, 6))
    start = draw(st.integers(1, 3))
    tasks = []
    for i in range(start, start + n):
        args = tuple(draw(st.lists(_values(i - 1), max_size=3)))
        kwargs = draw(st.dictionaries(_keys, _values(i - 1), max_size=3))
        thought = draw(st.one_of(st.none(), st.from_regex(r"[A-Za-z ,.]{1,20}", fullmatch=True)))
        if thought is not None:
            thought = thought.strip() or None
        tasks.append(Task(i, draw(_names), args, kwargs, thought))
    joined = draw(st.booleans())
    return Plan(tuple(tasks), start + n if joined else None)


@settings(max_examples=100, deadline=None)
@given(plans())
def test_printed_plans_parse_back_to_the_same_plan(plan: Plan) -> None:
    start = plan.tasks[0].id if plan.tasks else (plan.join_id or 1)
    assert parse_plan(plan.to_text(), start_id=start) == plan


@settings(max_examples=100, deadline=None)
@given(plans(), st.data())
def test_any_chunking_yields_the_same_tasks_in_order_and_on_time(plan: Plan, data: st.DataObject) -> None:
    text = plan.to_text()
    start = plan.tasks[0].id if plan.tasks else (plan.join_id or 1)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=30)))
    chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    s = PlanStream(start_id=start)
    seen: list[Task] = []
    fed = ""
    for chunk in chunks:
        got = s.feed(chunk)
        fed += chunk
        seen.extend(got)
        # every task whose line is complete in `fed` has been handed over already
        for task in plan.tasks:
            line_end = text.index(task.to_text()) + len(task.to_text())
            if len(fed) >= line_end:
                assert task.id in [t.id for t in seen]
    seen.extend(s.close())
    assert seen == list(plan.tasks)


@settings(max_examples=100, deadline=None)
@given(plans())
def test_each_task_arrives_before_the_next_line_is_fed(plan: Plan) -> None:
    """Feeding one character at a time: task k is out before any text of task k+1."""
    text = plan.to_text()
    start = plan.tasks[0].id if plan.tasks else (plan.join_id or 1)
    s = PlanStream(start_id=start)
    seen: list[int] = []
    for pos, ch in enumerate(text):
        for task in plan.tasks:
            if text.startswith(f"{task.id}. ", pos) and (pos == 0 or text[pos - 1] == "\n"):
                assert seen == [t.id for t in plan.tasks if t.id < task.id]
        seen.extend(t.id for t in s.feed(ch))
    s.close()
    assert seen == [t.id for t in plan.tasks]


@pytest.mark.anyio
async def test_async_adapter_yields_tasks_while_chunks_arrive() -> None:
    import anyio

    send, recv = anyio.create_memory_object_stream[str](10)
    out: list[int] = []
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:

            async def consume() -> None:
                async with recv:
                    async for task in aiter_tasks(recv, TOOLS):
                        out.append(task.id)

            tg.start_soon(consume)
            async with send:
                await send.send('1. search(query="a")')
                # task 1 is handed over before any further text is sent
                await anyio.wait_all_tasks_blocked()
                assert out == [1]
                await send.send('\n2. search(query="b")\n3. join()\n')
    assert out == [1, 2]


def test_task_deps_are_found_once_in_every_kind_of_argument() -> None:
    nested = {"a": [Ref(3), {"b": (Ref(4, ("x", 0)),)}], "c": Template(("n=", Ref(5), "!"))}
    task = Task(9, "t", (1, [Ref(1), Ref(2)], nested, []), {"k": Ref(6), "s": "$7 is text"})
    assert task.deps == {1, 2, 3, 4, 5, 6}
    assert task.deps == {r.task_id for v in (*task.args, *task.kwargs.values()) for r in iter_refs(v)}
    assert Task(1, "t", ("x", 2, None)).deps == frozenset()
    # A changed copy finds its own; equality and repr leave deps out.
    moved = dataclasses.replace(task, args=(Ref(8),), kwargs={})
    assert moved.deps == {8}
    assert dataclasses.replace(task) == task and "deps" not in repr(task)
