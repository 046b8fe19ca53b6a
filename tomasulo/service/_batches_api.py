"""``/v1/batches``: one workflow file over many inputs, in the background, resumable.

::

    POST /v1/batches                {workflow: "<YAML>", inputs: [{...}, ...], model?, metadata?}  -> 202
    GET  /v1/batches/{id}           progress (total, done, failed) and each input's result
    POST /v1/batches/{id}/cancel    no more inputs start; those running are cancelled

Each input becomes a workflow run of ``/v1/runs`` (its ``run_id`` is in the results: its events,
tasks and usage are there), with the tenant's tools, its limits and budgets, and the model named
in the request (or the server's default). Each input and its outcome is a row of
``batch_items``, written as its run ends, so a batch outlives its server: the replica that
drives a batch holds a lease on it, gives it up when it stops, and any replica that starts (or
finds a lease expired) continues the inputs whose run did not end; an input whose run ended
while nobody watched is read back, not run again.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import anyio
import anyio.abc
import sqlalchemy as sa
import yaml
from fastapi import APIRouter, Depends, FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..exceptions import UserError
from ..tools import Toolset
from ._deps import ERRORS, Caller, CallerDep, ServiceState, require_json
from ._keys import Principal
from ._problems import ProblemError
from ._run_models import RunCreate
from ._runner import RunManager
from ._schema import batch_items, batches
from ._store import Database
from ._workflow_runs import load_for_tenant

__all__ = ["BatchManager", "router"]

_log = logging.getLogger("tomasulo.service")

#: The most inputs one batch may have.
MAX_BATCH_INPUTS = 10_000
#: Inputs of one batch that run at once.
BATCH_CONCURRENCY = 8
#: Seconds a replica's hold on a batch lasts unless renewed (it renews every third of it).
BATCH_LEASE_S = 30.0

Status = Literal["running", "finished", "cancelled"]
ItemStatus = Literal["pending", "running", "finished", "failed", "cancelled"]


# -- the API's shapes ------------------------------------------------------------------------------


class BatchCreate(BaseModel):
    """The body of ``POST /v1/batches``."""

    model_config = ConfigDict(extra="forbid")

    workflow: str = Field(min_length=1, max_length=200_000, description="a workflow file's YAML text")
    inputs: list[dict[str, Any]] = Field(
        min_length=1, max_length=MAX_BATCH_INPUTS, description="one object of workflow inputs per run"
    )
    model: str | None = Field(default=None, description="a model the tenant was granted (query steps)")
    metadata: dict[str, str] = Field(default_factory=dict, description="at most 16 short strings")

    @field_validator("metadata")
    @classmethod
    def _short(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 16:
            raise ValueError(f"at most 16 metadata keys (got {len(value)})")
        for key, text in value.items():
            if not (0 < len(key) <= 64) or len(text) > 512:
                raise ValueError(f"metadata key {key[:70]!r}: keys are 1 to 64 characters, values up to 512")
        return value


class BatchItemOut(BaseModel):
    """One input of a batch and how it ended."""

    index: int
    run_id: str | None = Field(description="the run of this input (GET /v1/runs/{id}); null before it starts")
    status: ItemStatus
    answer: str | None = None
    outputs: dict[str, Any] | None = None
    error: str | None = None


class BatchOut(BaseModel):
    """A batch: its progress, and (on GET) each input's result."""

    id: str
    object: Literal["batch"] = "batch"
    status: Status
    created_at: str
    finished_at: str | None
    total: int
    done: int = Field(description="inputs that ended (finished or failed)")
    failed: int
    model: str | None
    metadata: dict[str, str]
    results: list[BatchItemOut] = Field(default_factory=list)


# -- the records ------------------------------------------------------------------------------------


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).isoformat()


@dataclass(frozen=True)
class BatchRow:
    """A batch as stored (without its items)."""

    id: str
    tenant_id: str
    status: Status
    workflow: str
    model: str | None
    metadata: dict[str, str]
    total: int
    created_at: dt.datetime
    finished_at: dt.datetime | None


class BatchRecords:
    """The batch tables, synchronously (the routes call these from worker threads)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    def _row(row: Any) -> BatchRow:
        return BatchRow(
            row.id, row.tenant_id, row.status, row.workflow, row.model, dict(row.metadata or {}),
            row.total, row.created_at, row.finished_at,
        )  # fmt: skip

    def create(self, row: BatchRow, inputs: Sequence[dict[str, Any]], owner: str) -> None:
        """Write the batch and its inputs (pending), held by ``owner``."""
        with self.db.engine.begin() as c:
            c.execute(
                batches.insert().values(
                    id=row.id,
                    tenant_id=row.tenant_id,
                    status="running",
                    workflow=row.workflow,
                    model=row.model,
                    metadata=row.metadata,
                    total=row.total,
                    created_at=row.created_at,
                    lease_owner=owner,
                    lease_expires_at=_now() + dt.timedelta(seconds=BATCH_LEASE_S),
                )
            )
            c.execute(
                batch_items.insert(),
                [
                    {"batch_id": row.id, "idx": i, "inputs": v, "status": "pending"}
                    for i, v in enumerate(inputs)
                ],
            )

    def get(self, tenant_id: str, batch_id: str) -> BatchRow | None:
        """The tenant's batch, or None (another tenant's is None too)."""
        with self.db.engine.connect() as c:
            found = c.execute(
                sa.select(batches).where(batches.c.id == batch_id, batches.c.tenant_id == tenant_id)
            ).first()
        return None if found is None else self._row(found)

    def items(self, batch_id: str) -> list[Any]:
        """The batch's inputs in order."""
        with self.db.engine.connect() as c:
            return list(
                c.execute(
                    sa.select(batch_items)
                    .where(batch_items.c.batch_id == batch_id)
                    .order_by(batch_items.c.idx)
                )
            )

    def counts(self, batch_id: str) -> dict[str, int]:
        """How many inputs are in each status."""
        with self.db.engine.connect() as c:
            rows = c.execute(
                sa.select(batch_items.c.status, sa.func.count())
                .where(batch_items.c.batch_id == batch_id)
                .group_by(batch_items.c.status)
            )
            return {status: int(n) for status, n in rows}

    def set_item(self, batch_id: str, index: int, **values: Any) -> None:
        """Update one input."""
        with self.db.engine.begin() as c:
            c.execute(
                batch_items.update()
                .where(batch_items.c.batch_id == batch_id, batch_items.c.idx == index)
                .values(**values)
            )

    def end(self, batch_id: str, status: Status) -> None:
        """Mark the batch ended; inputs not ended are ``cancelled`` when it was cancelled."""
        with self.db.engine.begin() as c:
            if status == "cancelled":
                c.execute(
                    batch_items.update()
                    .where(
                        batch_items.c.batch_id == batch_id,
                        batch_items.c.status.in_(("pending", "running")),
                    )
                    .values(status="cancelled", finished_at=_now())
                )
            c.execute(
                batches.update()
                .where(batches.c.id == batch_id, batches.c.status == "running")
                .values(status=status, finished_at=_now(), lease_owner=None, lease_expires_at=None)
            )

    def claim(self, owner: str) -> list[BatchRow]:
        """Take every running batch nobody holds (or whose holder stopped renewing), and
        renew this replica's holds; returns the batches newly taken."""
        now = _now()
        until = now + dt.timedelta(seconds=BATCH_LEASE_S)
        with self.db.engine.begin() as c:
            c.execute(
                batches.update()
                .where(batches.c.status == "running", batches.c.lease_owner == owner)
                .values(lease_expires_at=until)
            )
            free = sa.or_(batches.c.lease_expires_at.is_(None), batches.c.lease_expires_at < now)
            ids = [
                r.id for r in c.execute(sa.select(batches.c.id).where(batches.c.status == "running", free))
            ]
            taken = []
            for batch_id in ids:  # one by one, so that two replicas never take the same batch
                done = c.execute(
                    batches.update()
                    .where(batches.c.id == batch_id, batches.c.status == "running", free)
                    .values(lease_owner=owner, lease_expires_at=until)
                )
                if done.rowcount:
                    taken.append(batch_id)
            if not taken:
                return []
            return [self._row(r) for r in c.execute(sa.select(batches).where(batches.c.id.in_(taken)))]

    def release(self, owner: str) -> None:
        """Give up this replica's batches (their running inputs go back to pending)."""
        with self.db.engine.begin() as c:
            held = sa.select(batches.c.id).where(
                batches.c.lease_owner == owner, batches.c.status == "running"
            )
            c.execute(
                batch_items.update()
                .where(batch_items.c.batch_id.in_(held), batch_items.c.status == "running")
                .values(status="pending")
            )
            c.execute(
                batches.update()
                .where(batches.c.lease_owner == owner)
                .values(lease_owner=None, lease_expires_at=None)
            )


# -- running them -----------------------------------------------------------------------------------


@dataclass
class _Driven:
    row: BatchRow
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    ended: anyio.Event = field(default_factory=anyio.Event)
    cancelled: bool = False


class BatchManager:
    """Drives the batches this replica holds; one per app, started by the router's lifespan."""

    def __init__(self, state: ServiceState, runs: RunManager) -> None:
        self.state = state
        self.runs = runs
        self.records = BatchRecords(state.db)
        self.owner = "b-" + uuid.uuid4().hex[:14]
        self.driving: dict[str, _Driven] = {}
        self._tg: anyio.abc.TaskGroup | None = None

    def caller(self, tenant_id: str) -> Caller:
        """The batch's caller: its tenant, as a member (the key that made it may be gone)."""
        principal = Principal(key_id="batch", tenant_id=tenant_id, role="member")
        return Caller(principal, self.state.tenant(tenant_id), self.state)

    def check(self, caller: Caller, body: BatchCreate) -> None:
        """Refuse, before anything runs, what a run of it would refuse: the workflow (line and
        column), each input (by index), a model the tenant may not use."""
        try:
            workflow = load_for_tenant(body.workflow, Toolset(caller.tools))
        except yaml.YAMLError as exc:  # text YAML cannot read at all (a control character)
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ProblemError(
                422,
                "invalid-workflow",
                f"body field 'workflow': not YAML: {reason}",
                title="Invalid workflow",
            ) from None
        bad = []
        for index, given in enumerate(body.inputs):
            try:
                workflow.bind_inputs(given)
            except UserError as exc:
                bad.append(f"inputs[{index}]: {exc}")
        if bad:
            more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
            raise ProblemError(422, "invalid-inputs", "; ".join(bad[:5]) + more, title="Invalid inputs")
        if any(step.query is not None for step in workflow.spec.steps):
            self.runs._model_for(caller, self._body(body.workflow, body.inputs[0], body.model, "", 0))

    @staticmethod
    def _body(
        workflow: str, inputs: dict[str, Any], model: str | None, batch_id: str, index: int
    ) -> RunCreate:
        return RunCreate(
            workflow=workflow,
            inputs=inputs,
            model=model,
            metadata={"batch": batch_id, "batch_index": str(index)},
        )

    # -- lifecycle

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[BatchManager]:
        """Claim the batches nobody drives, drive them, and give them up on leaving."""
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(self._keep_claiming)
                yield self
                tg.cancel_scope.cancel()
        finally:
            self._tg = None
            with anyio.CancelScope(shield=True):
                try:
                    await anyio.to_thread.run_sync(self.records.release, self.owner)
                except Exception as exc:
                    _log.warning("could not release batches: %s", type(exc).__name__)

    async def _keep_claiming(self) -> None:
        while True:
            try:
                for row in await anyio.to_thread.run_sync(self.records.claim, self.owner):
                    self.drive(row)
            except Exception as exc:  # the database is away for a moment: next round
                _log.warning("could not claim batches: %s", type(exc).__name__)
            await anyio.sleep(BATCH_LEASE_S / 3)

    def drive(self, row: BatchRow) -> None:
        """Run the batch's inputs that have not ended, in the background."""
        if row.id in self.driving or self._tg is None:
            return
        driven = self.driving[row.id] = _Driven(row)
        self._tg.start_soon(self._drive, driven)

    async def _drive(self, driven: _Driven) -> None:
        row = driven.row
        try:
            with driven.scope:
                items = await anyio.to_thread.run_sync(self.records.items, row.id)
                todo = [i for i in items if i.status in ("pending", "running")]
                limiter = anyio.CapacityLimiter(BATCH_CONCURRENCY)
                async with anyio.create_task_group() as tg:
                    for item in todo:
                        tg.start_soon(self._one, row, item.idx, dict(item.inputs), item.run_id, limiter)
            if driven.cancelled:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(self.records.end, row.id, "cancelled")
            elif self.runs.accepting and not driven.scope.cancel_called:
                counts = await anyio.to_thread.run_sync(self.records.counts, row.id)
                if not counts.get("pending") and not counts.get("running"):
                    await anyio.to_thread.run_sync(self.records.end, row.id, "finished")
        except Exception:
            _log.exception("batch %s broke", row.id)
        finally:
            self.driving.pop(row.id, None)
            driven.ended.set()

    async def _set(self, batch_id: str, index: int, **values: Any) -> None:
        await anyio.to_thread.run_sync(lambda: self.records.set_item(batch_id, index, **values))

    async def _start(self, row: BatchRow, index: int, inputs: dict[str, Any]) -> str | None:
        """Submit the input's run (waiting while the tenant or the server is at its bound);
        None when it was refused (the input is then failed) or the server is stopping."""
        body = self._body(row.workflow, inputs, row.model, row.id, index)
        while self.runs.accepting:
            try:
                run_id, _ = await self.runs.submit(self.caller(row.tenant_id), body)
                return run_id
            except ProblemError as exc:
                if exc.status in (429, 503):  # at a bound: the next run may start once one ends
                    await anyio.sleep(min(5.0, float(exc.headers.get("Retry-After", "1"))))
                    continue
                await self._set(row.id, index, status="failed", error=exc.detail, finished_at=_now())
                return None
        return None

    async def _one(
        self,
        row: BatchRow,
        index: int,
        inputs: dict[str, Any],
        run_id: str | None,
        limiter: anyio.CapacityLimiter,
    ) -> None:
        async with limiter:
            found = None
            if run_id is not None:  # started before a restart: its run may have ended meanwhile
                found = await anyio.to_thread.run_sync(self.runs.records.get_run, row.tenant_id, run_id)
                if found is not None and not found.ended and self.runs.get(row.tenant_id, run_id) is None:
                    found = None  # abandoned by its server: run it again
            if found is None or found.status == "cancelled":
                run_id = await self._start(row, index, inputs)
                if run_id is None:
                    return
                await self._set(row.id, index, status="running", run_id=run_id)
            assert run_id is not None
            live = self.runs.get(row.tenant_id, run_id)
            if live is not None:
                await live.done.wait()
            found = await anyio.to_thread.run_sync(self.runs.records.get_run, row.tenant_id, run_id)
            if found is None or not found.ended:
                return  # deleted, or driven elsewhere: the next holder reads it
            if found.status == "cancelled" and not self.runs.accepting:
                return  # stopped with its server: it runs again after the restart
            result = found.result or {}
            values: dict[str, Any] = {"finished_at": _now()}
            if found.status == "finished":
                outputs = result.get("outputs")
                answer = None if outputs is not None else result.get("answer")
                values.update(status="finished", outputs=outputs, answer=answer)
            else:
                values.update(status="failed" if found.status != "cancelled" else "cancelled")
                values["error"] = result.get("reason") or f"the run {found.status}"
            with anyio.CancelScope(shield=True):
                await self._set(row.id, index, **values)

    async def cancel(self, batch_id: str) -> bool:
        """Stop the batch if this replica drives it, and cancel its inputs' runs (waiting 5 s
        at most for them to stop); False when it does not drive it."""
        driven = self.driving.get(batch_id)
        if driven is None:
            return False
        driven.cancelled = True
        driven.scope.cancel()
        for item in await anyio.to_thread.run_sync(self.records.items, batch_id):
            live = self.runs.get(driven.row.tenant_id, item.run_id) if item.run_id else None
            if live is not None and item.status == "running":
                self.runs.cancel(live)
        with anyio.move_on_after(5):
            await driven.ended.wait()
        return True


# -- the routes --------------------------------------------------------------------------------------


def get_batches(request: Request) -> BatchManager:
    """The app's :class:`BatchManager`."""
    manager: BatchManager = request.app.state.batches
    return manager


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    manager = BatchManager(app.state.service, app.state.runs)
    app.state.batches = manager
    async with manager.running():
        yield


router = APIRouter(prefix="/v1", tags=["batches"], responses=ERRORS, lifespan=_lifespan)
BatchesDep = Annotated[BatchManager, Depends(get_batches)]


def _out(records: BatchRecords, row: BatchRow, *, with_results: bool) -> BatchOut:
    counts = records.counts(row.id)
    results = []
    if with_results:
        results = [
            BatchItemOut(
                index=i.idx,
                run_id=i.run_id,
                status=i.status,
                answer=i.answer,
                outputs=i.outputs,
                error=i.error,
            )
            for i in records.items(row.id)
        ]
    return BatchOut(
        id=row.id,
        status=row.status,
        created_at=_iso(row.created_at) or "",
        finished_at=_iso(row.finished_at),
        total=row.total,
        done=counts.get("finished", 0) + counts.get("failed", 0),
        failed=counts.get("failed", 0),
        model=row.model,
        metadata=row.metadata,
        results=results,
    )


def _found(records: BatchRecords, tenant_id: str, batch_id: str) -> BatchRow:
    row = records.get(tenant_id, batch_id)
    if row is None:
        raise ProblemError(404, "not-found", f"no batch {batch_id!r} for this tenant")
    return row


@router.post(
    "/batches",
    status_code=202,
    summary="Run a workflow once per input, in the background",
    dependencies=[Depends(require_json)],
)
async def create_batch(body: BatchCreate, caller: CallerDep, manager: BatchesDep) -> BatchOut:
    tenant_id = caller.tenant.id
    await anyio.to_thread.run_sync(manager.check, caller, body)
    row = BatchRow(
        id="bat_" + uuid.uuid4().hex[:16], tenant_id=tenant_id, status="running", workflow=body.workflow,
        model=body.model, metadata=dict(body.metadata), total=len(body.inputs), created_at=_now(),
        finished_at=None,
    )  # fmt: skip
    await anyio.to_thread.run_sync(manager.records.create, row, body.inputs, manager.owner)
    manager.drive(row)
    return await anyio.to_thread.run_sync(lambda: _out(manager.records, row, with_results=False))


@router.get("/batches/{batch_id}", summary="A batch's progress and each input's result")
async def get_batch(batch_id: str, caller: CallerDep, manager: BatchesDep) -> BatchOut:
    def read() -> BatchOut:
        return _out(manager.records, _found(manager.records, caller.tenant.id, batch_id), with_results=True)

    return await anyio.to_thread.run_sync(read)


@router.post("/batches/{batch_id}/cancel", summary="Cancel a batch: no more inputs start")
async def cancel_batch(batch_id: str, caller: CallerDep, manager: BatchesDep) -> BatchOut:
    records = manager.records
    row = await anyio.to_thread.run_sync(_found, records, caller.tenant.id, batch_id)
    if row.status == "running":
        if not await manager.cancel(batch_id):  # driven elsewhere, or by nobody now: end it here
            await anyio.to_thread.run_sync(records.end, batch_id, "cancelled")
        row = await anyio.to_thread.run_sync(_found, records, caller.tenant.id, batch_id)
    return await anyio.to_thread.run_sync(lambda: _out(records, row, with_results=True))
