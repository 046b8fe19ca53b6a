"""What a run gives back: the answer, every task with its outcome and timings, plans, usage."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from ..dispatcher import (
    Event,
    Outcome,
    TaskAbandoned,
    TaskCancelled,
    TaskFailed,
    TaskPlanned,
    TaskRestored,
    TaskSkipped,
    TaskSucceeded,
)
from ..exceptions import BudgetExceeded, ConfigError, RunCancelled, RunFailed
from ..planner import Turn, Usage
from ._events import PlanStarted, RunFinished, RunStarted

__all__ = ["DEFAULT_BUDGET", "Budget", "RunResult", "RunStatus", "TaskRecord"]

#: ``finished``: the joiner answered. ``stopped``: a bound was hit; the answer is the best at hand.
#: ``failed``: the LLM or the run broke (``reason`` says how). ``cancelled``: the caller cancelled.
RunStatus = Literal["finished", "stopped", "failed", "cancelled"]


@dataclass(frozen=True, slots=True)
class Budget:
    """Bounds on one run; when one is hit, the run ends with the best answer it has.

    Attributes:
        max_replans: new plans after the first (interrupts, joiner feedback, repairs).
        max_tokens: prompt plus completion tokens across every LLM call of the run. It also
            holds while a plan streams: the stream is cut once the run's tokens (this call's
            estimated until the server reports them) reach it, within one chunk; tasks
            already dispatched finish (for up to ``answer_grace``) and the run ends ``stopped``.
        max_cost: currency units, from the LLM's prices; held during a stream like ``max_tokens``.
        max_seconds: wall time of the whole run, LLM calls included; when it passes everything
            is cancelled at once and no further LLM call is made.
        answer_grace: seconds the joiner gets to give a final answer after the tools' deadline
            (``Limits.deadline``) or the replan bound stopped the work; also how long tasks
            already dispatched may run on after a token or cost bound cut a plan's stream.
    """

    max_replans: int = 3
    max_tokens: int | None = None
    max_cost: float | None = None
    max_seconds: float | None = None
    answer_grace: float = 30.0

    def __post_init__(self) -> None:
        if self.max_replans < 0:
            raise ConfigError(f"max_replans must be 0 or more, got {self.max_replans}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ConfigError(f"max_tokens must be at least 1, got {self.max_tokens}")
        if self.max_cost is not None and not (math.isfinite(self.max_cost) and self.max_cost >= 0):
            raise ConfigError(f"max_cost must be a finite number >= 0, got {self.max_cost}")
        for name in ("max_seconds", "answer_grace"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a positive number of seconds, got {value}")

    def exhausted(self, usage: Usage) -> str | None:
        """Which token or cost bound ``usage`` has reached, as a reason, or ``None``."""
        if self.max_tokens is not None and usage.total_tokens >= self.max_tokens:
            return f"token budget reached ({usage.total_tokens} of {self.max_tokens} tokens)"
        if self.max_cost is not None and usage.cost >= self.max_cost:
            return f"cost budget reached ({usage.cost:.4f} of {self.max_cost:.4f})"
        return None

    def check(self, usage: Usage) -> None:
        """Raise :class:`~tomasulo.exceptions.BudgetExceeded` if ``usage`` reached a token or cost bound."""
        why = self.exhausted(usage)
        if why is not None:
            raise BudgetExceeded(why, bound="tokens" if why.startswith("token") else "cost")


DEFAULT_BUDGET = Budget()


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """One task of a run: what it called, how it ended, when (seconds from the run's start)."""

    id: int
    tool: str
    args: dict[str, Any]
    plan: int
    status: str
    value: Any = None
    error_type: str | None = None
    message: str | None = None
    attempts: int = 0
    planned: float | None = None
    ready: float | None = None
    started: float | None = None
    finished: float | None = None

    @classmethod
    def from_outcome(cls, outcome: Outcome, args: dict[str, Any], plan: int, t0: float) -> TaskRecord:
        """Build from a dispatcher outcome, with times relative to ``t0``."""

        def rel(x: float | None) -> float | None:
            return None if x is None else x - t0

        return cls(
            id=outcome.task_id,
            tool=outcome.tool,
            args=args,
            plan=plan,
            status=outcome.status,
            value=outcome.value,
            error_type=outcome.error_type,
            message=outcome.message,
            attempts=outcome.attempts,
            planned=rel(outcome.planned_at),
            ready=rel(outcome.ready_at),
            started=rel(outcome.started_at),
            finished=rel(outcome.finished_at),
        )


@dataclass(slots=True)
class RunResult:
    """The result of a run.

    Attributes:
        run_id: the run's id (every log line and event carries it).
        query: the question.
        answer: the joiner's answer, or the plan's rendered answer template (or, when a bound
            stopped the run, the best one at hand).
        answered_by: where ``answer`` came from: ``"joiner"``, ``"template"`` (the plan's
            ``join("... ${k} ...")``, with no joiner call), ``"last_result"`` or ``None``.
        answer: the joiner's answer (or, when a bound stopped the run, the best one at hand);
            with ``output_type=``, the JSON text of ``output``.
        output: the typed answer (``output_type=``): the model instance, or for a JSON schema
            the value; ``None`` without a type, or when no answer fitting it was given
            (a run whose joiner gave none is ``failed``; its tasks are kept). Rebuilt from the
            journal (``from_events``), it is the JSON form.
        history: the conversation's earlier turns this run continued from
            (``message_history=``); :attr:`messages` adds this run's own.
        status: see :data:`RunStatus`; ``reason`` says why a run stopped or failed.
        tasks: every task of every plan, in id order.
        plans: each plan's text, in the text dialect.
        replans: how many plans followed the first.
        interrupts: what caused each replan, in order.
        usage: tokens, requests and cost of every LLM call of the run.
        llm_calls: planner and joiner calls made.
        makespan: seconds from the start to the answer.
        timeline: every event of the run, in order.
        warnings: what went wrong without changing the run's course, such as an ``on_event``
            observer that raised (the run went on; each line names the observer and event).
    """

    run_id: str
    query: str
    answer: str | None = None
    answered_by: Literal["joiner", "template", "last_result"] | None = None
    output: Any = None
    history: tuple[Turn, ...] = ()
    status: RunStatus = "failed"
    reason: str | None = None
    tasks: list[TaskRecord] = field(default_factory=list)
    plans: list[str] = field(default_factory=list)
    replans: int = 0
    interrupts: list[str] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    llm_calls: int = 0
    makespan: float = 0.0
    timeline: list[Event] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def messages(self) -> tuple[Turn, ...]:
        """The conversation up to and including this run: pass it (or the result itself) as
        the next run's ``message_history=`` to continue it.

        >>> r = RunResult(run_id="r", query="And Germany?", answer="Berlin",
        ...               history=(Turn("Capital of France?", "Paris"),))
        >>> [t.question for t in r.messages]
        ['Capital of France?', 'And Germany?']
        """
        return (*self.history, Turn(self.query, self.answer or ""))

    @property
    def ok(self) -> bool:
        """Whether the run finished with the joiner's answer."""
        return self.status == "finished"

    def task(self, task_id: int) -> TaskRecord:
        """The record of task ``task_id``."""
        for t in self.tasks:
            if t.id == task_id:
                return t
        raise KeyError(task_id)

    @property
    def results(self) -> dict[int, Any]:
        """Values of the tasks that succeeded, by id."""
        return {t.id: t.value for t in self.tasks if t.status == "succeeded"}

    def raise_for_status(self) -> RunResult:
        """Return the result if the run finished; else raise what ended it, with the result
        attached as ``result``.

        >>> RunResult(run_id="r", query="q", status="finished").raise_for_status().status
        'finished'

        Raises:
            RunFailed: the run failed (``reason`` says how).
            BudgetExceeded: a bound stopped it (replans, tokens, cost, wall time, turns, the
                tools' deadline); ``answer`` holds the best answer at hand.
            RunCancelled: it was cancelled.
        """
        if self.status == "finished":
            return self
        text = f"run {self.run_id} {self.status}: {self.reason or 'no reason given'}"
        if self.status == "cancelled":
            raise RunCancelled(text, result=self)
        if self.status == "stopped":
            raise BudgetExceeded(text, bound=_bound(self.reason or ""), result=self)
        raise RunFailed(text, result=self)

    @classmethod
    def from_events(cls, events: Iterable[Event]) -> RunResult:
        """The result of a run, rebuilt from its journal alone (its events, in order, as a live
        run's ``timeline`` holds them or a store gives them back).

        The result equals the one the run returned, with one exception: the rule for values
        that are not JSON (see :mod:`tomasulo.dispatcher`) applies to events read back from
        JSON, so such values, references inside task arguments and errors come back in their
        JSON form. A warning the ``on_event`` observer caused on the run's last event
        (``RunFinished``) is only in the live result.

        Raises:
            ValueError: the events have no ``RunStarted`` or no ``RunFinished`` (the run has
                not ended, or the journal is cut).
        """
        timeline = list(events)
        start = next((e for e in timeline if isinstance(e, RunStarted)), None)
        end = next((e for e in reversed(timeline) if isinstance(e, RunFinished)), None)
        if start is None or end is None:
            missing = "RunStarted" if start is None else "RunFinished"
            raise ValueError(f"the events have no {missing}: the run has not ended, or its journal is cut")
        plan = 1  # tasks of a fixed plan come with no PlanStarted
        plan_of: dict[int, int] = {}
        args_of: dict[int, dict[str, Any]] = {}
        outcomes: dict[int, Outcome] = {}
        for e in timeline:
            if isinstance(e, PlanStarted):
                plan = e.plan
            elif isinstance(e, TaskPlanned):
                plan_of[e.task_id] = plan
                args_of[e.task_id] = e.args
            elif isinstance(e, _ENDED):
                outcomes[e.task_id] = e.outcome
            elif isinstance(e, TaskAbandoned) and e.outcome is not None:
                outcomes[e.task_id] = e.outcome
        t0 = start.ts
        return cls(
            run_id=start.run_id,
            query=start.query,
            answer=end.answer,
            answered_by=end.answered_by,
            output=end.output,
            history=tuple(Turn(q, a) for q, a in start.history),
            status=end.status,  # type: ignore[arg-type]
            reason=end.reason,
            tasks=[
                TaskRecord.from_outcome(o, args_of.get(tid, {}), plan_of.get(tid, 0), t0)
                for tid, o in sorted(outcomes.items())
            ],
            plans=list(end.plans),
            replans=end.replans,
            interrupts=list(end.interrupts),
            usage=dataclasses.replace(end.usage),
            llm_calls=end.llm_calls,
            makespan=end.makespan,
            timeline=timeline,
            warnings=list(end.warnings),
        )


_ENDED = (TaskSucceeded, TaskFailed, TaskSkipped, TaskCancelled, TaskRestored)


def _bound(reason: str) -> str:
    """Which bound a ``stopped`` run's reason names."""
    for word, bound in (
        ("token", "tokens"),
        ("cost", "cost"),
        ("wall-time", "wall_time"),
        ("replan", "replans"),
        ("turn", "turns"),
        ("deadline", "deadline"),
    ):
        if word in reason:
            return bound
    return ""
