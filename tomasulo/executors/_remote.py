"""What runs on the far side of a process or Ray worker, and how its answer is read back.

:func:`invoke` serves one call per worker (a process, a Ray task); :func:`ainvoke` serves many at
once on a long-lived worker's event loop (a Ray async actor). Both answer in the same format, so
:func:`unpack` reads either.

The worker pickles the tool's value itself, so a value that cannot travel is told apart from a
tool that raised: the first becomes :class:`~tomasulo.exceptions.ToolOutputError`, the second
the tool's own exception (or :class:`~tomasulo.exceptions.ToolExecutionError` when the exception
cannot travel either).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import pickle
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread

from ..exceptions import ToolExecutionError, ToolOutputError

__all__ = ["ainvoke", "invoke", "unpack"]

Reply = tuple[Any, ...]


def invoke(fn: Callable[..., Any], kwargs: dict[str, Any]) -> Reply:
    """Call ``fn(**kwargs)`` in a worker and return a picklable reply."""
    try:
        value = fn(**kwargs)
        if inspect.isawaitable(value):
            value = asyncio.run(_await(value))
    except BaseException as exc:  # the worker must answer whatever the tool does
        return _raised(exc)
    return _returned(value)


async def ainvoke(
    fn: Callable[..., Any],
    kwargs: dict[str, Any],
    *,
    is_async: bool,
    limiter: anyio.CapacityLimiter | None = None,
) -> Reply:
    """Call ``fn(**kwargs)`` on the running event loop and return the same reply as :func:`invoke`.

    An async tool is awaited on the loop, so many calls share it; a sync tool runs on a worker
    thread (at most ``limiter``'s tokens at once) so it cannot hold the loop. Cancelling the
    caller cancels the call (a sync tool's thread is abandoned and finishes on its own).
    """
    try:
        if is_async:
            value = await fn(**kwargs)
        else:
            value = await anyio.to_thread.run_sync(
                functools.partial(fn, **kwargs), abandon_on_cancel=True, limiter=limiter
            )
            if inspect.isawaitable(value):  # a sync callable that hands back a coroutine
                value = await value
    except anyio.get_cancelled_exc_class():
        raise
    except BaseException as exc:  # the worker must answer whatever the tool does
        return _raised(exc)
    return _returned(value)


def _raised(exc: BaseException) -> Reply:
    try:
        pickle.dumps(exc, pickle.HIGHEST_PROTOCOL)
    except Exception:
        return ("raised-text", type(exc).__name__, str(exc))
    return ("raised", exc)


def _returned(value: Any) -> Reply:
    try:
        data = pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        return ("garbage", type(value).__name__, f"{type(exc).__name__}: {exc}")
    return ("ok", data)


async def _await(awaitable: Any) -> Any:
    return await awaitable


def unpack(reply: Reply, *, tool: str, task_id: int, attempt: int) -> Any:
    """The value in a worker's reply, or raise what the reply says went wrong."""
    kind = reply[0]
    if kind == "ok":
        try:
            return pickle.loads(reply[1])
        except Exception as exc:
            raise ToolOutputError(
                f"the tool's value could not be read back from the worker: {type(exc).__name__}: {exc}",
                tool=tool,
                task_id=task_id,
                attempt=attempt,
            ) from exc
    if kind == "raised":
        raise reply[1]
    if kind == "raised-text":
        raise ToolExecutionError(
            f"{reply[1]}: {reply[2]}",
            tool=tool,
            task_id=task_id,
            attempt=attempt,
            error_type=reply[1],
        )
    if kind == "garbage":
        raise ToolOutputError(
            f"returned a {reply[1]} that cannot be sent back from the worker ({reply[2]}); "
            "return plain data (JSON-like values, dataclasses or pydantic models)",
            tool=tool,
            task_id=task_id,
            attempt=attempt,
        )
    raise ToolExecutionError(
        f"unexpected reply from the worker: {kind!r}", tool=tool, task_id=task_id, attempt=attempt
    )
