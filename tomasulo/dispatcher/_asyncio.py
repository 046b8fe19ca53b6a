"""The asyncio-only fast path: workers as plain asyncio tasks, and abandoning stubborn calls.

Everything here works only under asyncio; the dispatcher uses it when it runs on asyncio and
:class:`~tomasulo.dispatcher._pool.TaskGroupBackend` elsewhere (trio), the way anyio keeps each
backend in a module of its own. Two things need it:

- Starting a worker with anyio's ``start_soon`` costs about 30 µs, six times as much as
  ``loop.create_task``; a run of thousands of short calls starts hundreds of workers.
- A call that ignores cancellation (an async tool that catches ``CancelledError`` and carries
  on) can be left running when the run ends: its worker is taken out of ``asyncio.all_tasks()``
  so that closing the loop does not wait for it (structured concurrency on trio waits instead).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import anyio
from anyio import CancelScope

from ._pool import WorkerPool

__all__ = ["AsyncioBackend", "on_asyncio"]

logger = logging.getLogger("tomasulo.dispatcher")


def on_asyncio() -> bool:
    """Whether this code runs in an asyncio task."""
    try:
        return asyncio.current_task() is not None
    except RuntimeError:  # no asyncio loop running in this thread
        return False


class AsyncioBackend:
    """Workers as plain tasks of the running asyncio loop, tracked by the run itself.

    ``on_error(exc)`` hears of a worker that failed (a bug in the dispatcher, not a tool's
    error); ``pool`` counts the workers running a call.
    """

    abandons = True

    def __init__(self, run_id: str, pool: WorkerPool, on_error: Callable[[BaseException], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._run_id = run_id
        self._pool: WorkerPool | None = pool
        self._on_error: Callable[[BaseException], None] | None = on_error
        self.tasks: set[asyncio.Task[None]] = set()
        self._gone: anyio.Event | None = None

    def spawn(self, worker: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
        task = self._loop.create_task(worker(), name=name)
        self.tasks.add(task)
        task.add_done_callback(self._done)

    @staticmethod
    def checkpoint() -> Awaitable[None]:
        """``anyio.lowlevel.checkpoint`` without its lookup of the running backend: on asyncio
        it is ``asyncio.sleep(0)`` (cancellation reaches the task at any await)."""
        return asyncio.sleep(0)

    def cancel(self) -> None:
        for task in self.tasks:
            task.cancel()

    def _done(self, task: asyncio.Task[None]) -> None:
        """A worker ended: forget it; a failure ends the run."""
        self.tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            logger.error("run %s: a dispatcher worker failed", self._run_id, exc_info=error)
            if self._on_error is not None:
                self._on_error(error)
        if self._gone is not None and len(self.tasks) <= self._busy():
            self._gone.set()  # every worker left runs an abandoned call, if any

    def _busy(self) -> int:
        return self._pool.busy if self._pool is not None else 0

    def detach(self) -> None:
        """The run is over: drop the links back into it (abandoned calls may still end later)."""
        self._pool = None
        self._on_error = None

    async def wait_returned(self) -> None:
        """Wait (shielded) until every worker not running a call has returned: woken ones
        seeing the run closed, cancelled ones unwinding."""
        if len(self.tasks) > self._busy():
            self._gone = anyio.Event()
            with CancelScope(shield=True):
                await self._gone.wait()

    def forget(self) -> None:
        """Take workers running abandoned calls out of ``asyncio.all_tasks()``, so that closing
        the event loop (``asyncio.run``, ``anyio.run``) does not wait for a coroutine that ignores
        cancellation: the process can exit, and asyncio logs the task as destroyed while pending.

        This uses asyncio's private ``_unregister_task``; where that is missing or no longer
        works, a warning says that the process may wait for the abandoned calls at exit."""
        tasks = list(self.tasks)
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
                self._run_id,
                len(left),
            )
