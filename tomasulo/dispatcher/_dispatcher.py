"""The task fetching unit: starts each task the moment its inputs exist.

Each task keeps a count of unresolved inputs. A finishing task decrements the counts of its
dependents; those that reach zero go to the ready queue, and a free worker takes them at once.
Nothing polls and nothing sleeps: the only waits are on anyio events, limiters and the tools.

The :class:`Dispatcher` holds a run's tasks and its lifecycle, and wires the pieces, each in a
module of its own:

- ``_order.py``: the ready queue (ranking, tool slots, sequential lanes) and a plan's order;
- ``_pool.py``: the workers that take ready tasks (``_asyncio.py``: the asyncio-only backend);
- ``_call.py``: one task's call (attempts, timeout, retries, the executor);
- ``_outcomes.py``: how tasks end, and skipping the dependents of a failure;
- ``_resolve.py``, ``_node.py``: arguments and per-task state; ``_journal.py``: the events.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping
from types import MappingProxyType, TracebackType
from typing import Any, Literal, NamedTuple

import anyio
import anyio.abc

from ..exceptions import DispatchError, Interrupt
from ..executors import Executor, LocalExecutor, raised_on_thread
from ..grammar import JOIN, Plan, Task
from ..tools import Tool, Toolset
from ._asyncio import AsyncioBackend, on_asyncio
from ._call import JSON_SCALARS as _JSON_SCALARS
from ._call import Calls, as_tool_error
from ._events import Event, InterruptRaised, Outcome, TaskAbandoned, TaskRestored
from ._journal import ENDED, PLANNED, EventCallback, RunJournal, Subscription, restore_map
from ._limits import DEFAULT_LIMITS, Limits
from ._node import RestoredNode, TaskNode, ToolInfo
from ._order import ReadyQueue, plan_order
from ._outcomes import Ledger, cancelled, failed, skipped, succeeded
from ._pool import TaskGroupBackend, WorkerPool
from ._statistics import DispatcherStatistics

__all__ = ["Dispatcher"]

logger = logging.getLogger("tomasulo.dispatcher")

_now = time.monotonic

#: ``run_plan`` lets each of a whole plan's first ``_EAGER`` tasks that can start start before
#: it submits the next, then lets the loop run once every ``_SUBMIT_BATCH`` submits.
_EAGER = 32
_SUBMIT_BATCH = 128


class _Runner(NamedTuple):
    """The dispatcher's methods that its worker pool calls (see :class:`TaskRunner`)."""

    start: Callable[[TaskNode], Awaitable[Any]]
    succeeded: Callable[[TaskNode, Any], None]
    failed: Callable[[TaskNode, BaseException], None]
    returned: Callable[[TaskNode], None]


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
    ``ts``), which saves their cost in runs nobody watches. :meth:`statistics` tells how many
    tasks wait, are ready or run, and what the workers do.

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
        self.limits = limits if limits is not None else DEFAULT_LIMITS
        self._owns_journal = journal is None
        if journal is None:
            journal = RunJournal(run_id, on_event=on_event)
        self._journal = journal
        self.run_id = journal.run_id
        self._on_interrupt = on_interrupt
        self._nodes: dict[int, TaskNode | RestoredNode] = {}
        self._queue = ReadyQueue(journal)
        self._ledger = Ledger(self._ended, self._queue.offer)
        self._calls = Calls(
            self.executor,
            journal,
            self.limits,
            deps,
            self._ledger.results.__getitem__,
            local=type(self.executor) is LocalExecutor,  # plain async tools may be awaited directly
            on_loop=isinstance(self.executor, LocalExecutor),  # async tools run on this loop
        )
        self._pool = WorkerPool(
            self._queue,
            self.limits.max_concurrency,
            _Runner(self._calls.start, self._succeeded, self._failed, self._returned),
            self._no_more_work,
            f"tomasulo dispatcher {self.run_id}",
        )
        self._asyncio: AsyncioBackend | None = None  # the backend, when the run is on asyncio
        self._unfinished = 0
        self._idle: anyio.Event | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._state: Literal["new", "running", "closed"] = "new"
        self._input_closed = False
        self._expired = False
        self._abandoned: list[int] = []
        self._unwinding: set[int] = set()  # cancelled tasks whose calls have not returned yet
        self._worker_error: BaseException | None = None
        self._ctrl_c: KeyboardInterrupt | None = None  # passed on to the caller at the end
        self._stop_watch: anyio.Event | None = None
        self._infos: dict[Tool, ToolInfo] = {}
        for outcome in restore_map(restore).values():
            self._restore(outcome)

    # -- public state ---------------------------------------------------------------------------

    @property
    def outcomes(self) -> Mapping[int, Outcome]:
        """Outcomes so far, by task id (a live read-only view)."""
        return MappingProxyType(self._ledger.outcomes)

    @property
    def results(self) -> Mapping[int, Any]:
        """Values of the tasks that succeeded, by task id (a live read-only view)."""
        return MappingProxyType(self._ledger.results)

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

    @property
    def abandoned(self) -> tuple[int, ...]:
        """Ids of the tasks whose calls ignored cancellation and were left running when the
        run ended (see :attr:`Limits.cancel_grace <tomasulo.dispatcher.Limits>`)."""
        return tuple(self._abandoned)

    def statistics(self) -> DispatcherStatistics:
        """How many tasks wait, are ready or run, and what the workers do, right now.

        >>> # stats = d.statistics(); print(stats.ready, stats.busy, stats.parked)
        """
        waiting = ready = running = restored = 0
        for node in self._nodes.values():
            if not isinstance(node, TaskNode):
                restored += 1
            elif node.outcome is not None:
                continue
            elif node.scope is not None:
                running += 1
            elif node.waiting:
                waiting += 1
            else:
                ready += 1
        pool = self._pool
        submitted = len(self._nodes) - restored
        return DispatcherStatistics(
            submitted=submitted,
            finished=submitted - self._unfinished,
            waiting=waiting,
            ready=ready,
            running=running,
            busy=pool.busy,
            parked=pool.parked,
            waking=pool.waking,
            workers=pool.alive,
            restored=restored,
            abandoned=len(self._abandoned),
        )

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
        self._calls.cancel_exc = anyio.get_cancelled_exc_class()
        pool = self._pool
        if on_asyncio():
            self._asyncio = AsyncioBackend(self.run_id, pool, self._worker_failed)
            pool.backend = self._asyncio
        else:
            pool.backend = TaskGroupBackend(self._tg)
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
        pool = self._pool
        try:
            if exc_type is None:
                self._input_closed = True
                await self.wait()
        finally:
            if self._unfinished:
                self.cancel()
            self._input_closed = True
            self._state = "closed"
            pool.closed = True
            if self._stop_watch is not None:
                self._stop_watch.set()
            try:
                try:
                    if pool.busy and not await pool.wait_idle(self.limits.cancel_grace):
                        self._stubborn_calls()
                    # Parked workers see the closed state when woken and return; waking them is
                    # far cheaper than cancelling hundreds of them. Calls still running after the
                    # grace (an async tool ignoring cancellation) are cancelled with the group.
                    pool.wake_parked()
                    if pool.busy:
                        self._tg.cancel_scope.cancel()
                        if self._asyncio is not None:
                            self._asyncio.cancel()
                            self._abandon_running()
                finally:
                    self._close_journal()  # after TaskAbandoned events, so that iterators see them
                # The body's own exception (if any) propagates by itself, not inside a group.
                await self._tg.__aexit__(None, None, None)
                if self._asyncio is not None:
                    await self._asyncio.wait_returned()
                    if self._abandoned:
                        self._asyncio.forget()
                if self._ctrl_c is not None:
                    raise self._ctrl_c
                if self._worker_error is not None:
                    raise DispatchError(
                        f"run {self.run_id}: a dispatcher worker failed"
                    ) from self._worker_error
            finally:
                # The parts hold callbacks into the dispatcher; unlinked, it is freed by
                # reference counting once the caller drops it (a cycle would wait for the gc).
                self._pool.detach()
                self._ledger.detach()
                if self._asyncio is not None:
                    self._asyncio.detach()
                await self.executor.__aexit__(exc_type, exc, tb)
        return None

    def _stubborn_calls(self) -> None:
        """Calls still running ``cancel_grace`` after being cancelled: on asyncio they are
        abandoned next; on other backends the run waits for them, and says so."""
        if self._asyncio is None:
            logger.warning(
                "run %s: %d tool call(s) did not stop within %.3f s of being cancelled; "
                "waiting for them (an async tool is ignoring cancellation)",
                self.run_id,
                self._pool.busy,
                self.limits.cancel_grace,
            )

    def _worker_failed(self, error: BaseException) -> None:
        """A worker failed (a bug, not a tool's error): the run ends, raising it."""
        if self._worker_error is None:
            self._worker_error = error
            if self._tg is not None:
                self._tg.cancel_scope.cancel()  # the host's wait ends; __aexit__ raises it

    def _abandon_running(self) -> None:
        """Stop waiting for the calls still running after the cancel grace: each one's outcome
        (already recorded) and a :class:`TaskAbandoned` event say so, and a warning names it."""
        grace = self.limits.cancel_grace
        # Events not built yet (nobody listened) are built now, from the outcomes as they were
        # when they happened: the TaskCancelled event says "Cancelled" in every run, and the
        # TaskAbandoned event after it carries the outcome as it ends.
        self._journal.history()
        for node in self._nodes.values():
            if node.scope is None or node.tid in self._abandoned or not isinstance(node, TaskNode):
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
                self._ledger.replace(node, outcome)
            message = f"task {node.tid} ({node.name}): {note}"
            logger.warning("run %s: %s; the run ends without it", self.run_id, message)
            self._journal.record(
                TaskAbandoned, node.tid, tool=node.name, grace=grace, message=message, outcome=outcome
            )

    async def _watch_deadline(self, seconds: float, stop: anyio.Event) -> None:
        with anyio.move_on_after(seconds):
            await stop.wait()
            return
        self._expire(seconds)

    def _expire(self, seconds: float) -> None:
        self._expired = True
        reason = f"the run's deadline of {seconds:g} s passed"
        self._interrupt(InterruptRaised, None, source="deadline", reason=reason)
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
        nodes[tid] = node
        self._unfinished += 1
        self._journal.task(PLANNED, node)
        if info.sequential:
            self._queue.lane(node)
        if self._expired:
            self._finish(node, cancelled(node, "the run's deadline had passed"))
            self._pool.pump()
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
            self._finish(node, skipped(node, cause, self._ledger.outcomes))
        elif node.waiting == 0:
            self._queue.offer(node, node.planned_at)
        self._pool.pump()

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
        """
        pool = self._pool
        assert pool.backend is not None
        checkpoint = pool.backend.checkpoint
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
            if pool.waking:
                await checkpoint()
        for task, rank in self._plan_order(batch, chains):
            self.submit(task, rank=rank)
            count += 1
            if (pool.waking and count <= _EAGER) or count % _SUBMIT_BATCH == 0:
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
        if self._unfinished <= self._pool.busy:
            self._pool.wake_parked()  # nothing is left to start: parked workers may return

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
            self._finish(node, cancelled(node, reason))
            if scope is not None:
                scope.cancel()
        self._pool.pump()

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
        return d._ledger.outcomes  # the run is over and nothing else holds the dispatcher: no copy

    # -- running one task -----------------------------------------------------------------------

    def _no_more_work(self) -> bool:
        """Nothing an idle worker could take can come any more: every task left is running on
        another worker (or none is left), or the run is closed."""
        return self._state == "closed" or (self._input_closed and self._unfinished <= self._pool.busy)

    # The worker pool's TaskRunner: a worker calls these for each task it takes.

    def _succeeded(self, node: TaskNode, value: Any) -> None:
        if node.outcome is None:
            if type(value) not in _JSON_SCALARS:
                value = self._calls.result(node, value)
            self._finish(node, succeeded(node, value))

    def _failed(self, node: TaskNode, exc: BaseException) -> None:
        if isinstance(exc, Interrupt):
            self._fail(node, exc, "interrupt")
            return
        # SystemExit raised by a tool ends its task, not the process (on asyncio it would
        # escape the event loop); so does KeyboardInterrupt raised by a sync tool on a thread.
        # One raised on the loop may be a real Ctrl-C: it ends the run and reaches the caller
        # (_interrupted).
        self._fail(node, as_tool_error(exc, node), "failure")
        if isinstance(exc, KeyboardInterrupt) and not raised_on_thread(exc):
            self._interrupted(node, exc)

    def _returned(self, node: TaskNode) -> None:
        try:
            if node.info.limited:
                self._release_tool_slot(node)
        finally:
            if self._unwinding:
                self._call_returned(node)

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
        self._queue.release(node)

    # -- outcomes -------------------------------------------------------------------------------

    def _fail(self, node: TaskNode, error: BaseException, kind: Literal["failure", "interrupt"]) -> None:
        if node.outcome is not None:
            return
        outcome = failed(node, error)
        self._finish(node, outcome)
        self._interrupt(InterruptRaised, node.tid, source=kind, reason=outcome.message, error=error)

    def _finish(self, node: TaskNode, outcome: Outcome) -> None:
        """Record an outcome (once), release dependents, and skip them when it was not a success."""
        self._ledger.settle(node, outcome)
        if self._unfinished == 0:
            if self._idle is not None:
                self._idle.set()
                self._idle = None
            if self._input_closed:
                if not self._unwinding:
                    self._close_journal()
                # Nothing can become ready again: parked workers may return now, while the
                # caller takes the results, rather than when the run is closed.
                self._pool.wake_parked()

    def _ended(self, node: TaskNode) -> None:
        """A task has its outcome (called by the ledger, for each task that ends)."""
        self._journal.task(ENDED, node)
        self._unfinished -= 1
        if node.done is not None:
            node.done.set()
        if node.info.sequential:
            head = self._queue.lane_done(node)
            if head is not None:
                self._queue.offer(head, node.outcome.finished_at)  # type: ignore[union-attr, arg-type]

    # -- events ---------------------------------------------------------------------------------

    def _close_journal(self) -> None:
        """The dispatcher's events have ended: close its own journal (a run closes its own)."""
        if self._owns_journal:
            self._journal.close()

    def _interrupt(self, cls: type[InterruptRaised], task_id: int | None, **fields: Any) -> None:
        event = self._journal.record(cls, task_id, **fields)
        if self._on_interrupt is not None:
            self._on_interrupt(event)  # type: ignore[arg-type]

    def _restore(self, outcome: Outcome) -> None:
        """Seed a task that ended earlier: its outcome (and value) stand, it never runs."""
        tid = outcome.task_id
        if tid in self._nodes:
            raise DispatchError(f"restore: task {tid} is given twice")
        self._nodes[tid] = RestoredNode(outcome)
        self._ledger.restore(outcome)
        self._journal.record(TaskRestored, tid, tool=outcome.tool, outcome=outcome)
