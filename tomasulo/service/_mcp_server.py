"""tomasulo as an MCP server: MCP clients (desktop assistants, IDEs) get parallel tool calls in one
request.

Three tools:

- ``ask(question)``: the configured model plans tool calls, tomasulo runs them as soon as their
  inputs exist, the joiner answers. Needs a model (``--base-url``, ``--model``).
- ``run_plan(plan)``: a plan in the plan language, run without a model; returns each task's
  outcome and the final answer.
- ``validate_plan(plan)``: checks a plan against the tools; errors carry line, column and hint.

``ask`` and ``run_plan`` send ``notifications/progress`` as tasks finish (when the client asked for
progress). Every failure comes back as an ``isError`` result with a message; the server stays up.
A failure the server did not expect (a bug) answers ``internal error: <ExceptionType>``, without
its text or traceback, and logs one line on ``tomasulo.service.mcp``.

Bounds, since a client sends whatever it likes (``build_mcp_server`` arguments, and options of
``tomasulo mcp``):

- a plan of more than ``max_plan_chars`` characters (default :data:`DEFAULT_MCP_MAX_PLAN_CHARS`,
  ``--max-plan-chars``) is refused before it is read;
- a plan, or a plan ``ask``'s model writes, of more than ``max_tasks`` tasks (default
  :data:`DEFAULT_MCP_MAX_TASKS`, ``--max-tasks``) is refused;
- ``run_plan`` and ``ask`` end within ``timeout`` seconds (default :data:`DEFAULT_MCP_TIMEOUT`,
  ``--timeout``): the tools' deadline for ``run_plan`` (the result says which tasks were
  cancelled), the run's wall-time budget for ``ask``.

    server = build_mcp_server(toolset, model=settings)
    server.run("stdio")                # or serve_mcp_http(server, port=8765)
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from ..dispatcher import Limits
from ..exceptions import ConfigError, PlanError, TomasuloError
from ..grammar import parse_plan
from ..tools import Toolset

if TYPE_CHECKING:
    from ..runtime import RunResult

__all__ = [
    "DEFAULT_MCP_MAX_PLAN_CHARS",
    "DEFAULT_MCP_MAX_TASKS",
    "DEFAULT_MCP_TIMEOUT",
    "build_mcp_server",
    "serve_mcp_http",
]

#: The longest plan text ``run_plan`` and ``validate_plan`` read, in characters.
DEFAULT_MCP_MAX_PLAN_CHARS = 100_000
#: The most tasks one plan may have.
DEFAULT_MCP_MAX_TASKS = 64
#: Seconds one ``run_plan`` or ``ask`` may take.
DEFAULT_MCP_TIMEOUT = 300.0

_log = logging.getLogger("tomasulo.service.mcp")

_FINISHED = ("TaskSucceeded", "TaskFailed", "TaskSkipped", "TaskCancelled")
_INSTRUCTIONS = (
    "tomasulo runs tool calls in parallel. Use run_plan with a numbered plan such as\n"
    '1. search(query="a")\n2. search(query="b")\n3. join()\n'
    "(tasks that do not depend on each other run at once; $1 passes task 1's result), "
    "validate_plan to check one first, or ask to let the configured model plan."
)


def _plan_error(exc: PlanError) -> dict[str, Any]:
    return {
        "type": type(exc).__name__,
        "message": exc.message,
        "line": exc.line,
        "column": exc.column,
        "text": exc.text,
        "hint": exc.hint,
    }


def _internal(tool: str, exc: Exception) -> ToolError:
    """The client's answer for a failure nobody expected: the type only, one log line here."""
    text = str(exc).replace("\n", " ")
    _log.error("%s: internal error: %s: %s", tool, type(exc).__name__, text[:300])
    return ToolError(f"internal error: {type(exc).__name__}")


def _outcome(result: RunResult) -> dict[str, Any]:
    from ..views import task_json

    return {
        "ok": result.ok,
        "status": result.status,
        "reason": result.reason,
        "answer": result.answer,
        "tasks": [task_json(t) for t in result.tasks],
        "makespan": round(result.makespan, 6),
    }


class _Progress:
    """Turns the run's task-finished events into MCP progress notifications, in order."""

    def __init__(self, ctx: Context, total: int | None) -> None:
        self.ctx = ctx
        self.total = total
        self.done = 0
        self.send, self.receive = anyio.create_memory_object_stream[str](math.inf)

    def on_event(self, event: Any) -> None:
        kind = type(event).__name__
        if kind in _FINISHED:
            outcome = getattr(event, "outcome", None)
            status = kind.removeprefix("Task").lower()
            tool = getattr(outcome, "tool", None) or getattr(event, "tool", "")
            # once the request is over (or cancelled) nobody reads progress: drop it
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                self.send.send_nowait(f"task {event.task_id} ({tool}) {status}")

    async def forward(self) -> None:
        async with self.receive:
            async for message in self.receive:
                self.done += 1
                try:
                    await self.ctx.report_progress(self.done, self.total, message)
                except Exception:  # a client that went away must not fail the run
                    return


async def _run_with_progress(
    ctx: Context, total: int | None, go: Callable[[Callable[[Any], None]], Any]
) -> RunResult:
    progress = _Progress(ctx, total)
    result: RunResult | None = None
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(progress.forward)
            try:
                result = await go(progress.on_event)
            finally:
                progress.send.close()
    except BaseExceptionGroup as group:  # the task group wraps what ``go`` raised: unwrap it
        inner: BaseException = group
        while isinstance(inner, BaseExceptionGroup) and len(inner.exceptions) == 1:
            inner = inner.exceptions[0]
        if isinstance(inner, Exception) and not isinstance(inner, BaseExceptionGroup):
            raise inner from None
        raise
    assert result is not None
    return result


def build_mcp_server(
    tools: Toolset,
    *,
    model: Any = None,
    model_problem: str | None = None,
    max_replans: int = 2,
    name: str = "tomasulo",
    max_tasks: int = DEFAULT_MCP_MAX_TASKS,
    max_plan_chars: int = DEFAULT_MCP_MAX_PLAN_CHARS,
    timeout: float | None = DEFAULT_MCP_TIMEOUT,
) -> MCPServer:
    """An MCP server whose tools run plans over ``tools``.

    Args:
        tools: the tools plans may call.
        model: the model settings for ``ask`` (a ``ModelSettings`` from
            :func:`tomasulo.planner.resolve_model`: anything with ``.llm()``); ``None``: ``ask``
            answers with an error saying how to configure one.
        model_problem: why there is no model, for that error.
        max_replans: replans one ``ask`` may make.
        name: the server's name in ``initialize``.
        max_tasks: the most tasks a plan may have (``run_plan``, ``validate_plan`` and the plans
            ``ask``'s model writes).
        max_plan_chars: the longest plan text ``run_plan`` and ``validate_plan`` read.
        timeout: seconds one ``run_plan`` or ``ask`` may take (``None``: no bound).

    Raises:
        ConfigError: a bound that is not positive.
    """
    if isinstance(max_tasks, bool) or not isinstance(max_tasks, int) or max_tasks < 1:
        raise ConfigError(f"max_tasks must be a whole number of at least 1, got {max_tasks!r}")
    if isinstance(max_plan_chars, bool) or not isinstance(max_plan_chars, int) or max_plan_chars < 1:
        raise ConfigError(f"max_plan_chars must be a whole number of at least 1, got {max_plan_chars!r}")
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise ConfigError(f"timeout must be a positive number of seconds, got {timeout!r}")
    limits = Limits(deadline=timeout)
    server: MCPServer = MCPServer(name, instructions=_INSTRUCTIONS, log_level="WARNING")
    listing = "\n".join(f"- {t.signature()}: {t.description}".rstrip(": ") for t in tools)

    def too_long(plan: str) -> ToolError | None:
        if len(plan) <= max_plan_chars:
            return None
        return ToolError(
            f"the plan is {len(plan)} characters; this server reads at most {max_plan_chars} "
            "(tomasulo mcp --max-plan-chars); split the work into smaller plans"
        )

    @server.tool(description=f"Check a plan against the tools without running it.\nTools:\n{listing}")
    def validate_plan(plan: str, compat: bool = False) -> dict[str, Any]:
        refused = too_long(plan)
        if refused is not None:
            raise refused
        try:
            parsed = parse_plan(plan, tools, compat=compat, max_tasks=max_tasks)
        except PlanError as exc:
            return {"ok": False, "errors": [_plan_error(exc)]}
        except Exception as exc:
            raise _internal("validate_plan", exc) from None
        return {
            "ok": True,
            "errors": [],
            "tasks": [{"id": t.id, "tool": t.tool, "deps": sorted(t.deps)} for t in parsed.tasks],
            "waves": parsed.generations(),
        }

    @server.tool(
        description="Run a plan (no model): independent tasks run at once. Returns each task's "
        f"outcome and the answer (the last task's result).\nTools:\n{listing}"
    )
    async def run_plan(plan: str, ctx: Context, compat: bool = False) -> dict[str, Any]:
        from ..runtime import Orchestrator

        refused = too_long(plan)
        if refused is not None:
            raise refused
        try:
            parsed = parse_plan(plan, tools, compat=compat, max_tasks=max_tasks)
        except PlanError as exc:
            raise ToolError(f"the plan is not valid: {exc}") from None
        except Exception as exc:
            raise _internal("run_plan", exc) from None
        try:
            result = await _run_with_progress(
                ctx,
                len(parsed.tasks),
                lambda on_event: Orchestrator(tools, limits=limits, on_event=on_event).execute_plan(parsed),
            )
            return _outcome(result)
        except TomasuloError as exc:
            raise ToolError(f"{type(exc).__name__}: {exc}") from None
        except Exception as exc:
            raise _internal("run_plan", exc) from None

    @server.tool(description=f"Answer a question by planning and running tool calls.\nTools:\n{listing}")
    async def ask(question: str, ctx: Context) -> dict[str, Any]:
        from ..runtime import Budget, Orchestrator

        if model is None:
            raise ToolError(
                "ask needs a model: start `tomasulo mcp` with --base-url and --model (or set "
                f"TOMASULO_BASE_URL and TOMASULO_MODEL); run_plan works without one. {model_problem or ''}"
            )

        budget = Budget(max_replans=max_replans, max_seconds=timeout)

        async def go(on_event: Callable[[Any], None]) -> RunResult:
            async with model.llm() as llm:
                orch = Orchestrator(tools, llm, budget=budget, max_tasks=max_tasks, on_event=on_event)
                return await orch.run(question)

        try:
            result = await _run_with_progress(ctx, None, go)
            outcome = _outcome(result)
        except TomasuloError as exc:
            raise ToolError(f"{type(exc).__name__}: {exc}") from None
        except Exception as exc:
            raise _internal("ask", exc) from None
        if not result.ok:
            raise ToolError(f"the run {result.status}: {result.reason}")
        return outcome

    return server


async def serve_mcp_http(
    server: MCPServer, *, host: str = "127.0.0.1", port: int = 8765, path: str = "/mcp"
) -> None:
    """Serve ``server`` over streamable HTTP with uvicorn; prints the URL on standard error."""
    import uvicorn

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound = sock.getsockname()[1]
    config = uvicorn.Config(
        server.streamable_http_app(streamable_http_path=path, host=host),
        log_level="warning",
        lifespan="on",
    )
    sys.stderr.write(f"tomasulo MCP server on http://{host}:{bound}{path}\n")
    sys.stderr.flush()
    await uvicorn.Server(config).serve(sockets=[sock])
