"""Run tools on worker processes, for CPU-bound work that would hold the event loop."""

from __future__ import annotations

import functools
import os
import pickle
import sys
from typing import Any

import anyio
import anyio.to_process
from anyio import BrokenWorkerProcess

from ..exceptions import ConfigError, ToolCrashed, ToolExecutionError
from ..tools import Tool, function_ref
from ._base import BaseExecutor, prepare_kwargs, unsendable_deps
from ._remote import invoke, unpack

__all__ = ["ProcessExecutor"]


class _UnguardedMain(ConfigError):
    """A ProcessExecutor was started inside a worker process, while the worker loaded the main
    script: the script starts its runs without an ``if __name__ == "__main__":`` guard."""


def _refuse_in_unguarded_worker() -> None:
    """Raise :class:`_UnguardedMain` when called while an anyio process worker loads the
    parent's main script (it removes ``__main__`` and runs the script as ``__mp_main__``)."""
    if "__main__" in sys.modules or "__mp_main__" not in sys.modules:
        return
    path = getattr(sys.modules["__mp_main__"], "__file__", None) or "the main script"
    raise _UnguardedMain(
        f"ProcessExecutor was started while a worker process loaded {path}: the script starts "
        'its runs at import time, with no `if __name__ == "__main__":` guard, so every worker '
        'would run them again. Put the code that starts runs under `if __name__ == "__main__":` '
        "(tools may stay defined at module level)"
    )


class ProcessExecutor(BaseExecutor):
    """Each call runs on a worker process (anyio's process pool for the event loop).

    At most ``max_workers`` calls run at once (default: the number of CPUs). The tool's function,
    its arguments and its value travel by pickle, so the function must be defined at module
    level (``@tool``-decorated functions are fine), in an importable module or in the main
    script; a script that uses it must start its runs under ``if __name__ == "__main__":``,
    because each worker loads the main script (the task fails with a message that says so when
    the guard is missing). A worker that dies mid-call fails the task with
    :class:`~tomasulo.exceptions.ToolCrashed`; a cancelled or timed-out call kills its worker.

    >>> executor = ProcessExecutor(max_workers=4)
    """

    def __init__(self, *, max_workers: int | None = None) -> None:
        if max_workers is not None and max_workers < 1:
            raise ConfigError(f"max_workers must be at least 1, got {max_workers!r}")
        self.max_workers = max_workers or os.cpu_count() or 2
        self._limiter: anyio.CapacityLimiter | None = None

    async def start(self) -> None:
        _refuse_in_unguarded_worker()
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.max_workers)

    async def call(self, tool: Tool, args: dict[str, Any], *, task_id: int, attempt: int) -> Any:
        """Call the tool on a worker process; see :class:`~tomasulo.executors.Executor`."""
        fn = tool.fn
        assert fn is not None, "the dispatcher rejects tools without a function"
        if self._limiter is None:
            _refuse_in_unguarded_worker()
            self._limiter = anyio.CapacityLimiter(self.max_workers)
        kwargs = prepare_kwargs(tool, args)
        # A function decorated with @tool is shadowed by its Tool in its module, so it travels
        # as a reference that the worker resolves (the worker loads the main script as well).
        target = function_ref(fn, main=True)
        try:
            reply = await anyio.to_process.run_sync(
                functools.partial(invoke, target, kwargs), cancellable=True, limiter=self._limiter
            )
        except BrokenWorkerProcess as exc:
            if isinstance(exc.__cause__, _UnguardedMain):
                raise ToolExecutionError(
                    str(exc.__cause__),
                    tool=tool.name,
                    task_id=task_id,
                    attempt=attempt,
                    error_type="ConfigError",
                ) from exc
            raise ToolCrashed(
                "the worker process running the tool died (killed, out of memory, or the tool "
                "exited the process)",
                tool=tool.name,
                task_id=task_id,
                attempt=attempt,
            ) from exc
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            why = unsendable_deps(kwargs, pickle.dumps, "a worker process")
            raise ToolExecutionError(
                why
                or f"the tool or its arguments cannot be sent to a worker process ({exc}); "
                "ProcessExecutor needs module-level functions and picklable arguments",
                tool=tool.name,
                task_id=task_id,
                attempt=attempt,
                error_type=type(exc).__name__,
            ) from exc
        return unpack(reply, tool=tool.name, task_id=task_id, attempt=attempt)
