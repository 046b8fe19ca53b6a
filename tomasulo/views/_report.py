"""What a finished run says to people (a short report) and to machines (JSON data)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

from ..grammar import Ref, Template, value_to_text
from ..runtime import RunResult, TaskRecord
from ._json import CIRCULAR, MAX_JSON_DEPTH, TOO_DEEP, jsonable

__all__ = ["StepLike", "args_json", "call_text", "report_lines", "task_json"]


class StepLike(Protocol):
    """A run with a label, as :func:`report_lines` takes it (a workflow's ``StepRun``)."""

    @property
    def step(self) -> str:
        """The label: a workflow step's id, or ``""``."""
        ...

    @property
    def result(self) -> RunResult:
        """The run's result."""
        ...


class _Unlabelled(NamedTuple):
    step: str
    result: RunResult


def _plan_value(value: Any, active: set[int], depth: int) -> Any:
    """``value`` with each reference and template as its plan text, the rest as JSON data."""
    if isinstance(value, Ref):
        return value.to_text()
    if isinstance(value, Template):
        return "".join(p if isinstance(p, str) else p.to_template_text() for p in value.parts)
    if isinstance(value, list | tuple | dict):
        if depth >= MAX_JSON_DEPTH:
            return TOO_DEEP
        if id(value) in active:
            return CIRCULAR
        active.add(id(value))
        try:
            if isinstance(value, dict):
                return {str(jsonable(k)): _plan_value(v, active, depth + 1) for k, v in value.items()}
            return [_plan_value(v, active, depth + 1) for v in value]
        finally:
            active.discard(id(value))
    return jsonable(value)


def args_json(args: dict[str, Any]) -> dict[str, Any]:
    """A task's arguments as JSON data: ``$1.rows[0]`` and ``"${1} km"`` appear as plan text."""
    return {str(k): _plan_value(v, set(), 0) for k, v in args.items()}


def call_text(tool: str, args: dict[str, Any]) -> str:
    """The call as the plan language writes it: ``math(expression="x", variables={"x": $1})``."""
    parts = []
    for name, value in args.items():
        try:
            text = value_to_text(value)
        except (TypeError, ValueError, RecursionError):
            text = value_to_text(_plan_value(value, set(), 0))
        parts.append(f"{name}={text}")
    return f"{tool}({', '.join(parts)})"


def task_json(record: TaskRecord, step: str = "", offset: float = 0.0) -> dict[str, Any]:
    """One task as JSON data: what it called, how it ended, and when (seconds from the start)."""

    def at(t: float | None) -> float | None:
        return None if t is None else round(t + offset, 6)

    out: dict[str, Any] = {"id": record.id, "tool": record.tool, "status": record.status}
    if step:
        out["step"] = step
    out.update(
        call=call_text(record.tool, record.args),
        args=args_json(record.args),
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


def report_lines(runs: Sequence[StepLike] | RunResult) -> list[str]:
    """A few lines per step: how many tasks succeeded, and every retry, failure and skip with its cause."""
    steps: list[StepLike] = [_Unlabelled("", runs)] if isinstance(runs, RunResult) else list(runs)
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
