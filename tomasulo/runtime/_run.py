"""One run: its state, its journal, and the steps a mode's :class:`Strategy` is made of.

A run reads its settings from a :class:`~tomasulo.runtime.RunConfig` and its way of working
from a :class:`Strategy` (``tomasulo/runtime/_strategies.py``: streaming rounds, plan then
execute, the baseline turns); it never looks back at the orchestrator that started it.
"""

from __future__ import annotations

import dataclasses
import math
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, Protocol

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._logging import bound_context, get_logger
from ..dispatcher import Dispatcher, Event, InterruptRaised, Outcome, RunJournal, Subscription, TaskPlanned
from ..exceptions import DispatchError, PlanError, TomasuloError, UnknownToolError, UserError
from ..grammar import Plan, Task, stringify
from ..planner import JoinDecision, Model, OutputSpec, PlanContext, Planner, TaskReport, Turn, Usage
from ..tools import Toolset
from ._answer import AnswerDeltas, render_answer
from ._config import RunConfig
from ._events import (
    JoinerDecided,
    LLMCallFinished,
    LLMCallStarted,
    LLMPurpose,
    PlanDelta,
    RunFinished,
    RunStarted,
    UserMessage,
)
from ._result import RunResult, RunStatus, TaskRecord
from ._resume import Resumed
from ._store import RunStore

__all__ = ["PLAN_DELTA_INTERVAL", "USER_SAID", "Run", "Stop", "Strategy"]

log = get_logger("tomasulo.run")

#: Plan text is passed on (``PlanDelta``) at each line's end, or after this many seconds.
PLAN_DELTA_INTERVAL = 0.05


#: Seconds the store is given, once a run has ended, for the journal's last events and the
#: result, even when the caller cancelled the run.
STORE_GRACE = 5.0

#: How a user's message reads among a run's interrupts.
USER_SAID = "the user said: "


class Stop(Exception):
    """Raised by a strategy (or a step of the run) to end the run with a status and reason."""

    def __init__(self, status: RunStatus, reason: str) -> None:
        self.status: RunStatus = status
        self.reason = reason
        super().__init__(reason)


class Strategy(Protocol):
    """How a run gets from its question to an answer: one per mode.

    :meth:`drive` plans, submits tasks and joins through the run's steps (:meth:`Run.submit`,
    :meth:`Run.join`, :meth:`Run.llm_call`, ...). It returns once ``run.answer`` is set, or
    raises :class:`Stop` to end the run early with a status and reason; the run records the
    end, builds the result and closes the dispatcher either way. A new way of running (native
    tool calls, an answer template instead of the joiner) is a new strategy, or a method of one.
    """

    #: The mode's name, as ``RunStarted`` and the logs give it.
    @property
    def mode(self) -> str: ...

    #: How the planner's prompt describes the task (``PlanContext.mode``).
    @property
    def prompt(self) -> Literal["plan", "react", "parallel_fc"]: ...

    #: Whether :meth:`drive` takes over ``run.resumed`` (a run resumed from a journal).
    @property
    def resumable(self) -> bool: ...

    async def drive(self, run: Run, d: Dispatcher) -> None:
        """Run ``run`` on dispatcher ``d`` until its answer is set (or raise :class:`Stop`)."""
        ...


class Run:
    """The state of one run; a strategy drives it, a :class:`RunHandle` watches it.

    What a strategy reads and writes: ``plans`` (each plan's text), ``interrupts`` (what the
    planner heard), ``replans``, ``answer``, ``deadline_hit`` (the tools' deadline passed),
    ``current_call`` (the LLM call in progress) and ``preempt`` (the cancel scope of a plan
    still streaming, which an interrupt cancels).
    """

    def __init__(
        self,
        config: RunConfig,
        query: str,
        *,
        strategy: Strategy,
        run_id: str | None = None,
        restore: Iterable[Outcome] | Mapping[int, Outcome] | None = None,
        deps: Any = None,
        instructions: str | None = None,
        output: OutputSpec | None = None,
        history: tuple[Turn, ...] = (),
        joiner_instructions: str | None = None,
        resume: Resumed | None = None,
    ) -> None:
        self.config = config
        self.strategy = strategy
        #: What this run takes over from an earlier one (its strategy picks it up), or ``None``.
        self.resumed = resume
        if resume is not None:
            restore = resume.outcomes
        self.deps = deps if deps is not None else config.deps
        given = (config.instructions, instructions or "")
        self.instructions = "\n\n".join(t.strip() for t in given if t.strip())
        joined = (config.joiner_instructions, joiner_instructions or "")
        self.joiner_instructions = "\n\n".join(t.strip() for t in joined if t.strip())
        #: the type the answer must have (the run's own, else the orchestrator's), and the
        #: conversation's earlier turns
        self.output_spec = output if output is not None else config.output
        self.history = history
        #: the typed answer, once the joiner gave one that fits ``output_spec``
        self.output: Any = None
        self.query = query
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.log = log.bind(run_id=self.run_id)
        self.usage = Usage()
        self.result: RunResult | None = None
        self.done = anyio.Event()
        self._t0 = time.monotonic()
        self._wall0 = time.time()
        #: The run's one journal: the dispatcher's events and the run's own, numbered once.
        self.journal = RunJournal(self.run_id, on_event=config.on_event)
        self._restore = restore
        self._ended = False
        send, recv = anyio.create_memory_object_stream[str](math.inf)
        self._signals_send: MemoryObjectSendStream[str] = send
        self._signals: MemoryObjectReceiveStream[str] = recv
        self.preempt: anyio.CancelScope | None = None
        self._cancel_scope: anyio.CancelScope | None = None
        self._dispatcher: Dispatcher | None = None
        self.plans: list[str] = []
        self._task_plan: dict[int, int] = {}
        self._tasks: dict[int, Task] = {}
        self.interrupts: list[str] = []
        self.replans = 0
        self._llm_calls = 0
        self.answer: str | None = None
        #: where ``answer`` came from (see ``RunFinished.answered_by``); ``None``: the joiner
        self.answered_by: Literal["joiner", "template", "last_result"] | None = None
        self.deadline_hit = False
        self._warnings: list[str] = []
        self.current_call: _LLMCall | None = None  # the LLM call in progress
        #: The planner's first messages (system text, question), set by the first plan round: on
        #: a server with a prefix cache the joiner's prompt starts with them (``LLM.prefix_cache``).
        self.prompt_prefix: list[dict[str, str]] | None = None

    # -- events ---------------------------------------------------------------------------------

    def emit(self, cls: Callable[..., Event], task_id: int | None = None, **fields: Any) -> None:
        """Record a run event in the run's journal."""
        self.journal.record(cls, task_id, **fields)

    def _on_interrupt(self, event: InterruptRaised) -> None:
        if event.source == "deadline":
            self.deadline_hit = True
        self.signal(event.reason)

    def subscribe(self, after: int = 0) -> Subscription:
        """The run's events after ``after``: the backlog first, then live ones; it ends with the run."""
        return self.journal.events(after=after)

    def _close_streams(self) -> None:
        self._ended = True
        self.journal.close()
        self._signals_send.close()
        self._signals.close()

    def llm_call(self, purpose: LLMPurpose, llm: Model, plan: int = 0) -> _LLMCall:
        """Record an LLM call: ``LLMCallStarted`` now, ``LLMCallFinished`` when it ends."""
        self._llm_calls += 1
        model = getattr(llm, "model", None)
        call = _LLMCall(self, self._llm_calls, purpose, model if isinstance(model, str) else None, plan)
        self.current_call = call
        return call

    # -- signals from outside -------------------------------------------------------------------

    def signal(self, reason: str) -> None:
        """An interrupt: preempt a plan that is still streaming and replan with ``reason``."""
        if self._ended:
            return
        self._signals_send.send_nowait(reason)
        if self.preempt is not None:
            self.preempt.cancel()

    def user_message(self, message: str) -> None:
        """A message from the user: an interrupt the planner hears as such."""
        if self._ended:
            raise UserError(f"run {self.run_id} has already finished; start a new one")
        self.emit(UserMessage, message=message)
        self.signal(f"{USER_SAID}{message}")

    def cancel(self) -> None:
        """Cancel the run; the result has status ``cancelled``."""
        if self._cancel_scope is not None:
            self._cancel_scope.cancel()

    def drain_signals(self) -> list[str]:
        out = []
        while True:
            try:
                out.append(self._signals.receive_nowait())
            except anyio.WouldBlock:
                return out

    # -- the run --------------------------------------------------------------------------------

    async def drive(self) -> RunResult:
        """Run to the end, writing the journal to the orchestrator's store as it goes.

        See :meth:`_drive`; the result is saved, and :attr:`done` set, once the store has
        every event.
        """
        return await self._stored(self._drive)

    async def _stored(self, body: Callable[[], Any]) -> RunResult:
        store: RunStore | None = self.config.store
        try:
            if store is None:
                result: RunResult = await body()
                return result
            sub = self.journal.events(quiet=True)
            failure: BaseException | None = None
            # shielded: the store gets the journal's last events (and the result) even when the
            # caller cancels the run, which is what lets such a run be resumed; bounded below
            flush = anyio.CancelScope(shield=True)
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._persist, store, sub, flush)
                    try:
                        await body()
                    except BaseException as exc:  # re-raised once the store has the events
                        failure = exc
                    flush.deadline = anyio.current_time() + STORE_GRACE  # the journal is closed now
            finally:  # (leaving the task group raises the caller's cancellation, if there is one)
                if self.result is not None:
                    with anyio.CancelScope(shield=True) as saving:
                        saving.deadline = anyio.current_time() + STORE_GRACE
                        try:
                            await store.save_result(self.result)
                        except Exception as exc:
                            self._store_failed(exc)
            if failure is not None:
                raise failure
            result = self.result  # type: ignore[assignment]
            assert result is not None
            return result
        finally:
            self.done.set()

    async def _persist(self, store: RunStore, sub: Subscription, scope: anyio.CancelScope) -> None:
        """Append the journal to the store in batches, off the hot path, until the run ends."""
        with scope:
            try:
                while batch := await sub.batch():
                    await store.append(self.run_id, batch)
            except Exception as exc:
                self._store_failed(exc)
                await sub.aclose()
        if scope.cancelled_caught:
            self.log.warning("run store too slow", grace=STORE_GRACE)
            await sub.aclose()

    def _store_failed(self, exc: Exception) -> None:
        detail = f"{type(exc).__name__}: {_text(exc)}"
        self.log.warning("run store failed", error=detail)
        line = (
            f"the run store {type(self.config.store).__name__} failed: {detail}; the run went on without it"
        )
        self._warnings.append(line)
        if self.result is not None:
            self.result.warnings.append(line)

    async def _drive(self) -> RunResult:
        """Run to the end; always returns a result (failures are in its status and reason).

        The status is ``failed`` until the run's path ends cleanly: whatever breaks inside
        (the model's output, the server, a bug) ends the run ``failed`` with a reason that
        names it, never ``finished``. Only a cancellation from outside, or an interrupt such
        as ``KeyboardInterrupt``, propagates (after the result is recorded).
        """
        status: RunStatus = "failed"
        reason: str | None = "the run ended before its result was decided"
        budget = self.config.budget
        self._started()
        self.log.info("run started", mode=self.strategy.mode, query=self.query[:200])
        context = bound_context(run_id=self.run_id)
        context.__enter__()
        try:
            with anyio.CancelScope() as cancel_scope:
                self._cancel_scope = cancel_scope
                deadline = math.inf if budget.max_seconds is None else self._t0 + budget.max_seconds
                with anyio.CancelScope(deadline=deadline) as wall:
                    try:
                        await self._run()
                        status, reason = "finished", None
                    except Stop as stop:
                        status, reason = stop.status, stop.reason
                if wall.cancelled_caught:
                    status = "stopped"
                    reason = f"wall-time budget of {budget.max_seconds:g} s reached"
            if cancel_scope.cancelled_caught:
                status, reason = "cancelled", "the run was cancelled"
        except TomasuloError as e:
            status, reason = "failed", f"{type(e).__name__}: {_text(e)}"
        except Exception as e:  # an internal fault: the run fails with it, the traceback is logged
            inner = _only(e)
            status = "failed"
            if isinstance(inner, TomasuloError):
                reason = f"{type(inner).__name__}: {_text(inner)}"
            else:
                reason = f"internal error: {type(inner).__name__}: {_text(inner)}"
                self.log.exception("run crashed", error=reason)
        except anyio.get_cancelled_exc_class():
            status, reason = "cancelled", "the caller cancelled the run"
            raise
        except BaseException as e:
            status, reason = "failed", f"interrupted by {type(e).__name__}"
            raise
        finally:
            # an interrupt that came after the last decision is still the run's: never dropped
            self.interrupts.extend(self.drain_signals())
            if status == "finished" and self.output_spec is not None and self.output is None:
                status = "failed"  # e.g. a baseline's joiner asked for more where an answer was due
                reason = f"no answer fitting {self.output_spec.name} was given; the tasks' results are kept"
            if self.answer is None and status != "finished":
                self.answer, self.answered_by = self._best_answer(), "last_result"
            self._finished(status, reason)
            assert self.result is not None
            self.log.info(
                "run finished", status=status, reason=reason, makespan=round(self.result.makespan, 4)
            )
            context.__exit__(None, None, None)
        return self.result

    async def _run(self) -> None:
        async with self._new_dispatcher() as d:
            self._dispatcher = d
            try:
                await self.strategy.drive(self, d)
            finally:
                d.cancel()  # nothing outlives the run
                d.close_input()

    def _new_dispatcher(self) -> Dispatcher:
        config = self.config
        return Dispatcher(
            config.tools,
            config.executor,
            limits=config.limits,
            journal=self.journal,
            restore=self._restore,
            on_interrupt=self._on_interrupt,
            deps=self.deps,
        )

    def _started(self) -> None:
        self.emit(
            RunStarted,
            ts=self._t0,
            query=self.query,
            mode=self.strategy.mode,
            wall_time=self._wall0,
            history=[[t.question, t.answer] for t in self.history],
            resumed_from=None if self.resumed is None else self.resumed.run_id,
        )

    def _finished(self, status: RunStatus, reason: str | None) -> None:
        """Record the end (the result is rebuilt from this event and those before it)."""
        makespan = time.monotonic() - self._t0
        if self.answer is None:
            self.answered_by = None
        elif self.answered_by is None:
            self.answered_by = "joiner"
        self.emit(
            RunFinished,
            status=status,
            reason=reason,
            answer=self.answer,
            answered_by=self.answered_by,
            output=None
            if self.output_spec is None or self.output is None
            else self.output_spec.to_json(self.output),
            plans=list(self.plans),
            replans=self.replans,
            interrupts=list(self.interrupts),
            llm_calls=self._llm_calls,
            usage=dataclasses.replace(self.usage),
            makespan=makespan,
            warnings=self._result_warnings(),
        )
        self.result = self._build_result(status, reason, makespan)
        self._close_streams()

    # -- the steps a strategy is made of -------------------------------------------------------

    def require_planner(self) -> Planner:
        """The run's planner.

        Raises:
            UserError: the run has no LLM (only fixed plans run without one).
        """
        if self.config.planner is None or self.config.joiner is None:
            raise UserError("this run needs an LLM: Orchestrator(tools, llm=LLM(...))")
        return self.config.planner

    async def settle(self, d: Dispatcher) -> None:
        """Let the tasks already dispatched finish, for up to ``Budget.answer_grace``."""
        with anyio.move_on_after(self.config.budget.answer_grace):
            await d.wait()

    def submit_plan(self, d: Dispatcher, tasks: Sequence[Task], plan_no: int) -> tuple[Task, str] | None:
        """Submit a whole plan, critical path first (:meth:`Dispatcher.submit_order`); returns
        the first task refused and why, or ``None``. A plan with a task the dispatcher refuses
        keeps plan order, so the refusal comes at the same task."""
        for task, rank in d.submit_order(tasks):
            if (problem := self.submit(d, task, plan_no, rank)) is not None:
                return task, problem
        return None

    def adopt(self, task: Task) -> None:
        """Count a task an earlier run finished (restored, not submitted) among this run's
        tasks, so that the planner and the joiner see its report."""
        self._tasks[task.id] = task

    def submit(self, d: Dispatcher, task: Task, plan_no: int, rank: int = 0) -> str | None:
        """Hand a task to the dispatcher and record it; every mode submits through here.

        A task the dispatcher refuses (unknown tool, a reference to a task that was never
        submitted, a repeated id) is not recorded; the returned text says why, for the planner
        (streaming and turn modes replan with it) or for the error :meth:`execute` raises.
        """
        try:
            d.submit(task, rank=rank)
        except DispatchError as e:
            self.log.warning("task refused", task_id=task.id, error=str(e))
            return f"task {task.id} was refused: {e}"
        self._task_plan[task.id] = plan_no
        self._tasks[task.id] = task
        return None

    async def wait_or_interrupt(self, d: Dispatcher) -> list[str]:
        """Wait until every task has an outcome, or an interrupt arrives (returned)."""
        got: list[str] = []
        async with anyio.create_task_group() as tg:

            async def all_done() -> None:
                await d.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(all_done)
            got.append(await self._signals.receive())
            tg.cancel_scope.cancel()
        return got + self.drain_signals()

    async def join(self, d: Dispatcher, proposed: str | None = None) -> JoinDecision:
        """Ask the joiner whether to answer or plan again, with every task's report (and
        ``proposed``, the plan's rendered answer template, when there is one); the answer's
        text is passed on as ``AnswerDelta`` events as the joiner writes it.

        Raises:
            Stop: a bound was reached before the call, or no reply of the joiner could be
                read (the answer is then the last result at hand).
        """
        self.check_budget()
        joiner = self.config.joiner
        assert joiner is not None
        deltas = AnswerDeltas(self.journal)
        with self.llm_call("join", joiner.llm):
            decision: JoinDecision = await joiner.decide(
                self.query,
                "".join(self.plans),
                self._reports(d),
                self.usage,
                on_answer=deltas.hook(),
                proposed=proposed,
                prefix=self.prompt_prefix,
                **self._join_options(),
            )
        deltas.flush()
        self.emit(JoinerDecided, action=decision.action, thought=decision.thought)
        if decision.forced:  # no reply could be read: answer with what the tasks found
            self.answer = self._best_answer()
            self.answered_by = "last_result"
            if self.output_spec is not None:  # no typed answer at all: the run failed, tasks kept
                raise Stop(
                    "failed", f"{decision.thought}; no answer fitting {self.output_spec.name} was given"
                )
            raise Stop("stopped", f"{decision.thought}; the answer is the last result at hand")
        if decision.output is not None:
            self.output = decision.output
        return decision

    def _join_options(self) -> dict[str, Any]:
        """What every joiner call of the run is given: the answer's type, the joiner's
        instructions and the conversation so far."""
        return {
            "output": self.output_spec,
            "instructions": self.joiner_instructions,
            "history": self.history,
        }

    async def final_answer(self, d: Dispatcher, why: str) -> None:
        """A bound stopped the work: ask the joiner for the best answer with what exists."""
        joiner = self.config.joiner
        answer: str | None = None
        if joiner is not None and self.config.budget.exhausted(self.usage) is None:
            with anyio.move_on_after(self.config.budget.answer_grace):
                deltas = AnswerDeltas(self.journal)
                try:
                    with self.llm_call("join", joiner.llm):
                        decision = await joiner.decide(
                            self.query,
                            "".join(self.plans),
                            self._reports(d),
                            self.usage,
                            force_finish=True,
                            on_answer=deltas.hook(),
                            prefix=self.prompt_prefix,
                            **self._join_options(),
                        )
                    self.emit(JoinerDecided, action="finish", thought=decision.thought)
                    answer = decision.answer
                    if decision.output is not None:
                        self.output = decision.output
                except TomasuloError as e:
                    self.log.warning("final answer failed", error=str(e))
                finally:
                    deltas.flush()
        if answer is None:
            self.answer, self.answered_by = self._best_answer(), "last_result"
        else:
            self.answer = answer
        raise Stop("stopped", why)

    def template_answer(self, d: Dispatcher, plan: Plan) -> str | None:
        """``plan``'s answer template written out with the results, or ``None`` (no template,
        or a task it references did not succeed; see :func:`render_answer`). A run with a typed
        answer (``output_type=``) takes none: a template renders text, so the joiner answers."""
        if plan.answer is None or self.output_spec is not None:
            return None
        return render_answer(plan.answer, d.outcomes)

    def answer_from_template(self, text: str) -> None:
        """End the work with ``text``, the plan's rendered template, as the answer (no joiner)."""
        self.answer, self.answered_by = text, "template"
        deltas = AnswerDeltas(self.journal, "template")
        deltas(text)
        deltas.flush()

    def replan_allowed(self, reason: str) -> None:
        """Count a replan for ``reason``; raises :class:`Stop` once ``Budget.max_replans`` is spent."""
        if self.replans >= self.config.budget.max_replans:
            raise Stop("stopped", f"replan bound reached ({self.config.budget.max_replans}) after: {reason}")
        self.replans += 1

    def check_budget(self) -> None:
        """Raise :class:`Stop` if a token or cost bound of the budget is reached."""
        why = self.config.budget.exhausted(self.usage)
        if why is not None:
            raise Stop("stopped", why)

    def context(self, start_id: int, feedback: str | None, max_tasks: int) -> PlanContext:
        """What the next planning call (or turn) is told: the question, the plans and results
        so far, the latest interrupts, the strategy's prompt mode and the instructions."""
        d = self._dispatcher
        return PlanContext(
            question=self.query,
            start_id=start_id,
            max_tasks=max_tasks,
            plans=list(self.plans),
            reports=self._reports(d) if d is not None else [],
            interrupts=self.interrupts[-3:] if self.plans else [],
            feedback=feedback,
            mode=self.strategy.prompt,
            instructions=self.instructions,
            examples=self.config.examples,
            history=self.history,
        )

    def _reports(self, d: Dispatcher) -> list[TaskReport]:
        out = []
        outcomes = d.outcomes
        for tid, task in sorted(self._tasks.items()):
            o = outcomes.get(tid)
            if o is None:
                out.append(TaskReport(task, "running"))
            else:
                out.append(TaskReport(task, o.status, o.value, o.message))
        return out

    # -- results --------------------------------------------------------------------------------

    def _best_answer(self) -> str | None:
        d = self._dispatcher
        if d is None:
            return None
        done = [o for _, o in sorted(d.outcomes.items()) if o.status == "succeeded"]
        return stringify(done[-1].value) if done else None

    def _build_result(self, status: RunStatus, reason: str | None, makespan: float) -> RunResult:
        d = self._dispatcher
        records = []
        timeline = list(self.journal.history())
        if d is not None:
            # each task's arguments as its TaskPlanned event has them (bound once, for both)
            planned = {e.task_id: e.args for e in timeline if type(e) is TaskPlanned}
            for tid, outcome in sorted(d.outcomes.items()):
                args = planned.get(tid, {}) if tid in self._tasks else {}
                records.append(TaskRecord.from_outcome(outcome, args, self._task_plan.get(tid, 0), self._t0))
        return RunResult(
            run_id=self.run_id,
            query=self.query,
            answer=self.answer,
            answered_by=self.answered_by,
            output=self.output,
            history=self.history,
            status=status,
            reason=reason,
            tasks=records,
            plans=list(self.plans),
            replans=self.replans,
            interrupts=list(self.interrupts),
            usage=self.usage,
            llm_calls=self._llm_calls,
            makespan=makespan,
            timeline=timeline,
            warnings=self._result_warnings(),
        )

    def _result_warnings(self) -> list[str]:
        return self.journal.warnings + self._warnings

    async def execute(self, plan: Plan) -> RunResult:
        """Run a fixed plan with no LLM at all (tasks restored from an earlier run are not run
        again; the others are), writing the journal to the store as :meth:`drive` does.

        Raises:
            PlanError: the dispatcher refused a task (the message names it and says why);
                nothing ran, since every task is submitted before any call starts.
        """
        self.output_spec = None  # the answer is the last task's result, as text
        return await self._stored(lambda: self._execute(plan))

    async def _execute(self, plan: Plan) -> RunResult:
        status: RunStatus = "failed"
        reason: str | None = "the run ended before its result was decided"
        self._started()
        try:
            with anyio.CancelScope() as cancel_scope:  # RunHandle.cancel() (start_plan)
                self._cancel_scope = cancel_scope
                async with self._new_dispatcher() as d:
                    self._dispatcher = d
                    self.plans.append(plan.to_text())
                    restored = d.outcomes
                    todo = [t for t in plan.tasks if t.id not in restored]
                    refused = self.submit_plan(d, todo, 1)
                    if refused is not None:
                        task, problem = refused
                        d.cancel()  # no call has started: nothing was awaited since the first submit
                        status, reason = "failed", problem
                        index = next(i for i, t in enumerate(plan.tasks) if t is task)
                        raise _refused(plan, index, problem, self.config.tools)
                    d.close_input()
                    await d.wait()
                failed = [o for o in d.outcomes.values() if o.status != "succeeded"]
                status, reason = "finished", None
                if failed:
                    status = "failed"
                    first = min(failed, key=lambda o: o.task_id)
                    reason = (
                        f"{len(failed)} of {len(d.outcomes)} tasks did not succeed; first: {first.message}"
                    )
                last = max(d.outcomes) if d.outcomes else None
                rendered = self.template_answer(d, plan)
                if rendered is not None:  # the plan's own answer: join("... ${k} ...")
                    self.answer, self.answered_by = rendered, "template"
                elif last is not None and d.outcomes[last].status == "succeeded":
                    self.answer, self.answered_by = stringify(d.outcomes[last].value), "last_result"
            if cancel_scope.cancelled_caught:
                status, reason = "cancelled", "the run was cancelled"
        finally:
            self._finished(status, reason)
        assert self.result is not None
        return self.result


class _LLMCall:
    """One LLM call of a run: ``LLMCallStarted`` when made, ``LLMCallFinished`` (once) when it
    ends, with what it used; :meth:`on_text` (a plan round's text hook) times the first text
    and passes the text on as coalesced ``PlanDelta`` events while someone listens."""

    def __init__(self, run: Run, call: int, purpose: LLMPurpose, model: str | None, plan: int) -> None:
        self.run = run
        self.call = call
        self.purpose: LLMPurpose = purpose
        self.model = model
        self.plan = plan
        self.before = dataclasses.replace(run.usage)
        self.start = time.monotonic()
        self.first: float | None = None
        self.pending: list[str] = []
        self.flushed = self.start
        self.done = False
        run.emit(LLMCallStarted, call=call, purpose=purpose, model=model)

    def on_text(self, chunk: str) -> None:
        if self.first is None:
            self.first = time.monotonic()
        if not self.run.journal.listening:
            return
        self.pending.append(chunk)
        if "\n" in chunk or time.monotonic() - self.flushed >= PLAN_DELTA_INTERVAL:
            self._flush()

    def _flush(self) -> None:
        if self.pending:
            self.run.emit(PlanDelta, plan=self.plan, text="".join(self.pending))
            self.pending.clear()
        self.flushed = time.monotonic()

    def finish(self, error: str | None = None) -> None:
        """The call ended (``error`` says how it broke, if it did); later calls do nothing."""
        if self.done:
            return
        self.done = True
        self._flush()
        used, before = self.run.usage, self.before
        self.run.emit(
            LLMCallFinished,
            call=self.call,
            purpose=self.purpose,
            model=self.model,
            prompt_tokens=used.prompt_tokens - before.prompt_tokens,
            completion_tokens=used.completion_tokens - before.completion_tokens,
            cost=used.cost - before.cost,
            ttft=None if self.first is None else self.first - self.start,
            duration=time.monotonic() - self.start,
            error=error,
        )

    def __enter__(self) -> _LLMCall:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        self.finish(None if exc is None else f"{type(exc).__name__}: {_text(exc)}")
        if self.run.current_call is self:
            self.run.current_call = None


def _only(exc: BaseException) -> BaseException:
    """The one exception inside nested single-member groups, or ``exc``."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _text(exc: BaseException) -> str:
    """``str(exc)``, bounded, even for an exception whose ``__str__`` raises."""
    try:
        return str(exc)[:500]
    except Exception:
        return "<its message could not be shown>"


def _refused(plan: Plan, index: int, problem: str, tools: Toolset) -> PlanError:
    """The error for a fixed plan's task the dispatcher refused, placed like a parse error:
    :class:`~tomasulo.exceptions.UnknownToolError` for a tool the toolset lacks.

    A parsed task knows its line; one built by hand is placed in ``plan.to_text()``.
    """
    task = plan.tasks[index]
    line = task.line or sum(1 + (t.thought is not None) for t in plan.tasks[: index + 1])
    cls = UnknownToolError if tools.get(task.tool) is None else PlanError
    return cls(
        problem,
        line=line,
        column=task.column or 1,
        text=task.to_text(),
        hint="fix the plan and run it again; no task of it ran",
    )
