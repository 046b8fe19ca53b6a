"""The Orchestrator: planner + dispatcher + executors, wired for a question or a fixed plan."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, get_args

import anyio
import anyio.abc

from ..dispatcher import DEFAULT_LIMITS, Event, Limits, Outcome, RunJournal, Subscription
from ..exceptions import ConfigError, PlanError, UserError
from ..executors import Executor
from ..grammar import Plan, parse_plan
from ..planner import LLM, Joiner, Planner
from ..tools import Tool, Toolset
from ._result import DEFAULT_BUDGET, Budget, RunResult
from ._run import Mode, Run
from ._store import InMemoryRunStore, RunStore

__all__ = ["Orchestrator", "RunHandle"]


class _Default:
    """The default of an argument whose ``None`` means something else."""

    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT = _Default()


class RunHandle:
    """A run in progress: watch its events, interrupt it, cancel it, await its result.

    >>> async def main(orch: Orchestrator) -> None:      # doctest: +SKIP
    ...     async with orch:
    ...         run = orch.start("How tall is Everest in feet?")
    ...         await run.interrupt("Use metres instead.")
    ...         result = await run.result()
    """

    def __init__(self, run: Run) -> None:
        self._run = run

    @property
    def run_id(self) -> str:
        """The run's id."""
        return self._run.run_id

    @property
    def done(self) -> bool:
        """Whether the run has ended."""
        return self._run.done.is_set()

    def events(self, *, after: int = 0) -> Subscription:
        """The run's events after ``after`` (default: from the first), then live ones, until
        the run ends. A reader that reconnects passes the ``seq`` of the last event it saw."""
        return self._run.subscribe(after)

    @property
    def journal(self) -> RunJournal:
        """The run's journal (every event so far: ``handle.journal.history()``)."""
        return self._run.journal

    async def interrupt(self, message: str) -> None:
        """Send a user message: a plan still streaming is preempted and the planner replans."""
        self._run.user_message(message)

    def cancel(self) -> None:
        """Cancel the run: every call in flight is cancelled; the result says ``cancelled``."""
        self._run.cancel()

    async def result(self) -> RunResult:
        """Wait for the run's result; bound the wait with ``anyio.fail_after`` if you need to."""
        await self._run.done.wait()
        assert self._run.result is not None
        return self._run.result


class Orchestrator:
    """Answers questions with tools: plan with an LLM, run tasks as soon as they can, replan.

    >>> orch = Orchestrator(tools=[search, math], llm=LLM("http://127.0.0.1:8000/v1", model="m"))
    ... # doctest: +SKIP
    >>> result = await orch.run("How many times taller is Everest than Kilimanjaro?")  # doctest: +SKIP

    Args:
        tools: a :class:`Toolset` or tools.
        llm: the model for planning and joining (``None``: only :meth:`execute_plan` works).
        executor: where tool calls run (default: a local executor per run).
        limits: the dispatcher's limits (concurrency, the tools' deadline).
        budget: bounds on the run (replans, tokens, cost, wall time).
        mode: ``stream`` (default: tasks start while the plan streams), ``plan_then_execute``,
            or the baselines ``react`` (one tool call per LLM turn) and ``parallel_fc`` (one
            batch of calls per turn).
        max_tasks: the most tasks one plan may hold (the grammar enforces it).
        max_turns: the most LLM turns in the baseline modes.
        use_grammar: send the plan grammar to servers that take one.
        on_event: called with every event of every run, in order. An observer that raises
            changes nothing: the run goes on, and ``RunResult.warnings`` says what it raised.
        store: where each run's journal and result are written, in batches off the hot path
            (default: an :class:`InMemoryRunStore` of the latest runs; ``None``: nowhere).
        deps: what tools that take a :class:`~tomasulo.tools.RunContext` get as ``ctx.deps``
            (clients, settings); a run may pass its own (``run(query, deps=...)``).
        instructions: added to the planner's system prompt for every run (house rules, which
            tools to prefer); a run's own ``instructions=`` come after these.
        examples: more worked examples for the planner, each a question and its plan as text
            (``"Question: ...\\n1. search(...)\\n2. join()"``), shown after the built-in one.
    """

    def __init__(
        self,
        tools: Toolset | Iterable[Tool],
        llm: LLM | None = None,
        *,
        executor: Executor | None = None,
        limits: Limits | None = None,
        budget: Budget | None = None,
        mode: Mode = "stream",
        max_tasks: int = 32,
        max_turns: int = 16,
        use_grammar: bool = True,
        on_event: Callable[[Event], None] | None = None,
        store: RunStore | _Default | None = DEFAULT,
        deps: Any = None,
        instructions: str = "",
        examples: Sequence[str] = (),
    ) -> None:
        if mode not in get_args(Mode):
            raise ConfigError(f"unknown mode {mode!r}; choose one of {', '.join(get_args(Mode))}")
        if max_tasks < 1 or max_turns < 1:
            raise ConfigError("max_tasks and max_turns must be at least 1")
        self.tools = tools if isinstance(tools, Toolset) else Toolset(tools)
        self.llm = llm
        self.executor = executor
        self.limits = limits or DEFAULT_LIMITS
        self.budget = budget or DEFAULT_BUDGET
        self.mode: Mode = mode
        self.max_tasks = max_tasks
        self.max_turns = max_turns
        self.on_event = on_event
        self.store: RunStore | None = InMemoryRunStore() if isinstance(store, _Default) else store
        self.deps = deps
        if not isinstance(instructions, str):
            raise ConfigError(f"instructions must be text, got {type(instructions).__name__}")
        if isinstance(examples, str) or not all(isinstance(e, str) for e in examples):
            raise ConfigError("examples must be a list of texts, each a question and its plan")
        self.instructions = instructions
        self.examples: tuple[str, ...] = tuple(examples)
        self.planner = Planner(llm, self.tools, use_grammar=use_grammar) if llm is not None else None
        self.joiner = Joiner(llm) if llm is not None else None
        self._tg: anyio.abc.TaskGroup | None = None

    async def __aenter__(self) -> Orchestrator:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._tg is not None
        tg, self._tg = self._tg, None
        return await tg.__aexit__(exc_type, exc, tb)

    # -- running --------------------------------------------------------------------------------

    async def run(
        self, query: str, *, mode: Mode | None = None, deps: Any = None, instructions: str | None = None
    ) -> RunResult:
        """Answer ``query``; returns when the run ends (its status says how).

        ``deps`` replaces the orchestrator's for this run (``None``: the orchestrator's);
        ``instructions`` are added to the orchestrator's, for this run's planner."""
        run = Run(self, query, mode=mode or self.mode, deps=deps, instructions=instructions)
        return await run.drive()

    def run_sync(
        self, query: str, *, mode: Mode | None = None, deps: Any = None, instructions: str | None = None
    ) -> RunResult:
        """:meth:`run` for code that is not async.

        Raises:
            UserError: called from inside a running event loop (async code, a notebook):
                use ``await orchestrator.run(query)`` there.
        """
        library = _running_event_loop()
        if library is None:
            return anyio.run(lambda: self.run(query, mode=mode, deps=deps, instructions=instructions))
        raise UserError(
            f"run_sync() was called inside a running {library} event loop, which it would have to "
            "block; in async code (or a notebook) use `await orchestrator.run(query)` instead"
        )

    def start(
        self,
        query: str,
        *,
        mode: Mode | None = None,
        deps: Any = None,
        instructions: str | None = None,
        run_id: str | None = None,
    ) -> RunHandle:
        """Start a run in the background (inside ``async with orchestrator:``) and return its handle.

        ``run_id`` names the run (default: a new random id), for callers that record it first."""
        if self._tg is None:
            raise UserError(
                "start() runs in the background: use it inside `async with orchestrator:`, "
                "or await orchestrator.run(query)"
            )
        run = Run(self, query, mode=mode or self.mode, deps=deps, instructions=instructions, run_id=run_id)
        self._tg.start_soon(run.drive)
        return RunHandle(run)

    def start_plan(
        self, plan: str | Plan, *, compat: bool = False, deps: Any = None, run_id: str | None = None
    ) -> RunHandle:
        """:meth:`execute_plan` in the background (inside ``async with orchestrator:``): the
        handle watches and cancels it (a fixed plan takes no messages).

        Raises:
            PlanError: the plan text is invalid (nothing runs). A task the dispatcher refuses
                ends the run ``failed`` with the reason.
        """
        if self._tg is None:
            raise UserError("start_plan() runs in the background: use it inside `async with orchestrator:`")
        if isinstance(plan, str):
            plan = parse_plan(plan, self.tools, compat=compat)
        run = Run(self, "", mode="plan_then_execute", deps=deps, run_id=run_id)
        fixed = plan

        async def execute() -> None:
            with contextlib.suppress(PlanError):  # recorded in the result: failed, with the reason
                await run.execute(fixed)

        self._tg.start_soon(execute)
        return RunHandle(run)

    async def stream(
        self, query: str, *, mode: Mode | None = None, deps: Any = None, instructions: str | None = None
    ) -> AsyncIterator[Event]:
        """The events of a new run, as they happen; the run goes on in the background, so this
        needs ``async with orchestrator:`` around it (its task group holds the run).

        >>> async def main(orch: Orchestrator) -> None:      # doctest: +SKIP
        ...     async with orch:
        ...         async for event in orch.stream("How tall is Everest in feet?"):
        ...             print(type(event).__name__, event.task_id)

        Leaving the loop early cancels the run. To watch a run and keep its result, use
        :meth:`start` and :meth:`RunHandle.events`.

        Raises:
            UserError: outside ``async with orchestrator:``.
        """
        if self._tg is None:
            raise UserError(
                "stream() runs the run in the background: use it inside `async with orchestrator:` "
                "(async with orch: async for event in orch.stream(query): ...), or pass "
                "on_event= to Orchestrator and await orchestrator.run(query)"
            )
        handle = self.start(query, mode=mode, deps=deps, instructions=instructions)
        try:
            async for event in handle.events():
                yield event
        finally:
            if not handle.done:
                handle.cancel()

    async def execute_plan(
        self,
        plan: str | Plan,
        *,
        compat: bool = False,
        restore: Iterable[Outcome] | Mapping[int, Outcome] | None = None,
        deps: Any = None,
    ) -> RunResult:
        """Run a fixed plan with no LLM; the answer is the last task's result as text.

        ``restore`` resumes a run: outcomes recorded earlier (``outcomes_of(events)`` of its
        journal, keeping the ones to keep) stand for their tasks, which do not run again;
        references to them resolve to their recorded values, and the rest of the plan runs.

        Raises:
            PlanError: the plan text is invalid, or the dispatcher refuses a task of the plan
                (unknown tool, a reference to a task that is not an earlier one, a repeated
                id); the message names the task. Nothing runs in either case.
        """
        if isinstance(plan, str):
            plan = parse_plan(plan, self.tools, compat=compat)
        return await Run(self, "", mode="plan_then_execute", restore=restore, deps=deps).execute(plan)


def _running_event_loop() -> str | None:
    """The async library whose event loop runs in this thread, or None."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        return "asyncio"
    trio: Any = sys.modules.get("trio")
    if trio is not None:
        try:
            trio.lowlevel.current_trio_token()
        except RuntimeError:
            pass
        else:
            return "trio"
    return None
