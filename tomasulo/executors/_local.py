"""Run tools in this process: async tools on the event loop, sync tools on worker threads."""

from __future__ import annotations

import functools
import inspect
from typing import Any

import anyio

from ..tools import Tool
from ._base import BaseExecutor
from ._threads import DaemonThreads

__all__ = ["DEFAULT_MAX_THREADS", "LocalExecutor"]

#: Sync tool calls running at once on worker threads, by default.
DEFAULT_MAX_THREADS = 40
_KIND_CACHE_SIZE = 1024
_THREADS = DaemonThreads()  # one pool for the process: threads outlive runs, idle ones end


class LocalExecutor(BaseExecutor):
    """Async tools are awaited on the loop; sync tools run on worker threads.

    At most ``max_threads`` sync calls run at once. A cancelled sync call (a timeout, a
    deadline) is abandoned: the dispatcher moves on at once, a warning names the task, and the
    thread finishes on its own. The threads are daemon threads, so a call that never returns
    does not keep the process from exiting (unlike ``anyio.to_thread``'s workers).

    >>> executor = LocalExecutor(max_threads=8)
    """

    def __init__(self, *, max_threads: int = DEFAULT_MAX_THREADS) -> None:
        if max_threads < 1:
            from ..exceptions import ConfigError

            raise ConfigError(f"max_threads must be at least 1, got {max_threads!r}")
        self.max_threads = max_threads
        self._limiter: anyio.CapacityLimiter | None = None
        # Whether each tool's function is async, keyed by the tool and checked against its
        # current function: ``inspect`` costs more than a small tool call.
        self._kinds: dict[Tool, tuple[Any, bool]] = {}

    async def start(self) -> None:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.max_threads)

    async def call(self, tool: Tool, args: dict[str, Any], *, task_id: int, attempt: int) -> Any:
        """Call the tool; see :class:`~tomasulo.executors.Executor`."""
        fn = tool.fn
        assert fn is not None, "the dispatcher rejects tools without a function"
        kind = self._kinds.get(tool)
        if kind is None or kind[0] is not fn:
            if len(self._kinds) >= _KIND_CACHE_SIZE:
                self._kinds.clear()
            kind = self._kinds[tool] = (fn, tool.is_async)
        kwargs = args if tool.convert is None else tool.convert(args)
        if kind[1]:
            return await fn(**kwargs)
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.max_threads)
        result = await _THREADS.run(
            functools.partial(fn, **kwargs), limiter=self._limiter, tool=tool.name, task_id=task_id
        )
        if inspect.isawaitable(result):  # a sync callable that hands back a coroutine
            result = await result
        return result
