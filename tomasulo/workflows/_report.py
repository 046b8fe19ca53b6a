"""What a finished run says to people (a short report) and to machines (JSON data)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..runtime import RunResult, TaskRecord
from ._orchestrated import StepRun

__all__ = ["jsonable", "report_lines", "task_json"]


def jsonable(value: Any) -> Any:
    """``value`` as JSON data (anything JSON cannot hold becomes its text)."""
    return json.loads(json.dumps(value, default=str))


def task_json(record: TaskRecord, step: str = "", offset: float = 0.0) -> dict[str, Any]:
    """One task as JSON data: what it called, how it ended, and when (seconds from the start)."""

    def at(t: float | None) -> float | None:
        return None if t is None else round(t + offset, 6)

    out: dict[str, Any] = {"id": record.id, "tool": record.tool, "status": record.status}
    if step:
        out["step"] = step
    out.update(
        args=jsonable(record.args),
        attempts=record.attempts,
        started=at(record.started),
        finished=at(record.finished),
    )
    if record.status == "succeeded":
        out["value"] = jsonable(record.value)
    else:
        out["error_type"] = record.error_type
        out["message"] = record.message
    return out


def report_lines(runs: Sequence[StepRun] | RunResult) -> list[str]:
    """A few lines per step: how many tasks succeeded, and every retry, failure and skip with its cause."""
    steps = [StepRun("", runs, 0.0)] if isinstance(runs, RunResult) else list(runs)
    lines: list[str] = []
    for run in steps:
        tasks = run.result.tasks
        counts: dict[str, int] = {}
        for t in tasks:
            counts[t.status] = counts.get(t.status, 0) + 1
        others = ", ".join(f"{n} {s}" for s, n in counts.items() if s != "succeeded")
        where = f"step {run.step}: " if run.step else ""
        lines.append(
            f"{where}{counts.get('succeeded', 0)} of {len(tasks)} tasks succeeded"
            + (f" ({others})" if others else "")
            + f" in {run.result.makespan:.2f}s"
        )
        for t in tasks:
            if t.status == "succeeded" and t.attempts > 1:
                lines.append(f"  task {t.id} {t.tool}: succeeded after {t.attempts} attempts")
            elif t.status != "succeeded":
                why = (t.message or "no message").removeprefix(f"task {t.id} ({t.tool}) ")
                why = why.removeprefix(f"{t.status}: ")
                lines.append(f"  task {t.id} {t.tool}: {t.status}: {why}")
    return lines
