"""What a tool can ask for besides its arguments: the run's dependencies and where it runs."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

import structlog

from .._logging import get_logger

__all__ = ["DepsT", "RunContext", "is_run_context"]

DepsT = TypeVar("DepsT")


@dataclass(frozen=True, slots=True)
class RunContext(Generic[DepsT]):
    """The context of one tool call, for a tool that asks for it in its signature.

    A parameter annotated ``RunContext`` (or ``RunContext[MyDeps]``) is filled in by the
    dispatcher on every call; it is not part of the tool's schema, so the planner never sees it
    and a plan cannot pass it. ``deps`` is what was given to ``Orchestrator(..., deps=...)``
    (or to one run, ``orch.run(query, deps=...)``): clients, settings, a database pool.

    >>> from dataclasses import dataclass
    >>> from tomasulo import RunContext, tool
    >>> @dataclass
    ... class Deps:
    ...     api_key: str
    >>> @tool
    ... async def search(ctx: RunContext[Deps], query: str) -> str:
    ...     '''Search the web.'''
    ...     ctx.logger.info("searching", query=query)
    ...     return f"{query} (key {ctx.deps.api_key[:2]}..., task {ctx.task_id})"
    >>> search.signature()
    'search(query: string)'

    With :class:`~tomasulo.executors.ProcessExecutor` or
    :class:`~tomasulo.executors.RayExecutor` the context travels to the worker by pickle, so
    ``deps`` must pickle, and the tool works on a copy of it.

    Attributes:
        deps: the run's dependencies (``None`` when none were given).
        run_id: the run's id.
        task_id: the task's id in the plan.
        attempt: 1 for the first attempt, 2 for the first retry, ...
        tool: the tool's name.
    """

    deps: DepsT
    run_id: str
    task_id: int
    attempt: int = 1
    tool: str = ""

    @property
    def logger(self) -> structlog.stdlib.BoundLogger:
        """A structlog logger bound with ``run_id``, ``task_id``, ``tool`` and ``attempt``
        (under ``tomasulo.tools.<name>``, so Python's logging decides where it goes)."""
        logger: structlog.stdlib.BoundLogger = get_logger(f"tomasulo.tools.{self.tool}").bind(
            run_id=self.run_id, task_id=self.task_id, tool=self.tool, attempt=self.attempt
        )
        return logger


def is_run_context(annotation: Any) -> bool:
    """Whether a parameter's annotation asks for the :class:`RunContext`."""
    if typing.get_origin(annotation) is Annotated:
        annotation = annotation.__origin__
    return annotation is RunContext or typing.get_origin(annotation) is RunContext
