"""The modes of a run, as strategies: streaming rounds (``stream``, ``plan_then_execute``)
and the baselines' turns (``react``, ``parallel_fc``).

A strategy is small: a ``mode`` name, the planner ``prompt`` it asks for, whether it can take
over a ``resumable`` run, and ``drive(run, d)``, which works through the run's steps
(:class:`~tomasulo.runtime._run.Run`). Pick one by name with :func:`strategy_for`; a new mode is
a new class with the same four members.
"""

from __future__ import annotations

from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Literal, get_args

import anyio

from ..dispatcher import Dispatcher, Outcome
from ..exceptions import BudgetExceeded, ConfigError, LLMError, LLMResponseError, LLMTruncated, PlanError
from ..grammar import Plan, Task, stringify
from ..planner import FunctionCall, Planner, PlanRound, ToolCallingModel, tool_specs, turn_messages
from ._events import PlanFinished, PlanStarted
from ._resume import Resumed
from ._run import USER_SAID, Run, Stop, Strategy, _text

__all__ = ["BaselineTurns", "Mode", "StreamingRounds", "strategy_for"]

#: The modes a run can take (``Orchestrator(mode=...)``, ``run(query, mode=...)``).
Mode = Literal["stream", "plan_then_execute", "react", "parallel_fc"]


@dataclass(frozen=True, slots=True)
class StreamingRounds:
    """Plan rounds: each task is submitted the moment its line is parsed (``hold=False``,
    mode ``stream``), or once the whole plan is read (``hold=True``, ``plan_then_execute``).

    An interrupt (a failure, a user's message, a tool's ``Interrupt``) preempts a plan still
    streaming and starts a replan that continues the numbering; when a plan's tasks are done
    the joiner answers or asks for another round. A plan that ends with an answer template
    (``join("... ${k} ...")``) whose tasks all succeeded is answered with it instead, with no
    joiner call (``RunConfig.joiner_mode="auto"``; with ``"always"`` the joiner sees it as
    the plan's proposed answer).
    """

    mode: Mode = "stream"
    hold: bool = False
    prompt: Literal["plan", "react", "parallel_fc"] = "plan"
    resumable: bool = True

    async def drive(self, run: Run, d: Dispatcher) -> None:
        """Plan, dispatch, replan on interrupts, join; returns with ``run.answer`` set."""
        planner = run.require_planner()
        start_id = 1
        reason = ""
        feedback: str | None = None
        whole, problem = False, None
        last: Plan | None = None  # the latest plan read here (a resumed run's is text only)
        if run.resumed is not None:
            start_id, whole, problem = self._take_over(run, d, run.resumed)
            if not whole and run.plans:
                reason = f"resumed from run {run.resumed.run_id}, whose plan {len(run.plans)} had no join()"
                run.interrupts.extend(m for m in (problem, reason) if m is not None)
        while True:
            run.check_budget()
            if whole:  # a resumed run whose last plan was whole: on to its tasks and the joiner
                whole = False
            else:
                plan_no = len(run.plans) + 1
                ctx = run.context(start_id, feedback, run.config.max_tasks)
                run.emit(PlanStarted, plan=plan_no, start_id=start_id, reason=reason)
                rnd = planner.start(ctx, run.usage, watch=run.config.budget.check)
                with run.llm_call("plan", planner.llm, plan_no) as call:
                    rnd.on_text = call.on_text
                    preempted, problem = await self._stream_plan(run, d, rnd, plan_no)
                if run.prompt_prefix is None and rnd.messages:
                    run.prompt_prefix = rnd.messages[:2]  # the joiner's prompt extends the planner's
                run.plans.append(rnd.plan_text())
                run.emit(
                    PlanFinished,
                    plan=plan_no,
                    tasks=len(rnd.plan.tasks),
                    joined=rnd.joined,
                    preempted=preempted,
                )
                start_id = rnd.next_id
                last = rnd.plan
            signals = run.drain_signals()
            if problem is not None:
                signals.append(problem)
            if not signals:
                signals = await run.wait_or_interrupt(d)
            if signals:
                run.interrupts.extend(signals)
                reason = "; ".join(signals)
                feedback = None
                if run.deadline_hit:
                    await run.final_answer(d, "the tools' deadline passed")
                run.replan_allowed(reason)
                continue
            proposed = None if last is None else run.template_answer(d, last)
            if proposed is not None and run.config.joiner_mode == "auto":
                run.answer_from_template(proposed)  # every task it names succeeded: no joiner call
                return
            decision = await run.join(d, proposed)
            late = run.drain_signals()  # interrupts that arrived while the joiner decided
            if late:
                run.interrupts.extend(late)
                if not run.deadline_hit and run.replans < run.config.budget.max_replans:
                    # the answer may not hold any more: plan again with what was said
                    reason = "; ".join(late)
                    feedback = decision.feedback if decision.action == "replan" else None
                    run.replan_allowed(reason)
                    continue
            if decision.action == "finish":
                run.answer = decision.answer
                return
            reason = f"the joiner asked for more: {decision.feedback}"
            feedback = decision.feedback
            run.interrupts.append(reason)
            run.replan_allowed(reason)

    def _take_over(self, run: Run, d: Dispatcher, resumed: Resumed) -> tuple[int, bool, str | None]:
        """Take over an earlier run's plans and tasks: the ones that ended are restored (the
        dispatcher has their outcomes), the others are submitted again, under a ``PlanStarted``
        of the plan they belong to. Returns the next task id, whether the last plan was whole,
        and why a task was refused (a tool that is gone), if one was."""
        run.plans.extend(resumed.plans)
        todo = []
        for tid, (_, task) in sorted(resumed.tasks.items()):
            if tid in resumed.outcomes:
                run.adopt(task)
            else:
                todo.append(task)
        refused = None
        if todo:
            plan_no = len(run.plans)
            why = f"resumed from run {resumed.run_id}: {len(todo)} of its tasks had not ended"
            run.emit(PlanStarted, plan=plan_no, start_id=todo[0].id, reason=why)
            refused = run.submit_plan(d, todo, plan_no)
            run.emit(PlanFinished, plan=plan_no, tasks=len(todo), joined=resumed.joined, preempted=False)
        return resumed.next_id, resumed.joined, None if refused is None else refused[1]

    async def _stream_plan(
        self, run: Run, d: Dispatcher, rnd: PlanRound, plan_no: int
    ) -> tuple[bool, str | None]:
        """Submit each task as it is parsed; returns (preempted, problem).

        A plan that ends without join() (and was not preempted) is a problem too: the model
        stopped early, and the next plan continues it.

        Raises:
            Stop: a token or cost bound was reached while the plan streamed, before its
                join(); the tasks it had dispatched were given ``answer_grace`` to finish.
        """
        problem: str | None = None
        held: list[Task] = []
        cut: BudgetExceeded | None = None
        with anyio.CancelScope() as scope:
            run.preempt = scope
            try:
                async with aclosing(rnd.tasks()) as tasks:
                    async for task in tasks:
                        if self.hold:
                            held.append(task)
                        elif (problem := run.submit(d, task, plan_no)) is not None:
                            break
            except PlanError as e:
                problem = f"the plan was invalid at line {e.line}, column {e.column}: {e.message}"
                run.log.warning("plan error", error=str(e))
            except LLMTruncated as e:  # cut off at max_tokens: incomplete, continued by a replan
                n = len(rnd.plan.tasks)
                problem = (
                    f"plan {plan_no} was cut off at the token limit (max_tokens={e.max_tokens}) "
                    f"after {n} task{'s' * (n != 1)}, before its join()"
                )
                run.log.warning("plan truncated", error=str(e), partial_chars=len(e.partial))
                if run.current_call is not None:
                    run.current_call.finish(f"{type(e).__name__}: {_text(e)}")
            except LLMError as e:
                if not e.partial:
                    raise
                if run.current_call is not None:
                    run.current_call.finish(f"{type(e).__name__}: {_text(e)}")
                problem = f"the planner's stream broke off ({type(e).__name__}: {e})"
                run.log.warning("planner stream broke", error=str(e), partial_chars=len(e.partial))
            except BudgetExceeded as e:
                # a plan already read to its join() is whole: its tasks run to the end, and the
                # budget check before the joiner stops the run (no plan is cut short by the
                # usage report that follows its last line)
                if not rnd.joined:
                    cut = e
                    if run.current_call is not None:
                        run.current_call.finish(f"{type(e).__name__}: {_text(e)}")
            finally:
                run.preempt = None
        if cut is not None:
            dispatched = len(rnd.plan.tasks) if not self.hold else 0
            run.plans.append(rnd.plan_text())
            run.emit(PlanFinished, plan=plan_no, tasks=dispatched, joined=False, preempted=True)
            await run.settle(d)
            why = f"{cut} while plan {plan_no} streamed; it was cut after {dispatched} tasks"
            raise Stop("stopped", why)
        if problem is None and (refused := run.submit_plan(d, held, plan_no)) is not None:
            problem = refused[1]
        if problem is None and not scope.cancelled_caught and not rnd.joined:
            n = len(rnd.plan.tasks)
            problem = f"plan {plan_no} ended without join() after {n} task{'s' * (n != 1)}"
        return scope.cancelled_caught, problem


@dataclass(frozen=True, slots=True)
class BaselineTurns:
    """The baselines, as their peers run them: one LLM turn after another, each a batch of
    calls that all run before the next turn (``parallel_fc``: OpenAI parallel function
    calling), or a single call (``one_call=True``: ``react``).

    Turns use native tool calling (:meth:`LLM.stream_calls <tomasulo.planner.LLM.stream_calls>`):
    the toolset goes in ``tools``, ``parallel_tool_calls`` is false for ``react``, each call's
    result goes back as a ``tool`` message, and a turn that answers with text and no call is
    the run's answer: no joiner call. Each turn's prompt is the conversation so far, so it
    extends the one before (a prefix cache serves it). Calls cannot refer to each other's
    results (``$k``): the model copies what it needs into the arguments, as with any function
    calling API.

    On the ``plain`` dialect (a server that may not take ``tools``) the turns are plan text
    instead, one task (``react``) or one batch per turn, and the joiner writes the answer.
    """

    mode: Mode = "parallel_fc"
    one_call: bool = False
    prompt: Literal["plan", "react", "parallel_fc"] = "parallel_fc"
    resumable: bool = False

    async def drive(self, run: Run, d: Dispatcher) -> None:
        """Turn after turn: the model calls tools (or none, to answer), the calls run, repeat."""
        planner = run.require_planner()
        llm = planner.llm
        # a model that takes no grammar (``plain``) may not take ``tools`` either
        if llm.grammar_form() is None or not isinstance(llm, ToolCallingModel):
            await self._text_turns(run, d, planner)
            return
        specs = tool_specs(run.config.tools)
        mode: Literal["react", "parallel_fc"] = "react" if self.one_call else "parallel_fc"
        messages: list[dict[str, Any]] = turn_messages(run.query, mode, instructions=run.instructions)
        max_tokens = planner.max_tokens(1 if self.one_call else run.config.max_tasks)
        next_id = 1
        for turn in range(1, run.config.max_turns + 1):
            run.check_budget()
            run.emit(PlanStarted, plan=turn, start_id=next_id, reason="" if turn == 1 else "next turn")
            text: list[str] = []
            calls: list[FunctionCall] = []
            try:
                with run.llm_call("turn", llm, turn) as record:
                    stream = llm.stream_calls(
                        messages,
                        tools=specs,
                        parallel_tool_calls=not self.one_call,
                        max_tokens=max_tokens,
                        usage=run.usage,
                        watch=run.config.budget.check,
                    )
                    async with aclosing(stream) as items:
                        async for item in items:
                            if isinstance(item, FunctionCall):
                                line = _task_line(next_id + len(calls), item)
                                calls.append(item)
                                record.on_text(line)
                            else:
                                text.append(item)
            except BudgetExceeded as e:
                run.plans.append(_turn_text(next_id, calls))
                raise Stop("stopped", f"{e} while turn {turn} streamed; its calls did not run") from None
            run.plans.append(_turn_text(next_id, calls))
            run.emit(PlanFinished, plan=turn, tasks=len(calls), joined=not calls)
            if not calls:  # the model answered
                run.answer = "".join(text).strip()
                return
            messages.append(
                {
                    "role": "assistant",
                    "content": "".join(text) or None,
                    "tool_calls": [c.wire() for c in calls],
                }
            )
            submitted, problem = self._submit_calls(run, d, next_id, calls, turn)
            await d.wait()
            outcomes = d.outcomes
            for tid, call in zip(range(next_id, next_id + len(calls)), calls, strict=True):
                messages.append(call.result_message(_result_text(outcomes.get(tid), submitted.get(tid))))
            # what else was said during the turn (a user's message) is heard in the next turn
            # and kept in the result, never dropped
            for said in (m for m in run.drain_signals() if m.startswith(USER_SAID)):
                run.interrupts.append(said)
                messages.append({"role": "user", "content": said[0].upper() + said[1:]})
            next_id += len(calls)  # turns number their calls; ids are never reused
            if run.deadline_hit:  # no call could run any more: answer with what exists
                await run.final_answer(d, "the tools' deadline passed")
            if problem is not None:  # the model hears why in the call's result, as a replan would
                run.interrupts.append(problem)
                run.replan_allowed(problem)
        raise Stop("stopped", f"turn bound reached ({run.config.max_turns})")

    def _submit_calls(
        self, run: Run, d: Dispatcher, first_id: int, calls: list[FunctionCall], turn: int
    ) -> tuple[dict[int, str], str | None]:
        """Submit a turn's calls as tasks; returns why each one not submitted was not, and the
        first problem. As in streaming mode, the calls before a refused one run and the rest
        are dropped."""
        why: dict[int, str] = {}
        problem: str | None = None
        for tid, call in zip(range(first_id, first_id + len(calls)), calls, strict=True):
            if problem is not None:
                why[tid] = f"not run: {problem}"
                continue
            try:
                task = Task(tid, call.name, kwargs=call.args())
            except (LLMResponseError, PlanError, TypeError, ValueError) as e:
                problem = f"task {tid} was refused: {_text(e)}"
            else:
                problem = run.submit(d, task, turn)
            if problem is not None:
                why[tid] = problem
        return why, problem

    async def _text_turns(self, run: Run, d: Dispatcher, planner: Planner) -> None:
        """The ``plain`` dialect's turns: plan text under the turn's prompt, then the joiner."""
        start_id = 1
        max_tasks = 1 if self.one_call else run.config.max_tasks
        max_turns = run.config.max_turns
        for turn in range(1, max_turns + 1):
            run.check_budget()
            ctx = run.context(start_id, None, max_tasks)
            run.emit(PlanStarted, plan=turn, start_id=start_id, reason="" if turn == 1 else "next turn")
            rnd = planner.start(ctx, run.usage, watch=run.config.budget.check)
            tasks: list[Task] = []
            invalid: str | None = None
            try:
                with run.llm_call("turn", planner.llm, turn) as call:
                    rnd.on_text = call.on_text
                    async with aclosing(rnd.tasks()) as stream:
                        async for task in stream:
                            tasks.append(task)
            except BudgetExceeded as e:
                run.plans.append(rnd.plan_text())
                raise Stop("stopped", f"{e} while turn {turn} streamed; its calls did not run") from None
            except PlanError as e:
                invalid = f"the turn was invalid at line {e.line}, column {e.column}: {e.message}"
                run.interrupts.append(invalid)
                run.log.warning("turn error", error=str(e))
            if run.prompt_prefix is None and rnd.messages:
                run.prompt_prefix = rnd.messages[:2]
            run.plans.append(rnd.plan_text())
            run.emit(PlanFinished, plan=turn, tasks=len(tasks), joined=rnd.joined)
            if not tasks:
                if invalid is None:
                    break  # the model called no tool: time to answer
                # As in streaming mode, a turn that broke before its first call is retried with
                # the error (bounded by max_replans), not taken as the end of the run.
                run.replan_allowed(invalid)
                continue
            problem: str | None = None
            for task in tasks:  # the whole turn is known before any call runs, as in function calling
                if (problem := run.submit(d, task, turn)) is not None:
                    break  # as in streaming mode: the calls before it run, the rest are dropped
            await d.wait()
            # the next turn sees each call's outcome in its reports; what else was said (a user's
            # message) is heard there too and kept in the result, never dropped
            run.interrupts.extend(m for m in run.drain_signals() if m.startswith(USER_SAID))
            start_id = ctx.start_id + len(tasks)  # turns number their calls; ids are never reused
            if run.deadline_hit:  # no call could run any more: answer with what exists
                await run.final_answer(d, "the tools' deadline passed")
            if problem is not None:  # the next turn hears why, as a replan would
                run.interrupts.append(problem)
                run.replan_allowed(problem)
        else:
            raise Stop("stopped", f"turn bound reached ({max_turns})")
        decision = await run.join(d)
        run.answer = decision.answer if decision.action == "finish" else decision.feedback


def _task_line(tid: int, call: FunctionCall) -> str:
    """A call as a line of plan text (the run's ``plans`` and ``PlanDelta`` show turns so)."""
    try:
        return Task(tid, call.name, kwargs=call.args()).to_text() + "\n"
    except (LLMResponseError, PlanError, TypeError, ValueError):
        return f"{tid}. {call.name}({call.arguments})\n"


def _turn_text(first_id: int, calls: list[FunctionCall]) -> str:
    return "".join(_task_line(first_id + i, c) for i, c in enumerate(calls))


def _result_text(outcome: Outcome | None, why: str | None) -> str:
    """A call's result as its ``tool`` message says it: the value, or what happened."""
    if why is not None:
        return f"ERROR: {why}"
    if outcome is None:
        return "ERROR: the call did not finish"
    if outcome.status == "succeeded":
        return stringify(outcome.value)
    return f"{outcome.status.upper()}: {outcome.message or 'no message'}"


_STRATEGIES: dict[str, Strategy] = {
    "stream": StreamingRounds(),
    "plan_then_execute": StreamingRounds("plan_then_execute", hold=True),
    "react": BaselineTurns("react", one_call=True, prompt="react"),
    "parallel_fc": BaselineTurns(),
}


def strategy_for(mode: str) -> Strategy:
    """The strategy of a mode by name.

    Raises:
        ConfigError: ``mode`` is not one of :data:`Mode`.
    """
    try:
        return _STRATEGIES[mode]
    except KeyError:
        raise ConfigError(f"unknown mode {mode!r}; choose one of {', '.join(get_args(Mode))}") from None
