"""The stream parser reads a long line in linear work, and chunking never changes the tasks.

Work is counted, not timed: every early parse of a line goes through ``parse_call_line``, so
the characters handed to it measure what the parser does. A line is read about once (early,
at its call's own ``)``) and once more at its newline; re-parsing it at every inner ``)`` is
what made lists of tuples quadratic (5 KB in 4 s, 24 KB in 65 s, all on the event loop).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tomasulo.grammar import PlanStream, Task, _stream, parse_plan
from tomasulo.tools import Toolset, tool


@tool
def f(x: list[Any]) -> int:
    """Take a list."""
    return len(x)


@tool
def search(query: str) -> str:
    """Search."""
    return query


TOOLS = Toolset([f, search])


def _chars_parsed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the length of every line the stream hands to the line parser."""
    seen: list[int] = []
    real = _stream.parse_call_line

    def counting(line: str, lineno: int, **kw: Any) -> Any:
        seen.append(len(line))
        return real(line, lineno, **kw)

    monkeypatch.setattr(_stream, "parse_call_line", counting)
    return seen


def _feed(text: str, size: int, *, compat: bool) -> tuple[PlanStream, list[list[Task]]]:
    stream = PlanStream(TOOLS, compat=compat)
    out = [stream.feed(text[i : i + size]) for i in range(0, len(text), size)]
    out.append(stream.close())
    return stream, out


@pytest.mark.parametrize(
    ("value", "compat"),
    [
        ("[" + ",".join(f"({i}, {i})" for i in range(2000)) + "]", True),  # tuples (compat)
        ("[" + ",".join(f'["{i})", ({i})]' for i in range(2000)) + "]", True),
        ("[" + ",".join(f'{{"k": [{i}, [{i}]]}}' for i in range(2000)) + "]", False),
    ],
)
def test_a_long_line_of_nested_brackets_is_parsed_a_bounded_number_of_times(
    value: str, compat: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _chars_parsed(monkeypatch)
    line = f"1. f(x={value})"
    stream, out = _feed(line + "\n2. join()<END_OF_PLAN>", 4, compat=compat)
    assert stream.joined and len(stream.plan.tasks) == 1
    assert len(out[(len(line) - 1) // 4]) == 1, "the task still comes with the chunk holding its ')'"
    # before: about one parse of the line per element (2000 x 20 KB = 40 MB); now 2 or 3
    assert sum(seen) <= 4 * len(line) + 100, f"{sum(seen)} characters parsed for a {len(line)}-character line"


@pytest.mark.parametrize("text", ["1. search(Austin Powers)\n", "1. search(Don't stop)\n"])
def test_unquoted_text_still_reads_as_one_string_at_any_chunking(text: str) -> None:
    whole = parse_plan(text + "2. join()\n", TOOLS, compat=True)
    for size in (1, 2, 3, 5, 8):
        stream, _ = _feed(text + "2. join()\n", size, compat=True)
        assert stream.plan == whole
    assert whole.tasks[0].args == (text[len("1. search(") : -2],)


_PIECES = [
    "(0, 1)",
    "[1, (2, 3)]",
    '")"',
    '"(("',
    "'))'",
    '"\\")"',
    '{"a": (1,)}',
    "$1",
    '"${1}"',
    "Don't stop",
    "Austin (Powers",
    "a) b",
    "))",
    "((",
    "]",
    "[",
    "}",
    "{",
]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.lists(st.sampled_from(_PIECES), min_size=1, max_size=4), min_size=1, max_size=3),
    st.lists(st.integers(0, 400), max_size=25),
    st.booleans(),
)
def test_any_chunking_of_bracketed_lines_gives_the_same_tasks_or_the_same_error(
    lines: list[list[str]], cuts: list[int], compat: bool
) -> None:
    body = "".join(f"{i + 2}. f(x=[{', '.join(parts)}])\n" for i, parts in enumerate(lines))
    text = '1. search("q")\n' + body + f"{len(lines) + 2}. join()\n"
    try:
        whole: object = parse_plan(text, TOOLS, compat=compat)
    except Exception as e:
        whole = (type(e), str(e))
    stream = PlanStream(TOOLS, compat=compat)
    got: list[Task] = []
    try:
        last = 0
        for cut in sorted({c for c in cuts if c < len(text)}):
            got.extend(stream.feed(text[last:cut]))
            last = cut
        got.extend(stream.feed(text[last:]))
        got.extend(stream.close())
        chunked: object = stream.plan
        assert got == list(stream.plan.tasks)
    except Exception as e:
        chunked = (type(e), str(e))
    assert chunked == whole
