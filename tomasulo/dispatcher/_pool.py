"""The worker pool: workers that take ready tasks and run them, parking when there are none.

A worker serves many tasks, so starting a task usually costs a wake-up, not a new task. The
pool wakes (or starts) workers for the ready tasks that the run's limit lets start, a few at a
time, so that a burst of hundreds starts over many short loop steps and calls that end meanwhile
are seen between them. Where workers live is the backend's business: in the run's task group
(:class:`TaskGroupBackend`, any anyio backend), or as plain asyncio tasks
(:class:`~tomasulo.dispatcher._asyncio.AsyncioBackend`, the asyncio-only fast path).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

import anyio
import anyio.abc
from anyio import CancelScope

from ._node import TaskNode
from ._order import ReadyQueue

__all__ = ["Backend", "TaskGroupBackend", "WorkerPool"]

#: A worker yields to the event loop after this many calls in a row (see ``WorkerPool._work``).
_STREAK = 64
#: At most this many idle workers stay parked; more return (a burst of blocking calls needs a
#: worker each, and tearing hundreds down at once would add milliseconds to the run's end).
_MAX_PARKED = 8
#: At most this many workers are woken (or started) and not yet running at once. A burst of
#: hundreds of ready tasks then starts over many short loop steps, not one long one, so calls
#: that finish meanwhile are seen within a step; ready tasks wait in rank order, not in the loop.
_MAX_WAKING = 16


def _done() -> bool:
    return True


class Backend(Protocol):
    """Where a run's workers live, and how they yield to the loop."""

    #: Calls that ignore cancellation are left running when the run ends (asyncio), rather
    #: than waited for (structured concurrency: trio).
    abandons: bool

    def spawn(self, worker: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
        """Start a worker."""
        ...

    def checkpoint(self) -> Awaitable[None]:
        """Let the event loop run other tasks once (cancellation may arrive here)."""
        ...

    def cancel(self) -> None:
        """Cancel every worker (the run is ending and calls still run)."""
        ...


class TaskGroupBackend:
    """Workers as tasks of the run's anyio task group: any backend (trio, asyncio)."""

    abandons = False

    def __init__(self, tg: anyio.abc.TaskGroup) -> None:
        self._tg = tg

    def spawn(self, worker: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
        self._tg.start_soon(worker, name=name)

    def checkpoint(self) -> Awaitable[None]:
        return anyio.lowlevel.checkpoint()

    def cancel(self) -> None:
        self._tg.cancel_scope.cancel()


class TaskRunner(Protocol):
    """What a worker does with the task it took (the dispatcher's part).

    ``start(node)`` starts the task's call and returns what to await for its value;
    ``succeeded(node, value)`` and ``failed(node, exc)`` record how the task ended (``exc``:
    whatever ``start``, the call or ``succeeded`` raised that is not a cancellation);
    ``returned(node)`` follows either, once the call is over (its tool slot is freed there).
    """

    def start(self, node: TaskNode) -> Awaitable[Any]: ...
    def succeeded(self, node: TaskNode, value: Any) -> None: ...
    def failed(self, node: TaskNode, exc: BaseException) -> None: ...
    def returned(self, node: TaskNode) -> None: ...


class WorkerPool:
    """The run's workers (see the module's docstring).

    ``runner`` runs each task (:class:`TaskRunner`); ``finished()`` says that nothing this
    pool's idle workers could take can come any more (the run closed, or its input closed with
    every unfinished task running), so they may return.
    """

    def __init__(
        self,
        queue: ReadyQueue,
        limit: int | None,
        runner: TaskRunner,
        finished: Callable[[], bool],
        name: str,
    ) -> None:
        self.queue = queue
        self.limit = limit
        self._runner: TaskRunner | None = runner
        self._finished = finished
        self._name = name
        self.backend: Backend | None = None  # set when the run starts
        #: Workers running a task.
        self.busy = 0
        #: Workers woken or started that have not looked at the queue yet.
        self.waking = 0
        #: Workers alive (running, parked, or about to look at the queue).
        self.alive = 0
        self._parked: list[anyio.Event] = []
        self._idle: anyio.Event | None = None  # set when busy reaches 0
        self.closed = False  # no worker starts any more

    @property
    def parked(self) -> int:
        """Idle workers waiting for a task."""
        return len(self._parked)

    def pump(self) -> None:
        """Wake (or start) workers for the ready tasks that the run's limit lets start.

        As many workers wake at once as are busy (at least one), and never more than
        ``_MAX_WAKING``: calls that never suspend keep one worker busy, so it runs a burst of them
        back to back and few wake in vain, while calls that block keep their workers busy, so the
        number woken grows each loop step up to the cap.
        """
        ready = self.queue.size
        waking = self.waking
        if waking >= ready or self.backend is None or self.closed:
            return
        need = min(ready, max(self.busy, 1), _MAX_WAKING) - waking
        if self.limit is not None:
            need = min(need, self.limit - self.busy - waking)
        parked = self._parked
        while need > 0:
            need -= 1
            self.waking += 1
            if parked:
                parked.pop().set()
            else:
                self.alive += 1
                self.backend.spawn(self._work, self._name)

    def wake_parked(self) -> None:
        """Wake every parked worker; with nothing left to take, each returns."""
        parked, self._parked = self._parked, []
        self.waking += len(parked)
        for wake in parked:
            wake.set()

    def detach(self) -> None:
        """The run is over: drop the callbacks into it. Workers still running an abandoned
        call see the pool closed when it returns, and return too."""
        self.closed = True
        self._runner = None
        self._finished = _done
        self.backend = None

    async def wait_idle(self, grace: float) -> bool:
        """Wait up to ``grace`` seconds (shielded) for every running call to return; whether
        they all did."""
        if self.busy == 0:
            return True
        self._idle = anyio.Event()
        with CancelScope(shield=True), anyio.move_on_after(grace):
            await self._idle.wait()
        return self.busy == 0

    async def _work(self) -> None:
        """Take ready tasks and run them; park on an event when there are none.

        A worker returns when ``_MAX_PARKED`` others are already parked, or when nothing it could
        take can come any more. It holds one cancel scope across the calls it runs (cancelling a
        task cancels the scope of its call's worker: ``node.scope``), and replaces it only after
        a cancellation used it up.
        """
        try:
            self.waking -= 1
            backend = self.backend
            runner = self._runner
            assert backend is not None and runner is not None
            start, succeeded, failed, returned = (
                runner.start,
                runner.succeeded,
                runner.failed,
                runner.returned,
            )
            limit = self.limit
            queue = self.queue
            streak = 0
            lingered = False
            while True:
                with CancelScope() as scope:
                    while not scope.cancel_called:
                        node = queue.take() if limit is None or self.busy < limit else None
                        if node is None:
                            if self.closed or self._finished():
                                # Returning now, not at the run's end, keeps worker teardown off
                                # the last call's tail.
                                return
                            streak = 0
                            if not lingered:
                                # Stay awake for one loop step before parking: a task submitted or
                                # made ready meanwhile (a streamed plan's next task) starts without
                                # the cost of a wake-up. Counted as waking, so pump wakes no other.
                                lingered = True
                                self.waking += 1
                                try:
                                    await backend.checkpoint()
                                finally:
                                    self.waking -= 1
                                continue
                            lingered = False
                            if len(self._parked) >= _MAX_PARKED:
                                return  # enough parked already: exit now, not all at the run's end
                            wake = anyio.Event()
                            self._parked.append(wake)
                            await wake.wait()
                            self.waking -= 1
                            continue
                        lingered = False
                        self.busy += 1
                        if queue.size:
                            self.pump()
                        if self._parked and self._finished():
                            self.wake_parked()  # this was the last task to start
                        node.scope = scope
                        # The task runs here, through the runner's plain calls, rather than in a
                        # coroutine of its own: one coroutine less per task.
                        value: Any = None
                        try:
                            try:
                                value = await start(node)
                                succeeded(node, value)
                            except (Exception, SystemExit, KeyboardInterrupt) as exc:
                                failed(node, exc)  # (a cancellation passes: the scope ends it)
                            finally:
                                value = None  # a parked worker holds nothing of the call
                                returned(node)
                        finally:
                            node.scope = None
                            self.busy -= 1
                            if self.busy == 0 and self._idle is not None:
                                self._idle.set()
                        streak += 1
                        if streak == _STREAK:
                            # Calls that never suspend would otherwise hold the loop for a whole burst.
                            streak = 0
                            await backend.checkpoint()
        finally:
            self.alive -= 1
