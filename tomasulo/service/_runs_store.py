"""Runs in the service's database: the run rows, their journals and results, and the SQL
:class:`~tomasulo.runtime.RunStore` the Orchestrator writes into.

::

    records = RunRecords(db)                          # synchronous SQLAlchemy Core, any thread
    store = SqlRunStore(records, tenant_id="acme")    # async, one tenant's runs only

A run's journal is appended in batches (one ``INSERT`` per batch, idempotent on
``(run_id, seq)``), and its result row is written in the same transaction that marks the run
ended, so a run is never reported ended without its result. :class:`SqlRunStore` runs every
database call in a worker thread (``anyio.to_thread``), so the event loop never waits on it.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ..dispatcher import Event
from ..runtime import RunFinished, RunResult, RunStarted, RunSummary
from ..views import jsonable, task_json
from ._schema import events, idempotency_keys, results, runs, tenant_usage
from ._store import Database

__all__ = [
    "ACTIVE",
    "ENDED",
    "IdempotencyConflict",
    "RunRecords",
    "RunRow",
    "SqlRunStore",
    "request_hash",
    "result_json",
]

#: Statuses of a run that has not ended.
ACTIVE = ("queued", "running")
#: Statuses of a run that has ended (the library's ``RunStatus``).
ENDED = ("finished", "stopped", "failed", "cancelled")

#: How long an ``Idempotency-Key`` names its run.
IDEMPOTENCY_TTL = dt.timedelta(hours=24)


class IdempotencyConflict(ValueError):
    """An ``Idempotency-Key`` used again with a different request."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(run_id)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite gives back naive times; they were written in UTC
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def request_hash(body: Mapping[str, Any]) -> str:
    """The sha256 of a request body's canonical JSON (keys sorted)."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def result_json(result: RunResult) -> dict[str, Any]:
    """What the ``results`` row keeps of a run's result: the API's view of it (JSON data)."""
    plan_of = {t.id: t.plan for t in result.tasks}
    tasks = [{**task_json(t), "plan": plan_of[t.id]} for t in result.tasks]
    usage = result.usage
    return {
        "answer": result.answer,
        "status": result.status,
        "reason": result.reason,
        "tasks": tasks,
        "plans": list(result.plans),
        "replans": result.replans,
        "interrupts": list(result.interrupts),
        "usage": {
            "llm_calls": result.llm_calls,
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "cost": usage.cost,
        },
        "makespan": result.makespan,
        "warnings": list(result.warnings),
    }


@dataclass(frozen=True, slots=True)
class RunRow:
    """A run as stored, with its result's JSON view once it has ended."""

    id: str
    tenant_id: str
    status: str
    kind: str
    request: dict[str, Any]
    metadata: dict[str, str]
    model: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    last_seq: int
    result: dict[str, Any] | None = None

    @property
    def ended(self) -> bool:
        """Whether the run has ended (its result is stored)."""
        return self.status in ENDED


def encode_cursor(created_at: dt.datetime, run_id: str) -> str:
    """The opaque cursor after a run (its creation time and id)."""
    text = f"{_aware(created_at).isoformat()}|{run_id}"  # type: ignore[union-attr]
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, str]:
    """The creation time and id a cursor names; ``ValueError`` if it is not one of ours."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, run_id = text.split("|", 1)
        at = dt.datetime.fromisoformat(when)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("the cursor is not one this server gave (use next_cursor as it came)") from None
    if at.tzinfo is None or not run_id:
        raise ValueError("the cursor is not one this server gave (use next_cursor as it came)")
    return at, run_id


class RunRecords:
    """The runs tables of one database; synchronous (call from worker threads)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.engine = db.engine
        self._dialect = db.engine.dialect.name

    def _ts(self, value: dt.datetime) -> dt.datetime:
        """A time as the database compares it (SQLite: naive UTC)."""
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if self._dialect == "sqlite" else value

    def _insert(self, table: sa.Table) -> Any:
        return (postgresql if self._dialect == "postgresql" else sqlite).insert(table)

    # -- runs -----------------------------------------------------------------------------------

    def create_run(
        self,
        *,
        run_id: str,
        tenant_id: str,
        kind: str,
        request: Mapping[str, Any],
        metadata: Mapping[str, str],
        model: str | None,
        owner: str,
        lease_s: float,
        idempotency: tuple[str, str] | None = None,
    ) -> tuple[str, bool]:
        """Add a queued run; returns its id and whether it is new.

        With ``idempotency`` (key, request hash), a key the tenant used before names the run it
        made (returned, not new), unless the request differs.

        Raises:
            IdempotencyConflict: the key was used with a different request.
        """
        now = _now()
        if idempotency is not None:
            found = self._idempotent(tenant_id, *idempotency)
            if found is not None:
                return found, False
        try:
            with self.engine.begin() as connection:
                connection.execute(
                    sa.insert(runs).values(
                        id=run_id,
                        tenant_id=tenant_id,
                        status="queued",
                        kind=kind,
                        request=dict(request),
                        metadata=dict(metadata),
                        model=model,
                        created_at=now,
                        last_seq=0,
                        lease_owner=owner,
                        lease_expires_at=now + dt.timedelta(seconds=lease_s),
                    )
                )
                if idempotency is not None:
                    connection.execute(
                        sa.insert(idempotency_keys).values(
                            tenant_id=tenant_id,
                            key=idempotency[0],
                            request_hash=idempotency[1],
                            run_id=run_id,
                            created_at=now,
                            expires_at=now + IDEMPOTENCY_TTL,
                        )
                    )
        except sa.exc.IntegrityError:
            if idempotency is None:
                raise
            found = self._idempotent(tenant_id, *idempotency)  # a concurrent retry made it first
            if found is None:
                raise
            return found, False
        return run_id, True

    def _idempotent(self, tenant_id: str, key: str, digest: str) -> str | None:
        query = sa.select(idempotency_keys).where(
            idempotency_keys.c.tenant_id == tenant_id,
            idempotency_keys.c.key == key,
            idempotency_keys.c.expires_at > self._ts(_now()),
        )
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        if row is None:
            return None
        if row.request_hash != digest:
            raise IdempotencyConflict(row.run_id)
        return str(row.run_id)

    def _row(self, row: Any) -> RunRow:
        return RunRow(
            id=row.id,
            tenant_id=row.tenant_id,
            status=row.status,
            kind=row.kind,
            request=dict(row.request or {}),
            metadata=dict(row.metadata or {}),
            model=row.model,
            created_at=_aware(row.created_at),  # type: ignore[arg-type]
            started_at=_aware(row.started_at),
            finished_at=_aware(row.finished_at),
            last_seq=int(row.last_seq),
            result=row.result,
        )

    def _select(self) -> sa.Select[Any]:
        return sa.select(runs, results.c.result).outerjoin(results, results.c.run_id == runs.c.id)

    def get_run(self, tenant_id: str, run_id: str) -> RunRow | None:
        """The tenant's run ``run_id`` (``None``: none, or another tenant's)."""
        query = self._select().where(runs.c.id == run_id, runs.c.tenant_id == tenant_id)
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        return None if row is None else self._row(row)

    def list_runs(
        self,
        tenant_id: str,
        *,
        limit: int = 20,
        status: str | None = None,
        created_after: dt.datetime | None = None,
        created_before: dt.datetime | None = None,
        metadata: Mapping[str, str] | None = None,
        cursor: str | None = None,
    ) -> tuple[list[RunRow], str | None]:
        """The tenant's runs, newest first, and the cursor of the next page (``None``: the last).

        Raises:
            ValueError: a cursor this server did not give.
        """
        query = self._select().where(runs.c.tenant_id == tenant_id)
        if status is not None:
            query = query.where(runs.c.status == status)
        if created_after is not None:
            query = query.where(runs.c.created_at > self._ts(created_after))
        if created_before is not None:
            query = query.where(runs.c.created_at < self._ts(created_before))
        for key, value in (metadata or {}).items():
            query = query.where(runs.c.metadata[key].as_string() == value)
        if cursor is not None:
            at, after_id = decode_cursor(cursor)
            when = self._ts(at)
            query = query.where(
                sa.or_(runs.c.created_at < when, sa.and_(runs.c.created_at == when, runs.c.id < after_id))
            )
        query = query.order_by(runs.c.created_at.desc(), runs.c.id.desc()).limit(limit + 1)
        with self.engine.connect() as connection:
            rows = [self._row(r) for r in connection.execute(query).all()]
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, encode_cursor(rows[-1].created_at, rows[-1].id) if more and rows else None

    def delete_run(self, tenant_id: str, run_id: str) -> bool:
        """Delete the tenant's run with its events and result; whether there was one."""
        with self.engine.begin() as connection:
            if connection.dialect.name == "sqlite":
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            done = connection.execute(
                sa.delete(runs).where(runs.c.id == run_id, runs.c.tenant_id == tenant_id)
            )
        return bool(done.rowcount)

    def ensure_run(self, run_id: str, tenant_id: str, *, query: str, mode: str, started: float) -> None:
        """Make the row of a run that the library started without the service (``SqlRunStore``
        used directly): a running run of ``tenant_id``; a row that exists already is kept.

        Raises:
            KeyError: the id names another tenant's run.
        """
        kind = "plan" if mode == "plan_then_execute" and not query else "question"
        now = _now()
        insert = self._insert(runs).values(
            id=run_id,
            tenant_id=tenant_id,
            status="running",
            kind=kind,
            request={"query": query, "mode": mode} if kind == "question" else {},
            metadata={},
            created_at=now,
            started_at=dt.datetime.fromtimestamp(started, dt.UTC),
            last_seq=0,
        )
        with self.engine.begin() as connection:
            connection.execute(insert.on_conflict_do_nothing(index_elements=["id"]))
            owner = connection.execute(sa.select(runs.c.tenant_id).where(runs.c.id == run_id)).scalar_one()
        if owner != tenant_id:
            raise KeyError(f"run {run_id!r} belongs to another tenant")

    def renew_leases(self, owner: str, run_ids: Sequence[str], lease_s: float) -> None:
        """Extend this replica's lease on the runs it drives."""
        if not run_ids:
            return
        until = _now() + dt.timedelta(seconds=lease_s)
        with self.engine.begin() as connection:
            connection.execute(
                sa.update(runs)
                .where(runs.c.id.in_(list(run_ids)), runs.c.lease_owner == owner)
                .values(lease_expires_at=until)
            )

    # -- journals and results -------------------------------------------------------------------

    def append_events(self, run_id: str, batch: Sequence[tuple[int, str, float, dict[str, Any]]]) -> None:
        """Add a batch of a run's events ``(seq, kind, wall time, JSON)``: one ``INSERT``; an
        event stored already (same ``seq``) is kept as it was. The run is marked running."""
        if not batch:
            return
        rows = [{"run_id": run_id, "seq": s, "kind": k, "at": at, "data": d} for s, k, at, d in batch]
        insert = self._insert(events).values(rows).on_conflict_do_nothing(index_elements=["run_id", "seq"])
        last = max(s for s, *_ in batch)
        first_at = dt.datetime.fromtimestamp(batch[0][2], dt.UTC)
        with self.engine.begin() as connection:
            connection.execute(insert)
            connection.execute(
                sa.update(runs)
                .where(runs.c.id == run_id)
                .values(
                    last_seq=sa.case((runs.c.last_seq < last, last), else_=runs.c.last_seq),
                    status=sa.case((runs.c.status == "queued", "running"), else_=runs.c.status),
                    started_at=sa.func.coalesce(runs.c.started_at, first_at),
                )
            )

    def load_events(self, run_id: str, *, after: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """A run's events' JSON with ``seq`` over ``after``, in order, at most ``limit``."""
        query = (
            sa.select(events.c.data)
            .where(events.c.run_id == run_id, events.c.seq > after)
            .order_by(events.c.seq)
            .limit(limit)
        )
        with self.engine.connect() as connection:
            return [dict(r.data) for r in connection.execute(query).all()]

    def save_result(
        self, run_id: str, tenant_id: str, status: str, view: dict[str, Any], *, last_seq: int | None = None
    ) -> None:
        """Keep a run's result and mark the run ended, in one transaction; the tokens and cost
        it used count toward its tenant's day (``tenant_usage``). Saving twice keeps the first."""
        now = _now()
        usage = view.get("usage") or {}
        prompt = int(usage.get("prompt_tokens") or 0)
        completion = int(usage.get("completion_tokens") or 0)
        cost = float(usage.get("cost") or 0.0)
        insert = self._insert(results).values(
            run_id=run_id,
            status=status,
            answer=view.get("answer"),
            result=view,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost=cost,
            created_at=now,
        )
        with self.engine.begin() as connection:
            saved = connection.execute(insert.on_conflict_do_nothing(index_elements=["run_id"]))
            if not saved.rowcount:
                return
            values: dict[str, Any] = {"status": status, "finished_at": now, "lease_expires_at": None}
            if last_seq is not None:
                values["last_seq"] = sa.case((runs.c.last_seq < last_seq, last_seq), else_=runs.c.last_seq)
            connection.execute(sa.update(runs).where(runs.c.id == run_id).values(**values))
            day = now.date()
            upsert = self._insert(tenant_usage).values(
                tenant_id=tenant_id,
                day=day,
                runs=1,
                prompt_tokens=prompt,
                completion_tokens=completion,
                cost=cost,
            )
            connection.execute(
                upsert.on_conflict_do_update(
                    index_elements=["tenant_id", "day"],
                    set_={
                        "runs": tenant_usage.c.runs + 1,
                        "prompt_tokens": tenant_usage.c.prompt_tokens + prompt,
                        "completion_tokens": tenant_usage.c.completion_tokens + completion,
                        "cost": tenant_usage.c.cost + cost,
                    },
                )
            )

    def usage_today(self, tenant_id: str) -> tuple[int, float]:
        """The tokens and cost the tenant's ended runs used today (UTC)."""
        query = sa.select(tenant_usage).where(
            tenant_usage.c.tenant_id == tenant_id, tenant_usage.c.day == _now().date()
        )
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        if row is None:
            return 0, 0.0
        return int(row.prompt_tokens + row.completion_tokens), float(row.cost)

    def fail_abandoned(self, reason: str = "server restarted") -> list[str]:
        """End every run whose driver's lease has lapsed (its server stopped without ending it):
        a ``run_finished`` event closes its journal, and it is marked ``failed`` with ``reason``."""
        now = _now()
        query = sa.select(runs.c.id, runs.c.tenant_id, runs.c.last_seq).where(
            runs.c.status.in_(ACTIVE),
            sa.or_(runs.c.lease_expires_at.is_(None), runs.c.lease_expires_at < self._ts(now)),
        )
        with self.engine.connect() as connection:
            found = connection.execute(query).all()
        ended = []
        for run_id, tenant_id, last_seq in found:
            seq = int(last_seq) + 1
            event = RunFinished(
                run_id=run_id, seq=seq, ts=time.monotonic(), task_id=None, status="failed", reason=reason
            )
            self.append_events(run_id, [(seq, event.kind, time.time(), event.to_json())])
            view: dict[str, Any] = {
                "answer": None,
                "status": "failed",
                "reason": reason,
                "tasks": [],
                "plans": [],
                "usage": {},
            }
            self.save_result(run_id, tenant_id, "failed", view, last_seq=seq)
            ended.append(run_id)
        return ended


class SqlRunStore:
    """The :class:`~tomasulo.runtime.RunStore` of one tenant, over the service's database.

    The service creates each run's row (``RunRecords.create_run``) before the run starts; a
    run the library starts on its own gets one with its first batch. The Orchestrator appends
    its journal here in batches and saves its result. Reads see only the tenant's runs: another
    tenant's run is a ``KeyError``, as a run that does not exist.

    >>> store = SqlRunStore(RunRecords(db), "default")                       # doctest: +SKIP
    >>> result = await Orchestrator(tools, llm, store=store).run("...")       # doctest: +SKIP
    """

    def __init__(self, records: RunRecords, tenant_id: str) -> None:
        self.records = records
        self.tenant_id = tenant_id
        self._wall0: dict[str, tuple[float, float]] = {}  # run -> (monotonic, wall) at its start
        #: Runs whose result this store has saved.
        self.saved: set[str] = set()

    def _wall(self, run_id: str, event: Event) -> float:
        if isinstance(event, RunStarted):
            self._wall0[run_id] = (event.ts, event.wall_time)
        base = self._wall0.get(run_id)
        return time.time() if base is None else base[1] + (event.ts - base[0])

    async def append(self, run_id: str, events: Sequence[Event]) -> None:
        """Add a batch of a run's events (one ``INSERT``, in a worker thread). A run that
        starts here with no row yet (the library used directly) gets one, of this tenant."""
        rows = [(e.seq, e.kind, self._wall(run_id, e), jsonable(e.to_json())) for e in events]
        start = next((e for e in events[:1] if isinstance(e, RunStarted)), None)

        def write() -> None:
            if start is not None:
                self.records.ensure_run(
                    run_id, self.tenant_id, query=start.query, mode=start.mode, started=start.wall_time
                )
            self.records.append_events(run_id, rows)

        await anyio.to_thread.run_sync(write)

    async def save_result(
        self, result: RunResult, *, view: dict[str, Any] | None = None, last_seq: int | None = None
    ) -> None:
        """Keep a run's result and mark it ended (one transaction); ``view`` replaces the
        result's API view (:func:`result_json`), ``last_seq`` its last event's seq."""
        view = result_json(result) if view is None else view
        last = last_seq if last_seq is not None else result.timeline[-1].seq if result.timeline else None
        await anyio.to_thread.run_sync(
            lambda: self.records.save_result(
                result.run_id, self.tenant_id, result.status, view, last_seq=last
            )
        )
        self.saved.add(result.run_id)
        self._wall0.pop(result.run_id, None)

    async def _require(self, run_id: str) -> RunRow:
        row = await anyio.to_thread.run_sync(self.records.get_run, self.tenant_id, run_id)
        if row is None:
            raise KeyError(run_id)
        return row

    async def load_events(self, run_id: str, *, after: int = 0) -> list[Event]:
        """A run's events after ``after``, in order."""
        await self._require(run_id)
        out: list[Event] = []
        while True:
            read = functools.partial(self.records.load_events, run_id, after=after, limit=1000)
            page = await anyio.to_thread.run_sync(read)
            out.extend(Event.from_json(d) for d in page)
            if len(page) < 1000:
                return out
            after = out[-1].seq

    async def load_result(self, run_id: str) -> RunResult | None:
        """A run's result, rebuilt from its journal (``None`` while it runs)."""
        row = await self._require(run_id)
        if not row.ended:
            return None
        return RunResult.from_events(await self.load_events(run_id))

    async def list_runs(self, *, limit: int = 100) -> list[RunSummary]:
        """The tenant's latest runs, the most recent first."""
        rows, _ = await anyio.to_thread.run_sync(lambda: self.records.list_runs(self.tenant_id, limit=limit))
        return [
            RunSummary(
                run_id=r.id,
                query=str(r.request.get("query") or ""),
                mode=str(r.request.get("mode") or ""),
                started_at=(r.started_at or r.created_at).timestamp(),
                status=r.status if r.ended else None,
                events=r.last_seq,
            )
            for r in rows
        ]
