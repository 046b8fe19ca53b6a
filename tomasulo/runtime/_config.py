"""What a run needs to know, as one value: :class:`RunConfig`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..dispatcher import DEFAULT_LIMITS, Event, Limits
from ..executors import Executor
from ..planner import Joiner, OutputSpec, Planner
from ..tools import Toolset
from ._answer import JoinerMode
from ._result import DEFAULT_BUDGET, Budget
from ._store import RunStore

__all__ = ["RunConfig"]


@dataclass(frozen=True, kw_only=True, slots=True)
class RunConfig:
    """The settings of a run, fixed when it starts.

    :class:`~tomasulo.runtime.Orchestrator` builds one per run from its own settings
    (``orchestrator.config``); a run reads only this value, never the orchestrator, so a
    change to the orchestrator during a run does not reach it. A new setting of a run is a
    field here, with a default that keeps today's behaviour.

    Args:
        tools: what plans may call.
        planner: plans (and the baseline modes' turns); ``None``: only fixed plans run.
        joiner: decides, after a plan's tasks, to answer or plan again; ``None`` with no planner.
        executor: where tool calls run (``None``: a local executor per run).
        limits: the dispatcher's limits.
        budget: bounds on the run (replans, tokens, cost, wall time).
        max_tasks: the most tasks one plan may hold.
        max_turns: the most LLM turns in the baseline modes.
        on_event: called with every event of the run, in order (an observer that raises
            changes nothing; ``RunResult.warnings`` says what it raised).
        store: where the run's journal and result are written (``None``: nowhere).
        deps: what tools that take a :class:`~tomasulo.tools.RunContext` get as ``ctx.deps``.
        instructions: added to the planner's system prompt.
        examples: more worked examples for the planner, each a question and its plan as text.
        joiner_mode: ``"auto"``: a plan's answer template, once every task it references has
            succeeded, is the answer (no joiner call); ``"always"``: the joiner is asked every
            time, and sees the rendered template as the plan's proposed answer.
        output: the type the answer must have (``output_type=``); ``None``: text.
        joiner_instructions: added to the joiner's system prompt.
    """

    tools: Toolset
    planner: Planner | None = None
    joiner: Joiner | None = None
    executor: Executor | None = None
    limits: Limits = DEFAULT_LIMITS
    budget: Budget = DEFAULT_BUDGET
    max_tasks: int = 32
    max_turns: int = 16
    on_event: Callable[[Event], None] | None = None
    store: RunStore | None = None
    deps: Any = None
    instructions: str = ""
    examples: tuple[str, ...] = ()
    joiner_mode: JoinerMode = "auto"
    output: OutputSpec | None = None
    joiner_instructions: str = ""
