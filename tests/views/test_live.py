"""The live view follows dispatcher events: plain lines off a terminal, a table on one."""

from __future__ import annotations

import io

from rich.console import Console

from tomasulo.dispatcher import (
    Outcome,
    TaskFailed,
    TaskPlanned,
    TaskRetrying,
    TaskSkipped,
    TaskStarted,
    TaskSucceeded,
)
from tomasulo.views import LiveView


def events() -> list[object]:
    common = {"run_id": "r"}
    fail = Outcome(task_id=2, tool="legacy", status="failed", message="legacy system is down")
    skip = Outcome(task_id=3, tool="echo", status="skipped", message="skipped: task 2 failed")
    return [
        TaskPlanned(**common, seq=1, ts=0.0, task_id=1, tool="fetch"),
        TaskPlanned(**common, seq=2, ts=0.0, task_id=2, tool="legacy"),
        TaskPlanned(**common, seq=3, ts=0.0, task_id=3, tool="echo", deps=(2,)),
        TaskStarted(**common, seq=4, ts=0.1, task_id=1, tool="fetch"),
        TaskStarted(**common, seq=5, ts=0.1, task_id=2, tool="legacy"),
        TaskRetrying(
            **common,
            seq=6,
            ts=0.2,
            task_id=1,
            tool="fetch",
            attempt=1,
            error_type="ConnectionError",
            message="busy",
            delay=0.1,
        ),
        TaskStarted(**common, seq=7, ts=0.3, task_id=1, tool="fetch", attempt=2),
        TaskFailed(**common, seq=8, ts=0.35, task_id=2, tool="legacy", outcome=fail),
        TaskSkipped(**common, seq=9, ts=0.35, task_id=3, tool="echo", outcome=skip),
        TaskSucceeded(
            **common,
            seq=10,
            ts=0.6,
            task_id=1,
            tool="fetch",
            outcome=Outcome(task_id=1, tool="fetch", status="succeeded"),
        ),
    ]


def test_plain_lines_when_not_a_terminal() -> None:
    buf = io.StringIO()
    with LiveView(Console(file=buf, force_terminal=False, width=200)) as view:
        for event in events():
            view.handle(event)
    lines = buf.getvalue().splitlines()
    assert "task 1 fetch: retrying: attempt 1 failed: busy" in lines
    assert "task 2 legacy: failed (0.25s): legacy system is down" in lines
    assert "task 3 echo: skipped: task 2 failed" in lines
    assert lines[-1] == "task 1 fetch: done (0.50s)"
    assert view.board.counts() == {"done": 1, "failed": 1, "skipped": 1}


def test_table_and_progress_on_a_terminal() -> None:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=120, color_system=None)
    with LiveView(console) as view:
        assert view.live
        for event in events()[:5]:
            view.handle(event)
        console.print(view)
        for event in events()[5:]:
            view.handle(event)
        console.print(view)
    text = buf.getvalue()
    assert "running" in text and "waiting" in text
    assert "0/3 tasks" in text and "3/3 tasks" in text
    assert "legacy system is down" in text
