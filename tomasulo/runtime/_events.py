"""Run-level events, in the run's journal with the dispatcher's task events (one ``seq``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ..dispatcher import Event
from ..planner import Usage

__all__ = [
    "AnswerDelta",
    "JoinerDecided",
    "LLMCallFinished",
    "LLMCallStarted",
    "PlanDelta",
    "PlanFinished",
    "PlanStarted",
    "RunFinished",
    "RunStarted",
    "UserMessage",
]

#: What an LLM call was for: a plan (streaming and plan-then-execute modes), the joiner's
#: decision, or one turn of the baseline modes.
LLMPurpose = Literal["plan", "join", "turn"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunStarted(Event):
    """The run began: the first event of every run.

    ``ts`` is the run's start on the monotonic clock (every event's ``ts`` is on it, and task
    times in the result count from it); ``wall_time`` is the same moment as a Unix time
    (``time.time()``), so that ``wall_time + (event.ts - start.ts)`` dates any event.
    ``resumed_from`` is the id of the run this one resumed (``Orchestrator.run(resume=...)``).
    """

    query: str
    mode: str
    wall_time: float
    #: The conversation's earlier turns the run continued from, as ``[question, answer]`` pairs.
    history: list[list[str]] = field(default_factory=list)
    resumed_from: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LLMCallStarted(Event):
    """An LLM call began; ``call`` numbers the run's calls from 1 (its finish has the same)."""

    call: int
    purpose: LLMPurpose
    model: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LLMCallFinished(Event):
    """An LLM call ended.

    Attributes:
        call, purpose, model: as in its :class:`LLMCallStarted`.
        prompt_tokens, completion_tokens, cost: what the call used (as reported by the server,
            or estimated; see :class:`~tomasulo.planner.Usage`).
        ttft: seconds from the call's start to its first text (streamed calls), else ``None``.
        duration: seconds from the call's start to its end.
        error: ``"<type>: <message>"`` when the call broke off or failed, else ``None``.
    """

    call: int
    purpose: LLMPurpose
    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    ttft: float | None = None
    duration: float = 0.0
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanDelta(Event):
    """Text of plan number ``plan`` as the model writes it (pieces joined, in order, give the
    model's output). Made only while someone reads the run's events as they happen, and
    coalesced: one event per line of plan, or per ``PLAN_DELTA_INTERVAL`` seconds of text."""

    plan: int
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AnswerDelta(Event):
    """Text of the run's answer as it is written: by the joiner, as the model generates it
    (decoded from its JSON reply), or, in one event, the plan's rendered answer template
    (``source="template"``). Made only while someone reads the run's events as they happen,
    and coalesced: the first piece at once, then one event per ``ANSWER_DELTA_INTERVAL``.
    ``RunFinished.answer`` holds the answer itself."""

    text: str
    source: Literal["joiner", "template"] = "joiner"


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanStarted(Event):
    """The planner was asked for plan number ``plan`` (1 is the first), numbering from ``start_id``.

    ``reason`` says why a replan happened (``""`` for the first plan).
    """

    plan: int
    start_id: int
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanFinished(Event):
    """A plan ended: ``tasks`` were dispatched; ``preempted`` if an interrupt cut it short."""

    plan: int
    tasks: int
    joined: bool
    preempted: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class UserMessage(Event):
    """The user sent a message into the run (it interrupts and replans)."""

    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class JoinerDecided(Event):
    """The joiner answered (``finish``) or asked for another plan (``replan``)."""

    action: Literal["finish", "replan"]
    thought: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunFinished(Event):
    """The run ended with ``status`` (see ``RunResult``); ``reason`` says why, where it matters.

    It carries the rest of the run's summary, so that ``RunResult.from_events`` rebuilds the
    result from the journal alone: the answer, the plans' text, the replans and what caused them,
    the LLM calls and their usage, the makespan and the warnings so far.

    ``answered_by`` says where the answer came from: ``"template"`` (the plan's answer
    template, with no joiner call), ``"joiner"``, ``"last_result"`` (a bound stopped the run
    and no answer was given: the last result at hand) or ``None`` (no answer).
    """

    status: str
    reason: str | None = None
    answer: str | None = None
    answered_by: Literal["joiner", "template", "last_result"] | None = None
    #: A typed answer's JSON form (``output_type=``); ``None`` without one.
    output: Any = None
    plans: list[str] = field(default_factory=list)
    replans: int = 0
    interrupts: list[str] = field(default_factory=list)
    llm_calls: int = 0
    usage: Usage = field(default_factory=Usage)
    makespan: float = 0.0
    warnings: list[str] = field(default_factory=list)
