"""One task's call: its arguments, attempts, timeout and retries, through the executor.

:class:`Calls` resolves a task's arguments, calls its tool and gives the value as a JSON value,
or raises what ended the call: a :class:`ReferenceResolutionError` or
:class:`ToolArgumentError` for arguments, the tool's own error (a plain exception is wrapped by
:func:`as_tool_error` when the task fails), :class:`ToolTimeout`, :class:`ToolOutputError`.
Retries follow the run's :class:`~tomasulo.tools.RetryPolicy`
(:meth:`Limits.retry_policy <tomasulo.dispatcher.Limits.retry_policy>`): only failures the
tool is ``idempotent`` for, or that are marked ``retryable``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, stop_before_delay

from .._text import safe_str
from ..exceptions import (
    Interrupt,
    ReferenceResolutionError,
    ToolArgumentError,
    ToolError,
    ToolExecutionError,
    ToolOutputError,
    ToolTimeout,
)
from ..executors import Executor, check_output, raised_on_thread
from ..tools import NotJSONError, RetryPolicy, RunContext, to_json_value
from ._events import TaskRetrying
from ._journal import STARTED, RunJournal
from ._limits import Limits
from ._node import TaskNode
from ._watch import CallWatch

__all__ = ["JSON_SCALARS", "Calls", "as_tool_error", "json_result"]

logger = logging.getLogger("tomasulo.dispatcher")

_now = time.monotonic

#: A call with a timeout that returns later than this past it, without being stopped, is late.
_LATE_SLACK = 0.02
#: Result types that need no conversion to JSON (checked by exact type, before anything else).
JSON_SCALARS = frozenset({str, int, bool, type(None)})
_JSON_SCALARS = JSON_SCALARS


class Calls:
    """Runs the calls of one run's tasks (see the module's docstring).

    ``local``: the executor is a plain :class:`~tomasulo.executors.LocalExecutor`, so a plain
    async tool may be awaited directly; ``on_loop``: async tools run on this event loop (they
    can hold it, or swallow its cancellation, so a call with a timeout is watched).
    """

    def __init__(
        self,
        executor: Executor,
        journal: RunJournal,
        limits: Limits,
        deps: Any,
        lookup: Callable[[int], Any],
        *,
        local: bool,
        on_loop: bool,
    ) -> None:
        self.executor = executor
        self.lookup = lookup  # task k's result, for references
        self.journal = journal
        self.run_id = journal.run_id
        self.limits = limits
        self.deps = deps
        self.local = local
        self.on_loop = on_loop
        #: The running backend's cancellation exception (set when the run starts).
        self.cancel_exc: type[BaseException] = BaseException
        self._retry: dict[int, RetryPolicy] = {}  # by ToolPolicy.retries

    def start(self, node: TaskNode) -> Awaitable[Any]:
        """Resolve the task's arguments and start its call: what to await for its value (its
        attempts, timeout and retries included); pass that value to :meth:`result`. Raises
        :class:`ReferenceResolutionError` or :class:`ToolArgumentError` for arguments that do
        not resolve or fit the tool.

        (Not a coroutine itself: for a plain async tool the awaitable is the tool's own
        coroutine, one layer fewer on the path of every instant call.)
        """
        args = node.resolve(self.lookup)
        info = node.info
        direct = info.direct
        if direct is not None and self.local:
            # A plain async tool on a local executor (no conversion, timeout, retries, context
            # or output check): what _attempt and LocalExecutor.call would do for it.
            node.attempts = 1
            node.started_at = _now()
            self.journal.task(STARTED, node)
            return direct(**args)  # type: ignore[no-any-return]
        if info.policy.retries == 0:
            return self._attempt(node, args, 1)
        return self._with_retries(node, args)

    def result(self, node: TaskNode, value: Any) -> Any:
        """The task's result from the value its call returned: a JSON value (see
        :func:`json_result`; the attempts of a call through the executor convert their own)."""
        if type(value) in _JSON_SCALARS or node.outcome is not None:
            return value
        if node.info.direct is not None and self.local:
            return json_result(node, value)
        return value

    async def _attempt(self, node: TaskNode, args: dict[str, Any], attempt: int) -> Any:
        tool = node.tool
        now = _now()
        node.attempts = attempt
        if node.started_at is None:
            node.started_at = now
        self.journal.started(node, now, attempt)
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
                CallWatch(call, now + timeout, self.cancel_exc)
                if node.info.on_loop and self.on_loop
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
            value = json_result(node, value)  # before the output check: tuples are arrays
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

    def _retry_policy(self, retries: int) -> RetryPolicy:
        policy = self._retry.get(retries)
        if policy is None:
            policy = self._retry[retries] = self.limits.retry_policy(retries)
        return policy

    async def _with_retries(self, node: TaskNode, args: dict[str, Any]) -> Any:
        idempotent = node.info.policy.idempotent
        policy = self._retry_policy(node.info.policy.retries)

        def retryable(exc: BaseException) -> bool:
            if not isinstance(exc, Exception) or isinstance(
                exc, Interrupt | ReferenceResolutionError | ToolArgumentError
            ):
                return False
            return getattr(exc, "retryable", False) is True or idempotent

        def wait(state: RetryCallState) -> float:
            # A tool error may carry the server's Retry-After (ToolHTTPError.retry_after): it
            # replaces the backoff, cut to the policy's max_retry_after.
            exc = state.outcome.exception() if state.outcome is not None else None
            after = getattr(exc, "retry_after", None)
            if isinstance(after, bool) or not isinstance(after, int | float):
                after = None
            return policy.backoff(state.attempt_number, after)

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            delay = state.next_action.sleep if state.next_action is not None else 0.0
            self.journal.record(
                TaskRetrying,
                node.tid,
                tool=node.name,
                attempt=state.attempt_number,
                error_type=type(exc).__name__,
                message=safe_str(exc),
                delay=delay,
            )

        retrying = AsyncRetrying(
            stop=stop_after_attempt(policy.attempts) | stop_before_delay(policy.total),
            wait=wait,
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


def json_result(node: TaskNode, value: Any) -> Any:
    """The tool's value as a JSON value, by the rule in :class:`~tomasulo.tools.Tool`'s
    docstring, or :class:`ToolOutputError` saying why it is not one."""
    try:
        return to_json_value(value)
    except NotJSONError as exc:
        raise ToolOutputError(
            str(exc), tool=node.name, task_id=node.tid, attempt=max(node.attempts, 1)
        ) from None


def as_tool_error(exc: BaseException, node: TaskNode) -> Exception:
    """What a task failed with, for ``exc`` escaping its call: a :class:`ToolError` as it is
    (with the task's id), anything else wrapped in :class:`ToolExecutionError`."""
    if isinstance(exc, ToolError):
        if exc.task_id is None:
            exc.task_id = node.tid
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
            text += " (the tool raised KeyboardInterrupt; a tool must return a value or raise an exception)"
        else:
            text += (
                " (a Ctrl-C, or the tool raised KeyboardInterrupt, on the event loop: the run is"
                " cancelled and the KeyboardInterrupt passed on)"
            )
    err = ToolExecutionError(
        text,
        tool=node.name,
        task_id=node.tid,
        attempt=max(node.attempts, 1),
        error_type=type(exc).__name__,
    )
    err.__cause__ = exc
    return err
