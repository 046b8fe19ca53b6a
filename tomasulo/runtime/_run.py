"""One run: plan, dispatch while the plan streams, replan on interrupts, join."""

from __future__ import annotations

import dataclasses
import math
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, Literal

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._logging import bound_context, get_logger
from ..dispatcher import Dispatcher, Event, InterruptRaised
from ..exceptions import BudgetExceeded, DispatchError, LLMError, PlanError, TomasuloError, UserError
from ..grammar import Plan, Task, stringify
from ..planner import JoinDecision, PlanContext, TaskReport, Usage
from ._events import JoinerDecided, PlanFinished, PlanStarted, RunFinished, UserMessage
from ._result import RunResult, RunStatus, TaskRecord

if TYPE_CHECKING:
    from ._orchestrator import Orchestrator

__all__ = ["Mode", "Run"]

Mode = Literal["stream", "plan_then_execute", "react", "parallel_fc"]

log = get_logger("tomasulo.run")

#: observer failures recorded one by one on a run's result (and logged); later ones are counted
MAX_OBSERVER_WARNINGS = 5


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
        self._seq = 0
        self._history: list[Event] = []
        self._subscribers: list[MemoryObjectSendStream[Event]] = []
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
        self._observer_failures = 0

    # -- events ---------------------------------------------------------------------------------

    def _stamp(self, task_id: int | None = None) -> dict[str, Any]:
        self._seq += 1
        return {"run_id": self.run_id, "seq": self._seq, "ts": time.monotonic(), "task_id": task_id}

    def _publish(self, event: Event) -> None:
        """The run's one event sink: history, subscribers, then the ``on_event`` observer.

        Nothing an observer does reaches the run: an error it raises is logged and recorded
        in ``RunResult.warnings``, and the run goes on as if it had returned.
        """
        self._history.append(event)
        for sub in list(self._subscribers):
            try:
                sub.send_nowait(event)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._subscribers.remove(sub)  # the reader went away
                sub.close()
        callback = self.orch.on_event
        if callback is not None:
            try:
                callback(event)
            except Exception as exc:
                self._observer_failed(callback, event, exc)

    def _observer_failed(self, callback: Callable[[Event], None], event: Event, exc: Exception) -> None:
        self._observer_failures += 1
        if self._observer_failures > MAX_OBSERVER_WARNINGS:
            return
        name = getattr(callback, "__qualname__", None) or repr(callback)
        try:
            detail = f"{type(exc).__name__}: {exc}"[:300]
        except Exception:  # an exception whose __str__ raises
            detail = type(exc).__name__
        line = (
            f"the on_event observer {name} raised on {type(event).__name__} (seq {event.seq}): "
            f"{detail}; the run went on without it"
        )
        self._warnings.append(line)
        self.log.warning("observer failed", observer=name, event_type=type(event).__name__, error=detail)

    def emit(self, cls: Callable[..., Event], task_id: int | None = None, **fields: Any) -> None:
        """Publish a run event in the run's sequence."""
        self._publish(cls(**self._stamp(task_id), **fields))

    def _on_dispatch(self, event: Event) -> None:
        # re-stamp so dispatcher and run events share one per-run sequence
        self._seq += 1
        restamped = dataclasses.replace(event, seq=self._seq, run_id=self.run_id)
        self._publish(restamped)
        if isinstance(event, InterruptRaised):
            if event.kind == "deadline":
                self._deadline_hit = True
            self.signal(event.reason)

    def subscribe(self) -> MemoryObjectReceiveStream[Event]:
        """A stream of the run's events: the backlog first, then live ones; it ends with the run."""
        send, recv = anyio.create_memory_object_stream[Event](math.inf)
        for event in self._history:
            send.send_nowait(event)
        if self.done.is_set():
            send.close()
        else:
            self._subscribers.append(send)
        return recv

    def _close_streams(self) -> None:
        self.done.set()
        for sub in self._subscribers:
            sub.close()
        self._subscribers.clear()
        self._signals_send.close()
        self._signals.close()

    # -- signals from outside -------------------------------------------------------------------

    def signal(self, reason: str) -> None:
        """An interrupt: preempt a plan that is still streaming and replan with ``reason``."""
        if self.done.is_set():
            return
        self._signals_send.send_nowait(reason)
        if self._preempt is not None:
            self._preempt.cancel()

    def user_message(self, message: str) -> None:
        """A message from the user: an interrupt the planner hears as such."""
        if self.done.is_set():
            raise UserError(f"run {self.run_id} has already finished; start a new one")
        self.emit(UserMessage, message=message)
        self.signal(f"the user said: {message}")

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
        """Run to the end; always returns a result (failures are in its status and reason).

        The status is ``failed`` until the run's path ends cleanly: whatever breaks inside
        (the model's output, the server, a bug) ends the run ``failed`` with a reason that
        names it, never ``finished``. Only a cancellation from outside, or an interrupt such
        as ``KeyboardInterrupt``, propagates (after the result is recorded).
        """
        status: RunStatus = "failed"
        reason: str | None = "the run ended before its result was decided"
        budget = self.orch.budget
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
            if self._answer is None and status != "finished":
                self._answer = self._best_answer()
            self.emit(RunFinished, status=status, reason=reason)
            self.result = self._build_result(status, reason)
            self._close_streams()
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
            run_id=self.run_id,
            on_event=self._on_dispatch,
            deps=self.deps,
        )

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
            self._llm_calls += 1
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
            except LLMError as e:
                if not e.partial:
                    raise
                problem = f"the planner's stream broke off ({type(e).__name__}: {e})"
                self.log.warning("planner stream broke", error=str(e), partial_chars=len(e.partial))
            except BudgetExceeded as e:
                # a plan already read to its join() is whole: its tasks run to the end, and the
                # budget check before the joiner stops the run (no plan is cut short by the
                # usage report that follows its last line)
                if not rnd.joined:
                    cut = e
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
        self._llm_calls += 1
        decision: JoinDecision = await joiner.decide(
            self.query, "".join(self._plans), self._reports(d), self.usage
        )
        self.emit(JoinerDecided, action=decision.action, thought=decision.thought)
        return decision

    async def _final_answer(self, d: Dispatcher, why: str) -> None:
        """A bound stopped the work: ask the joiner for the best answer with what exists."""
        joiner = self.orch.joiner
        answer: str | None = None
        if joiner is not None and self.orch.budget.exhausted(self.usage) is None:
            with anyio.move_on_after(self.orch.budget.answer_grace):
                try:
                    self._llm_calls += 1
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
            self._llm_calls += 1
            tasks: list[Task] = []
            invalid: str | None = None
            try:
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
            self._drain_signals()
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

    def _build_result(self, status: RunStatus, reason: str | None) -> RunResult:
        d = self._dispatcher
        records = []
        if d is not None:
            for tid, outcome in sorted(d.outcomes.items()):
                task = self._tasks.get(tid)
                tool = self.orch.tools.get(task.tool) if task is not None else None
                args = task.bind(tool.param_names) if task is not None and tool is not None else {}
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
            makespan=time.monotonic() - self._t0,
            timeline=list(self._history),
            warnings=self._result_warnings(),
        )

    def _result_warnings(self) -> list[str]:
        out = list(self._warnings)
        more = self._observer_failures - MAX_OBSERVER_WARNINGS
        if more > 0:
            out.append(f"the on_event observer raised on {more} more events (not listed)")
        return out

    async def execute(self, plan: Plan) -> RunResult:
        """Run a fixed plan with no LLM at all.

        Raises:
            PlanError: the dispatcher refused a task (the message names it and says why);
                nothing ran, since every task is submitted before any call starts.
        """
        status: RunStatus = "failed"
        reason: str | None = "the run ended before its result was decided"
        try:
            async with self._new_dispatcher() as d:
                self._dispatcher = d
                self._plans.append(plan.to_text())
                refused = self._submit_plan(d, plan.tasks, 1)
                if refused is not None:
                    task, problem = refused
                    d.cancel()  # no call has started: nothing was awaited since the first submit
                    status, reason = "failed", problem
                    index = next(i for i, t in enumerate(plan.tasks) if t is task)
                    raise _refused(plan, index, problem)
                d.close_input()
                await d.wait()
            failed = [o for o in d.outcomes.values() if o.status != "succeeded"]
            status, reason = "finished", None
            if failed:
                status = "failed"
                first = min(failed, key=lambda o: o.task_id)
                reason = f"{len(failed)} of {len(d.outcomes)} tasks did not succeed; first: {first.message}"
            last = max(d.outcomes) if d.outcomes else None
            if last is not None and d.outcomes[last].status == "succeeded":
                self._answer = stringify(d.outcomes[last].value)
        finally:
            self.emit(RunFinished, status=status, reason=reason)
            self.result = self._build_result(status, reason)
            self._close_streams()
        return self.result


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


def _refused(plan: Plan, index: int, problem: str) -> PlanError:
    """The error for a fixed plan's task the dispatcher refused, placed like a parse error.

    A parsed task knows its line; one built by hand is placed in ``plan.to_text()``.
    """
    task = plan.tasks[index]
    line = task.line or sum(1 + (t.thought is not None) for t in plan.tasks[: index + 1])
    return PlanError(
        problem,
        line=line,
        column=task.column or 1,
        text=task.to_text(),
        hint="fix the plan and run it again; no task of it ran",
    )


async def iterate(recv: MemoryObjectReceiveStream[Event]) -> AsyncIterator[Event]:
    """Iterate a subscription until the run ends."""
    async with recv:
        async for event in recv:
            yield event
