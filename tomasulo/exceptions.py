"""Every error tomasulo raises, in one tree.

::

    TomasuloError
    ├── UserError                      a mistake by the developer using the library
    │   ├── ToolDefinitionError        a function that cannot become a tool
    │   ├── SchemaError                a raw tool schema that cannot be normalized
    │   ├── ToolsetError               a name clash, or a lookup of a tool that is not there
    │   ├── ConfigError                bad limits, options or settings
    │   ├── OpenAPIError               an OpenAPI spec that cannot be loaded or turned into tools
    │   ├── WorkflowError              a workflow file that cannot be loaded (line, column)
    │   └── DispatchError              the dispatcher was misused (a taken id, a closed input)
    ├── PlanError                      a plan that cannot be accepted (line, column, text, hint)
    │   ├── PlanSyntaxError            text that is not the plan language
    │   ├── UnknownToolError           a task names a tool that is not in the toolset
    │   ├── PlanArgumentError          the arguments of a task do not fit the tool's schema
    │   │   ├── TooManyPositionalError
    │   │   ├── UnknownKeywordError
    │   │   ├── DuplicateArgumentError
    │   │   ├── MissingArgumentError
    │   │   └── ArgumentTypeError      a literal of the wrong type
    │   ├── ForwardReferenceError      a reference to the same or a later task
    │   ├── TaskIdError                ids that do not start right or do not rise by one
    │   ├── DuplicateJoinError         a second join()
    │   ├── TextAfterJoinError         anything but <END_OF_PLAN> after join()
    │   ├── TooManyTasksError          more tasks than the cap
    │   └── IncompletePlanError        the text ended in the middle of a task
    ├── ToolArgumentError              Tool.validate found bad fields (every one is listed)
    ├── ToolError                      a tool call that did not succeed (task id, attempt)
    │   ├── ToolExecutionError         the tool raised
    │   ├── ToolTimeout                (also a TimeoutError) the tool ran past its timeout
    │   ├── ToolHTTPError              an HTTP tool's request got an error status or no answer
    │   ├── ToolCrashed                the worker process running the tool died
    │   ├── ToolOutputError            the tool returned something that does not fit its output schema
    │   └── ReferenceResolutionError   an input could not be resolved from an upstream result
    ├── ToolSourceError                a tool source (an MCP server) could not be opened or listed
    ├── DestinationRefused             (also a PermissionError) a URL or address the SSRF check refuses
    ├── RunFailed                      RunResult.raise_for_status(): the run failed (result attached)
    ├── RunCancelled                   RunResult.raise_for_status(): the run was cancelled
    ├── LLMError                       the LLM server did not give a usable answer
    │   ├── LLMConnectionError         could not connect, or the connection dropped
    │   ├── LLMTimeout                 (also a TimeoutError)
    │   ├── LLMRateLimitError          429 after every retry
    │   ├── LLMStatusError             another HTTP error status
    │   └── LLMResponseError           the answer could not be used (no plan after repair)
    │       └── LLMTruncated           the server stopped at max_tokens (finish_reason "length")
    ├── BudgetExceeded                 a run hit its bound on replans, tokens, cost or wall time
    ├── ServiceError                   the tomasulo service answered with a problem (status, type, detail)
    │   ├── ServiceNotFound            (also a LookupError) 404: no such object for this tenant
    │   ├── ServiceRateLimited         429 with a Retry-After past the client's bound, or after every retry
    │   └── ServiceConnectionError     (also a ConnectionError) the service could not be reached
    └── RecordedError                  an error read back from a run's journal (type name, message)

Control-flow signals are not errors and do not derive from ``TomasuloError``:

    Interrupt                          raised by a tool to ask for a replan
    Replan                             raised inside the joiner to ask for a new plan
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "EXCERPT_CHARS",
    "ArgumentTypeError",
    "BudgetExceeded",
    "ConfigError",
    "DestinationRefused",
    "DispatchError",
    "DuplicateArgumentError",
    "DuplicateJoinError",
    "FieldError",
    "ForwardReferenceError",
    "IncompletePlanError",
    "Interrupt",
    "LLMConnectionError",
    "LLMError",
    "LLMRateLimitError",
    "LLMResponseError",
    "LLMStatusError",
    "LLMTimeout",
    "LLMTruncated",
    "MissingArgumentError",
    "OpenAPIError",
    "PlanArgumentError",
    "PlanError",
    "PlanSyntaxError",
    "RecordedError",
    "ReferenceResolutionError",
    "Replan",
    "RunCancelled",
    "RunFailed",
    "SchemaError",
    "ServiceConnectionError",
    "ServiceError",
    "ServiceNotFound",
    "ServiceRateLimited",
    "TaskIdError",
    "TextAfterJoinError",
    "TomasuloError",
    "TooManyPositionalError",
    "TooManyTasksError",
    "ToolArgumentError",
    "ToolCrashed",
    "ToolDefinitionError",
    "ToolError",
    "ToolExecutionError",
    "ToolHTTPError",
    "ToolOutputError",
    "ToolSourceError",
    "ToolTimeout",
    "ToolsetError",
    "UnknownKeywordError",
    "UnknownToolError",
    "UserError",
    "WorkflowError",
]


class TomasuloError(Exception):
    """Root of every error raised by tomasulo."""


# -- the developer's mistakes -------------------------------------------------------------------


class UserError(TomasuloError):
    """The developer using the library asked for something that cannot work."""


class ToolDefinitionError(UserError):
    """A function or object that cannot become a tool (bad signature, unsupported hint)."""


class SchemaError(UserError):
    """A raw tool schema that cannot be normalized.

    The message names the tool and the field (a JSON pointer into the schema).
    """

    def __init__(self, message: str, *, tool: str | None = None, field: str | None = None) -> None:
        self.tool = tool
        self.field = field
        where = []
        if tool is not None:
            where.append(f"tool {tool!r}")
        if field is not None:
            where.append(f"field {field!r}")
        prefix = f"{', '.join(where)}: " if where else ""
        super().__init__(f"{prefix}{message}")


class ToolsetError(UserError, KeyError):
    """Two tools with one name, or a lookup of a tool that is not in the toolset."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ConfigError(UserError, ValueError):
    """Bad limits, options or settings."""


class OpenAPIError(UserError):
    """An OpenAPI (or Swagger 2.0) spec that cannot be loaded or turned into tools.

    ``where`` is the spec (a path or URL) and ``pointer`` the JSON pointer of the part at fault.
    """

    def __init__(self, message: str, *, where: str = "", pointer: str = "") -> None:
        self.where = where
        self.pointer = pointer
        place = where + (f"#{pointer}" if pointer else "")
        super().__init__(f"{place}: {message}" if place else message)


class WorkflowError(UserError):
    """A workflow file that cannot be loaded; carries the file, line and column where known."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.path = path
        self.line = line
        self.column = column
        where = path or "<workflow>"
        if line is not None:
            where += f":{line}"
            if column is not None:
                where += f":{column}"
        super().__init__(f"{where}: {message}")


# -- plans --------------------------------------------------------------------------------------


class PlanError(TomasuloError):
    """A plan that cannot be accepted.

    Attributes:
        line: 1-based line of the offending text in the plan.
        column: 1-based column where the problem starts.
        text: the offending text (usually the whole line).
        hint: what to do about it.
    """

    default_hint = ""

    def __init__(
        self,
        message: str,
        *,
        line: int = 0,
        column: int = 0,
        text: str = "",
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.line = line
        self.column = column
        self.text = text
        self.hint = self.default_hint if hint is None else hint
        super().__init__(self._render())

    def _render(self) -> str:
        # line 0: not from plan text (a hand-built Task), so there is no place to point at
        out = f"line {self.line}, column {self.column}: {self.message}" if self.line else self.message
        if self.text and self.line:
            shown, caret = _excerpt(self.text, max(self.column - 1, 0))
            out += f"\n    {shown}\n    {' ' * caret}^"
        if self.hint:
            out += f"\n  hint: {self.hint}"
        return out

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_plan_error,
            (type(self), self.message, self.line, self.column, self.text, self.hint),
        )


#: A plan error shows at most this many characters of its line, around the column it points at.
EXCERPT_CHARS = 120


def _excerpt(text: str, at: int) -> tuple[str, int]:
    """``text`` cut to a window of :data:`EXCERPT_CHARS` around index ``at`` (``...`` where cut),
    and where the caret goes in it; a 20 kB line from a model is not printed whole."""
    if len(text) <= EXCERPT_CHARS:
        return text, at
    start = min(max(at - EXCERPT_CHARS // 2, 0), max(len(text) - EXCERPT_CHARS, 0))
    end = start + EXCERPT_CHARS
    head, tail = ("..." if start else ""), ("..." if end < len(text) else "")
    return head + text[start:end] + tail, at - start + len(head)


def _rebuild_plan_error(
    cls: type[PlanError], message: str, line: int, column: int, text: str, hint: str
) -> PlanError:
    return cls(message, line=line, column=column, text=text, hint=hint)


class PlanSyntaxError(PlanError):
    """Text that is not the plan language."""

    default_hint = 'each line is `N. tool(arg, key="value")`, `Thought: ...`, or `N. join()`'


class UnknownToolError(PlanError):
    """A task names a tool that is not in the toolset."""


class PlanArgumentError(PlanError):
    """The arguments of a task do not fit the tool's input schema."""


class TooManyPositionalError(PlanArgumentError):
    """More positional arguments than the tool has parameters."""


class UnknownKeywordError(PlanArgumentError):
    """A keyword argument the tool does not take."""


class DuplicateArgumentError(PlanArgumentError):
    """One parameter given twice (positionally and by keyword, or by two keywords)."""


class MissingArgumentError(PlanArgumentError):
    """A required parameter was not given."""


class ArgumentTypeError(PlanArgumentError):
    """A literal argument of the wrong type for the tool's schema."""


class ForwardReferenceError(PlanError):
    """A reference to the same task or a later one."""

    default_hint = "a task may only use the results of tasks with smaller ids"


class TaskIdError(PlanError):
    """Task ids that do not start where expected or do not rise by one."""


class DuplicateJoinError(PlanError):
    """A second join() in one plan."""

    default_hint = "a plan ends with exactly one join()"


class TextAfterJoinError(PlanError):
    """Anything after join() other than blank lines and <END_OF_PLAN>."""

    default_hint = "join() ends the plan; put every task before it"


class TooManyTasksError(PlanError):
    """More tasks than the plan's task cap."""


class IncompletePlanError(PlanError):
    """The text ended in the middle of a task line."""


# -- tool calls ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldError:
    """One bad field found by validation: where, what was expected, what was given."""

    path: str
    expected: str
    got: str

    def __str__(self) -> str:
        return f"{self.path or '<arguments>'}: expected {self.expected}, got {self.got}"


class ToolArgumentError(TomasuloError, ValueError):
    """Arguments that do not fit a tool's input schema; ``errors`` lists every bad field."""

    def __init__(self, tool: str, errors: Sequence[FieldError]) -> None:
        self.tool = tool
        self.errors = list(errors)
        lines = "\n".join(f"  - {e}" for e in self.errors)
        super().__init__(f"invalid arguments for tool {tool!r}:\n{lines}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.tool, self.errors))


class ToolError(TomasuloError):
    """A tool call that did not succeed.

    Attributes:
        tool: the tool's name.
        task_id: the task that called it, where known.
        attempt: the 1-based attempt that failed last.
    """

    def __init__(
        self,
        message: str,
        *,
        tool: str = "",
        task_id: int | None = None,
        attempt: int = 1,
    ) -> None:
        self.message = message
        self.tool = tool
        self.task_id = task_id
        self.attempt = attempt
        where = f"task {task_id} " if task_id is not None else ""
        where += f"({tool}) " if tool else ""
        suffix = f" [attempt {attempt}]" if attempt > 1 else ""
        super().__init__(f"{where}{message}{suffix}".strip())

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_tool_error,
            (type(self), self.message, self.tool, self.task_id, self.attempt),
        )


def _rebuild_tool_error(
    cls: type[ToolError], message: str, tool: str, task_id: int | None, attempt: int
) -> ToolError:
    return cls(message, tool=tool, task_id=task_id, attempt=attempt)


class ToolExecutionError(ToolError):
    """The tool raised an exception; ``error_type`` names it."""

    def __init__(
        self,
        message: str,
        *,
        tool: str = "",
        task_id: int | None = None,
        attempt: int = 1,
        error_type: str = "Exception",
    ) -> None:
        self.error_type = error_type
        super().__init__(message, tool=tool, task_id=task_id, attempt=attempt)


class ToolTimeout(ToolError, TimeoutError):
    """The tool ran past its timeout."""


class ToolHTTPError(ToolError):
    """An HTTP request made by a tool (an OpenAPI operation, an HTTP tool) did not succeed.

    Attributes:
        status_code: the answer's status, or 0 when no answer came (connection refused or dropped).
        method: the request's method.
        url: the request's URL without its query (which may hold an API key).
        retryable: whether another attempt may succeed (429 or 5xx for an idempotent request).
        retry_after: the seconds the server asked to wait (``Retry-After``), where it said.
    """

    def __init__(
        self,
        message: str,
        *,
        tool: str = "",
        task_id: int | None = None,
        attempt: int = 1,
        status_code: int = 0,
        method: str = "",
        url: str = "",
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        self.status_code = status_code
        self.method = method
        self.url = url
        self.retryable = retryable
        self.retry_after = retry_after
        super().__init__(message, tool=tool, task_id=task_id, attempt=attempt)

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_http_error,
            (
                self.message,
                self.tool,
                self.task_id,
                self.attempt,
                self.status_code,
                self.method,
                self.url,
                self.retryable,
                self.retry_after,
            ),
        )


def _rebuild_http_error(
    message: str,
    tool: str,
    task_id: int | None,
    attempt: int,
    status_code: int,
    method: str,
    url: str,
    retryable: bool,
    retry_after: float | None,
) -> ToolHTTPError:
    return ToolHTTPError(
        message,
        tool=tool,
        task_id=task_id,
        attempt=attempt,
        status_code=status_code,
        method=method,
        url=url,
        retryable=retryable,
        retry_after=retry_after,
    )


class ToolCrashed(ToolError):
    """The worker process running the tool died."""


class ToolOutputError(ToolError):
    """The tool returned a value that does not fit its output schema, or cannot be carried."""


class ReferenceResolutionError(ToolError):
    """An input of a task could not be taken from an upstream result (bad path, bad type)."""


class ToolSourceError(TomasuloError):
    """A tool source that could not be opened or listed: an MCP server that does not start or does
    not answer ``initialize`` within its start-up timeout, or a tool list that cannot be read.

    ``source`` is the source's label (``mcp:weather``); the message never carries its secrets.
    """

    def __init__(self, message: str, *, source: str = "") -> None:
        self.source = source
        super().__init__(f"{source}: {message}" if source else message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_source_error, (type(self), str(self), self.source))


def _rebuild_source_error(cls: type[ToolSourceError], text: str, source: str) -> ToolSourceError:
    err = cls.__new__(cls)
    err.source = source
    Exception.__init__(err, text)
    return err


class DestinationRefused(TomasuloError, PermissionError):
    """A network destination the SSRF check refuses: a scheme, a host not in the allowlist, or a
    private, loopback, link-local, reserved or metadata address (in any spelling).

    The message names the URL, host or address and says how to allow it.

    Attributes:
        host: the host name as given in the URL, where known.
        address: the refused IP address, where an address was refused.
        reason: what the destination is ("a loopback address", "not in the allowlist", ...).
    """

    def __init__(
        self, message: str, *, host: str | None = None, address: str | None = None, reason: str = ""
    ) -> None:
        self.host = host
        self.address = address
        self.reason = reason
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_refused, (str(self), self.host, self.address, self.reason))


def _rebuild_refused(message: str, host: str | None, address: str | None, reason: str) -> DestinationRefused:
    return DestinationRefused(message, host=host, address=address, reason=reason)


class DispatchError(UserError):
    """The dispatcher was misused, for example fed a task whose id is taken, or after
    ``close_input()``. (A run turns a task its dispatcher refuses into a plan error.)"""


class _RunError(TomasuloError):
    """A run that did not finish, raised by ``RunResult.raise_for_status()``."""

    def __init__(self, message: str, *, result: Any = None) -> None:
        #: The :class:`~tomasulo.RunResult` (its tasks, answer so far, reason).
        self.result = result
        super().__init__(message)


class RunFailed(_RunError):
    """The run failed: the LLM or the run broke, or (a fixed plan) a task did not succeed.

    ``result`` holds the run's :class:`~tomasulo.RunResult`; its ``reason`` says what failed.
    """


class RunCancelled(_RunError):
    """The run was cancelled before it finished; ``result`` holds what it had done."""


# -- LLM servers --------------------------------------------------------------------------------


class LLMError(TomasuloError):
    """The LLM server did not give a usable answer.

    ``partial`` holds the text the server had streamed before the error ("" when none), so a
    planner can resume after a dropped stream without re-running the tasks it already dispatched.
    """

    def __init__(self, message: str = "", *, partial: str = "") -> None:
        self.partial = partial
        super().__init__(message)


class LLMConnectionError(LLMError, ConnectionError):
    """Could not connect to the LLM server, or the connection dropped mid-stream."""


class LLMTimeout(LLMError, TimeoutError):
    """The LLM server did not answer in time."""


class LLMRateLimitError(LLMError):
    """The LLM server kept answering 429 after every retry."""


class LLMStatusError(LLMError):
    """The LLM server answered with an error status."""

    def __init__(self, message: str, *, status_code: int = 0, partial: str = "") -> None:
        self.status_code = status_code
        super().__init__(message, partial=partial)


class LLMResponseError(LLMError):
    """The LLM's answer could not be used, even after a repair round."""


class LLMTruncated(LLMResponseError):
    """The server stopped because the answer reached ``max_tokens`` (``finish_reason: "length"``).

    ``partial`` holds the whole text it sent: a plan cut off here is incomplete, never a plan
    that ended. ``max_tokens`` is the limit the request carried (None: the server's own).
    """

    def __init__(self, message: str, *, partial: str = "", max_tokens: int | None = None) -> None:
        self.max_tokens = max_tokens
        super().__init__(message, partial=partial)


class BudgetExceeded(TomasuloError):
    """A run hit one of its bounds (replans, tokens, cost, wall time); ``bound`` names it.

    Raised inside a run when a token or cost bound cuts a stream, and by
    ``RunResult.raise_for_status()`` for a run that ended ``stopped`` (then ``result`` holds the
    :class:`~tomasulo.RunResult`, with the best answer at hand).
    """

    def __init__(self, message: str, *, bound: str = "", result: Any = None) -> None:
        self.bound = bound
        self.result = result
        super().__init__(message)


# -- the service, seen from its client ----------------------------------------------------------


class ServiceError(TomasuloError):
    """The tomasulo service answered with an error: an RFC 9457 problem, or a bare status.

    Attributes:
        status: the HTTP status (0 when no answer came).
        type: the problem's type URI (``https://tomasulo.dev/problems/not-found``).
        title: the kind's short summary.
        detail: what was wrong, and where, as the server said it.
        request_id: the server's id of the request (quote it when reporting a problem).
        problem: the whole problem object (``errors`` and other extra members included).
        retry_after: the server's ``Retry-After`` in seconds (429 and 503), else None.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        type: str = "about:blank",  # the RFC 9457 member's name
        title: str = "",
        detail: str = "",
        request_id: str | None = None,
        problem: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail
        self.request_id = request_id
        self.problem = dict(problem or {})
        self.retry_after = retry_after
        super().__init__(message)

    @property
    def slug(self) -> str:
        """The last part of the type URI (``"not-found"``)."""
        return self.type.rstrip("/").rpartition("/")[2]


class ServiceNotFound(ServiceError, LookupError):
    """404: no such object for this tenant (another tenant's run is one too)."""


class ServiceRateLimited(ServiceError):
    """429: the tenant sent too many requests; ``retry_after`` is the server's wait in seconds."""


class ServiceConnectionError(ServiceError, ConnectionError):
    """The service could not be reached, or the connection kept dropping, after every retry.

    ``unsent`` is true when the request never left (the connection could not be made), so
    that repeating it cannot do anything twice.
    """

    def __init__(self, message: str, *, unsent: bool = False) -> None:
        self.unsent = unsent
        super().__init__(message)


class RecordedError(TomasuloError):
    """An exception read back from a run's journal: the JSON form of an error keeps its type's
    name and its message, not the object.

    ``type_name`` is the original exception's type name (``"ValueError"``), ``message`` its text.
    It equals any exception with that type name and text, so an outcome read back equals the
    outcome recorded live.

    >>> RecordedError.from_json(RecordedError.to_json(ValueError("bad"))) == ValueError("bad")
    True
    """

    def __init__(self, type_name: str, message: str) -> None:
        self.type_name = type_name
        self.message = message
        super().__init__(message)

    @staticmethod
    def describe(exc: BaseException) -> tuple[str, str]:
        """The type name and message of ``exc``, as its JSON form keeps them (never raises)."""
        if isinstance(exc, RecordedError):
            return exc.type_name, exc.message
        try:
            text = str(exc)
            if type(text) is not str:
                raise TypeError("__str__ returned a non-string")
        except Exception as e:
            text = f"<{type(exc).__name__} whose str() raised {type(e).__name__}>"
        return type(exc).__name__, text

    @staticmethod
    def to_json(exc: BaseException) -> dict[str, str]:
        """``{"type": <type name>, "message": <text>}``."""
        name, text = RecordedError.describe(exc)
        return {"type": name, "message": text}

    @classmethod
    def from_json(cls, data: Any) -> RecordedError:
        """The error :meth:`to_json` wrote."""
        return cls(str(data.get("type", "Exception")), str(data.get("message", "")))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, BaseException):
            return RecordedError.describe(other) == (self.type_name, self.message)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.type_name, self.message))

    def __reduce__(self) -> Any:
        return (type(self), (self.type_name, self.message))


# -- control flow -------------------------------------------------------------------------------


class Interrupt(Exception):
    """Raised by a tool to stop and ask the planner for a new plan.

    The message reaches the planner as the interrupt's reason. ``value`` is kept as the task's
    partial result.
    """

    def __init__(self, message: str, *, value: Any = None) -> None:
        self.message = message
        self.value = value
        super().__init__(message)


class Replan(Exception):
    """Raised inside a joiner to ask for a new plan, with feedback for the planner."""

    def __init__(self, feedback: str) -> None:
        self.feedback = feedback
        super().__init__(feedback)
