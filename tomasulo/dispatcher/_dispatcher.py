"""The task fetching unit: starts each task the moment its inputs exist.

Each task keeps a count of unresolved inputs. A finishing task decrements the counts of its
dependents; those that reach zero go to the ready queue, and a free worker takes them at once.
Nothing polls and nothing sleeps: the only waits are on anyio events, limiters and the tools.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import heapq
import itertools
import logging
import os
import time
from collections import deque
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping
from types import MappingProxyType, TracebackType
from typing import Any, Literal

import anyio
from anyio import CancelScope, CapacityLimiter, WouldBlock
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from .._text import safe_str
from ..exceptions import (
    DispatchError,
    Interrupt,
    ReferenceResolutionError,
    ToolArgumentError,
    ToolError,
    ToolExecutionError,
    ToolOutputError,
    ToolTimeout,
)
from ..executors import Executor, LocalExecutor, check_output, raised_on_thread
from ..grammar import JOIN, Plan, Task
from ..tools import MAX_MESSAGE_CHARS, NotJSONError, RunContext, Tool, Toolset, to_json_value
from ._events import (
    Event,
    InterruptRaised,
    Outcome,
    TaskAbandoned,
    TaskRestored,
    TaskRetrying,
    make_outcome,
)
from ._journal import ENDED, PLANNED, READY, STARTED, EventCallback, RunJournal, Subscription, restore_map
from ._limits import DEFAULT_LIMITS, Limits
from ._node import RestoredNode, TaskNode, ToolInfo
from ._order import plan_order
from ._watch import CallWatch

__all__ = ["Dispatcher"]

logger = logging.getLogger("tomasulo.dispatcher")

_now = time.monotonic
_RUN_PREFIX = os.urandom(3).hex()
_run_numbers = itertools.count(1)


def _new_run_id() -> str:
    """Hex digits, random per process, then a counter: cheaper than a uuid, never repeated."""
    return f"{_RUN_PREFIX}{next(_run_numbers):06x}"


#: A worker yields to the event loop after this many calls in a row (see ``_worker``).
_STREAK = 64
#: At most this many idle workers stay parked; more return (a burst of blocking calls needs a
#: worker each, and tearing hundreds down at once would add milliseconds to the run's end).
_MAX_PARKED = 8
#: ``run_plan`` lets each of a whole plan's first ``_EAGER`` tasks that can start start before
#: it submits the next, then lets the loop run once every ``_SUBMIT_BATCH`` submits.
_EAGER = 32
_SUBMIT_BATCH = 128
#: It then binds the arguments of the plan's waiting tasks this many per loop step.
_BIND_BATCH = 32
#: At most this many workers are woken (or started) and not yet running at once. A burst of
#: hundreds of ready tasks then starts over many short loop steps, not one long one, so calls
#: that finish meanwhile are seen within a step; ready tasks wait in rank order, not in the loop.
_MAX_WAKING = 16


#: A call with a timeout that returns later than this past it, without being stopped, is late.
_LATE_SLACK = 0.02
#: Result types that need no conversion to JSON (checked by exact type, before anything else).
_JSON_SCALARS = frozenset({str, int, bool, type(None)})


def _backend_checkpoint() -> Callable[[], Awaitable[None]]:
    """``anyio.lowlevel.checkpoint`` without its per-call backend lookup.

    On asyncio, anyio's checkpoint is ``asyncio.sleep(0)`` (cancellation reaches the task at any
    await); on other backends, anyio's own.
    """
    try:
        on_asyncio = asyncio.current_task() is not None
    except RuntimeError:  # no asyncio loop running in this thread
        on_asyncio = False
    if on_asyncio:
        return functools.partial(asyncio.sleep, 0)
    return anyio.lowlevel.checkpoint


def _forget_tasks(tasks: Iterable[asyncio.Task[None]], run_id: str) -> None:
    """Take workers running abandoned calls out of ``asyncio.all_tasks()``, so that closing the
    event loop (``asyncio.run``, ``anyio.run``) does not wait for a coroutine that ignores
    cancellation: the process can exit, and asyncio logs the task as destroyed while pending.

    This uses asyncio's private ``_unregister_task``; where that is missing or no longer works,
    a warning says that the process may wait for the abandoned calls at exit."""
    tasks = list(tasks)
    unregister = getattr(asyncio.tasks, "_unregister_task", None)
    if unregister is not None:
        for task in tasks:
            unregister(task)
    left = [task for task in asyncio.all_tasks() if task in tasks]
    if left:
        logger.warning(
            "run %s: %d abandoned tool call(s) could not be taken out of asyncio's task list "
            "(this Python has no working asyncio.tasks._unregister_task); closing the event loop "
            "(asyncio.run, anyio.run) may wait for them, so the process may not exit until they "
            "return. Make the tool let asyncio.CancelledError propagate",
            run_id,
            len(left),
        )


def _drop(_: object) -> None:
    """Nothing: a callback whose only use is holding its argument until the loop runs it."""


class Dispatcher:
    """Runs the tasks of one run, each as soon as its inputs exist.

    >>> async def main(tools: Toolset, plan: Plan) -> None:
    ...     async with Dispatcher(tools) as d:
    ...         for task in plan.tasks:
    ...             d.submit(task)
    ...         d.close_input()
    ...         await d.wait()
    ...     print(d.results)

    Tasks may be submitted at any time while the dispatcher runs, including after earlier ones
    finished (a replan continues the numbering and may use old results). Each task ends exactly
    once: succeeded, failed, skipped (an input failed or was cancelled) or cancelled. Events go to
    ``on_event`` (called synchronously, in order) and to every :meth:`events` iterator; with
    neither, they are built when :attr:`history` is first read (same objects, same ``seq`` and
    ``ts``), which saves their cost in runs nobody watches.

    Events are numbered once in the run's :class:`RunJournal`: pass ``journal`` to write into
    a run's (the Orchestrator does; its ``run_id`` and ``on_event`` are then the journal's), or
    the dispatcher makes its own. ``on_interrupt`` is called with each :class:`InterruptRaised`
    as it happens, whether or not anyone reads the journal.

    ``restore`` seeds outcomes recorded earlier (say, :func:`outcomes_of` a stored journal):
    those tasks count as ended and never run, a reference to one resolves to its recorded value
    (a task using a restored failure is skipped), and each gets a :class:`TaskRestored` event.
    Submit only the tasks that did not end; submitting a restored id is refused like any
    repeated id.

    Leaving the ``async with`` block normally waits for every submitted task; leaving it with an
    exception cancels what is unfinished. The dispatcher enters the executor for the run
    (executors built on :class:`~tomasulo.executors.BaseExecutor` count entries, so one can
    serve many runs); without one it uses a :class:`~tomasulo.executors.LocalExecutor`.
    """

    def __init__(
        self,
        tools: Toolset,
        executor: Executor | None = None,
        *,
        limits: Limits | None = None,
        run_id: str | None = None,
        on_event: EventCallback | None = None,
        journal: RunJournal | None = None,
        restore: Iterable[Outcome] | Mapping[int, Outcome] | None = None,
        on_interrupt: Callable[[InterruptRaised], None] | None = None,
        deps: Any = None,
    ) -> None:
        if journal is not None and (
            on_event is not None or (run_id is not None and run_id != journal.run_id)
        ):
            raise DispatchError(
                "give the Dispatcher a journal, or a run_id and on_event for a journal of its own, "
                "not both (the journal's run_id and on_event are the run's)"
            )
        self.tools = tools
        #: What tools that take a :class:`~tomasulo.tools.RunContext` get as ``ctx.deps``.
        self.deps = deps
        self.executor: Executor = executor if executor is not None else LocalExecutor()
        self._local = type(self.executor) is LocalExecutor  # async tools may be awaited directly
        self._on_loop = isinstance(self.executor, LocalExecutor)  # async tools run on this loop
        self._cancel_exc: type[BaseException] = asyncio.CancelledError
        self.limits = limits if limits is not None else DEFAULT_LIMITS
        if journal is None:
            journal = RunJournal(run_id if run_id is not None else _new_run_id(), on_event=on_event)
            self._owns_journal = True
        else:
            self._owns_journal = False
        self._journal = journal
        self.run_id = journal.run_id
        self._on_interrupt = on_interrupt
        self._nodes: dict[int, TaskNode | RestoredNode] = {}
        self._outcomes: dict[int, Outcome] = {}
        self._results: dict[int, Any] = {}
        self._lookup = self._results.__getitem__  # resolves references
        self._ready: deque[TaskNode] = deque()  # ready tasks without a rank, in order
        self._ranked: list[tuple[int, int, TaskNode]] = []  # ranked ones: a heap, highest first
        self._busy = 0  # workers running a task
        self._waking = 0  # workers woken or started that have not looked at the queue yet
        self._idle_workers: list[anyio.Event] = []
        self._unfinished = 0
        self._idle: anyio.Event | None = None
        self._workers_done: anyio.Event | None = None
        self._tool_limiters: dict[str, CapacityLimiter] = {}
        self._tool_waiting: dict[str, deque[TaskNode]] = {}
        self._lanes: dict[str, deque[TaskNode]] = {}
        self._state: Literal["new", "running", "closed"] = "new"
        self._input_closed = False
        self._expired = False
        self._defer_binding = False  # while _submit_plan puts a whole plan in place
        self._tg: anyio.abc.TaskGroup | None = None
        # On asyncio, workers are plain tasks (anyio's start_soon costs 30 µs a task, six times
        # as much); the run tracks them itself. Elsewhere they run in the task group.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._workers: set[asyncio.Task[None]] = set()
        self._workers_gone: anyio.Event | None = None
        self._abandoned: list[int] = []
        self._unwinding: set[int] = set()  # cancelled tasks whose calls have not returned yet
        self._worker_error: BaseException | None = None
        self._ctrl_c: KeyboardInterrupt | None = None  # passed on to the caller at the end
        self._stop_watch: anyio.Event | None = None
        self._infos: dict[Tool, ToolInfo] = {}
        self._new_event: Callable[[], anyio.Event] = anyio.Event
        self._new_scope: Callable[[], CancelScope] = CancelScope
        self._checkpoint: Callable[[], Awaitable[None]] = anyio.lowlevel.checkpoint
        for outcome in restore_map(restore).values():
            self._restore(outcome)

    # -- public state ---------------------------------------------------------------------------

    @property
    def outcomes(self) -> Mapping[int, Outcome]:
        """Outcomes so far, by task id (a live read-only view)."""
        return MappingProxyType(self._outcomes)

    @property
    def results(self) -> Mapping[int, Any]:
        """Values of the tasks that succeeded, by task id (a live read-only view)."""
        return MappingProxyType(self._results)

    @property
    def history(self) -> tuple[Event, ...]:
        """Every event of the run so far, in order."""
        return tuple(self._journal.history())

    @property
    def journal(self) -> RunJournal:
        """The run's journal: the one given, or the dispatcher's own."""
        return self._journal

    @property
    def pending(self) -> int:
        """How many submitted tasks have no outcome yet."""
        return self._unfinished

    @property
    def input_closed(self) -> bool:
        """Whether :meth:`close_input` was called."""
        return self._input_closed

    # -- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> Dispatcher:
        if self._state != "new":
            raise DispatchError("a Dispatcher runs once; create a new one for another run")
        await self.executor.__aenter__()
        try:
            self._tg = anyio.create_task_group()
            await self._tg.__aenter__()
        except BaseException:
            await self.executor.__aexit__(None, None, None)
            raise
        self._state = "running"
        # The running backend's own Event and CancelScope classes: creating them skips anyio's
        # backend lookup (for a scope, 3 of the 8 µs it costs a worker to open and close one).
        self._new_event = type(anyio.Event())
        self._new_scope = type(CancelScope())
        self._checkpoint = _backend_checkpoint()
        self._cancel_exc = anyio.get_cancelled_exc_class()
        if isinstance(self._checkpoint, functools.partial):  # on asyncio
            self._loop = asyncio.get_running_loop()
        if self.limits.deadline is not None:
            self._stop_watch = anyio.Event()
            self._tg.start_soon(self._watch_deadline, self.limits.deadline, self._stop_watch)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._tg is not None
        try:
            if exc_type is None:
                self._input_closed = True
                await self.wait()
        finally:
            if self._unfinished:
                self.cancel()
            self._input_closed = True
            self._state = "closed"
            if self._stop_watch is not None:
                self._stop_watch.set()
            try:
                try:
                    if self._busy:
                        await self._await_workers()
                    # Parked workers see the closed state when woken and return; waking them is
                    # far cheaper than cancelling hundreds of them. Calls still running after the
                    # grace (an async tool ignoring cancellation) are cancelled with the group.
                    self._wake_idle_workers()
                    if self._busy:
                        self._tg.cancel_scope.cancel()
                        for task in self._workers:
                            task.cancel()
                        if self._loop is not None:
                            # On asyncio the workers are plain tasks: the run stops waiting for
                            # calls that ignore cancellation, and names them (on other backends
                            # the task group waits for them; see Limits.cancel_grace).
                            self._abandon_running()
                finally:
                    self._close_journal()  # after TaskAbandoned events, so that iterators see them
                # The body's own exception (if any) propagates by itself, not inside a group.
                await self._tg.__aexit__(None, None, None)
                if len(self._workers) > self._busy:  # woken workers returning, cancelled ones unwinding
                    self._workers_gone = anyio.Event()
                    with CancelScope(shield=True):
                        await self._workers_gone.wait()
                if self._abandoned:
                    _forget_tasks(self._workers, self.run_id)
                if self._ctrl_c is not None:
                    raise self._ctrl_c
                if self._worker_error is not None:
                    raise DispatchError(
                        f"run {self.run_id}: a dispatcher worker failed"
                    ) from self._worker_error
            finally:
                await self.executor.__aexit__(exc_type, exc, tb)
        return None

    def _spawn_worker(self) -> None:
        name = f"tomasulo dispatcher {self.run_id}"
        if self._loop is None:
            assert self._tg is not None
            self._tg.start_soon(self._worker, name=name)
            return
        task = self._loop.create_task(self._worker(), name=name)
        self._workers.add(task)
        task.add_done_callback(self._worker_done)

    def _worker_done(self, task: asyncio.Task[None]) -> None:
        """A worker task ended: forget it; a failure (a bug, not a tool's error) ends the run."""
        workers = self._workers
        workers.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            logger.error("run %s: a dispatcher worker failed", self.run_id, exc_info=error)
            if self._worker_error is None:
                self._worker_error = error
                if self._tg is not None:
                    self._tg.cancel_scope.cancel()  # the host's wait ends; __aexit__ raises it
        if len(workers) <= self._busy and self._workers_gone is not None:
            self._workers_gone.set()  # every worker left runs an abandoned call, if any

    async def _await_workers(self) -> None:
        """Give cancelled calls ``cancel_grace`` to unwind; name the ones that do not."""
        self._workers_done = anyio.Event()
        with CancelScope(shield=True), anyio.move_on_after(self.limits.cancel_grace) as scope:
            await self._workers_done.wait()
        if scope.cancelled_caught and self._busy and self._loop is None:  # asyncio abandons them
            logger.warning(
                "run %s: %d tool call(s) did not stop within %.3f s of being cancelled; "
                "waiting for them (an async tool is ignoring cancellation)",
                self.run_id,
                self._busy,
                self.limits.cancel_grace,
            )

    def _abandon_running(self) -> None:
        """Stop waiting for the calls still running after the cancel grace: each one's outcome
        (already recorded) and a :class:`TaskAbandoned` event say so, and a warning names it."""
        grace = self.limits.cancel_grace
        # Events not built yet (nobody listened) are built now, from the outcomes as they were
        # when they happened: the TaskCancelled event says "Cancelled" in every run, and the
        # TaskAbandoned event after it carries the outcome as it ends.
        self._journal.history()
        for node in self._nodes.values():
            if node.scope is None or node.tid in self._abandoned:
                continue
            self._abandoned.append(node.tid)
            note = (
                f"its call ignored cancellation for {grace:g} s (the cancel grace) and was "
                "abandoned, still running"
            )
            outcome = node.outcome
            if outcome is not None:
                outcome = dataclasses.replace(
                    outcome, error_type="Abandoned", message=f"{outcome.message}; {note}"
                )
                node.outcome = self._outcomes[node.tid] = outcome
            message = f"task {node.tid} ({node.name}): {note}"
            logger.warning("run %s: %s; the run ends without it", self.run_id, message)
            self._journal.emit(
                TaskAbandoned(
                    **self._stamp(node.tid), tool=node.name, grace=grace, message=message, outcome=outcome
                )
            )

    @property
    def abandoned(self) -> tuple[int, ...]:
        """Ids of the tasks whose calls ignored cancellation and were left running when the
        run ended (see :attr:`Limits.cancel_grace <tomasulo.dispatcher.Limits>`)."""
        return tuple(self._abandoned)

    async def _watch_deadline(self, seconds: float, stop: anyio.Event) -> None:
        with anyio.move_on_after(seconds):
            await stop.wait()
            return
        self._expire(seconds)

    def _expire(self, seconds: float) -> None:
        self._expired = True
        reason = f"the run's deadline of {seconds:g} s passed"
        self._interrupt(InterruptRaised(**self._stamp(None), source="deadline", reason=reason))
        self._cancel_nodes(None, reason)

    # -- input ----------------------------------------------------------------------------------

    def submit(self, task: Task, *, rank: int = 0) -> None:
        """Add a task; it starts as soon as every task it references has succeeded.

        References to tasks that already finished resolve at once; a task whose input failed or
        was cancelled is skipped at once. Raises :class:`DispatchError` for a task id that is
        taken, a reference to an unknown or later task, an unknown tool, or a closed input.

        ``rank`` (0 or more) matters only when more tasks are ready than can start at once (a
        concurrency limit, or a burst of hundreds): ranked tasks start before unranked ones, a
        higher rank first, then by id. :meth:`submit_all` ranks a plan's tasks (at least 1) by the
        longest chain of tasks through each, so the critical path goes first; ranks compare
        chains within one batch, not across batches.
        """
        if rank < 0:
            raise DispatchError(f"task {task.id}: rank must be 0 or more, got {rank}")
        tid = task.id
        tool = self._check_task(task)
        info = self._infos.get(tool)
        if info is None:
            info = self._infos[tool] = ToolInfo(tool)
        node = TaskNode(task, info, _now())
        if rank:
            node.rank = rank
        deps = node.deps
        nodes = self._nodes
        for dep in deps:
            if dep >= tid or dep not in nodes:
                for bad in sorted(deps):  # name the first bad one, whatever the set's order
                    if bad >= tid:
                        raise DispatchError(
                            f"task {tid} references ${bad}, which is not an earlier task; "
                            "a task may only use the results of tasks with smaller ids"
                        )
                    if bad not in nodes:
                        raise DispatchError(f"task {tid} references ${bad}, which was never submitted")
        now = node.planned_at
        nodes[tid] = node
        self._unfinished += 1
        self._journal.task(PLANNED, node)
        if info.sequential:
            self._lanes.setdefault(tool.name, deque()).append(node)
        if self._expired:
            self._finish(node, self._cancelled_outcome(node, "the run's deadline had passed"))
            self._pump()
            return
        cause: TaskNode | RestoredNode | None = None
        for dep in deps:
            up = nodes[dep]
            if up.outcome is None:
                if up.dependents is None:
                    up.dependents = [node]
                else:
                    up.dependents.append(node)
                node.waiting += 1
            elif up.outcome.status != "succeeded" and (cause is None or dep < cause.tid):
                cause = up  # the first input in id order that did not succeed
        if cause is not None:
            self._finish(node, self._skipped_outcome(node, cause))
            self._pump()
            return
        if node.waiting == 0:
            self._make_ready(node, now)
        elif not self._defer_binding:
            node.bind()  # while it waits, not when its last input ends
        self._pump()

    def submit_all(self, tasks: Iterable[Task]) -> None:
        """Submit several tasks (``join()`` is left out), critical path first.

        The tasks without inputs go first, those heading the longest chains of dependents first
        (counting tasks: durations are not known in advance); the rest follow level by level.
        Each task is ranked by the longest chain through it (see :meth:`submit`). None of them
        starts before this returns. Calls of a ``sequential`` tool still run in plan order, and
        a batch that :meth:`submit` would reject is submitted in plan order, so the error comes
        at the same task.
        """
        for task, rank in self.submit_order(tasks):
            self.submit(task, rank=rank)

    def submit_order(self, tasks: Iterable[Task]) -> list[tuple[Task, int]]:
        """The order :meth:`submit_all` submits ``tasks`` in (``join()`` left out), with ranks.

        For a caller that submits a whole plan itself, one :meth:`submit` at a time (to record
        each task, or to stop at the first one refused): ``for task, rank in
        d.submit_order(plan.tasks): d.submit(task, rank=rank)``.
        """
        return self._plan_order(tasks)

    async def _submit_plan(self, tasks: Iterable[Task]) -> None:
        """:meth:`submit_all`, letting the first tasks start while the rest are submitted.

        Submitting costs microseconds a task, so a plan of thousands would hold back its first
        calls by milliseconds. Instead the plan's first task starts before the rest is ordered
        (when no limit makes it take a slot a longer chain may need); for the next ``_EAGER``
        submits (the heads of the longest chains), the loop gets a turn whenever a submit woke a
        worker, so each of them starts before the next is submitted; after that, once every
        ``_SUBMIT_BATCH`` submits, so the rest of the plan is in place before early calls end.
        Binding the arguments of the tasks that wait for inputs (:meth:`TaskNode.bind`) waits
        until the whole plan is in place and every task that could start has started.
        """
        checkpoint = self._checkpoint
        batch = tasks if isinstance(tasks, list | tuple) else list(tasks)
        count = 0
        chains: dict[int, int] = {}
        if batch and self._unlimited(batch[0].tool):
            # A batch's first task cannot use any other task of the batch, and plans list their
            # first steps first: it starts at once, while the rest is put in order. With no
            # limit on how many calls run at once, that takes no slot from a longer chain.
            self.submit(batch[0], rank=1)
            chains[batch[0].id] = 1  # chains through it are counted from it
            count = 1
            batch = batch[1:]
            if self._waking:
                await checkpoint()
        order = self._plan_order(batch, chains)
        self._defer_binding = True
        try:
            for task, rank in order:
                self.submit(task, rank=rank)
                count += 1
                if (self._waking and count <= _EAGER) or count % _SUBMIT_BATCH == 0:
                    await checkpoint()
        finally:
            self._defer_binding = False
        # Then the tasks that wait are bound, soonest needed first, a few per loop step so that
        # calls ending meanwhile are seen, and only once the workers woken for tasks that can
        # start have taken them (those calls go first).
        nodes = self._nodes
        count = 0
        for task, _ in order:
            node = nodes[task.id]
            if node.outcome is None and node.waiting:  # type: ignore[union-attr]  # a TaskNode
                while self._waking:  # workers are still taking tasks that can start
                    await checkpoint()
                node.bind()  # type: ignore[union-attr]
                count += 1
                if count % _BIND_BATCH == 0:
                    await checkpoint()

    def _unlimited(self, name: str) -> bool:
        """Whether a call of tool ``name`` can start without taking a slot another may need."""
        if name == JOIN or self.limits.max_concurrency is not None:
            return False
        tool = self.tools.get(name)
        if tool is None:
            return True  # submit() names the unknown tool
        policy = tool.policy
        return policy.max_concurrency is None and not policy.sequential

    def _plan_order(
        self, tasks: Iterable[Task], chains: dict[int, int] | None = None
    ) -> list[tuple[Task, int]]:
        """The batch in submit order, each task with its rank, at least 1 (see :func:`plan_order`)."""

        def sequential(name: str) -> bool | None:
            tool = self.tools.get(name)
            if tool is None or tool.fn is None:
                return None  # submit() refuses it: the batch keeps plan order
            return tool.policy.sequential

        return plan_order(tasks, self._nodes, sequential, chains)

    def _check_task(self, task: Task) -> Tool:
        """The task's tool; :class:`DispatchError` if the run cannot take the task."""
        if self._state != "running":
            raise DispatchError(
                "submit() needs a running dispatcher: use `async with Dispatcher(...) as d:`"
                if self._state == "new"
                else "this dispatcher's run has ended; create a new one"
            )
        if self._input_closed:
            raise DispatchError(f"task {task.id} submitted after close_input()")
        tid = task.id
        if tid in self._nodes:
            raise DispatchError(
                f"task id {tid} is already taken in run {self.run_id}; ids must be unique "
                "(a replan continues the numbering)"
            )
        tool = self.tools.get(task.tool)
        if tool is None:
            known = ", ".join(self.tools.names) or "none"
            raise DispatchError(f"task {tid} calls unknown tool {task.tool!r} (known tools: {known})")
        if tool.fn is None:
            raise DispatchError(
                f"task {tid} calls tool {tool.name!r}, which has no function to run; "
                "give the toolset a callable for it"
            )
        return tool

    def close_input(self) -> None:
        """No more tasks will come; once every task has an outcome, event iterators end."""
        self._input_closed = True
        if self._unfinished == 0 and not self._unwinding:
            self._close_journal()
        if self._unfinished <= self._busy:
            self._wake_idle_workers()  # nothing is left to start: parked workers may return

    async def wait(self, ids: Iterable[int] | None = None) -> None:
        """Wait until the given tasks (default: every task submitted) have outcomes."""
        if ids is None:
            while self._unfinished:
                if self._idle is None:
                    self._idle = anyio.Event()
                await self._idle.wait()
            return
        for tid in ids:
            node = self._nodes.get(tid)
            if node is None:
                raise DispatchError(f"wait(): no task {tid} was submitted")
            if node.outcome is None:
                if node.done is None:
                    node.done = anyio.Event()
                await node.done.wait()

    def cancel(self, ids: Iterable[int] | None = None) -> None:
        """Cancel the given tasks (default: every unfinished one); their outcome is cancelled.

        Calls in flight are cancelled at once (sync tools on threads are abandoned). Dependents
        of a cancelled task that are not themselves cancelled are skipped.
        """
        self._cancel_nodes(ids, "cancelled by the caller")

    def _cancel_nodes(self, ids: Iterable[int] | None, reason: str) -> None:
        if ids is None:
            targets = [n for n in self._nodes.values() if n.outcome is None]
        else:
            targets = []
            for tid in ids:
                node = self._nodes.get(tid)
                if node is None:
                    raise DispatchError(f"cancel(): no task {tid} was submitted")
                targets.append(node)
        # Dependents first, so that cancelling everything leaves every task cancelled.
        targets.sort(key=lambda n: n.tid, reverse=True)
        for node in targets:
            if node.outcome is not None or not isinstance(node, TaskNode):
                continue
            scope = node.scope
            if scope is not None:
                self._unwinding.add(node.tid)  # events go on until its call returns or is abandoned
            self._finish(node, self._cancelled_outcome(node, reason))
            if scope is not None:
                scope.cancel()
        self._pump()

    def events(self, *, replay: bool = True, after: int | None = None) -> Subscription:
        """An async iterator over the run's events (see :meth:`RunJournal.events`).

        It starts after event ``after`` (a reader resuming passes the last ``seq`` it saw); by
        default with every event so far, or, without ``replay``, with the next one. For the
        dispatcher's own journal it ends when the run's events end: the input is closed and every
        task has an outcome, or the dispatcher exits; for a journal given to it, when its owner
        closes it.
        """
        if after is None:
            after = 0 if replay else self._journal.last_seq
        return self._journal.events(after=after)

    @classmethod
    async def run_plan(
        cls,
        tools: Toolset,
        tasks: Plan | Iterable[Task] | AsyncIterable[Task],
        executor: Executor | None = None,
        limits: Limits | None = None,
        *,
        on_event: EventCallback | None = None,
        run_id: str | None = None,
        deps: Any = None,
    ) -> dict[int, Outcome]:
        """Run a plan (or a stream of tasks, submitted as they arrive) and return the outcomes."""
        async with cls(tools, executor, limits=limits, on_event=on_event, run_id=run_id, deps=deps) as d:
            source = tasks.tasks if isinstance(tasks, Plan) else tasks
            if isinstance(source, AsyncIterable):
                async for task in source:
                    if task.tool != JOIN:
                        d.submit(task)
            else:
                await d._submit_plan(source)
            d.close_input()
            await d.wait()
        if d._loop is not None:
            # Freeing the run's state takes about 0.45 ms per 1,000 tasks: the loop's next step
            # does it, once the caller has the outcomes (on other backends, returning does).
            d._loop.call_soon(_drop, d)
        return d._outcomes  # the run is over and nothing else holds the dispatcher: no copy

    # -- events ---------------------------------------------------------------------------------

    def _close_journal(self) -> None:
        """The dispatcher's events have ended: close its own journal (a run closes its own)."""
        if self._owns_journal:
            self._journal.close()

    def _interrupt(self, event: InterruptRaised) -> None:
        self._journal.emit(event)
        if self._on_interrupt is not None:
            self._on_interrupt(event)

    def _restore(self, outcome: Outcome) -> None:
        """Seed a task that ended earlier: its outcome (and value) stand, it never runs."""
        tid = outcome.task_id
        if tid in self._nodes:
            raise DispatchError(f"restore: task {tid} is given twice")
        self._nodes[tid] = RestoredNode(outcome)
        self._outcomes[tid] = outcome
        if outcome.status == "succeeded":
            self._results[tid] = outcome.value
        self._journal.emit(TaskRestored(**self._stamp(tid), tool=outcome.tool, outcome=outcome))

    def _stamp(self, task_id: int | None) -> dict[str, Any]:
        return {"run_id": self.run_id, "seq": self._journal.next_seq(), "ts": _now(), "task_id": task_id}

    # -- scheduling -----------------------------------------------------------------------------

    def _make_ready(self, node: TaskNode, now: float) -> None:
        """The task's inputs exist: queue it, unless an earlier call of its sequential tool runs."""
        node.data_ready = True
        if node.info.sequential:
            lane = self._lanes[node.name]
            if lane[0] is not node:
                return  # an earlier call of this tool has not finished yet
        node.queued = True
        node.ready_at = now
        self._journal.task(READY, node)
        if node.rank:
            heapq.heappush(self._ranked, (-node.rank, node.tid, node))
        else:
            self._ready.append(node)

    def _take(self) -> TaskNode | None:
        """The next ready task that may start now (taking its tool slot), or ``None``."""
        ready = self._ready
        ranked = self._ranked
        while ranked or ready:
            node = heapq.heappop(ranked)[2] if ranked else ready.popleft()
            if node.outcome is not None:
                continue
            if node.info.limited:
                limiter = self._tool_limiters.get(node.name)
                if limiter is None:
                    limit = node.info.policy.max_concurrency
                    assert limit is not None
                    limiter = self._tool_limiters[node.name] = CapacityLimiter(limit)
                try:
                    limiter.acquire_on_behalf_of_nowait(node)
                except WouldBlock:
                    self._tool_waiting.setdefault(node.name, deque()).append(node)
                    continue
            return node
        return None

    def _pump(self) -> None:
        """Wake (or start) workers for the ready tasks that the run's limit lets start.

        As many workers wake at once as are busy (at least one), and never more than
        ``_MAX_WAKING``: calls that never suspend keep one worker busy, so it runs a burst of them
        back to back and few wake in vain, while calls that block keep their workers busy, so the
        number woken grows each loop step up to the cap. A burst of hundreds then starts over
        many short loop steps, and calls that end meanwhile are seen between them.
        """
        ready = len(self._ready) + len(self._ranked)
        waking = self._waking
        if waking >= ready or self._tg is None or self._state == "closed":
            return
        need = min(ready, max(self._busy, 1), _MAX_WAKING) - waking
        limit = self.limits.max_concurrency
        if limit is not None:
            need = min(need, limit - self._busy - waking)
        idle = self._idle_workers
        while need > 0:
            need -= 1
            self._waking += 1
            if idle:
                idle.pop().set()
            else:
                self._spawn_worker()

    async def _worker(self) -> None:
        """Take ready tasks and run them; park on an event when there are none.

        A worker serves many tasks, so starting a task usually costs a wake-up, not a new task;
        it returns when ``_MAX_PARKED`` others are already parked, or when nothing it could take
        can come any more (the input is closed and every task left is running). A worker holds
        one cancel scope across the calls it runs (``cancel()`` cancels the scope of the call's
        worker), and replaces it only after a cancellation used it up.
        """
        self._waking -= 1
        limit = self.limits.max_concurrency
        ready = self._ready
        ranked = self._ranked
        checkpoint = self._checkpoint
        new_scope = self._new_scope
        lookup = self._lookup
        local = self._local
        args: dict[str, Any] | None = None
        value: Any = None
        streak = 0
        lingered = False
        while True:
            with new_scope() as scope:
                while not scope.cancel_called:
                    node = self._take() if limit is None or self._busy < limit else None
                    if node is None:
                        if self._state == "closed" or (self._input_closed and self._unfinished <= self._busy):
                            # Every task left is running on another worker (or none is left):
                            # nothing can become ready that needs this one. Returning now, not
                            # at the run's end, keeps worker teardown off the last call's tail.
                            return
                        streak = 0
                        if not lingered:
                            # Stay awake for one loop step before parking: a task submitted or
                            # made ready meanwhile (a streamed plan's next task) starts without
                            # the cost of a wake-up. Counted as waking, so _pump wakes no other.
                            lingered = True
                            self._waking += 1
                            try:
                                await checkpoint()
                            finally:
                                self._waking -= 1
                            continue
                        lingered = False
                        if len(self._idle_workers) >= _MAX_PARKED:
                            return  # enough parked already: exit now, not all at the run's end
                        wake = self._new_event()
                        self._idle_workers.append(wake)
                        await wake.wait()
                        self._waking -= 1
                        continue
                    lingered = False
                    self._busy += 1
                    if ready or ranked:
                        self._pump()
                    if self._input_closed and self._idle_workers and self._unfinished <= self._busy:
                        self._wake_idle_workers()  # this was the last task to start
                    node.scope = scope
                    # Running the task, here rather than in a method: a coroutine less per task.
                    info = node.info
                    try:
                        try:
                            args = node.resolve(lookup)
                        except (ReferenceResolutionError, ToolArgumentError) as exc:
                            self._fail(node, exc, "failure")
                        else:
                            direct = info.direct
                            if direct is not None and local:
                                # The common case, with two coroutine layers fewer: what
                                # _attempt and LocalExecutor.call would do for an async tool
                                # with no timeout or checks.
                                node.attempts = 1
                                node.started_at = _now()
                                self._journal.task(STARTED, node)
                                value = await direct(**args)
                                if type(value) not in _JSON_SCALARS and node.outcome is None:
                                    value = self._json_result(node, value)
                            elif info.policy.retries == 0:
                                value = await self._attempt(node, args, 1)
                            else:
                                value = await self._with_retries(node, args)
                            if node.outcome is None:
                                self._succeed(node, value)
                    except Interrupt as exc:
                        self._fail(node, exc, "interrupt")
                    except (Exception, SystemExit, KeyboardInterrupt) as exc:
                        # SystemExit raised by a tool ends its task, not the process (on
                        # asyncio it would escape the event loop); so does KeyboardInterrupt
                        # raised by a sync tool on a thread. One raised on the loop may be a
                        # real Ctrl-C: it ends the run and reaches the caller (_interrupted).
                        self._fail(node, self._wrap(exc, node), "failure")
                        if isinstance(exc, KeyboardInterrupt) and not raised_on_thread(exc):
                            self._interrupted(node, exc)
                    finally:
                        try:
                            if info.limited:
                                self._release_tool_slot(node)
                        finally:
                            node.scope = None
                            if self._unwinding:
                                self._call_returned(node)
                            self._busy -= 1
                            if self._busy == 0 and self._workers_done is not None:
                                self._workers_done.set()
                    args = value = None  # a parked worker must not hold the last call's data
                    streak += 1
                    if streak == _STREAK:
                        # Calls that never suspend would otherwise hold the loop for a whole burst.
                        streak = 0
                        await checkpoint()

    def _interrupted(self, node: TaskNode, exc: KeyboardInterrupt) -> None:
        """A ``KeyboardInterrupt`` on the event loop (a Ctrl-C lands there, in whatever code
        runs): cancel the run, end the host's wait, and raise it from ``__aexit__``."""
        if self._ctrl_c is not None:
            return
        self._ctrl_c = exc
        logger.warning(
            "run %s: KeyboardInterrupt in task %d (%s); cancelling the run and passing it on",
            self.run_id,
            node.tid,
            node.name,
        )
        self._cancel_nodes(None, f"cancelled: the run was interrupted (KeyboardInterrupt in task {node.tid})")
        if self._tg is not None:
            self._tg.cancel_scope.cancel()  # the host's wait ends; __aexit__ raises it

    def _call_returned(self, node: TaskNode) -> None:
        """A cancelled task's call has returned: once none is left, the run's events may end."""
        self._unwinding.discard(node.tid)
        if not self._unwinding and self._input_closed and self._unfinished == 0:
            self._close_journal()

    def _release_tool_slot(self, node: TaskNode) -> None:
        limiter = self._tool_limiters.get(node.name)
        if limiter is None:
            return
        limiter.release_on_behalf_of(node)
        waiting = self._tool_waiting.get(node.name)
        while waiting:
            nxt = waiting.popleft()
            if nxt.outcome is None:
                if nxt.rank:
                    heapq.heappush(self._ranked, (-nxt.rank, nxt.tid, nxt))
                else:
                    self._ready.appendleft(nxt)
                break

    # -- running one task -----------------------------------------------------------------------

    async def _attempt(self, node: TaskNode, args: dict[str, Any], attempt: int) -> Any:
        tool = node.tool
        now = _now()
        node.attempts = attempt
        if node.started_at is None:
            node.started_at = now
        self._journal.started(node, now, attempt)
        timeout = node.info.policy.timeout
        tid = node.tid
        context = node.info.context
        if context is not None:
            ctx = RunContext(self.deps, run_id=self.run_id, task_id=tid, attempt=attempt, tool=tool.name)
            args = {**args, context: ctx}
        if timeout is None:
            value = await self.executor.call(tool, args, task_id=tid, attempt=attempt)
        else:
            call = self.executor.call(tool, args, task_id=tid, attempt=attempt)
            # Only an async tool awaited on this loop can hold the loop or swallow its
            # cancellation; calls on threads, processes or clusters are watched by nobody.
            watch = (
                CallWatch(call, now + timeout, self._cancel_exc)
                if node.info.on_loop and self._on_loop
                else None
            )
            with anyio.move_on_after(timeout) as limit:
                value = await (call if watch is None else watch)
            if limit.cancelled_caught:
                raise ToolTimeout(
                    f"timed out after {timeout:g} s (the tool's timeout)",
                    tool=tool.name,
                    task_id=tid,
                    attempt=attempt,
                )
            # Late by more than a loop step's slack, yet never stopped (a call ending as its
            # timer fires is not late): blamed only for what it did itself.
            if (elapsed := _now() - now) > timeout + _LATE_SLACK:
                self._late(node, attempt, timeout, elapsed, watch)
        if type(value) not in _JSON_SCALARS:
            value = self._json_result(node, value)  # before the output check: tuples are arrays
        if node.info.checks_output:
            check_output(tool, value, task_id=tid, attempt=attempt)
        return value

    def _late(
        self, node: TaskNode, attempt: int, timeout: float, elapsed: float, watch: CallWatch | None
    ) -> None:
        """A call that returned after its timeout without being stopped. Raise
        :class:`ToolTimeout` (its value is dropped) when that is the tool's own doing: it was
        cancelled and ran on, or it held the event loop itself (an async tool calling blocking
        code). Otherwise its timer fired late because something else held the loop: the value
        is kept, and a warning says the loop was blocked."""
        if watch is not None and (watch.cancelled or watch.overran > _LATE_SLACK):
            if watch.cancelled:
                why = "it ignored its cancellation and ran on"
                fix = "let asyncio.CancelledError propagate"
            else:
                why = "it blocked the event loop, so it could not be stopped"
                fix = "use await anyio.sleep / async I/O, or make it a plain def so it runs on a thread"
                logger.warning(
                    "run %s: task %d: async tool %r blocked the event loop for %.3g s (past its %g s "
                    "timeout); every other call waited meanwhile. %s",
                    self.run_id,
                    node.tid,
                    node.name,
                    elapsed,
                    timeout,
                    fix[0].upper() + fix[1:],
                )
            raise ToolTimeout(
                f"returned after {elapsed:.3g} s, past its {timeout:g} s timeout; {why} ({fix}); "
                "its value was dropped",
                tool=node.name,
                task_id=node.tid,
                attempt=attempt,
            )
        logger.warning(
            "run %s: task %d (%s) returned after %.3g s, past its %g s timeout, because the event "
            "loop was held by other code meanwhile (an async tool calling blocking code, such as "
            "time.sleep in an async def), so its timer fired late; its value is kept",
            self.run_id,
            node.tid,
            node.name,
            elapsed,
            timeout,
        )

    async def _with_retries(self, node: TaskNode, args: dict[str, Any]) -> Any:
        policy = node.tool.policy
        backoff = self.limits.retry_backoff

        def retryable(exc: BaseException) -> bool:
            if not isinstance(exc, Exception) or isinstance(
                exc, Interrupt | ReferenceResolutionError | ToolArgumentError
            ):
                return False
            return getattr(exc, "retryable", False) is True or policy.idempotent

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            delay = state.next_action.sleep if state.next_action is not None else 0.0
            self._journal.emit(
                TaskRetrying(
                    **self._stamp(node.tid),
                    tool=node.name,
                    attempt=state.attempt_number,
                    error_type=type(exc).__name__,
                    message=safe_str(exc),
                    delay=delay,
                )
            )

        retrying = AsyncRetrying(
            stop=stop_after_attempt(policy.retries + 1),
            wait=wait_exponential_jitter(multiplier=backoff, jitter=backoff, max=self.limits.retry_max_wait),
            retry=retry_if_exception(retryable),
            before_sleep=before_sleep,
            sleep=anyio.sleep,
            reraise=True,
        )
        value: Any = None
        async for attempt in retrying:
            with attempt:
                value = await self._attempt(node, args, attempt.retry_state.attempt_number)
        return value

    def _json_result(self, node: TaskNode, value: Any) -> Any:
        """The tool's value as a JSON value, by the rule in :class:`~tomasulo.tools.Tool`'s
        docstring, or :class:`ToolOutputError` saying why it is not one."""
        try:
            return to_json_value(value)
        except NotJSONError as exc:
            raise ToolOutputError(
                str(exc), tool=node.name, task_id=node.tid, attempt=max(node.attempts, 1)
            ) from None

    def _wrap(self, exc: BaseException, node: TaskNode) -> Exception:
        if isinstance(exc, ToolError):
            if exc.task_id is None:
                exc.task_id = node.task.id
            return exc
        if isinstance(exc, ToolArgumentError):
            return exc
        text = f"{type(exc).__name__}: {safe_str(exc)}"
        if isinstance(exc, SystemExit):
            text += (
                f" (the tool called sys.exit({safe_str(exc.code)}); a tool must return a value or raise"
                " an exception)"
            )
        elif isinstance(exc, KeyboardInterrupt):
            if raised_on_thread(exc):
                text += (
                    " (the tool raised KeyboardInterrupt; a tool must return a value or raise an exception)"
                )
            else:
                text += (
                    " (a Ctrl-C, or the tool raised KeyboardInterrupt, on the event loop: the run is"
                    " cancelled and the KeyboardInterrupt passed on)"
                )
        err = ToolExecutionError(
            text,
            tool=node.tool.name,
            task_id=node.task.id,
            attempt=max(node.attempts, 1),
            error_type=type(exc).__name__,
        )
        err.__cause__ = exc
        return err

    # -- outcomes -------------------------------------------------------------------------------

    def _succeed(self, node: TaskNode, value: Any) -> None:
        # Every field of Outcome, in order: task_id, tool, status, value, error, error_type,
        # message, attempts, planned_at, ready_at, started_at, finished_at, skipped_because.
        outcome = make_outcome(
            node.tid,
            node.name,
            "succeeded",
            value,
            None,
            None,
            None,
            node.attempts,
            node.planned_at,
            node.ready_at,
            node.started_at,
            _now(),
            None,
        )
        self._finish(node, outcome)

    def _fail(self, node: TaskNode, error: BaseException, kind: Literal["failure", "interrupt"]) -> None:
        if node.outcome is not None:
            return
        if isinstance(error, Interrupt):
            error_type = "Interrupt"
            message = f"task {node.task.id} ({node.tool.name}) raised Interrupt: {error.message}"
            value = error.value
        else:
            error_type = error.error_type if isinstance(error, ToolExecutionError) else type(error).__name__
            # Clipped once more (a tool's own ToolError can be long); _wrap already clipped the
            # text of an exception it wrapped, so this leaves room for the task and tool names.
            message = safe_str(error, MAX_MESSAGE_CHARS + 500)
            if isinstance(error, ToolArgumentError):
                message = f"task {node.task.id} ({node.tool.name}) {message}"
            value = None
        outcome = Outcome(
            task_id=node.task.id,
            tool=node.tool.name,
            status="failed",
            value=value,
            error=error,
            error_type=error_type,
            message=message,
            attempts=node.attempts,
            planned_at=node.planned_at,
            ready_at=node.ready_at,
            started_at=node.started_at,
            finished_at=_now(),
        )
        self._finish(node, outcome)
        self._interrupt(InterruptRaised(**self._stamp(node.tid), source=kind, reason=message, error=error))

    def _cancelled_outcome(self, node: TaskNode, reason: str) -> Outcome:
        return Outcome(
            task_id=node.task.id,
            tool=node.tool.name,
            status="cancelled",
            error_type="Cancelled",
            message=f"task {node.task.id} ({node.tool.name}) {reason}",
            attempts=node.attempts,
            planned_at=node.planned_at,
            ready_at=node.ready_at,
            started_at=node.started_at,
            finished_at=_now(),
        )

    def _skipped_outcome(self, node: TaskNode, upstream: TaskNode | RestoredNode) -> Outcome:
        up = upstream.outcome
        assert up is not None
        root = up.skipped_because if up.status == "skipped" else upstream.tid
        root_outcome = self._outcomes.get(root) if root is not None else None
        why = root_outcome.status if root_outcome is not None else "did not succeed"
        detail = ""
        if root_outcome is not None and root_outcome.error_type:
            detail = f" ({root_outcome.error_type})"
        return Outcome(
            task_id=node.task.id,
            tool=node.tool.name,
            status="skipped",
            message=f"task {node.task.id} ({node.tool.name}) skipped: its input task {root} {why}{detail}",
            planned_at=node.planned_at,
            finished_at=_now(),
            skipped_because=root,
        )

    def _finish(self, node: TaskNode, outcome: Outcome) -> None:
        """Record an outcome (once), release dependents, and skip them when it was not a success."""
        stack = [(node, outcome)]
        while stack:
            node, outcome = stack.pop()
            if node.outcome is not None:
                continue
            node.outcome = outcome
            node.release()  # freed now, a task at a time, rather than all at the run's end
            tid = node.tid
            self._outcomes[tid] = outcome
            status = outcome.status
            ok = status == "succeeded"
            if ok:
                self._results[tid] = outcome.value
            now = outcome.finished_at
            assert now is not None
            self._journal.task(ENDED, node)
            self._unfinished -= 1
            if node.done is not None:
                node.done.set()
            if node.info.sequential:
                self._advance_lane(node, now)
            dependents, node.dependents = node.dependents, None
            for dep in dependents or ():
                if dep.outcome is not None:
                    continue
                if ok:
                    dep.waiting -= 1
                    if dep.waiting == 0:
                        self._make_ready(dep, now)
                else:
                    stack.append((dep, self._skipped_outcome(dep, node)))
        if self._unfinished == 0:
            if self._idle is not None:
                self._idle.set()
                self._idle = None
            if self._input_closed:
                if not self._unwinding:
                    self._close_journal()
                # Nothing can become ready again: parked workers may return now, while the
                # caller takes the results, rather than when the run is closed.
                self._wake_idle_workers()

    def _wake_idle_workers(self) -> None:
        """Wake every parked worker; with nothing left to take, each returns."""
        idle, self._idle_workers = self._idle_workers, []
        self._waking += len(idle)
        for wake in idle:
            wake.set()

    def _advance_lane(self, node: TaskNode, now: float) -> None:
        lane = self._lanes[node.tool.name]
        was_head = bool(lane) and lane[0] is node
        lane.remove(node)
        if was_head and lane:
            head = lane[0]
            if head.data_ready and not head.queued and head.outcome is None:
                self._make_ready(head, now)  # now the lane's head, so it is queued
