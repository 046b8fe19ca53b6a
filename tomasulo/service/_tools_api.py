"""``/v1/tools``, ``/v1/tools/{name}:call``, ``/v1/plans:validate`` and ``/v1/grammar``.

A direct call runs through the Orchestrator as a one-task plan, so the tool's policy (timeout,
retries, idempotency) applies as in any run; the server bounds the call's time
(``limits.tool_call_timeout``) and how many calls run at once (``limits.max_concurrent_calls``).
"""

from __future__ import annotations

from typing import Annotated, Any, get_args

import anyio
from fastapi import APIRouter, Depends, Query

from ..dispatcher import Limits
from ..exceptions import PlanError, TomasuloError, ToolArgumentError
from ..grammar import Plan, Task, build_grammar, parse_json_plan, parse_plan
from ..planner import Dialect
from ..tools import Tool
from ..views import jsonable
from ._deps import ERRORS, CallerDep, require_json
from ._models import (
    GrammarFormat,
    GrammarOut,
    PlanProblem,
    PlanTask,
    PlanValidateRequest,
    PlanValidation,
    ToolCallError,
    ToolCallRequest,
    ToolCallResult,
    ToolInfo,
    ToolList,
    ToolPolicyOut,
)
from ._problems import ProblemError

__all__ = ["router"]

router = APIRouter(prefix="/v1", responses=ERRORS)

#: The grammar form each dialect's server takes (``None``: no grammar).
DIALECT_FORMAT: dict[str, GrammarFormat | None] = {
    "vllm": "gbnf",
    "llamacpp": "gbnf",
    "sglang": "gbnf",
    "openai": "lark",
    "ollama": "json_schema",
    "plain": None,
}
_FIELD = {
    "vllm": "structured_outputs.grammar",
    "llamacpp": "grammar",
    "sglang": "ebnf",
    "openai": "tools[plan].format (Responses custom tool, syntax lark)",
    "ollama": "format",
}


def _info(tool: Tool) -> ToolInfo:
    policy = tool.policy
    return ToolInfo(
        name=tool.name,
        description=tool.description,
        signature=tool.signature(),
        input_schema=tool.input_schema,
        output_schema=tool.output_schema,
        policy=ToolPolicyOut(
            timeout=policy.timeout,
            retries=policy.retries,
            max_concurrency=policy.max_concurrency,
            sequential=policy.sequential,
            idempotent=policy.idempotent,
        ),
    )


@router.get("/tools", tags=["tools"], summary="The tools the tenant may use, with their schemas")
def list_tools(caller: CallerDep) -> ToolList:
    return ToolList(tools=[_info(t) for t in caller.tools])


@router.get("/tools/{name}", tags=["tools"], summary="One tool")
def get_tool(name: str, caller: CallerDep) -> ToolInfo:
    return _info(caller.tool(name))


@router.post(
    "/tools/{name}:call",
    tags=["tools"],
    summary="Call one tool directly (its policy and the server's limits apply)",
    dependencies=[Depends(require_json)],
)
async def call_tool(name: str, body: ToolCallRequest, caller: CallerDep) -> ToolCallResult:
    from ..runtime import Orchestrator

    tool = caller.tool(name)
    limits = caller.state.config.limits
    try:
        args = tool.validate(body.args)
    except ToolArgumentError as exc:
        fields = [
            {"where": e.path or "<arguments>", "message": f"expected {e.expected}, got {e.got}"}
            for e in exc.errors
        ]
        raise ProblemError(
            422,
            "invalid-arguments",
            f"invalid arguments for tool {name!r}: "
            + "; ".join(f"{f['where']}: {f['message']}" for f in fields),
            title="Invalid arguments",
            errors=fields,
        ) from None
    if tool.fn is None:
        raise ProblemError(
            409, "not-callable", f"tool {name!r} has a schema but nothing to call", title="Not callable"
        )
    timeout = min(body.timeout or limits.tool_call_timeout, limits.tool_call_timeout)
    plan = Plan(tasks=(Task(1, name, kwargs=args),), join_id=2)
    orchestrator = Orchestrator([tool], limits=Limits(deadline=timeout, max_concurrency=1))
    assert caller.state.calls is not None
    try:
        async with caller.state.calls:
            result = await orchestrator.execute_plan(plan)
    except PlanError as exc:  # the dispatcher refused the call: arguments it cannot take
        raise ProblemError(422, "invalid-arguments", exc.message, title="Invalid arguments") from None
    except TomasuloError as exc:
        raise ProblemError(
            502, "tool-unavailable", f"tool {name!r} could not be called: {type(exc).__name__}: {exc}"
        ) from None
    if not result.tasks:
        raise ProblemError(502, "tool-unavailable", f"tool {name!r} did not run: {result.reason}")
    record = result.tasks[0]
    ok = record.status == "succeeded"
    seconds = None
    if record.started is not None and record.finished is not None:
        seconds = round(record.finished - record.started, 6)
    return ToolCallResult(
        tool=name,
        ok=ok,
        status=record.status,
        value=jsonable(record.value) if ok else None,
        error=None if ok else ToolCallError(type=record.error_type, message=record.message),
        attempts=record.attempts,
        seconds=seconds,
    )


def _plan_problem(exc: PlanError) -> PlanProblem:
    return PlanProblem(
        type=type(exc).__name__,
        message=exc.message,
        line=exc.line,
        column=exc.column,
        text=exc.text[:500],
        hint=exc.hint or "",
    )


@router.post(
    "/plans:validate",
    tags=["plans"],
    summary="Check a plan against the tenant's tools: errors with line, column and hint",
    dependencies=[Depends(require_json)],
)
async def validate_plan(body: PlanValidateRequest, caller: CallerDep) -> PlanValidation:
    limits = caller.state.config.limits
    if len(body.plan) > limits.max_plan_chars:
        raise ProblemError(
            422,
            "plan-too-long",
            f"body field 'plan' is {len(body.plan)} characters; this server reads at most "
            f"{limits.max_plan_chars} (limits.max_plan_chars)",
            title="Plan too long",
        )
    if body.dialect == "json" and body.compat:
        raise ProblemError(
            422, "invalid-request", "compat applies to the text dialect only", title="Invalid request"
        )
    tools = caller.toolset(body.tools)
    max_tasks = min(body.max_tasks or limits.max_tasks, limits.max_tasks)

    def check() -> Plan:
        if body.dialect == "json":
            return parse_json_plan(body.plan, tools, max_tasks=max_tasks)
        return parse_plan(body.plan, tools, compat=body.compat, max_tasks=max_tasks)

    try:
        plan = await anyio.to_thread.run_sync(check)
    except PlanError as exc:
        return PlanValidation(ok=False, errors=[_plan_problem(exc)])
    except RecursionError:
        problem = PlanProblem(
            type="PlanSyntaxError",
            message="the plan nests its values too deeply to read",
            line=0,
            column=0,
            text="",
            hint="flatten the nested values",
        )
        return PlanValidation(ok=False, errors=[problem])
    return PlanValidation(
        ok=True,
        errors=[],
        tasks=[PlanTask(id=t.id, tool=t.tool, deps=sorted(t.deps), text=t.to_text()) for t in plan.tasks],
        waves=plan.generations(),
        joined=plan.joined,
    )


@router.get("/grammar", tags=["plans"], summary="The plan grammar for a tool subset, per dialect")
async def grammar(
    caller: CallerDep,
    dialect: Annotated[Dialect, Query(description="the server kind the grammar is for")] = "vllm",
    tools: Annotated[list[str] | None, Query(description="only these tools (repeat the parameter)")] = None,
    max_tasks: Annotated[int | None, Query(ge=1, description="at most the server's max_tasks")] = None,
    start_id: Annotated[int, Query(ge=1, le=1_000_000, description="the first task's id")] = 1,
    format: Annotated[GrammarFormat | None, Query(description="override the dialect's form")] = None,
) -> GrammarOut:
    limits = caller.state.config.limits
    toolset = caller.toolset(tools)
    if not toolset.names:
        raise ProblemError(
            422,
            "no-tools",
            "no tool is granted to this tenant (or named in tools=): a plan grammar needs one",
        )
    cap = min(max_tasks or 32, limits.max_tasks)
    form = format or DIALECT_FORMAT[dialect]
    out: dict[str, Any] = {
        "dialect": dialect,
        "format": form,
        "grammar": None,
        "json_schema": None,
        "request_field": _FIELD.get(dialect) if format is None else None,
        "tools": list(toolset.names),
        "max_tasks": cap,
        "start_id": start_id,
    }
    if form is None:
        out["note"] = (
            "plain servers take no grammar: plans are read in compat mode and checked; "
            "ask with format=gbnf, lark or json_schema for the grammar itself"
        )
        return GrammarOut(**out)

    def build() -> str | dict[str, Any]:
        built = build_grammar(toolset, max_tasks=cap, start_id=start_id)
        if form == "gbnf":
            return built.gbnf()
        if form == "lark":
            return built.lark()
        if form == "llguidance":
            return built.llguidance()
        return built.json_schema()

    assert caller.state.grammars is not None
    async with caller.state.grammars:
        made = await anyio.to_thread.run_sync(build)
    if isinstance(made, dict):
        out["json_schema"] = made
    else:
        out["grammar"] = made
    return GrammarOut(**out)


assert set(DIALECT_FORMAT) == set(get_args(Dialect))
