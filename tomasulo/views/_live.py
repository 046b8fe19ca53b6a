"""The live view of a run: a table of tasks with state, spinner and elapsed time, and a progress bar.

It consumes the Orchestrator's events: task events (anything with ``task_id``, ``ts`` and a type
name such as ``TaskPlanned``, ``TaskStarted``, ``TaskRetrying``, ``TaskSucceeded``, ``TaskFailed``,
``TaskSkipped``, ``TaskCancelled``) and run events (``PlanStarted``, ``PlanFinished``,
``JoinerDecided``, ``RunFinished``), so ``on_event`` plugs straight in. On a terminal it redraws a
rich ``Live`` table; elsewhere it prints one plain line per change. :class:`BatchView` does the
same for batch mode, one row per input line.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

__all__ = ["BatchView", "LiveView", "TaskBoard", "TaskRow"]

_STATES = {
    "TaskPlanned": "waiting",
    "TaskReady": "ready",
    "TaskStarted": "running",
    "TaskRetrying": "retrying",
    "TaskSucceeded": "done",
    "TaskFailed": "failed",
    "TaskSkipped": "skipped",
    "TaskCancelled": "cancelled",
}
_FINAL = frozenset({"done", "failed", "skipped", "cancelled"})
_STYLE = {
    "waiting": "dim",
    "ready": "cyan",
    "running": "yellow",
    "retrying": "magenta",
    "done": "green",
    "failed": "bold red",
    "skipped": "red",
    "cancelled": "red",
}


@dataclass
class TaskRow:
    """What the view knows about one task (``step`` names the workflow step, ``""`` if none)."""

    task_id: int
    tool: str = ""
    state: str = "waiting"
    attempt: int = 0
    started: float | None = None
    finished: float | None = None
    note: str = ""
    step: str = ""

    def elapsed(self, now: float) -> float | None:
        """Seconds the task has run (until it finished, or until ``now``)."""
        if self.started is None:
            return None
        return (self.finished if self.finished is not None else now) - self.started


def _short(message: str, row: TaskRow) -> str:
    """``message`` without the ``task 3 (tool)`` the row already shows."""
    short = message.removeprefix(f"task {row.task_id} ({row.tool}) ").strip()
    return short.removeprefix(f"{row.state}: ").removeprefix("skipped: ")


class TaskBoard:
    """Task rows kept up to date from events; the state behind :class:`LiveView`."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, int], TaskRow] = {}
        self.status = ""

    def apply(self, event: Any, step: str = "") -> TaskRow | None:
        """Update the board from one event; returns the changed row (``None`` if ignored)."""
        state = _STATES.get(type(event).__name__)
        task_id = getattr(event, "task_id", None)
        if state is None or task_id is None:
            return None
        row = self.rows.setdefault((step, task_id), TaskRow(task_id, step=step))
        row.tool = getattr(event, "tool", row.tool) or row.tool
        ts = float(getattr(event, "ts", time.monotonic()))
        if row.state in _FINAL:
            return None
        row.state = state
        if state == "running":
            row.attempt = int(getattr(event, "attempt", row.attempt + 1))
            row.note = f"attempt {row.attempt}" if row.attempt > 1 else ""
            if row.started is None:
                row.started = ts
        elif state == "retrying":
            row.note = f"attempt {getattr(event, 'attempt', '?')} failed: " + str(
                getattr(event, "message", "")
            )
        elif state in _FINAL:
            row.finished = ts
            outcome = getattr(event, "outcome", None)
            message = getattr(outcome, "message", None) if outcome is not None else None
            row.note = _short(str(message), row) if message and state != "done" else ""
            attempts = getattr(outcome, "attempts", 0) if outcome is not None else 0
            if state == "done" and attempts > 1:
                row.note = f"succeeded on attempt {attempts}"
        return row

    @property
    def finished(self) -> int:
        """How many tasks have ended."""
        return sum(1 for r in self.rows.values() if r.state in _FINAL)

    def counts(self) -> dict[str, int]:
        """Tasks per state."""
        out: dict[str, int] = {}
        for row in self.rows.values():
            out[row.state] = out.get(row.state, 0) + 1
        return out


def _run_line(event: Any) -> str | None:
    """A line about a run event (planning, joining, the end), or ``None`` for other events."""
    kind = type(event).__name__
    if kind == "PlanStarted":
        why = f" ({event.reason})" if getattr(event, "reason", "") else ""
        return f"planner: writing plan {event.plan}{why}"
    if kind == "PlanFinished":
        cut = ", preempted" if getattr(event, "preempted", False) else ""
        return f"planner: plan {event.plan} has {event.tasks} tasks{cut}"
    if kind == "JoinerDecided":
        return f"joiner: {event.action}" + (f" ({event.thought})" if getattr(event, "thought", "") else "")
    return None


class _Live:
    """Shared plumbing: a rich ``Live`` on a terminal, nothing elsewhere."""

    def __init__(self, console: Console | None, live: bool | None) -> None:
        self.console = console or Console(stderr=True, highlight=False, soft_wrap=True)
        self.live = self.console.is_terminal if live is None else live
        self._live: Live | None = None
        self._t0 = time.monotonic()

    def __enter__(self) -> Any:
        if self.live:
            self._live = Live(self, console=self.console, refresh_per_second=10, transient=False)
            self._live.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.refresh()
            self._live.__exit__(exc_type, exc, tb)
            self._live = None

    def _say(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def __rich__(self) -> RenderableType:  # pragma: no cover - overridden
        raise NotImplementedError


class LiveView(_Live):
    """Shows a run as it happens; feed it events with :meth:`handle` (or ``on_event``).

    >>> with LiveView() as view:  # doctest: +SKIP
    ...     await Orchestrator(tools, llm, on_event=view.handle).run("...")

    Args:
        console: where to draw (default: standard error, so standard output keeps the results).
        live: force the table (True) or plain lines (False); default: a table on a terminal.
        title: a heading shown above the table.
    """

    def __init__(self, console: Console | None = None, *, live: bool | None = None, title: str = "") -> None:
        super().__init__(console, live)
        self.board = TaskBoard()
        self.title = title

    def __enter__(self) -> LiveView:
        super().__enter__()
        return self

    def on_event(self, step: str, event: Any) -> None:
        """``handle`` with the step first: the shape :class:`OrchestratorRunner` calls."""
        self.handle(event, step)

    def handle(self, event: Any, step: str = "") -> None:
        """Take one event: redraw on a terminal, or print a line when something changed."""
        line = _run_line(event)
        if line is not None:
            self.board.status = line
            if not self.live:
                self._say(f"[{step}] {line}" if step else line)
            return
        row = self.board.apply(event, step)
        if row is None or self.live or row.state in ("waiting", "ready"):
            return
        elapsed = row.elapsed(float(getattr(event, "ts", time.monotonic())))
        took = f" ({elapsed:.2f}s)" if elapsed is not None and row.state in _FINAL else ""
        note = f": {row.note}" if row.note else ""
        where = f"[{step}] " if step else ""
        self._say(f"{where}task {row.task_id} {row.tool}: {row.state}{took}{note}")

    def __rich__(self) -> RenderableType:
        now = time.monotonic()
        steps = len({key[0] for key in self.board.rows}) > 1
        table = Table(box=None, expand=False, pad_edge=False, title=self.title or None, title_justify="left")
        columns = ["", "step"] if steps else [""]
        columns += ["task", "tool", "state", "elapsed", "note"]
        for column in columns:
            table.add_column(column)
        for row in self.board.rows.values():
            mark: RenderableType = Spinner("dots") if row.state in ("running", "retrying") else Text(" ")
            elapsed = row.elapsed(now)
            cells: list[RenderableType] = [mark, row.step] if steps else [mark]
            cells += [
                str(row.task_id),
                row.tool,
                Text(row.state, style=_STYLE.get(row.state, "")),
                f"{elapsed:.2f}s" if elapsed is not None else "",
                Text(row.note[:70], style="dim"),
            ]
            table.add_row(*cells)
        total = len(self.board.rows)
        done = self.board.finished
        bar = ProgressBar(total=max(total, 1), completed=done, width=40)
        summary = Text(f" {done}/{total} tasks  {now - self._t0:.1f}s")
        parts: list[RenderableType] = [table, Group(bar, summary)]
        if self.board.status:
            parts.append(Text(self.board.status, style="dim"))
        return Group(*parts)


@dataclass
class _Line:
    key: str
    state: str = "waiting"
    started: float | None = None
    finished: float | None = None
    note: str = ""


class BatchView(_Live):
    """Batch progress: one row per input line (state, elapsed, error) and a progress bar.

    Feed it with :meth:`update` (the ``on_progress`` callback of :func:`run_batch`).
    """

    def __init__(
        self, total: int, console: Console | None = None, *, live: bool | None = None, skipped: int = 0
    ) -> None:
        super().__init__(console, live)
        self.total = total
        self.skipped = skipped
        self.lines: dict[str, _Line] = {}

    def __enter__(self) -> BatchView:
        super().__enter__()
        return self

    def update(self, key: Any, state: str, note: str = "") -> None:
        """Line ``key`` is now ``running``, ``done`` or ``failed`` (``note``: why it failed)."""
        now = time.monotonic()
        line = self.lines.setdefault(str(key), _Line(str(key)))
        line.state = state
        line.note = note
        if state == "running":
            line.started = now
        else:
            line.finished = now
        if not self.live and state != "running":
            took = f" ({now - line.started:.2f}s)" if line.started is not None else ""
            self._say(f"line {key}: {state}{took}" + (f": {note}" if note else ""))

    def __rich__(self) -> RenderableType:
        now = time.monotonic()
        table = Table(box=None, pad_edge=False)
        for column in ("", "line", "state", "elapsed", "note"):
            table.add_column(column)
        for line in self.lines.values():
            mark: RenderableType = Spinner("dots") if line.state == "running" else Text(" ")
            end = line.finished if line.finished is not None else now
            elapsed = f"{end - line.started:.2f}s" if line.started is not None else ""
            state = Text(line.state, style=_STYLE.get(line.state, ""))
            table.add_row(mark, line.key, state, elapsed, Text(line.note[:70], style="dim"))
        done = sum(1 for x in self.lines.values() if x.state in ("done", "failed"))
        bar = ProgressBar(total=max(self.total, 1), completed=done, width=40)
        skipped = f", {self.skipped} already done" if self.skipped else ""
        summary = Text(f" {done}/{self.total} lines{skipped}  {now - self._t0:.1f}s")
        return Group(table, Group(bar, summary))
