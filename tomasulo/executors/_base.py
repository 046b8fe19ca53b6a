"""The executor protocol and what every executor shares."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

from .._text import describe_value, json_path
from ..exceptions import ToolOutputError
from ..tools import RunContext, Tool, schema_validator

__all__ = ["BaseExecutor", "Executor", "check_output", "prepare_kwargs", "unsendable_deps"]


@runtime_checkable
class Executor(Protocol):
    """Runs tool calls. The dispatcher enters it (``async with``) for the run.

    ``call`` runs ``tool.fn(**args)`` (through ``tool.convert`` when it is set) and returns the
    value, or raises: the tool's own exception, or a :class:`~tomasulo.exceptions.ToolError`
    (``ToolCrashed`` when the worker died, ``ToolOutputError`` when the value cannot be carried
    back). Cancelling the call must stop waiting at once.
    """

    async def call(self, tool: Tool, args: dict[str, Any], *, task_id: int, attempt: int) -> Any:
        """Call ``tool`` with validated ``args``; ``task_id`` and ``attempt`` are for errors."""
        ...

    async def __aenter__(self) -> Any: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None: ...


class BaseExecutor:
    """Start/stop bookkeeping: entering is counted, so one executor can serve many runs.

    The first ``__aenter__`` calls :meth:`start`, the last ``__aexit__`` calls :meth:`stop`.
    """

    _entered: int = 0

    async def start(self) -> None:
        """Acquire resources (worker pools, cluster connections)."""

    async def stop(self) -> None:
        """Release what :meth:`start` acquired."""

    async def __aenter__(self) -> Any:
        if self._entered == 0:
            await self.start()
        self._entered += 1
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        self._entered -= 1
        if self._entered == 0:
            await self.stop()
        return None


def prepare_kwargs(tool: Tool, args: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments for ``tool.fn``: ``tool.convert(args)`` when set, else ``args``."""
    return tool.convert(args) if tool.convert is not None else args


def unsendable_deps(kwargs: dict[str, Any], dumps: Callable[[Any], Any], where: str) -> str | None:
    """Why the call cannot travel to ``where``, when the reason is the run's deps: the message
    for a tool whose :class:`~tomasulo.tools.RunContext` holds deps that ``dumps`` (a pickler)
    refuses; ``None`` when the deps are not to blame."""
    for value in kwargs.values():
        if isinstance(value, RunContext):
            try:
                dumps(value.deps)
            except Exception as exc:
                return (
                    f"the run's deps (a {type(value.deps).__name__}) cannot be pickled to send to "
                    f"{where} ({type(exc).__name__}: {exc}); tools that take a RunContext get "
                    "a copy of the deps there: pass deps that pickle (settings, plain data), "
                    "create clients and connections inside the tool, or run it with the "
                    "LocalExecutor"
                )
    return None


def check_output(tool: Tool, value: Any, *, task_id: int, attempt: int) -> Any:
    """Return ``value`` when it fits ``tool.output_schema`` (or there is none).

    Pydantic models are checked in their JSON form. Raises :class:`ToolOutputError` listing the
    bad fields.
    """
    schema = tool.output_schema
    if not schema:
        return value
    validator = schema_validator(schema, owner=tool, key="output")
    dump = getattr(value, "model_dump", None)
    data = dump(mode="json") if callable(dump) else value
    errors = list(validator.iter_errors(data))
    if errors:
        first = errors[0]
        where = json_path(first.absolute_path) or "<result>"
        raise ToolOutputError(
            f"returned {describe_value(data)}, which does not fit the tool's output schema "
            f"({where}: {first.message})",
            tool=tool.name,
            task_id=task_id,
            attempt=attempt,
        )
    return value
