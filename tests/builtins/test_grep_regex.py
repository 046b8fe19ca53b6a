"""grep's patterns match in linear time: no pattern and no line can make it backtrack."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from tomasulo.dispatcher import Dispatcher
from tomasulo.grammar import Task
from tomasulo.tools import Tool, Toolset
from tomasulo.tools.builtins import FileAccess, file_tools, grep_tool

pytestmark = pytest.mark.anyio

# With a backtracking engine, (a+)+$ on this line tries about 2**4000 ways before it fails.
HOSTILE_LINE = "a" * 4000 + "!"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "hostile.txt").write_text(f"{HOSTILE_LINE}\naaaa\n")
    (tmp_path / "notes.txt").write_text("one.two(3)\nabab\nAlpha beta\n")
    return tmp_path


async def grep(root: Path, **args: Any) -> Any:
    tool: Tool = file_tools(root)[1]
    assert tool.fn is not None
    with anyio.fail_after(2):
        return await tool.fn(**tool.validate(args))


async def test_nested_quantifiers_on_a_long_line_return_at_once(root: Path) -> None:
    out = await grep(root, pattern="^(a+)+$")
    assert out["matches"] == [{"path": "hostile.txt", "line": 2, "text": "aaaa"}]
    assert out["truncated"] is False


async def test_a_hostile_pattern_in_a_dispatched_plan_keeps_the_deadline(root: Path) -> None:
    tools = Toolset(file_tools(root))
    plan = [Task(1, "grep", ("^(a|aa)+$",)), Task(2, "grep", ("^(a+)+b$",))]
    with anyio.fail_after(2):
        out = await Dispatcher.run_plan(tools, plan)
    assert out[1].ok and out[2].ok, (out[1].message, out[2].message)
    assert out[1].value["matches"] == [{"path": "hostile.txt", "line": 2, "text": "aaaa"}]
    assert out[2].value["matches"] == []


@pytest.mark.parametrize(
    ("pattern", "feature"),
    [
        (r"(ab)\1", r"backreferences \(written \\1"),
        (r"one(?=\.)", r"lookahead \(written \(\?="),
        (r"one(?!x)", r"negative lookahead \(written \(\?!"),
        (r"(?<=one)\.", r"lookbehind \(written \(\?<="),
        (r"(?<!x)one", r"negative lookbehind \(written \(\?<!"),
    ],
)
async def test_constructs_that_need_backtracking_are_refused_by_name(
    root: Path, pattern: str, feature: str
) -> None:
    with pytest.raises(ValueError, match=f"linear time .*does not support {feature}.*fixed=true"):
        await grep(root, pattern=pattern)


async def test_a_pattern_too_big_to_compile_in_bounded_memory_is_refused(root: Path) -> None:
    with pytest.raises(ValueError, match=r"bad regular expression .*RE2 syntax"):
        await grep(root, pattern="((x{1000}){1000}){1000}")


async def test_fixed_strings_and_case_folding_still_work(root: Path) -> None:
    fixed = await grep(root, pattern="two(3)", fixed=True)
    assert fixed["matches"] == [{"path": "notes.txt", "line": 1, "text": "one.two(3)"}]
    folded = await grep(root, pattern=r"alpha\s+BETA", ignore_case=True)
    assert folded["matches"] == [{"path": "notes.txt", "line": 3, "text": "Alpha beta"}]
    assert (await grep(root, pattern=r"alpha\s+BETA"))["matches"] == []


# RE2 matches in linear time, but when its DFA runs out of cache it falls back to an NFA whose
# cost is (line length) x (program size): about 0.1 s a line like these for a program of 2,000
# instructions, seconds for ten times that.
SLOW_LINE = "ab" * 2048
SLOW_LINES = ["a" * (3900 + i) + " x" for i in range(100)]


async def test_a_pattern_that_compiles_too_big_is_refused_before_it_runs(tmp_path: Path) -> None:
    (tmp_path / "slow.txt").write_text(f"{SLOW_LINE}\n" * 4)
    with pytest.raises(
        ValueError, match=r"too complex: it compiles to \d+ RE2 instructions, more than 2000; use smaller"
    ):
        await grep(tmp_path, pattern=r"(\w+\s?){1,1000}x")
    assert (await grep(tmp_path, pattern=r"\pL+x"))["matches"] == []  # Unicode classes stay usable


async def test_a_slow_pattern_stops_at_the_timeout_between_lines_of_a_file(tmp_path: Path) -> None:
    (tmp_path / "slow.txt").write_text("\n".join(SLOW_LINES))
    tool = grep_tool(FileAccess(tmp_path), timeout=0.5)
    assert tool.fn is not None
    # just under the bound on program size: about 0.1 s a line, so some 10 s for the file, which
    # the timeout once could not cut short (it was checked between files only)
    with anyio.fail_after(5):
        out = await tool.fn(pattern=r"(\w+\s?){1,180}x")
    assert 0 < len(out["matches"]) < 100 and out["truncated"] is True
    assert out["note"] == "the search stopped at its timeout of 0.5 s"
