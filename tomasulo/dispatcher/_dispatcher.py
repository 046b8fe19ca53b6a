"""The task fetching unit: starts each task the moment its inputs exist.

Each task keeps a count of unresolved inputs. A finishing task decrements the counts of its
dependents; those that reach zero go to the ready queue, and a free worker takes them at once.
Nothing polls and nothing sleeps: the only waits are on anyio events, limiters and the tools.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping
from types import MappingProxyType, TracebackType
from typing import Any, ClassVar, Literal

import anyio
from anyio import CancelScope, CapacityLimiter, WouldBlock
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from ..exceptions import (
    DispatchError,
    Interrupt,
    ReferenceResolutionError,
    ToolArgumentError,
    ToolError,
    ToolExecutionError,
    ToolTimeout,
)
from ..executors import Executor, LocalExecutor, check_output
from ..grammar import JOIN, Plan, Task
from ..tools import Tool, Toolset
from ._events import (
    Event,
    InterruptRaised,
    Outcome,
    TaskCancelled,
    TaskEvent,
    TaskFailed,
    TaskPlanned,
    TaskReady,
    TaskRetrying,
    TaskSkipped,
    TaskStarted,
    TaskSucceeded,
)
from ._limits import DEFAULT_LIMITS, Limits
from ._resolve import resolve_args

__all__ = ["Dispatcher", "EventCallback"]

logger = logging.getLogger("tomasulo.dispatcher")

EventCallback = Callable[[Event], None]
_now = time.monotonic


_SCALARS = (str, int, float, bool, type(None))


def _deps(task: Task) -> frozenset[int] | tuple[()]:
    """``task.deps``, with a fast path for tasks whose arguments are all plain scalars."""
    for value in task.args:
        if not isinstance(value, _SCALARS):
            return task.deps
    for value in task.kwargs.values():
        if not isinstance(value, _SCALARS):
            return task.deps
    return ()


class _Node:
    """A task's state in the run."""

    __slots__ = (
        "attempts",
        "data_ready",
        "dependents",
        "done",
        "outcome",
        "planned_at",
        "queued",
        "ready_at",
        "scope",
        "started_at",
        "task",
        "tool",
        "waiting",
    )

    def __init__(self, task: Task, tool: Tool, planned_at: float) -> None:
        self.task = task
        self.tool = tool
        self.planned_at = planned_at
        self.waiting = 0  # inputs without an outcome yet
        self.dependents: list[_Node] = []
        self.outcome: Outcome | None = None
        self.ready_at: float | None = None
        self.started_at: float | None = None
        self.attempts = 0
        self.scope: CancelScope | None = None
        self.done: anyio.Event | None = None
        self.data_ready = False  # inputs done (a sequential task may still wait for its turn)
        self.queued = False


class _Subscription:
    """One consumer's queue of events; iterating ends when the run's events end."""

    def __init__(self, owner: Dispatcher, backlog: Iterable[Event]) -> None:
        self._owner = owner
        self._buffer: deque[Event] = deque(backlog)
        self._wakeup: anyio.Event | None = None
        self._closed = False

    def _push(self, event: Event) -> None:
        self._buffer.append(event)
        if self._wakeup is not None:
            self._wakeup.set()
            self._wakeup = None

    def _close(self) -> None:
        self._closed = True
        if self._wakeup is not None:
            self._wakeup.set()
            self._wakeup = None

    def __aiter__(self) -> _Subscription:
        return self

    async def __anext__(self) -> Event:
        while not self._buffer:
            if self._closed:
                raise StopAsyncIteration
            self._wakeup = anyio.Event()
            await self._wakeup.wait()
        return self._buffer.popleft()

    async def aclose(self) -> None:
        """Stop receiving events."""
        self._close()
        self._owner._unsubscribe(self)


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
    ``on_event`` (called synchronously, in order) and to every :meth:`events` iterator.

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
    ) -> None:
        self.tools = tools
        self.executor: Executor = executor if executor is not None else LocalExecutor()
        self.limits = limits if limits is not None else DEFAULT_LIMITS
        self.run_id = run_id if run_id is not None else uuid.uuid4().hex[:12]
        self._on_event = on_event
        self._nodes: dict[int, _Node] = {}
        self._outcomes: dict[int, Outcome] = {}
        self._results: dict[int, Any] = {}
        self._ready: deque[_Node] = deque()
        self._busy = 0  # workers running a task
        self._waking = 0  # workers woken or started that have not looked at the queue yet
        self._idle_workers: list[anyio.Event] = []
        self._unfinished = 0
        self._idle: anyio.Event | None = None
        self._workers_done: anyio.Event | None = None
        self._seq = 0
        self._history: list[Event] = []
        self._subscribers: list[_Subscription] = []
        self._tool_limiters: dict[str, CapacityLimiter] = {}
        self._tool_waiting: dict[str, deque[_Node]] = {}
        self._lanes: dict[str, deque[_Node]] = {}
        self._state: Literal["new", "running", "closed"] = "new"
        self._input_closed = False
        self._expired = False
        self._tg: anyio.abc.TaskGroup | None = None
        self._stop_watch: anyio.Event | None = None

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
        return tuple(self._history)

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
            self._close_subscribers()
            try:
                if self._busy:
                    await self._await_workers()
                self._tg.cancel_scope.cancel()  # parked workers
                # The body's own exception (if any) propagates by itself, not inside a group.
                await self._tg.__aexit__(None, None, None)
            finally:
                await self.executor.__aexit__(exc_type, exc, tb)
        return None

    async def _await_workers(self) -> None:
        """Give cancelled calls ``cancel_grace`` to unwind; name the ones that do not."""
        self._workers_done = anyio.Event()
        with CancelScope(shield=True), anyio.move_on_after(self.limits.cancel_grace) as scope:
            await self._workers_done.wait()
        if scope.cancelled_caught and self._busy:
            logger.warning(
                "run %s: %d tool call(s) did not stop within %.3f s of being cancelled; "
                "waiting for them (an async tool is ignoring cancellation)",
                self.run_id,
                self._busy,
                self.limits.cancel_grace,
            )

    async def _watch_deadline(self, seconds: float, stop: anyio.Event) -> None:
        with anyio.move_on_after(seconds):
            await stop.wait()
            return
        self._expire(seconds)

    def _expire(self, seconds: float) -> None:
        self._expired = True
        reason = f"the run's deadline of {seconds:g} s passed"
        self._emit(InterruptRaised(**self._stamp(None), kind="deadline", reason=reason))
        self._cancel_nodes(None, reason)

    # -- input ----------------------------------------------------------------------------------

    def submit(self, task: Task) -> None:
        """Add a task; it starts as soon as every task it references has succeeded.

        References to tasks that already finished resolve at once; a task whose input failed or
        was cancelled is skipped at once. Raises :class:`DispatchError` for a task id that is
        taken, a reference to an unknown or later task, an unknown tool, or a closed input.
        """
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
        deps = _deps(task)
        nodes = self._nodes
        for dep in deps:
            if dep >= tid:
                raise DispatchError(
                    f"task {tid} references ${dep}, which is not an earlier task; "
                    "a task may only use the results of tasks with smaller ids"
                )
            if dep not in nodes:
                raise DispatchError(f"task {tid} references ${dep}, which was never submitted")
        now = _now()
        node = _Node(task, tool, now)
        nodes[tid] = node
        self._unfinished += 1
        self._emit(
            TaskPlanned(
                run_id=self.run_id,
                seq=self._next_seq(),
                ts=now,
                task_id=tid,
                tool=tool.name,
                deps=tuple(sorted(deps)),
            )
        )
        if tool.policy.sequential:
            self._lanes.setdefault(tool.name, deque()).append(node)
        if self._expired:
            self._finish(node, self._cancelled_outcome(node, "the run's deadline had passed"))
            self._pump()
            return
        cause: _Node | None = None
        for dep in deps:
            up = nodes[dep]
            if up.outcome is None:
                up.dependents.append(node)
                node.waiting += 1
            elif up.outcome.status != "succeeded" and cause is None:
                cause = up
        if cause is not None:
            self._finish(node, self._skipped_outcome(node, cause))
            self._pump()
            return
        if node.waiting == 0:
            self._make_ready(node, now)
        self._pump()

    def submit_all(self, tasks: Iterable[Task]) -> None:
        """Submit several tasks, in order."""
        for task in tasks:
            if task.tool != JOIN:
                self.submit(task)

    def close_input(self) -> None:
        """No more tasks will come; once every task has an outcome, event iterators end."""
        self._input_closed = True
        if self._unfinished == 0:
            self._close_subscribers()

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
        targets.sort(key=lambda n: n.task.id, reverse=True)
        for node in targets:
            if node.outcome is not None:
                continue
            scope = node.scope
            self._finish(node, self._cancelled_outcome(node, reason))
            if scope is not None:
                scope.cancel()
        self._pump()

    def events(self, *, replay: bool = True) -> AsyncIterator[Event]:
        """An async iterator over the run's events.

        With ``replay`` (the default) it starts with every event so far. It ends when the run's
        events end: the input is closed and every task has an outcome, or the dispatcher exits.
        """
        sub = _Subscription(self, self._history if replay else ())
        if self._state == "closed" or (self._input_closed and self._unfinished == 0):
            sub._close()
        else:
            self._subscribers.append(sub)
        return sub

    def _unsubscribe(self, sub: _Subscription) -> None:
        if sub in self._subscribers:
            self._subscribers.remove(sub)

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
    ) -> dict[int, Outcome]:
        """Run a plan (or a stream of tasks, submitted as they arrive) and return the outcomes."""
        async with cls(tools, executor, limits=limits, on_event=on_event, run_id=run_id) as d:
            source = tasks.tasks if isinstance(tasks, Plan) else tasks
            if isinstance(source, AsyncIterable):
                async for task in source:
                    if task.tool != JOIN:
                        d.submit(task)
            else:
                d.submit_all(source)
            d.close_input()
            await d.wait()
        return dict(d._outcomes)

    # -- events ---------------------------------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _stamp(self, task_id: int | None) -> dict[str, Any]:
        return {"run_id": self.run_id, "seq": self._next_seq(), "ts": _now(), "task_id": task_id}

    def _emit(self, event: Event) -> None:
        self._history.append(event)
        for sub in self._subscribers:
            sub._push(event)
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:
                logger.exception("run %s: on_event callback raised on %r", self.run_id, event)

    def _close_subscribers(self) -> None:
        subs, self._subscribers = self._subscribers, []
        for sub in subs:
            sub._close()

    def _task_event(self, cls: type[TaskEvent], node: _Node, ts: float, **fields: Any) -> None:
        self._emit(
            cls(
                run_id=self.run_id,
                seq=self._next_seq(),
                ts=ts,
                task_id=node.task.id,
                tool=node.tool.name,
                **fields,
            )
        )

    # -- scheduling -----------------------------------------------------------------------------

    def _make_ready(self, node: _Node, now: float) -> None:
        node.data_ready = True
        if node.tool.policy.sequential:
            lane = self._lanes[node.tool.name]
            if lane[0] is not node:
                return  # an earlier call of this tool has not finished yet
        self._enqueue(node, now)

    def _enqueue(self, node: _Node, now: float) -> None:
        node.queued = True
        node.ready_at = now
        self._task_event(TaskReady, node, now)
        self._ready.append(node)

    def _take(self) -> _Node | None:
        """The next ready task that may start now (taking its tool slot), or ``None``."""
        ready = self._ready
        while ready:
            node = ready.popleft()
            if node.outcome is not None:
                continue
            limit = node.tool.policy.max_concurrency
            if limit is not None:
                limiter = self._tool_limiters.get(node.tool.name)
                if limiter is None:
                    limiter = self._tool_limiters[node.tool.name] = CapacityLimiter(limit)
                try:
                    limiter.acquire_on_behalf_of_nowait(node)
                except WouldBlock:
                    self._tool_waiting.setdefault(node.tool.name, deque()).append(node)
                    continue
            return node
        return None

    def _pump(self) -> None:
        """Wake (or start) enough workers for the ready tasks the run's limit lets start."""
        if self._tg is None or self._state == "closed":
            return
        limit = self.limits.max_concurrency
        free = len(self._ready) if limit is None else min(len(self._ready), limit - self._busy)
        need = free - self._waking
        idle = self._idle_workers
        while need > 0:
            need -= 1
            self._waking += 1
            if idle:
                idle.pop().set()
            else:
                self._tg.start_soon(self._worker)

    async def _worker(self) -> None:
        """Take ready tasks and run them; park on an event when there are none.

        Workers live for the whole run, so starting a task costs a wake-up, not a new task.
        """
        self._waking -= 1
        limit = self.limits.max_concurrency
        while True:
            node = self._take() if limit is None or self._busy < limit else None
            if node is None:
                if self._state == "closed":
                    return
                wake = anyio.Event()
                self._idle_workers.append(wake)
                await wake.wait()
                self._waking -= 1
                continue
            self._busy += 1
            if self._ready:
                self._pump()
            try:
                await self._run(node)
            finally:
                self._busy -= 1
                if self._busy == 0 and self._workers_done is not None:
                    self._workers_done.set()

    def _release_tool_slot(self, node: _Node) -> None:
        limiter = self._tool_limiters.get(node.tool.name)
        if limiter is None or node.tool.policy.max_concurrency is None:
            return
        limiter.release_on_behalf_of(node)
        waiting = self._tool_waiting.get(node.tool.name)
        while waiting:
            nxt = waiting.popleft()
            if nxt.outcome is None:
                self._ready.appendleft(nxt)
                break

    # -- running one task -----------------------------------------------------------------------

    async def _run(self, node: _Node) -> None:
        task, tool = node.task, node.tool
        scope = node.scope = CancelScope()
        try:
            with scope:
                try:
                    args = resolve_args(task, tool, self._lookup)
                except (ReferenceResolutionError, ToolArgumentError) as exc:
                    self._fail(node, exc, "failure")
                    return
                if tool.policy.retries == 0:
                    value = await self._attempt(node, args, 1)
                else:
                    value = await self._with_retries(node, args)
            if node.outcome is None:
                self._succeed(node, value)
        except Interrupt as exc:
            self._fail(node, exc, "interrupt")
        except Exception as exc:
            self._fail(node, self._wrap(exc, node), "failure")
        finally:
            node.scope = None
            if tool.policy.max_concurrency is not None:
                self._release_tool_slot(node)

    def _lookup(self, task_id: int) -> Any:
        return self._results[task_id]

    async def _attempt(self, node: _Node, args: dict[str, Any], attempt: int) -> Any:
        tool = node.tool
        now = _now()
        node.attempts = attempt
        if node.started_at is None:
            node.started_at = now
        self._task_event(TaskStarted, node, now, attempt=attempt)
        timeout = tool.policy.timeout
        tid = node.task.id
        if timeout is None:
            value = await self.executor.call(tool, args, task_id=tid, attempt=attempt)
        else:
            with anyio.move_on_after(timeout) as limit:
                value = await self.executor.call(tool, args, task_id=tid, attempt=attempt)
            if limit.cancelled_caught:
                raise ToolTimeout(
                    f"timed out after {timeout:g} s (the tool's timeout)",
                    tool=tool.name,
                    task_id=tid,
                    attempt=attempt,
                )
        if tool.output_schema:
            check_output(tool, value, task_id=tid, attempt=attempt)
        return value

    async def _with_retries(self, node: _Node, args: dict[str, Any]) -> Any:
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
            self._task_event(
                TaskRetrying,
                node,
                _now(),
                attempt=state.attempt_number,
                error_type=type(exc).__name__,
                message=str(exc),
                delay=delay,
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

    def _wrap(self, exc: Exception, node: _Node) -> Exception:
        if isinstance(exc, ToolError):
            if exc.task_id is None:
                exc.task_id = node.task.id
            return exc
        if isinstance(exc, ToolArgumentError):
            return exc
        err = ToolExecutionError(
            f"{type(exc).__name__}: {exc}",
            tool=node.tool.name,
            task_id=node.task.id,
            attempt=max(node.attempts, 1),
            error_type=type(exc).__name__,
        )
        err.__cause__ = exc
        return err

    # -- outcomes -------------------------------------------------------------------------------

    def _succeed(self, node: _Node, value: Any) -> None:
        self._finish(
            node,
            Outcome(
                task_id=node.task.id,
                tool=node.tool.name,
                status="succeeded",
                value=value,
                attempts=node.attempts,
                planned_at=node.planned_at,
                ready_at=node.ready_at,
                started_at=node.started_at,
                finished_at=_now(),
            ),
        )

    def _fail(self, node: _Node, error: BaseException, kind: Literal["failure", "interrupt"]) -> None:
        if node.outcome is not None:
            return
        if isinstance(error, Interrupt):
            error_type = "Interrupt"
            message = f"task {node.task.id} ({node.tool.name}) raised Interrupt: {error.message}"
            value = error.value
        else:
            error_type = error.error_type if isinstance(error, ToolExecutionError) else type(error).__name__
            message = str(error)
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
        self._emit(InterruptRaised(**self._stamp(node.task.id), kind=kind, reason=message, error=error))

    def _cancelled_outcome(self, node: _Node, reason: str) -> Outcome:
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

    def _skipped_outcome(self, node: _Node, upstream: _Node) -> Outcome:
        up = upstream.outcome
        assert up is not None
        root = up.skipped_because if up.status == "skipped" else upstream.task.id
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

    _EVENT_FOR: ClassVar[dict[str, type[TaskEvent]]] = {
        "succeeded": TaskSucceeded,
        "failed": TaskFailed,
        "skipped": TaskSkipped,
        "cancelled": TaskCancelled,
    }

    def _finish(self, node: _Node, outcome: Outcome) -> None:
        """Record an outcome (once), release dependents, and skip them when it was not a success."""
        stack = [(node, outcome)]
        while stack:
            node, outcome = stack.pop()
            if node.outcome is not None:
                continue
            node.outcome = outcome
            tid = node.task.id
            self._outcomes[tid] = outcome
            ok = outcome.status == "succeeded"
            if ok:
                self._results[tid] = outcome.value
            assert outcome.finished_at is not None
            now = outcome.finished_at
            self._task_event(self._EVENT_FOR[outcome.status], node, now, outcome=outcome)
            self._unfinished -= 1
            if node.done is not None:
                node.done.set()
            if node.tool.policy.sequential:
                self._advance_lane(node, now)
            dependents, node.dependents = node.dependents, []
            for dep in dependents:
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
                self._close_subscribers()

    def _advance_lane(self, node: _Node, now: float) -> None:
        lane = self._lanes[node.tool.name]
        was_head = bool(lane) and lane[0] is node
        lane.remove(node)
        if was_head and lane:
            head = lane[0]
            if head.data_ready and not head.queued and head.outcome is None:
                self._enqueue(head, now)
