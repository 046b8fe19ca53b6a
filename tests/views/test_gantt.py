"""Gantt charts of real runs: a valid PNG, a self-contained HTML page, clear errors."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import anyio
import pytest

from tomasulo.exceptions import ConfigError
from tomasulo.runtime import Orchestrator, RunResult
from tomasulo.tools import Toolset
from tomasulo.tools.builtins import builtin_tools
from tomasulo.views import GanttBar, bars_from, draw_gantt

pytestmark = pytest.mark.anyio

PLAN = """\
1. sleep(0.05)
2. sleep(0.05)
3. math(expression="1 / 0")
4. echo([$1, $3])
5. join()
"""


async def _run() -> RunResult:
    tools = Toolset([*builtin_tools("sleep"), *builtin_tools("math"), *builtin_tools("echo")])
    with anyio.fail_after(20):
        return await Orchestrator(tools).execute_plan(PLAN)


async def test_png_is_a_real_image(tmp_path: Path) -> None:
    result = await _run()
    path = draw_gantt(result, tmp_path / "sub" / "run.png", title="demo")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert width >= 600 and height >= 200
    assert len(data) > 5000


async def test_html_is_self_contained_and_lists_every_task(tmp_path: Path) -> None:
    result = await _run()
    page = draw_gantt(result, tmp_path / "run.html", title="a <run>").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page
    assert "<title>a &lt;run&gt;</title>" in page
    for label in ("1. sleep", "2. sleep", "3. math", "4. echo"):
        assert label in page
    assert re.findall(r"https?://[^\"' ]+", page) == ["http://www.w3.org/2000/svg"]  # nothing fetched
    assert "<script" not in page and "<link" not in page
    assert "failed" in page and "skipped" in page


async def test_bars_follow_the_run_and_shift_by_offset() -> None:
    result = await _run()
    bars = {b.label: b for b in bars_from(result, offset=10.0, group="s1")}
    first = bars["s1 1. sleep"]
    assert first.end - first.start == pytest.approx(0.05, abs=0.04)
    assert first.start >= 10.0
    assert bars["s1 3. math"].status == "failed" and bars["s1 4. echo"].status == "skipped"


def test_bad_suffix_and_empty_runs_are_refused(tmp_path: Path) -> None:
    bar = GanttBar("1. x", 0.0, 1.0)
    with pytest.raises(ConfigError, match=r"\.png, \.svg, \.pdf or \.html"):
        draw_gantt([bar], tmp_path / "run.gif")
    with pytest.raises(ConfigError, match="no timeline"):
        draw_gantt([], tmp_path / "run.png")
    assert not list(tmp_path.iterdir())
