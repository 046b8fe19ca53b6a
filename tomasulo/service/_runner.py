"""Runs in the background on the server's event loop: admission, limits, leases, shutdown.

::

    manager = RunManager(state)          # one per app; opened in the app's lifespan
    async with manager:                  # fails runs a stopped server left, renews leases
        live = await manager.submit(caller, RunCreate(query="..."))
        ...
    # leaving: stop accepting, let runs end (limits.shutdown_grace), then cancel them

Each run goes through the library's :class:`~tomasulo.runtime.Orchestrator` with a
:class:`SqlRunStore` of its tenant, so its journal and result land in the database as the
library writes them. A tenant over its ``concurrent_runs`` gets a ``429`` (runs are not
queued); a server over ``limits.max_concurrent_runs`` a ``503``; a tenant whose day's tokens or
cost are spent a ``429``, and each run's :class:`~tomasulo.runtime.Budget` holds what is left.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import httpx

from ..dispatcher import DEFAULT_LIMITS, Event
from ..exceptions import PlanError, UserError, WorkflowError
from ..grammar import Plan, parse_json_plan, parse_plan
from ..planner import LLM
from ..runtime import Budget, Orchestrator, RunHandle, RunResult
from ._problems import ProblemError
from ._run_models import RunCreate
from ._runs_store import IdempotencyConflict, RunRecords, SqlRunStore, request_hash, result_json
from ._workflow_runs import WorkflowHandle, load_for_tenant

if TYPE_CHECKING:
    from ._deps import Caller, ServiceState

__all__ = ["LiveRun", "RunManager"]

_log = logging.getLogger("tomasulo.service")

#: How long cancelled runs get to record their end on shutdown before the server stops anyway.
CANCEL_WAIT = 5.0


@dataclass
class LiveRun:
    """A run this replica drives: its handle once started, and when its result is saved."""

    id: str
    tenant_id: str
    kind: str
    query: str | None
    mode: str
    model: str | None
    metadata: dict[str, str]
    created_at: dt.datetime
    handle: RunHandle | WorkflowHandle | None = None
    result: RunResult | None = None
    started: anyio.Event = field(default_factory=anyio.Event)
    #: Set once the result is in the database (the run may be reported ended from then on).
    done: anyio.Event = field(default_factory=anyio.Event)
    cancel_requested: bool = False

    @property
    def events(self) -> list[Event]:
        """Every event so far."""
        return [] if self.handle is None else self.handle.journal.history()

    @property
    def last_seq(self) -> int:
        """The seq of the latest event."""
        return 0 if self.handle is None else self.handle.journal.last_seq


class RunManager:
    """Starts, tracks and stops the runs of one app (see the module's docstring)."""

    def __init__(self, state: ServiceState) -> None:
        self.state = state
        self.records = RunRecords(state.db)
        self.owner = uuid.uuid4().hex[:16]
        self.live: dict[str, LiveRun] = {}
        self.accepting = True
        self.streams = 0
        self._per_tenant: dict[str, int] = {}
        self._llms: dict[str, LLM] = {}
        self._http: httpx.AsyncClient | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._stores: dict[str, SqlRunStore] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def limits(self) -> Any:
        return self.state.config.limits

    # -- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> RunManager:
        failed = await anyio.to_thread.run_sync(self.records.fail_abandoned)
        if failed:
            _log.warning("marked %d runs failed: their server stopped before they ended", len(failed))
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(None, connect=10.0))
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._renew_leases)
        self._loop = asyncio.get_running_loop()
        return self

    def request_shutdown(self) -> None:
        """Stop accepting runs now and start ending those in flight (see :meth:`shutdown`); safe
        to call from a signal handler or another thread. The server calls it when told to stop,
        so that event streams end with their runs instead of holding the shutdown open."""
        self.accepting = False
        loop, tg = self._loop, self._tg
        if loop is None or tg is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(lambda: tg.start_soon(self.shutdown) if self._tg is tg else None)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        await self.shutdown()
        assert self._tg is not None
        tg, self._tg = self._tg, None
        tg.cancel_scope.cancel()
        try:
            return await tg.__aexit__(exc_type, exc, tb)
        finally:
            for llm in self._llms.values():
                await llm.aclose()
            if self._http is not None:
                await self._http.aclose()

    async def shutdown(self) -> None:
        """Stop accepting runs; let those in flight end for ``limits.shutdown_grace`` seconds,
        then cancel them (their results are saved as ``cancelled``)."""
        self.accepting = False
        with anyio.move_on_after(self.limits.shutdown_grace):
            for live in list(self.live.values()):
                await live.done.wait()
        for live in list(self.live.values()):
            self._cancel(live)
        with anyio.move_on_after(CANCEL_WAIT):
            for live in list(self.live.values()):
                await live.done.wait()

    async def _renew_leases(self) -> None:
        lease = self.limits.run_lease_s
        while True:
            await anyio.sleep(lease / 3)
            ids = list(self.live)
            try:
                await anyio.to_thread.run_sync(self.records.renew_leases, self.owner, ids, lease)
            except Exception as exc:  # the database is down for a moment: try again next time
                _log.warning("could not renew run leases: %s", type(exc).__name__)

    # -- admission ------------------------------------------------------------------------------

    def store(self, tenant_id: str) -> SqlRunStore:
        """The tenant's run store."""
        store = self._stores.get(tenant_id)
        if store is None:
            store = self._stores[tenant_id] = SqlRunStore(self.records, tenant_id)
        return store

    def _llm(self, name: str) -> LLM:
        llm = self._llms.get(name)
        if llm is None:
            backend = self.state.models[name]
            settings = backend.settings()
            llm = LLM(
                settings.base_url,
                model=settings.model,
                dialect=settings.dialect,
                api_key=settings.api_key,
                temperature=settings.temperature,
                prices=backend.price_table(),
                http_client=self._http,
            )
            self._llms[name] = llm
        return llm

    def _model_for(self, caller: Caller, body: RunCreate) -> str:
        granted = caller.models
        if body.model is not None:
            if body.model not in granted:
                raise ProblemError(
                    404,
                    "not-found",
                    f"body field 'model': no model {body.model!r} for this tenant; GET /v1/models lists them",
                )
            return body.model
        default = self.state.default_model
        if default is None or default not in granted:
            why = self.state.model_problem or "no model is configured for this tenant"
            raise ProblemError(
                422,
                "no-model",
                f"a question needs a model: {why} (name one in body field 'model'; GET /v1/models)",
                title="No model",
            )
        return default

    def _parse(self, body: RunCreate, tools: Any, max_tasks: int) -> Plan:
        assert body.plan is not None
        if len(body.plan) > self.limits.max_plan_chars:
            raise ProblemError(
                422,
                "plan-too-long",
                f"body field 'plan' is {len(body.plan)} characters; this server reads at most "
                f"{self.limits.max_plan_chars} (limits.max_plan_chars)",
                title="Plan too long",
            )
        try:
            if body.dialect == "json":
                return parse_json_plan(body.plan, tools, max_tasks=max_tasks)
            return parse_plan(body.plan, tools, max_tasks=max_tasks)
        except PlanError as exc:
            raise ProblemError(
                422,
                "invalid-plan",
                f"body field 'plan', line {exc.line}, column {exc.column}: {exc.message}",
                title="Invalid plan",
                errors=[
                    {
                        "type": type(exc).__name__,
                        "message": exc.message,
                        "line": exc.line,
                        "column": exc.column,
                        "text": exc.text[:500],
                        "hint": exc.hint or "",
                    }
                ],
            ) from None
        except RecursionError:
            raise ProblemError(
                422,
                "invalid-plan",
                "body field 'plan' nests its values too deeply to read",
                title="Invalid plan",
            ) from None

    def _budget(self, caller: Caller, body: RunCreate, used: tuple[int, float]) -> Budget:
        limits = caller.tenant.limits
        tokens, cost = used
        max_tokens = body.budget.max_tokens if body.budget else None
        max_cost = body.budget.max_cost if body.budget else None
        if limits.tokens_per_day is not None:
            left = limits.tokens_per_day - tokens
            if left <= 0:
                raise _budget_spent(f"{tokens} of its {limits.tokens_per_day} tokens")
            max_tokens = left if max_tokens is None else min(max_tokens, left)
        if limits.cost_per_day is not None:
            left_cost = limits.cost_per_day - cost
            if left_cost <= 0:
                raise _budget_spent(f"{cost:.4f} of its {limits.cost_per_day:.4f} cost")
            max_cost = left_cost if max_cost is None else min(max_cost, left_cost)
        run_limits = body.limits
        return Budget(
            max_replans=run_limits.max_replans
            if run_limits and run_limits.max_replans is not None
            else Budget().max_replans,
            max_tokens=max_tokens,
            max_cost=max_cost,
            max_seconds=run_limits.deadline_s if run_limits else None,
        )

    def _admit(self, caller: Caller) -> None:
        if not self.accepting:
            raise ProblemError(
                503,
                "unavailable",
                "the server is shutting down and takes no new runs; retry on another replica",
                title="Service unavailable",
                headers={"Retry-After": "5"},
            )
        tenant = caller.tenant
        bound = tenant.limits.concurrent_runs
        if bound is not None and self._per_tenant.get(tenant.id, 0) >= bound:
            raise ProblemError(
                429,
                "too-many-runs",
                f"tenant {tenant.id!r} has {bound} runs in flight, its limit (limits.concurrent_runs); "
                "retry when one ends",
                title="Too many runs",
                headers={"Retry-After": "1"},
            )
        if len(self.live) >= self.limits.max_concurrent_runs:
            raise ProblemError(
                503,
                "server-busy",
                f"the server runs {self.limits.max_concurrent_runs} runs already "
                "(limits.max_concurrent_runs); retry shortly",
                title="Server busy",
                headers={"Retry-After": "1"},
            )

    async def submit(
        self, caller: Caller, body: RunCreate, idempotency_key: str | None = None
    ) -> tuple[str, bool]:
        """Check and record a run, and start it in the background; returns its id and whether
        it is new (``False``: the run an ``Idempotency-Key`` made before).

        Raises:
            ProblemError: what is wrong with the request (422, 404), a limit (429, 503), or a
                reused ``Idempotency-Key`` with a different request (409).
        """
        tenant = caller.tenant
        request = body.model_dump(mode="json", exclude_defaults=True)
        idem = (idempotency_key, request_hash(request)) if idempotency_key else None
        if idem is not None:
            try:
                found = await anyio.to_thread.run_sync(self.records._idempotent, tenant.id, *idem)
            except IdempotencyConflict as exc:
                raise _idempotency_conflict(exc.run_id) from None
            if found is not None:
                return found, False
        self._admit(caller)
        tools = caller.toolset(body.tools)
        workflow = None
        if body.workflow is not None:
            workflow = await anyio.to_thread.run_sync(load_for_tenant, body.workflow, tools)
            try:
                workflow.bind_inputs(body.inputs)
            except WorkflowError as exc:
                raise ProblemError(
                    422, "invalid-inputs", f"body field 'inputs': {exc}", title="Invalid inputs"
                ) from None
        asked = body.limits.max_tasks if body.limits is not None else None
        max_tasks = min(asked or self.limits.max_tasks, self.limits.max_tasks)
        plan = self._parse(body, tools, max_tasks) if body.plan is not None else None
        asks = body.query is not None or (
            workflow is not None and any(step.query is not None for step in workflow.spec.steps)
        )
        model = self._model_for(caller, body) if asks else None
        used = await anyio.to_thread.run_sync(self.records.usage_today, tenant.id)
        budget = self._budget(caller, body, used)
        self._admit(caller)  # again: other requests may have started runs while this one waited
        run_id = uuid.uuid4().hex[:16]
        mode = body.mode if body.query is not None else "plan_then_execute" if plan else "workflow"
        now = dt.datetime.now(dt.UTC)
        live = LiveRun(run_id, tenant.id, body.kind, body.query, mode, model, dict(body.metadata), now)
        self._track(live)
        try:
            made, new = await anyio.to_thread.run_sync(
                lambda: self.records.create_run(
                    run_id=run_id,
                    tenant_id=tenant.id,
                    kind=body.kind,
                    request=request,
                    metadata=body.metadata,
                    model=model,
                    owner=self.owner,
                    lease_s=self.limits.run_lease_s,
                    idempotency=idem,
                )
            )
        except IdempotencyConflict as exc:
            self._untrack(live)
            raise _idempotency_conflict(exc.run_id) from None
        except BaseException:
            self._untrack(live)
            raise
        if not new:
            self._untrack(live)
            return made, False
        if workflow is not None:
            handle = WorkflowHandle(
                run_id,
                workflow,
                body.inputs,
                llm=self._llm(model) if model is not None else None,
                store=self.store(tenant.id),
                budget=budget,
                max_tasks=max_tasks,
            )
            assert self._tg is not None
            self._tg.start_soon(self._drive_workflow, live, handle)
            return run_id, True
        orch = Orchestrator(
            tools,
            self._llm(model) if model is not None else None,
            limits=DEFAULT_LIMITS,
            budget=budget,
            mode=body.mode,
            max_tasks=max_tasks,
            store=self.store(tenant.id),
        )
        assert self._tg is not None
        self._tg.start_soon(self._drive, live, orch, plan, body.query)
        return run_id, True

    def _track(self, live: LiveRun) -> None:
        self.live[live.id] = live
        self._per_tenant[live.tenant_id] = self._per_tenant.get(live.tenant_id, 0) + 1

    def _untrack(self, live: LiveRun) -> None:
        if self.live.pop(live.id, None) is not None:
            self._per_tenant[live.tenant_id] -= 1

    async def _drive(self, live: LiveRun, orch: Orchestrator, plan: Plan | None, query: str | None) -> None:
        store = orch.store
        assert isinstance(store, SqlRunStore)
        try:
            async with orch:
                if plan is not None:
                    live.handle = orch.start_plan(plan, run_id=live.id)
                else:
                    assert query is not None
                    live.handle = orch.start(query, run_id=live.id)
                live.started.set()
                if live.cancel_requested:
                    self._cancel(live)
                live.result = await live.handle.result()
            if live.id not in store.saved:  # the store failed (the run's warnings say how): try again
                await self._save(live, live.result)
            store.saved.discard(live.id)
        except Exception as exc:
            _log.exception("run %s broke outside the library", live.id)
            reason = f"internal error: {type(exc).__name__}"
            failed = live.result or RunResult(
                run_id=live.id, query=query or "", status="failed", reason=reason
            )
            with anyio.CancelScope(shield=True):
                await self._save(live, failed)
        finally:
            live.started.set()
            live.done.set()
            self._untrack(live)

    async def _drive_workflow(self, live: LiveRun, handle: WorkflowHandle) -> None:
        live.handle = handle
        live.started.set()
        try:
            await handle.drive()
            live.result = await handle.result()
        except Exception as exc:
            _log.exception("workflow run %s broke", live.id)
            failed = RunResult(
                run_id=live.id, query="", status="failed", reason=f"internal error: {type(exc).__name__}"
            )
            with anyio.CancelScope(shield=True):
                await self._save(live, failed)
        finally:
            live.done.set()
            self._untrack(live)

    async def _save(self, live: LiveRun, result: RunResult) -> None:
        view = result_json(result)
        try:
            await anyio.to_thread.run_sync(
                lambda: self.records.save_result(live.id, live.tenant_id, result.status, view)
            )
        except Exception:
            _log.exception("could not save the result of run %s", live.id)

    # -- control --------------------------------------------------------------------------------

    def get(self, tenant_id: str, run_id: str) -> LiveRun | None:
        """The tenant's run, if this replica drives it now."""
        live = self.live.get(run_id)
        return live if live is not None and live.tenant_id == tenant_id else None

    def _cancel(self, live: LiveRun) -> None:
        live.cancel_requested = True
        handle = live.handle
        if handle is None or handle.done:
            return
        if handle.journal.last_seq > 0:
            handle.cancel()
            return
        # not started yet: its cancel scope exists from its first event on
        assert self._tg is not None
        self._tg.start_soon(self._cancel_when_started, handle)

    @staticmethod
    async def _cancel_when_started(handle: RunHandle | WorkflowHandle) -> None:
        sub = handle.journal.events(quiet=True)
        try:
            await sub.batch()
        finally:
            await sub.aclose()
        handle.cancel()

    def cancel(self, live: LiveRun) -> None:
        """Cancel a live run (its result says ``cancelled``; calls in flight are cancelled)."""
        self._cancel(live)

    async def interrupt(self, live: LiveRun, message: str) -> None:
        """Send a user's message into a live run (it replans).

        Raises:
            ProblemError: 409 if the run has ended or is a fixed plan.
        """
        if live.kind != "question":
            raise ProblemError(
                409, "conflict", f"run {live.id} runs a fixed plan, which takes no messages", title="Conflict"
            )
        with anyio.move_on_after(5):
            await live.started.wait()
        handle = live.handle
        if handle is None or handle.done:
            raise _ended(live.id)
        try:
            await handle.interrupt(message)
        except UserError:
            raise _ended(live.id) from None

    def runs_of(self, tenant_id: str) -> Iterator[LiveRun]:
        """The tenant's live runs."""
        return (r for r in self.live.values() if r.tenant_id == tenant_id)


def _budget_spent(what: str) -> ProblemError:
    return ProblemError(
        429,
        "budget-exhausted",
        f"this tenant has used {what} today (UTC; limits.tokens_per_day / cost_per_day); "
        "runs start again tomorrow",
        title="Budget exhausted",
        headers={"Retry-After": str(_seconds_to_midnight())},
    )


def _seconds_to_midnight() -> int:
    now = dt.datetime.now(dt.UTC)
    tomorrow = (now + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, int((tomorrow - now).total_seconds()))


def _idempotency_conflict(run_id: str) -> ProblemError:
    return ProblemError(
        409,
        "idempotency-conflict",
        f"this Idempotency-Key made run {run_id} with a different request; use a new key for a new run",
        title="Conflict",
        run_id=run_id,
    )


def _ended(run_id: str) -> ProblemError:
    return ProblemError(409, "conflict", f"run {run_id} has ended; start a new one", title="Conflict")
