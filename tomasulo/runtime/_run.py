"""One run: plan, dispatch while the plan streams, replan on interrupts, join."""

from __future__ import annotations

import dataclasses
import math
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, Literal

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._logging import bound_context, get_logger
from ..dispatcher import Dispatcher, Event, InterruptRaised, Outcome, RunJournal, Subscription, TaskPlanned
from ..exceptions import (
    BudgetExceeded,
    DispatchError,
    LLMError,
    LLMTruncated,
    PlanError,
    TomasuloError,
    UnknownToolError,
    UserError,
)
from ..grammar import Plan, Task, stringify
from ..planner import JoinDecision, PlanContext, TaskReport, Usage
from ..tools import Toolset
from ._events import (
    JoinerDecided,
    LLMCallFinished,
    LLMCallStarted,
    LLMPurpose,
    PlanDelta,
    PlanFinished,
    PlanStarted,
    RunFinished,
    RunStarted,
    UserMessage,
)
from ._result import RunResult, RunStatus, TaskRecord
from ._store import RunStore

if TYPE_CHECKING:
    from ._orchestrator import Orchestrator

__all__ = ["PLAN_DELTA_INTERVAL", "Mode", "Run"]

Mode = Literal["stream", "plan_then_execute", "react", "parallel_fc"]

log = get_logger("tomasulo.run")

#: Plan text is passed on (``PlanDelta``) at each line's end, or after this many seconds.
PLAN_DELTA_INTERVAL = 0.05


#: How a user's message reads among a run's interrupts.
USER_SAID = "the user said: "


class _Stop(Exception):
    """Ends the run loop with a status and reason."""

    def __init__(self, status: RunStatus, reason: str) -> None:
        self.status: RunStatus = status
        self.reason = reason
        super().__init__(reason)


class Run:
    """The state of one run; the orchestrator drives it, a :class:`RunHandle` watches it."""

    def __init__(
        self,
        orch: Orchestrator,
        query: str,
        *,
        mode: Mode,
        run_id: str | None = None,
        restore: Iterable[Outcome] | Mapping[int, Outcome] | None = None,
        deps: Any = None,
        instructions: str | None = None,
    ) -> None:
        self.orch = orch
        self.deps = deps if deps is not None else orch.deps
        given = (orch.instructions, instructions or "")
        self.instructions = "\n\n".join(t.strip() for t in given if t.strip())
        self.query = query
        self.mode: Mode = mode
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.log = log.bind(run_id=self.run_id)
        self.usage = Usage()
        self.result: RunResult | None = None
        self.done = anyio.Event()
        self._t0 = time.monotonic()
        self._wall0 = time.time()
        #: The run's one journal: the dispatcher's events and the run's own, numbered once.
        self.journal = RunJournal(self.run_id, on_event=orch.on_event)
        self._restore = restore
        self._ended = False
        send, recv = anyio.create_memory_object_stream[str](math.inf)
        self._signals_send: MemoryObjectSendStream[str] = send
        self._signals: MemoryObjectReceiveStream[str] = recv
        self._preempt: anyio.CancelScope | None = None
        self._cancel_scope: anyio.CancelScope | None = None
        self._dispatcher: Dispatcher | None = None
        self._plans: list[str] = []
        self._task_plan: dict[int, int] = {}
        self._tasks: dict[int, Task] = {}
        self._interrupts: list[str] = []
        self._replans = 0
        self._llm_calls = 0
        self._answer: str | None = None
        self._deadline_hit = False
        self._warnings: list[str] = []
        self._call: _LLMCall | None = None  # the LLM call in progress

    # -- events ---------------------------------------------------------------------------------

    def emit(self, cls: Callable[..., Event], task_id: int | None = None, **fields: Any) -> None:
        """Record a run event in the run's journal."""
        self.journal.record(cls, task_id, **fields)

    def _on_interrupt(self, event: InterruptRaised) -> None:
        if event.source == "deadline":
            self._deadline_hit = True
        self.signal(event.reason)

    def subscribe(self, after: int = 0) -> Subscription:
        """The run's events after ``after``: the backlog first, then live ones; it ends with the run."""
        return self.journal.events(after=after)

    def _close_streams(self) -> None:
        self._ended = True
        self.journal.close()
        self._signals_send.close()
        self._signals.close()

    def _llm_call(self, purpose: LLMPurpose, llm: Any, plan: int = 0) -> _LLMCall:
        """Record an LLM call: ``LLMCallStarted`` now, ``LLMCallFinished`` when it ends."""
        self._llm_calls += 1
        model = getattr(llm, "model", None)
        call = _LLMCall(self, self._llm_calls, purpose, model if isinstance(model, str) else None, plan)
        self._call = call
        return call

    # -- signals from outside -------------------------------------------------------------------

    def signal(self, reason: str) -> None:
        """An interrupt: preempt a plan that is still streaming and replan with ``reason``."""
        if self._ended:
            return
        self._signals_send.send_nowait(reason)
        if self._preempt is not None:
            self._preempt.cancel()

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

    def _drain_signals(self) -> list[str]:
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
        store: RunStore | None = self.orch.store
        try:
            if store is None:
                result: RunResult = await body()
                return result
            sub = self.journal.events(quiet=True)
            failure: BaseException | None = None
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._persist, store, sub)
                try:
                    await body()
                except BaseException as exc:  # re-raised once the store has the events
                    failure = exc
            if failure is not None:
                raise failure
            result = self.result  # type: ignore[assignment]
            assert result is not None
            try:
                await store.save_result(result)
            except Exception as exc:
                self._store_failed(exc)
            return result
        finally:
            self.done.set()

    async def _persist(self, store: RunStore, sub: Subscription) -> None:
        """Append the journal to the store in batches, off the hot path, until the run ends."""
        try:
            while batch := await sub.batch():
                await store.append(self.run_id, batch)
        except Exception as exc:
            self._store_failed(exc)
            await sub.aclose()

    def _store_failed(self, exc: Exception) -> None:
        detail = f"{type(exc).__name__}: {_text(exc)}"
        self.log.warning("run store failed", error=detail)
        line = f"the run store {type(self.orch.store).__name__} failed: {detail}; the run went on without it"
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
        budget = self.orch.budget
        self._started()
        self.log.info("run started", mode=self.mode, query=self.query[:200])
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
                    except _Stop as stop:
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
            self._interrupts.extend(self._drain_signals())
            if self._answer is None and status != "finished":
                self._answer = self._best_answer()
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
                if self.mode in ("react", "parallel_fc"):
                    await self._turns(d)
                else:
                    await self._loop(d)
            finally:
                d.cancel()  # nothing outlives the run
                d.close_input()

    def _new_dispatcher(self) -> Dispatcher:
        orch = self.orch
        return Dispatcher(
            orch.tools,
            orch.executor,
            limits=orch.limits,
            journal=self.journal,
            restore=self._restore,
            on_interrupt=self._on_interrupt,
            deps=self.deps,
        )

    def _started(self) -> None:
        self.emit(RunStarted, ts=self._t0, query=self.query, mode=self.mode, wall_time=self._wall0)

    def _finished(self, status: RunStatus, reason: str | None) -> None:
        """Record the end (the result is rebuilt from this event and those before it)."""
        makespan = time.monotonic() - self._t0
        self.emit(
            RunFinished,
            status=status,
            reason=reason,
            answer=self._answer,
            plans=list(self._plans),
            replans=self._replans,
            interrupts=list(self._interrupts),
            llm_calls=self._llm_calls,
            usage=dataclasses.replace(self.usage),
            makespan=makespan,
            warnings=self._result_warnings(),
        )
        self.result = self._build_result(status, reason, makespan)
        self._close_streams()

    def _require_llm(self) -> Any:
        if self.orch.planner is None or self.orch.joiner is None:
            raise UserError("this run needs an LLM: Orchestrator(tools, llm=LLM(...))")
        return self.orch.planner

    async def _loop(self, d: Dispatcher) -> None:
        """Streaming (or plan-then-execute) mode: plan, dispatch, replan on interrupts, join."""
        planner = self._require_llm()
        start_id = 1
        reason = ""
        feedback: str | None = None
        while True:
            self._check_budget()
            plan_no = len(self._plans) + 1
            ctx = self._context(start_id, feedback, self.orch.max_tasks)
            self.emit(PlanStarted, plan=plan_no, start_id=start_id, reason=reason)
            rnd = planner.start(ctx, self.usage, watch=self.orch.budget.check)
            with self._llm_call("plan", planner.llm, plan_no) as call:
                rnd.on_text = call.on_text
                preempted, problem = await self._stream_plan(d, rnd, plan_no)
            self._plans.append(rnd.plan_text())
            self.emit(
                PlanFinished, plan=plan_no, tasks=len(rnd.plan.tasks), joined=rnd.joined, preempted=preempted
            )
            start_id = rnd.next_id
            signals = self._drain_signals()
            if problem is not None:
                signals.append(problem)
            if not signals:
                signals = await self._wait_or_interrupt(d)
            if signals:
                self._interrupts.extend(signals)
                reason = "; ".join(signals)
                feedback = None
                if self._deadline_hit:
                    await self._final_answer(d, "the tools' deadline passed")
                self._replan_allowed(reason)
                continue
            decision = await self._join(d)
            late = self._drain_signals()  # interrupts that arrived while the joiner decided
            if late:
                self._interrupts.extend(late)
                if not self._deadline_hit and self._replans < self.orch.budget.max_replans:
                    # the answer may not hold any more: plan again with what was said
                    reason = "; ".join(late)
                    feedback = decision.feedback if decision.action == "replan" else None
                    self._replan_allowed(reason)
                    continue
            if decision.action == "finish":
                self._answer = decision.answer
                return
            reason = f"the joiner asked for more: {decision.feedback}"
            feedback = decision.feedback
            self._interrupts.append(reason)
            self._replan_allowed(reason)

    async def _stream_plan(self, d: Dispatcher, rnd: Any, plan_no: int) -> tuple[bool, str | None]:
        """Submit each task as it is parsed; returns (preempted, problem).

        A plan that ends without join() (and was not preempted) is a problem too: the model
        stopped early, and the next plan continues it.

        Raises:
            _Stop: a token or cost bound was reached while the plan streamed, before its
                join(); the tasks it had dispatched were given ``answer_grace`` to finish.
        """
        problem: str | None = None
        held: list[Task] = []
        cut: BudgetExceeded | None = None
        with anyio.CancelScope() as scope:
            self._preempt = scope
            try:
                async with aclosing(rnd.tasks()) as tasks:
                    async for task in tasks:
                        if self.mode == "plan_then_execute":
                            held.append(task)
                        elif (problem := self._submit(d, task, plan_no)) is not None:
                            break
            except PlanError as e:
                problem = f"the plan was invalid at line {e.line}, column {e.column}: {e.message}"
                self.log.warning("plan error", error=str(e))
            except LLMTruncated as e:  # cut off at max_tokens: incomplete, continued by a replan
                n = len(rnd.plan.tasks)
                problem = (
                    f"plan {plan_no} was cut off at the token limit (max_tokens={e.max_tokens}) "
                    f"after {n} task{'s' * (n != 1)}, before its join()"
                )
                self.log.warning("plan truncated", error=str(e), partial_chars=len(e.partial))
                if self._call is not None:
                    self._call.finish(f"{type(e).__name__}: {_text(e)}")
            except LLMError as e:
                if not e.partial:
                    raise
                if self._call is not None:
                    self._call.finish(f"{type(e).__name__}: {_text(e)}")
                problem = f"the planner's stream broke off ({type(e).__name__}: {e})"
                self.log.warning("planner stream broke", error=str(e), partial_chars=len(e.partial))
            except BudgetExceeded as e:
                # a plan already read to its join() is whole: its tasks run to the end, and the
                # budget check before the joiner stops the run (no plan is cut short by the
                # usage report that follows its last line)
                if not rnd.joined:
                    cut = e
                    if self._call is not None:
                        self._call.finish(f"{type(e).__name__}: {_text(e)}")
            finally:
                self._preempt = None
        if cut is not None:
            dispatched = len(rnd.plan.tasks) if self.mode != "plan_then_execute" else 0
            self._plans.append(rnd.plan_text())
            self.emit(PlanFinished, plan=plan_no, tasks=dispatched, joined=False, preempted=True)
            await self._settle(d)
            why = f"{cut} while plan {plan_no} streamed; it was cut after {dispatched} tasks"
            raise _Stop("stopped", why)
        if problem is None and (refused := self._submit_plan(d, held, plan_no)) is not None:
            problem = refused[1]
        if problem is None and not scope.cancelled_caught and not rnd.joined:
            n = len(rnd.plan.tasks)
            problem = f"plan {plan_no} ended without join() after {n} task{'s' * (n != 1)}"
        return scope.cancelled_caught, problem

    async def _settle(self, d: Dispatcher) -> None:
        """Let the tasks already dispatched finish, for up to ``Budget.answer_grace``."""
        with anyio.move_on_after(self.orch.budget.answer_grace):
            await d.wait()

    def _submit_plan(self, d: Dispatcher, tasks: Sequence[Task], plan_no: int) -> tuple[Task, str] | None:
        """Submit a whole plan, critical path first (:meth:`Dispatcher.submit_order`); returns
        the first task refused and why, or ``None``. A plan with a task the dispatcher refuses
        keeps plan order, so the refusal comes at the same task."""
        for task, rank in d.submit_order(tasks):
            if (problem := self._submit(d, task, plan_no, rank)) is not None:
                return task, problem
        return None

    def _submit(self, d: Dispatcher, task: Task, plan_no: int, rank: int = 0) -> str | None:
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

    async def _wait_or_interrupt(self, d: Dispatcher) -> list[str]:
        """Wait until every task has an outcome, or an interrupt arrives (returned)."""
        got: list[str] = []
        async with anyio.create_task_group() as tg:

            async def all_done() -> None:
                await d.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(all_done)
            got.append(await self._signals.receive())
            tg.cancel_scope.cancel()
        return got + self._drain_signals()

    async def _join(self, d: Dispatcher) -> JoinDecision:
        self._check_budget()
        joiner = self.orch.joiner
        assert joiner is not None
        with self._llm_call("join", joiner.llm):
            decision: JoinDecision = await joiner.decide(
                self.query, "".join(self._plans), self._reports(d), self.usage
            )
        self.emit(JoinerDecided, action=decision.action, thought=decision.thought)
        if decision.forced:  # no reply could be read: answer with what the tasks found
            self._answer = self._best_answer()
            raise _Stop("stopped", f"{decision.thought}; the answer is the last result at hand")
        return decision

    async def _final_answer(self, d: Dispatcher, why: str) -> None:
        """A bound stopped the work: ask the joiner for the best answer with what exists."""
        joiner = self.orch.joiner
        answer: str | None = None
        if joiner is not None and self.orch.budget.exhausted(self.usage) is None:
            with anyio.move_on_after(self.orch.budget.answer_grace):
                try:
                    with self._llm_call("join", joiner.llm):
                        decision = await joiner.decide(
                            self.query, "".join(self._plans), self._reports(d), self.usage, force_finish=True
                        )
                    self.emit(JoinerDecided, action="finish", thought=decision.thought)
                    answer = decision.answer
                except TomasuloError as e:
                    self.log.warning("final answer failed", error=str(e))
        self._answer = answer if answer is not None else self._best_answer()
        raise _Stop("stopped", why)

    def _replan_allowed(self, reason: str) -> None:
        if self._replans >= self.orch.budget.max_replans:
            raise _Stop("stopped", f"replan bound reached ({self.orch.budget.max_replans}) after: {reason}")
        self._replans += 1

    def _check_budget(self) -> None:
        why = self.orch.budget.exhausted(self.usage)
        if why is not None:
            raise _Stop("stopped", why)

    def _context(self, start_id: int, feedback: str | None, max_tasks: int) -> PlanContext:
        d = self._dispatcher
        return PlanContext(
            question=self.query,
            start_id=start_id,
            max_tasks=max_tasks,
            plans=list(self._plans),
            reports=self._reports(d) if d is not None else [],
            interrupts=self._interrupts[-3:] if self._plans else [],
            feedback=feedback,
            mode="react" if self.mode == "react" else "parallel_fc" if self.mode == "parallel_fc" else "plan",
            instructions=self.instructions,
            examples=self.orch.examples,
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

    async def _turns(self, d: Dispatcher) -> None:
        """Baselines: ``react`` (one call per LLM turn) and ``parallel_fc`` (one batch per turn)."""
        planner = self._require_llm()
        start_id = 1
        max_tasks = 1 if self.mode == "react" else self.orch.max_tasks
        max_turns = self.orch.max_turns
        for turn in range(1, max_turns + 1):
            self._check_budget()
            ctx = self._context(start_id, None, max_tasks)
            self.emit(PlanStarted, plan=turn, start_id=start_id, reason="" if turn == 1 else "next turn")
            rnd = planner.start(ctx, self.usage, watch=self.orch.budget.check)
            tasks: list[Task] = []
            invalid: str | None = None
            try:
                with self._llm_call("turn", planner.llm, turn) as call:
                    rnd.on_text = call.on_text
                    async with aclosing(rnd.tasks()) as stream:
                        async for task in stream:
                            tasks.append(task)
            except BudgetExceeded as e:
                self._plans.append(rnd.plan_text())
                raise _Stop("stopped", f"{e} while turn {turn} streamed; its calls did not run") from None
            except PlanError as e:
                invalid = f"the turn was invalid at line {e.line}, column {e.column}: {e.message}"
                self._interrupts.append(invalid)
                self.log.warning("turn error", error=str(e))
            self._plans.append(rnd.plan_text())
            self.emit(PlanFinished, plan=turn, tasks=len(tasks), joined=rnd.joined)
            if not tasks:
                if invalid is None:
                    break  # the model called no tool: time to answer
                # As in streaming mode, a turn that broke before its first call is retried with
                # the error (bounded by max_replans), not taken as the end of the run.
                self._replan_allowed(invalid)
                continue
            problem: str | None = None
            for task in tasks:  # the whole turn is known before any call runs, as in function calling
                if (problem := self._submit(d, task, turn)) is not None:
                    break  # as in streaming mode: the calls before it run, the rest are dropped
            await d.wait()
            # the next turn sees each call's outcome in its reports; what else was said (a user's
            # message) is heard there too and kept in the result, never dropped
            self._interrupts.extend(m for m in self._drain_signals() if m.startswith(USER_SAID))
            start_id = ctx.start_id + len(tasks)  # turns number their calls; ids are never reused
            if problem is not None:  # the next turn hears why, as a replan would
                self._interrupts.append(problem)
                self._replan_allowed(problem)
        else:
            raise _Stop("stopped", f"turn bound reached ({max_turns})")
        decision = await self._join(d)
        self._answer = decision.answer if decision.action == "finish" else decision.feedback

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
            answer=self._answer,
            status=status,
            reason=reason,
            tasks=records,
            plans=list(self._plans),
            replans=self._replans,
            interrupts=list(self._interrupts),
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
                    self._plans.append(plan.to_text())
                    restored = d.outcomes
                    todo = [t for t in plan.tasks if t.id not in restored]
                    refused = self._submit_plan(d, todo, 1)
                    if refused is not None:
                        task, problem = refused
                        d.cancel()  # no call has started: nothing was awaited since the first submit
                        status, reason = "failed", problem
                        index = next(i for i, t in enumerate(plan.tasks) if t is task)
                        raise _refused(plan, index, problem, self.orch.tools)
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
                if last is not None and d.outcomes[last].status == "succeeded":
                    self._answer = stringify(d.outcomes[last].value)
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
        if self.run._call is self:
            self.run._call = None


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
