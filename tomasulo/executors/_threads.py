"""Sync tool calls on daemon threads, so an abandoned call never keeps the process alive.

anyio's worker threads (``to_thread.run_sync``) are not daemon threads: the interpreter waits for
each at exit, so one sync tool that outlives its timeout (``time.sleep(60)``) would hold a
finished script or CLI for as long as it runs. Here each call runs on a daemon thread from a
small pool: a cancelled call is abandoned at once, named in a warning, and the process may
exit while it still runs.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import functools
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import anyio

__all__ = ["DaemonThreads", "abandoned_calls", "raised_on_thread"]

logger = logging.getLogger("tomasulo.executors")

#: An idle thread waits this long for another call before it ends.
_IDLE_SECONDS = 10.0

#: The note a ``KeyboardInterrupt`` raised by a call on one of these threads carries: it is the
#: tool's own doing, not a Ctrl-C (Python delivers signals to the main thread only).
_THREAD_NOTE = "raised by a sync tool on a worker thread (not a Ctrl-C: signals reach the main thread only)"

# What abandoned calls are still running: named at exit.
_abandoned: dict[int, str] = {}
_lock = threading.Lock()


class _Call:
    """One call handed to a thread; ``label`` is set (under ``_lock``) once it is abandoned."""

    __slots__ = ("deliver", "finished", "fn", "label")

    def __init__(self, fn: Callable[[], Any], deliver: Callable[[bool, Any], None]) -> None:
        self.fn: Callable[[], Any] | None = fn
        self.deliver: Callable[[bool, Any], None] | None = deliver
        self.finished = False
        self.label: str | None = None


def raised_on_thread(exc: BaseException) -> bool:
    """Whether ``exc`` (a ``KeyboardInterrupt``) was raised by a sync tool on one of these
    threads, so it cannot be a Ctrl-C."""
    return _THREAD_NOTE in getattr(exc, "__notes__", ())


def abandoned_calls() -> list[str]:
    """Descriptions of the cancelled sync calls whose threads are still running."""
    with _lock:
        return list(_abandoned.values())


@atexit.register
def _name_abandoned_at_exit() -> None:
    calls = abandoned_calls()
    if calls:
        logger.warning(
            "exiting with %d abandoned sync tool call(s) still running on daemon threads: %s",
            len(calls),
            "; ".join(calls),
        )


class _Worker(threading.Thread):
    def __init__(self, pool: DaemonThreads) -> None:
        super().__init__(name="tomasulo tool thread", daemon=True)
        self.pool = pool
        self.jobs: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()

    def run(self) -> None:
        jobs = self.jobs
        pool = self.pool
        while True:
            try:
                call = jobs.get(timeout=_IDLE_SECONDS)
            except queue.Empty:
                with pool._lock:
                    try:
                        pool._idle.remove(self)
                    except ValueError:  # just taken for a call: serve it
                        continue
                return
            if call is None:
                return
            fn, deliver = call.fn, call.deliver
            call.fn = call.deliver = None
            assert fn is not None and deliver is not None
            try:
                result: Any = fn()
                ok = True
            except BaseException as exc:  # delivered to the caller, whatever it is
                if isinstance(exc, KeyboardInterrupt):
                    exc.add_note(_THREAD_NOTE)
                result, ok = exc, False
            del fn
            with _lock:
                call.finished = True
                label = call.label
                if label is not None:
                    _abandoned.pop(id(call), None)
            if label is not None:
                logger.warning("%s finished after it was abandoned; its result was dropped", label)
            else:
                deliver(ok, result)
            del deliver, result, call
            with pool._lock:
                pool._idle.append(self)


class DaemonThreads:
    """A pool of daemon threads for sync calls; idle threads end after a while.

    >>> threads = DaemonThreads()
    >>> # value = await threads.run(fn, limiter=limiter, tool="search", task_id=3)
    """

    def __init__(self) -> None:
        self._idle: deque[_Worker] = deque()
        self._lock = threading.Lock()

    def _worker(self) -> _Worker:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        worker = _Worker(self)
        worker.start()
        return worker

    async def run(
        self, fn: Callable[[], Any], *, limiter: anyio.CapacityLimiter, tool: str, task_id: int
    ) -> Any:
        """Call ``fn()`` on a daemon thread (at most ``limiter``'s tokens at once) and return
        its value or raise its exception. Cancelling abandons the call at once: its thread
        runs on (a warning names the task and tool) but holds neither the caller nor the exit.

        ``fn`` runs in a copy of the caller's context, as with ``anyio.to_thread.run_sync``: it
        sees the caller's context variables (a request id, a tenant), and what it sets stays
        with the call."""
        label = (task_id, tool)
        fn = functools.partial(contextvars.copy_context().run, fn)
        async with limiter:
            try:
                loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None:
                return await self._run_asyncio(loop, fn, label)
            return await self._run_other(fn, label)

    async def _run_asyncio(
        self, loop: asyncio.AbstractEventLoop, fn: Callable[[], Any], label: tuple[int, str]
    ) -> Any:
        future: asyncio.Future[Any] = loop.create_future()

        def settle(ok: bool, result: Any) -> None:
            if future.done():
                return
            if ok:
                future.set_result(result)
            else:
                future.set_exception(result)

        def deliver(ok: bool, result: Any) -> None:
            try:
                loop.call_soon_threadsafe(settle, ok, result)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass

        call = _Call(fn, deliver)
        self._worker().jobs.put(call)
        try:
            return await future
        except asyncio.CancelledError:
            _abandon(call, label)
            raise

    async def _run_other(self, fn: Callable[[], Any], label: tuple[int, str]) -> Any:
        done = anyio.Event()
        box: list[tuple[bool, Any]] = []
        token = _trio_token()

        def deliver(ok: bool, result: Any) -> None:
            box.append((ok, result))
            try:
                token.run_sync_soon(done.set)
            except Exception:  # the run has finished: nobody waits any more
                pass

        call = _Call(fn, deliver)
        self._worker().jobs.put(call)
        try:
            await done.wait()
        except anyio.get_cancelled_exc_class():
            if not box:
                _abandon(call, label)
                raise
            # The call returned before the cancellation reached it (trio expires deadlines
            # before it runs what threads handed back): its result stands. Nothing is lost:
            # trio raises again at the next checkpoint of a scope that is still cancelled.
        ok, result = box[0]
        if ok:
            return result
        raise result


def _abandon(call: _Call, where: tuple[int, str]) -> None:
    label = f"task {where[0]} ({where[1]})"
    with _lock:
        if call.finished:
            return  # it ended meanwhile: nothing is left running
        call.label = label
        _abandoned[id(call)] = label
    logger.warning(
        "%s was cancelled while its sync function ran; the call is abandoned and its daemon "
        "thread runs on (it does not keep the process from exiting)",
        label,
    )


def _trio_token() -> Any:
    import trio

    return trio.lowlevel.current_trio_token()
