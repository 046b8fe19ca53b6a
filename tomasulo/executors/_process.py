"""Run tools on worker processes, for CPU-bound work that would hold the event loop."""

from __future__ import annotations

import functools
import os
import pickle
from typing import Any

import anyio
import anyio.to_process
from anyio import BrokenWorkerProcess

from ..exceptions import ConfigError, ToolCrashed, ToolExecutionError
from ..tools import Tool
from ._base import BaseExecutor, prepare_kwargs
from ._remote import invoke, unpack

__all__ = ["ProcessExecutor"]


class ProcessExecutor(BaseExecutor):
    """Each call runs on a worker process (anyio's process pool for the event loop).

    At most ``max_workers`` calls run at once (default: the number of CPUs). The tool's function,
    its arguments and its value travel by pickle, so the function must be defined at module
    level. A worker that dies mid-call fails the task with
    :class:`~tomasulo.exceptions.ToolCrashed`; a cancelled or timed-out call kills its worker.

    >>> executor = ProcessExecutor(max_workers=4)
    """

    def __init__(self, *, max_workers: int | None = None) -> None:
        if max_workers is not None and max_workers < 1:
            raise ConfigError(f"max_workers must be at least 1, got {max_workers!r}")
        self.max_workers = max_workers or os.cpu_count() or 2
        self._limiter: anyio.CapacityLimiter | None = None

    async def start(self) -> None:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.max_workers)

    async def call(self, tool: Tool, args: dict[str, Any], *, task_id: int, attempt: int) -> Any:
        """Call the tool on a worker process; see :class:`~tomasulo.executors.Executor`."""
        fn = tool.fn
        assert fn is not None, "the dispatcher rejects tools without a function"
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.max_workers)
        kwargs = prepare_kwargs(tool, args)
        try:
            reply = await anyio.to_process.run_sync(
                functools.partial(invoke, fn, kwargs), cancellable=True, limiter=self._limiter
            )
        except BrokenWorkerProcess as exc:
            raise ToolCrashed(
                "the worker process running the tool died (killed, out of memory, or the tool "
                "exited the process)",
                tool=tool.name,
                task_id=task_id,
                attempt=attempt,
            ) from exc
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            raise ToolExecutionError(
                f"the tool or its arguments cannot be sent to a worker process ({exc}); "
                "ProcessExecutor needs module-level functions and picklable arguments",
                tool=tool.name,
                task_id=task_id,
                attempt=attempt,
                error_type=type(exc).__name__,
            ) from exc
        return unpack(reply, tool=tool.name, task_id=task_id, attempt=attempt)
