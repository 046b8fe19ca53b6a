"""Resuming a run from its journal: what a new run takes over from an earlier one.

``Orchestrator.run(query, resume=run_id)`` (or ``resume=events``) reads the earlier run's
journal into a :class:`Resumed` value: its plans, each task it submitted (rebuilt from its
``TaskPlanned`` event) and the outcomes of the tasks that ended. The new run seeds its
dispatcher with those outcomes (``Dispatcher(restore=...)``), so they do not run again and
references to them resolve; it submits the tasks that did not end (a task cancelled when the
earlier run stopped did not end), and goes on from where the earlier run was: the joiner, if
the last plan was whole, else a plan that continues the numbering.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..dispatcher import Event, Outcome, TaskPlanned, outcomes_of
from ..exceptions import TomasuloError, UserError
from ..grammar import Ref, Task, Template
from ._events import PlanFinished, PlanStarted, RunStarted

__all__ = ["Resumed", "resumed_from"]


@dataclass(frozen=True, slots=True)
class Resumed:
    """What a resumed run takes over from an earlier run's journal.

    Attributes:
        run_id: the earlier run's id (the new run's ``RunStarted.resumed_from``).
        query: the earlier run's question.
        mode: the earlier run's mode.
        plans: each plan's text, as far as it was read (the tasks that were submitted).
        tasks: every task it submitted, by id, with the number of the plan that held it.
        outcomes: the tasks that ended (succeeded, failed or skipped), by id.
        joined: whether its last plan was read to its ``join()``.
        next_id: the id a plan continuing it starts at.
    """

    run_id: str
    query: str
    mode: str
    plans: list[str] = field(default_factory=list)
    tasks: dict[int, tuple[int, Task]] = field(default_factory=dict)
    outcomes: dict[int, Outcome] = field(default_factory=dict)
    joined: bool = False
    next_id: int = 1


def resumed_from(events: Iterable[Event]) -> Resumed:
    """Read an earlier run's journal (its events in ``seq`` order, from the first).

    Several journals may be given one after another (a run that was itself resumed, then
    the runs it resumed, oldest first): later outcomes replace earlier ones.

    Raises:
        UserError: the events hold no ``RunStarted`` (not a run's journal), or a task's
            recorded arguments cannot be rebuilt.
    """
    events = list(events)
    started = [e for e in events if isinstance(e, RunStarted)]
    if not started:
        raise UserError("cannot resume: the events hold no RunStarted, so they are not a run's journal")
    first = started[-1]
    tasks: dict[int, tuple[int, Task]] = {}
    joined: dict[int, bool] = {}
    starts: dict[int, int] = {}
    plan_tasks: dict[int, list[Task]] = {}
    plan = 0
    for event in events:
        if isinstance(event, PlanStarted):
            plan = event.plan  # a resumed run numbers its plans after its earlier run's
            starts.setdefault(plan, event.start_id)
            plan_tasks.setdefault(plan, [])
        elif isinstance(event, PlanFinished):
            joined[plan] = event.joined
        elif type(event) is TaskPlanned and event.task_id is not None:
            if event.task_id in tasks:  # submitted again by a resumed run: still its first plan's
                continue
            task = _task(event)
            tasks[task.id] = (plan, task)
            plan_tasks.setdefault(plan, []).append(task)
    outcomes = _ended(outcomes_of(events))
    plans = []
    join_id = 0
    for no in sorted(plan_tasks):
        lines = [t.to_text() for t in plan_tasks[no]]
        if joined.get(no):
            join_id = max((t.id for t in plan_tasks[no]), default=starts.get(no, 1) - 1) + 1
            lines.append(f"{join_id}. join()")
        plans.append("".join(line + "\n" for line in lines))
    last_plan = max(plan_tasks, default=0)
    whole = last_plan > 0 and bool(joined.get(last_plan))
    top = max([*tasks, *outcomes, join_id], default=0)
    return Resumed(
        run_id=first.run_id,
        query=first.query,
        mode=first.mode,
        plans=plans,
        tasks=tasks,
        outcomes=outcomes,
        joined=whole,
        next_id=top + 1,  # after the last task or join(): ids are never reused
    )


def _ended(recorded: dict[int, Outcome]) -> dict[int, Outcome]:
    """The outcomes a resumed run keeps: a task cancelled when the run stopped did not end, and
    neither did one skipped because of a task that runs again."""
    kept = {tid: o for tid, o in recorded.items() if o.status != "cancelled"}
    changed = True
    while changed:
        changed = False
        for tid, o in list(kept.items()):
            if o.status == "skipped" and o.skipped_because is not None and o.skipped_because not in kept:
                del kept[tid]
                changed = True
    return kept


def _task(event: TaskPlanned) -> Task:
    assert event.task_id is not None
    try:
        kwargs = {name: _revive(value) for name, value in event.args.items()}
        return Task(event.task_id, event.tool, kwargs=kwargs)
    except (TomasuloError, TypeError, ValueError) as exc:
        where = f"task {event.task_id} ({event.tool})"
        raise UserError(f"cannot resume: the recorded arguments of {where} do not rebuild: {exc}") from exc


def _revive(value: Any) -> Any:
    """A plan value from its recorded form: references and templates stay themselves in an
    in-memory journal, and come back from their JSON form (the object of their fields)."""
    if isinstance(value, (Ref, Template)):
        return value
    if isinstance(value, Mapping):
        keys = set(value)
        if keys == {"task_id", "path", "quoted"} and type(value["task_id"]) is int:
            return Ref(value["task_id"], tuple(value["path"]), bool(value["quoted"]))
        if keys == {"parts"} and isinstance(value["parts"], list):
            return Template(tuple(_revive(p) for p in value["parts"]))
        return {k: _revive(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_revive(v) for v in value]
    return value
