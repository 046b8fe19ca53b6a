"""``/v1/runs``: submit, wait, list, read, delete, stream events (SSE or NDJSON), interrupt, cancel.

Events stream with ``id:`` = the event's ``seq``; a client that reconnects with
``Last-Event-ID`` (or ``?after=``) gets every later event once, whether the run is still live
(read from its journal in memory) or ended (read from the database). The run's last event,
``run_finished``, is sent only once its result is in the database, so a client that reads the
run after it sees the ended run.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from starlette.responses import JSONResponse, StreamingResponse

from ..dispatcher import Event, TaskPlanned, TaskStarted, outcomes_of
from ..runtime import LLMCallFinished, RunFinished, RunStarted, TaskRecord
from ..views import args_json, call_text, jsonable, task_json
from ._deps import ERRORS, CallerDep, require_json
from ._problems import PROBLEM_JSON, Problem, ProblemError
from ._run_models import InterruptAccepted, InterruptRequest, RunCreate, RunList, RunOut, RunUsage
from ._runner import LiveRun, RunManager
from ._runs_store import ENDED, RunRow

__all__ = ["router"]

SSE = "text/event-stream"
NDJSON = "application/x-ndjson"

_MORE_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    409: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": "Conflict with the run's state"},
}

router = APIRouter(prefix="/v1", responses=_MORE_ERRORS, tags=["runs"])

#: How often a stream of a run another replica drives looks for new events in the database.
POLL_INTERVAL = 0.2

_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*\"?([0-9]+(?:\.[0-9]+)?)\"?", re.IGNORECASE)


def _manager(request: Request) -> RunManager:
    manager: RunManager = request.app.state.runs
    return manager


ManagerDep = Annotated[RunManager, Depends(_manager)]


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.UTC).isoformat()


def _elsewhere(run_id: str) -> ProblemError:
    return ProblemError(
        409,
        "run-elsewhere",
        f"run {run_id} is driven by another replica of this service, which this one cannot reach; "
        "send interrupt, cancel and delete through that replica (route by run id), or retry once it ends",
        title="Conflict",
    )


def _not_found(run_id: str) -> ProblemError:
    return ProblemError(404, "not-found", f"no run {run_id!r} for this tenant; GET /v1/runs lists them")


# -- the run object -------------------------------------------------------------------------------


def _live_tasks(events: list[Event]) -> list[dict[str, Any]]:
    start = next((e for e in events[:1] if isinstance(e, RunStarted)), None)
    t0 = start.ts if start is not None else 0.0
    done = outcomes_of(events)
    planned = {e.task_id: e for e in events if isinstance(e, TaskPlanned)}
    started = {e.task_id for e in events if isinstance(e, TaskStarted)}
    out = []
    for tid, event in sorted(planned.items()):
        outcome = done.get(tid)
        if outcome is not None:
            out.append(task_json(TaskRecord.from_outcome(outcome, event.args, 0, t0)))
        else:
            out.append(
                {
                    "id": tid,
                    "tool": event.tool,
                    "status": "running" if tid in started else "pending",
                    "call": call_text(event.tool, event.args),
                    "args": args_json(event.args),
                }
            )
    return [jsonable(t) for t in out]


def live_out(live: LiveRun, *, full: bool = True) -> RunOut:
    """The API form of a run this replica drives now."""
    events = live.events
    start = next((e for e in events[:1] if isinstance(e, RunStarted)), None)
    usage = RunUsage()
    for e in events:
        if isinstance(e, LLMCallFinished):
            usage.llm_calls += 1
            usage.prompt_tokens += e.prompt_tokens
            usage.completion_tokens += e.completion_tokens
            usage.cost += e.cost
    started_at = None if start is None else dt.datetime.fromtimestamp(start.wall_time, dt.UTC)
    return RunOut(
        id=live.id,
        status="running" if start is not None else "queued",
        kind=live.kind,  # type: ignore[arg-type]
        created_at=_iso(live.created_at) or "",
        started_at=_iso(started_at),
        query=live.query,
        mode=live.mode,
        model=live.model,
        metadata=live.metadata,
        tasks=_live_tasks(events) if full else None,
        plans=[] if full else None,
        usage=usage,
        last_seq=live.last_seq,
    )


def row_out(row: RunRow, *, full: bool = True) -> RunOut:
    """The API form of a stored run."""
    view = row.result or {}
    usage = view.get("usage") or {}
    request = row.request
    modes = {"plan": "plan_then_execute", "workflow": "workflow"}
    mode = modes.get(row.kind) or str(request.get("mode") or "stream")
    return RunOut(
        id=row.id,
        status=row.status,  # type: ignore[arg-type]
        kind=row.kind,  # type: ignore[arg-type]
        created_at=_iso(row.created_at) or "",
        started_at=_iso(row.started_at),
        finished_at=_iso(row.finished_at),
        query=request.get("query"),
        mode=mode,
        model=row.model,
        metadata=row.metadata,
        answer=view.get("answer"),
        outputs=view.get("outputs"),
        reason=view.get("reason"),
        tasks=(view.get("tasks") or []) if full else None,
        plans=(view.get("plans") or []) if full else None,
        usage=RunUsage(
            **{k: usage[k] for k in ("llm_calls", "prompt_tokens", "completion_tokens", "cost") if k in usage}
        ),
        last_seq=row.last_seq,
    )


async def _run_out(manager: RunManager, tenant_id: str, run_id: str) -> RunOut:
    live = manager.get(tenant_id, run_id)
    if live is not None and not live.done.is_set():
        return live_out(live)
    row = await anyio.to_thread.run_sync(manager.records.get_run, tenant_id, run_id)
    if row is None:
        raise _not_found(run_id)
    return row_out(row)


def _json(model: RunOut, status: int, run_id: str) -> JSONResponse:
    return JSONResponse(
        model.model_dump(mode="json"), status_code=status, headers={"Location": f"/v1/runs/{run_id}"}
    )


# -- events -----------------------------------------------------------------------------------------


def _frame(data: dict[str, Any], form: str) -> bytes:
    text = json.dumps(jsonable(data), separators=(",", ":"), ensure_ascii=False)
    if form == NDJSON:
        return (text + "\n").encode()
    return f"id: {data['seq']}\nevent: {data['kind']}\ndata: {text}\n\n".encode()


async def _event_data(
    manager: RunManager, tenant_id: str, run_id: str, after: int
) -> AsyncIterator[dict[str, Any] | None]:
    """The run's events' JSON after ``after`` until its ``run_finished``; ``None`` marks a
    heartbeat (no event for ``limits.sse_heartbeat_s``)."""
    heartbeat = manager.limits.sse_heartbeat_s
    live = manager.get(tenant_id, run_id)
    if live is not None:
        with anyio.fail_after(30):
            await live.started.wait()
        handle = live.handle
        if handle is not None:
            sub = handle.events(after=after)
            try:
                while True:
                    event: Event | None = None
                    with anyio.move_on_after(heartbeat):
                        try:
                            event = await sub.__anext__()
                        except StopAsyncIteration:
                            break
                    if event is None:
                        yield None
                        continue
                    if isinstance(event, RunFinished):
                        while not live.done.is_set():  # sent once the result is stored
                            with anyio.move_on_after(heartbeat):
                                await live.done.wait()
                            if not live.done.is_set():
                                yield None
                    yield event.to_json()
                    after = event.seq
                    if isinstance(event, RunFinished):
                        return
            finally:
                await sub.aclose()
        with anyio.fail_after(30):
            await live.done.wait()
    # ended (or driven by another replica): from the database
    quiet = 0.0
    while True:
        page = await anyio.to_thread.run_sync(
            functools.partial(manager.records.load_events, run_id, after=after, limit=500)
        )
        for data in page:
            yield data
            after = int(data["seq"])
            if data.get("kind") == RunFinished.kind:
                return
        if len(page) == 500:
            continue
        row = await anyio.to_thread.run_sync(manager.records.get_run, tenant_id, run_id)
        if row is None or (row.status in ENDED and row.last_seq <= after):
            return
        again = manager.get(tenant_id, run_id)
        if again is not None:  # it started here meanwhile (a rare race): read it live
            async for more in _event_data(manager, tenant_id, run_id, after):
                yield more
            return
        await anyio.sleep(POLL_INTERVAL)
        quiet += POLL_INTERVAL
        if quiet >= heartbeat:
            quiet = 0.0
            yield None


def _stream(
    manager: RunManager, tenant_id: str, run_id: str, after: int, form: str, headers: dict[str, str]
) -> StreamingResponse:
    if manager.streams >= manager.limits.max_sse_connections:
        raise ProblemError(
            503,
            "too-many-streams",
            f"the server has {manager.limits.max_sse_connections} event streams open "
            "(limits.max_sse_connections); retry shortly",
            title="Service unavailable",
            headers={"Retry-After": "1"},
        )

    async def body() -> AsyncIterator[bytes]:
        manager.streams += 1
        try:
            async for data in _event_data(manager, tenant_id, run_id, after):
                if data is None:
                    yield b"\n" if form == NDJSON else b": ping\n\n"
                else:
                    yield _frame(data, form)
        finally:
            manager.streams -= 1

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **headers}
    return StreamingResponse(body(), media_type=form, headers=headers)


def _form(accept: str | None) -> str | None:
    """The stream form ``Accept`` asks for (``None``: JSON)."""
    text = (accept or "").lower()
    if NDJSON in text:
        return NDJSON
    if SSE in text:
        return SSE
    return None


_STREAMED = {
    "description": "The run's events (`Accept: text/event-stream` or `application/x-ndjson`)",
    "content": {SSE: {"schema": {"type": "string"}}, NDJSON: {"schema": {"type": "string"}}},
}


def _wait_for(prefer: str | None, wait: float | None, bound: float) -> float:
    asked = wait
    if asked is None and prefer:
        found = _WAIT.search(prefer)
        if found:
            asked = float(found.group(1))
    return 0.0 if asked is None else min(asked, bound)


# -- routes -----------------------------------------------------------------------------------------


@router.post(
    "/runs",
    summary="Start a run: a question, a fixed plan or a workflow (202 at once; Prefer: wait=N waits)",
    status_code=202,
    dependencies=[Depends(require_json)],
    responses={
        200: {
            "model": RunOut,
            **_STREAMED,
            "description": "The run ended within `Prefer: wait` (or, with `Accept: text/event-stream` "
            "or `application/x-ndjson`, its events as they happen)",
        },
        202: {"model": RunOut, "description": "The run started (or is still running after the wait)"},
        503: ERRORS[503],
    },
    response_model=RunOut,
)
async def create_run(
    body: RunCreate,
    caller: CallerDep,
    manager: ManagerDep,
    wait: Annotated[float | None, Query(ge=0, le=3600, description="seconds to wait for the end")] = None,
    prefer: Annotated[str | None, Header(description="`wait=N`: wait up to N seconds")] = None,
    idempotency_key: Annotated[
        str | None, Header(min_length=1, max_length=255, description="a retried POST returns the same run")
    ] = None,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    run_id, _ = await manager.submit(caller, body, idempotency_key)
    tenant_id = caller.tenant.id
    form = _form(accept)
    if form is not None:
        headers = {"Location": f"/v1/runs/{run_id}", "X-Run-Id": run_id}
        return _stream(manager, tenant_id, run_id, 0, form, headers)
    seconds = _wait_for(prefer, wait, manager.limits.max_wait)
    live = manager.get(tenant_id, run_id)
    if seconds > 0 and live is not None:
        with anyio.move_on_after(seconds):
            await live.done.wait()
    out = await _run_out(manager, tenant_id, run_id)
    response = _json(out, 200 if out.status in ENDED else 202, run_id)
    if seconds > 0:
        response.headers["Preference-Applied"] = f"wait={seconds:g}"
    return response


_METADATA = re.compile(r"^metadata(?:\[([^\]]+)\]|\.(.+))$")


@router.get("/runs", summary="The tenant's runs, newest first (filters, cursor pagination)")
async def list_runs(
    request: Request,
    caller: CallerDep,
    manager: ManagerDep,
    status: Annotated[
        str | None, Query(pattern="^(queued|running|finished|stopped|failed|cancelled)$")
    ] = None,
    created_after: Annotated[dt.datetime | None, Query(description="ISO 8601")] = None,
    created_before: Annotated[dt.datetime | None, Query(description="ISO 8601")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=500, description="next_cursor of the page before")] = None,
) -> RunList:
    metadata = {}
    for key, value in request.query_params.multi_items():
        found = _METADATA.match(key)
        if found:
            metadata[found.group(1) or found.group(2)] = value
    after = (
        created_after
        if created_after is None or created_after.tzinfo
        else created_after.replace(tzinfo=dt.UTC)
    )
    before = (
        created_before
        if created_before is None or created_before.tzinfo
        else created_before.replace(tzinfo=dt.UTC)
    )
    try:
        rows, next_cursor = await anyio.to_thread.run_sync(
            lambda: manager.records.list_runs(
                caller.tenant.id,
                limit=limit,
                status=status,
                created_after=after,
                created_before=before,
                metadata=metadata,
                cursor=cursor,
            )
        )
    except ValueError as exc:
        raise ProblemError(
            422, "invalid-request", f"query field 'cursor': {exc}", title="Invalid request"
        ) from None
    data = []
    for row in rows:
        live = manager.get(caller.tenant.id, row.id)
        data.append(
            live_out(live, full=False)
            if live is not None and not live.done.is_set()
            else row_out(row, full=False)
        )
    return RunList(data=data, next_cursor=next_cursor)


@router.get("/runs/{run_id}", summary="A run: status, answer, tasks with outcomes and timings, plans, usage")
async def get_run(run_id: str, caller: CallerDep, manager: ManagerDep) -> RunOut:
    return await _run_out(manager, caller.tenant.id, run_id)


@router.delete("/runs/{run_id}", status_code=204, summary="Delete a run (a running one is cancelled first)")
async def delete_run(run_id: str, caller: CallerDep, manager: ManagerDep) -> Response:
    tenant_id = caller.tenant.id
    live = manager.get(tenant_id, run_id)
    if live is not None:
        manager.cancel(live)
        with anyio.move_on_after(30):
            await live.done.wait()
        if not live.done.is_set():
            raise ProblemError(
                409,
                "conflict",
                f"run {run_id} is still ending after its cancel; retry the DELETE",
                title="Conflict",
            )
    else:
        row = await anyio.to_thread.run_sync(manager.records.get_run, tenant_id, run_id)
        if row is not None and not row.ended:
            raise _elsewhere(run_id)
    if not await anyio.to_thread.run_sync(manager.records.delete_run, tenant_id, run_id):
        raise _not_found(run_id)
    return Response(status_code=204)


@router.get(
    "/runs/{run_id}/events",
    summary="The run's events: SSE (id = seq; resume with Last-Event-ID or ?after=) or NDJSON",
    responses={200: _STREAMED},
    response_class=StreamingResponse,
)
async def run_events(
    run_id: str,
    caller: CallerDep,
    manager: ManagerDep,
    after: Annotated[
        int | None, Query(ge=0, le=2**62, description="deliver events with seq over this")
    ] = None,
    last_event_id: Annotated[
        str | None, Header(max_length=40, description="the seq of the last event seen")
    ] = None,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> StreamingResponse:
    tenant_id = caller.tenant.id
    start = after
    if start is None and last_event_id is not None:
        text = last_event_id.strip()
        if not text.isdigit():
            raise ProblemError(
                422,
                "invalid-request",
                f"header 'Last-Event-ID' must be an event's seq, not {text[:40]!r}",
                title="Invalid request",
            )
        start = int(text)
    if manager.get(tenant_id, run_id) is None:
        row = await anyio.to_thread.run_sync(manager.records.get_run, tenant_id, run_id)
        if row is None:
            raise _not_found(run_id)
    return _stream(manager, tenant_id, run_id, start or 0, _form(accept) or SSE, {})


@router.post(
    "/runs/{run_id}/interrupt",
    status_code=202,
    summary="Send a message into a running run: it replans with it",
    dependencies=[Depends(require_json)],
)
async def interrupt_run(
    run_id: str, body: InterruptRequest, caller: CallerDep, manager: ManagerDep
) -> InterruptAccepted:
    tenant_id = caller.tenant.id
    live = manager.get(tenant_id, run_id)
    if live is None or live.done.is_set():
        row = await anyio.to_thread.run_sync(manager.records.get_run, tenant_id, run_id)
        if row is None:
            raise _not_found(run_id)
        if not row.ended:
            raise _elsewhere(run_id)
        raise ProblemError(
            409, "conflict", f"run {run_id} has {row.status}; start a new one", title="Conflict"
        )
    await manager.interrupt(live, body.message)
    return InterruptAccepted(id=run_id)


@router.post(
    "/runs/{run_id}/cancel",
    status_code=202,
    summary="Cancel a run (202: it is ending; 200: it had ended)",
    responses={200: {"model": RunOut, "description": "The run had ended; it is as it was"}},
)
async def cancel_run(run_id: str, caller: CallerDep, manager: ManagerDep) -> Response:
    tenant_id = caller.tenant.id
    live = manager.get(tenant_id, run_id)
    if live is not None and not live.done.is_set():
        manager.cancel(live)
        return _json(live_out(live), 202, run_id)
    out = await _run_out(manager, tenant_id, run_id)
    if out.status not in ENDED:
        raise _elsewhere(run_id)
    return _json(out, 200, run_id)
