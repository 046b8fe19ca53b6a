"""Run-level events, in the same per-run sequence as the dispatcher's task events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..dispatcher import Event

__all__ = ["JoinerDecided", "PlanFinished", "PlanStarted", "RunFinished", "UserMessage"]


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
    """The run ended with ``status`` (see ``RunResult``); ``reason`` says why, where it matters."""

    status: str
    reason: str | None = None
