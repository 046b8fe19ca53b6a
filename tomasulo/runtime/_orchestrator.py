"""The Orchestrator: planner + dispatcher + executors, wired for a question or a fixed plan."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

import anyio
import anyio.abc

from ..dispatcher import DEFAULT_LIMITS, Event, Limits, Outcome, RunJournal, Subscription
from ..exceptions import ConfigError, PlanError, UserError
from ..executors import Executor
from ..grammar import Plan, parse_plan
from ..planner import Joiner, Model, OutputSpec, Planner, as_history
from ..tools import Tool, Toolset
from ._answer import JOINER_MODES, JoinerMode
from ._config import RunConfig
from ._events import RunStarted
from ._result import DEFAULT_BUDGET, Budget, RunResult
from ._resume import Resumed, resumed_from
from ._run import Run
from ._store import InMemoryRunStore, RunStore
from ._strategies import Mode, strategy_for

__all__ = ["Orchestrator", "RunHandle"]

#: The most journals a resume reads back through ``resumed_from`` links (a run resumed from a
#: run resumed from ...).
MAX_RESUME_CHAIN = 100


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
        llm: the model for planning (and joining, unless ``joiner_llm`` is given): an
            :class:`~tomasulo.planner.LLM`, or any :class:`~tomasulo.planner.Model` (a wrapper
            that counts, traces or falls back between servers). ``None``: only
            :meth:`execute_plan` works.
        joiner_llm: the joiner's model, if it is not the planner's (LLMCompiler lets them
            differ: a small fast planner, a stronger joiner, or the other way round).
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
        joiner: ``"auto"`` (default): a plan that ends with an answer template,
            ``join("Everest is ${3} times as tall")``, is answered with it once every task it
            references has succeeded, with no joiner call; otherwise the joiner decides.
            ``"always"``: the joiner decides every time, and sees the rendered template as
            the plan's proposed answer.
        output_type: the type every run's answer must have: a pydantic model class (or any
            type pydantic validates) or a JSON schema (a ``dict``). The joiner answers under
            its schema; ``RunResult.output`` is the typed value, ``answer`` its JSON text. A
            reply that does not fit gets one repair round; a run whose joiner gives no
            fitting answer is ``failed`` (its tasks are kept). A run may pass its own.
        joiner_instructions: added to the joiner's system prompt for every run (how to word
            the answer, what to leave out); a run's own ``joiner_instructions=`` come after.
    """

    def __init__(
        self,
        tools: Toolset | Iterable[Tool],
        llm: Model | None = None,
        *,
        joiner_llm: Model | None = None,
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
        joiner: JoinerMode = "auto",
        output_type: Any = None,
        joiner_instructions: str = "",
    ) -> None:
        strategy_for(mode)  # a mode that does not exist is refused here, not at the first run
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
        if joiner not in JOINER_MODES:
            raise ConfigError(f"joiner must be one of {', '.join(map(repr, JOINER_MODES))}, got {joiner!r}")
        self.joiner_mode: JoinerMode = joiner
        if not isinstance(joiner_instructions, str):
            raise ConfigError(f"joiner_instructions must be text, got {type(joiner_instructions).__name__}")
        self.joiner_instructions = joiner_instructions
        self.output: OutputSpec | None = None if output_type is None else OutputSpec.of(output_type)
        if joiner_llm is not None and llm is None:
            raise ConfigError("joiner_llm needs llm too: the planner's model plans every run")
        self.joiner_llm = joiner_llm if joiner_llm is not None else llm
        self.planner = Planner(llm, self.tools, use_grammar=use_grammar) if llm is not None else None
        self.joiner = Joiner(self.joiner_llm) if self.joiner_llm is not None else None
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

    @property
    def config(self) -> RunConfig:
        """The settings a run started now gets (the run reads only these, never the orchestrator)."""
        return RunConfig(
            tools=self.tools,
            planner=self.planner,
            joiner=self.joiner,
            executor=self.executor,
            limits=self.limits,
            budget=self.budget,
            max_tasks=self.max_tasks,
            max_turns=self.max_turns,
            on_event=self.on_event,
            store=self.store,
            deps=self.deps,
            instructions=self.instructions,
            examples=self.examples,
            joiner_mode=self.joiner_mode,
            output=self.output,
            joiner_instructions=self.joiner_instructions,
        )

    def _new_run(
        self,
        query: str,
        mode: Mode | None,
        *,
        output_type: Any = None,
        message_history: Any = None,
        joiner_instructions: str | None = None,
        resume: Resumed | None = None,
        **kwargs: Any,
    ) -> Run:
        """A run of ``query``; a resumed one keeps the earlier run's mode unless ``mode`` is given."""
        if resume is not None:
            mode = mode or resume.mode  # type: ignore[assignment]
        if joiner_instructions is not None and not isinstance(joiner_instructions, str):
            raise ConfigError(f"joiner_instructions must be text, got {type(joiner_instructions).__name__}")
        return Run(
            self.config,
            query,
            strategy=strategy_for(mode or self.mode),
            output=None if output_type is None else OutputSpec.of(output_type),
            history=as_history(message_history),
            joiner_instructions=joiner_instructions,
            resume=resume,
            **kwargs,
        )

    # -- running --------------------------------------------------------------------------------

    async def run(
        self,
        query: str,
        *,
        mode: Mode | None = None,
        deps: Any = None,
        instructions: str | None = None,
        output_type: Any = None,
        message_history: Any = None,
        joiner_instructions: str | None = None,
        resume: str | Sequence[Event] | None = None,
    ) -> RunResult:
        """Answer ``query``; returns when the run ends (its status says how).

        ``deps`` replaces the orchestrator's for this run (``None``: the orchestrator's);
        ``instructions`` are added to the orchestrator's, for this run's planner, and
        ``joiner_instructions`` likewise for its joiner; ``output_type`` replaces the
        orchestrator's (see :class:`Orchestrator`); ``message_history`` continues a
        conversation: the previous :class:`RunResult` (or its ``messages``), or a list of
        ``(question, answer)`` pairs or chat messages, which the planner and the joiner see
        before the question.

        ``resume`` goes on with an earlier run of the same question: its id (its journal is
        read from the orchestrator's store, with those of the runs it resumed) or its events.
        Tasks that ended there are not run again (references to them resolve to their
        recorded values); tasks that had not ended run; then the run goes on as the earlier one
        would have: the joiner if its last plan was whole, else a plan that continues it. The
        new run has a new id; its ``RunStarted.resumed_from`` names the earlier one. The
        ``stream`` and ``plan_then_execute`` modes resume (the earlier run's, unless ``mode``
        is given).

        Raises:
            ConfigError: an ``output_type`` or ``message_history`` of a shape not listed.
            UserError: ``resume`` names a run the store does not hold (or there is no store),
                the events are not a run's journal, ``query`` is not the earlier run's
                question, or the mode cannot resume.
        """
        resumed = None if resume is None else await self._resumed(query, resume, mode)
        run = self._new_run(
            query,
            mode,
            deps=deps,
            instructions=instructions,
            resume=resumed,
            output_type=output_type,
            message_history=message_history,
            joiner_instructions=joiner_instructions,
        )
        return await run.drive()

    async def _resumed(self, query: str, resume: str | Sequence[Event], mode: Mode | None) -> Resumed:
        events = await self._journal_of(resume) if isinstance(resume, str) else resume
        return self._resumed_from(query, events, mode)

    def _resumed_from(self, query: str, events: Sequence[Event], mode: Mode | None) -> Resumed:
        resumed = resumed_from(events)
        if resumed.query != query:
            raise UserError(
                f"run {resumed.run_id} answered {resumed.query[:200]!r}, not {query[:200]!r}: "
                "resume a run with its own question"
            )
        strategy = strategy_for(mode or resumed.mode)
        if not strategy.resumable:
            raise UserError(
                f"a {strategy.mode} run cannot be resumed; resume runs of the stream and "
                "plan_then_execute modes (or pass mode=)"
            )
        return resumed

    async def _journal_of(self, run_id: str) -> list[Event]:
        """The journal of ``run_id`` from the store, after those of the runs it resumed."""
        if self.store is None:
            raise UserError(f"resume={run_id!r} reads the run from the store, and this orchestrator has none")
        journals: list[list[Event]] = []
        want: str | None = run_id
        while want is not None and len(journals) < MAX_RESUME_CHAIN:
            try:
                events = await self.store.load_events(want)
            except KeyError:
                if want == run_id:
                    raise UserError(f"cannot resume run {run_id!r}: the run store does not hold it") from None
                break  # an earlier link is gone: resume from what there is
            journals.insert(0, events)
            start = next((e for e in events if isinstance(e, RunStarted)), None)
            want = None if start is None else start.resumed_from
        return [e for events in journals for e in events]

    def run_sync(
        self,
        query: str,
        *,
        mode: Mode | None = None,
        deps: Any = None,
        instructions: str | None = None,
        output_type: Any = None,
        message_history: Any = None,
        joiner_instructions: str | None = None,
    ) -> RunResult:
        """:meth:`run` for code that is not async.

        Raises:
            UserError: called from inside a running event loop (async code, a notebook):
                use ``await orchestrator.run(query)`` there.
        """
        library = _running_event_loop()
        if library is None:
            return anyio.run(
                lambda: self.run(
                    query,
                    mode=mode,
                    deps=deps,
                    instructions=instructions,
                    output_type=output_type,
                    message_history=message_history,
                    joiner_instructions=joiner_instructions,
                )
            )
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
        output_type: Any = None,
        message_history: Any = None,
        joiner_instructions: str | None = None,
        resume: Sequence[Event] | None = None,
        run_id: str | None = None,
    ) -> RunHandle:
        """Start a run in the background (inside ``async with orchestrator:``) and return its handle.

        ``resume`` takes an earlier run's events, as :meth:`run` does (read them with
        ``await store.load_events(run_id)``; :meth:`run` also takes the id itself).

        ``run_id`` names the run (default: a new random id), for callers that record it first.

        Raises:
            UserError: outside ``async with orchestrator:``, or ``resume`` cannot be resumed
                (see :meth:`run`).
        """
        if self._tg is None:
            raise UserError(
                "start() runs in the background: use it inside `async with orchestrator:`, "
                "or await orchestrator.run(query)"
            )
        if isinstance(resume, str):
            raise UserError(
                "start() takes resume=events (await store.load_events(run_id)); "
                "await orchestrator.run(query, resume=run_id) reads them itself"
            )
        resumed = None if resume is None else self._resumed_from(query, resume, mode)
        run = self._new_run(
            query,
            mode,
            deps=deps,
            instructions=instructions,
            resume=resumed,
            output_type=output_type,
            message_history=message_history,
            joiner_instructions=joiner_instructions,
            run_id=run_id,
        )
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
        run = self._new_run("", "plan_then_execute", deps=deps, run_id=run_id)
        fixed = plan

        async def execute() -> None:
            with contextlib.suppress(PlanError):  # recorded in the result: failed, with the reason
                await run.execute(fixed)

        self._tg.start_soon(execute)
        return RunHandle(run)

    async def stream(
        self,
        query: str,
        *,
        mode: Mode | None = None,
        deps: Any = None,
        instructions: str | None = None,
        output_type: Any = None,
        message_history: Any = None,
        joiner_instructions: str | None = None,
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
        handle = self.start(
            query,
            mode=mode,
            deps=deps,
            instructions=instructions,
            output_type=output_type,
            message_history=message_history,
            joiner_instructions=joiner_instructions,
        )
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
        return await self._new_run("", "plan_then_execute", restore=restore, deps=deps).execute(plan)


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
