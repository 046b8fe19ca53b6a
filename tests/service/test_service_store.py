"""The SQL run store: the library's Orchestrator writes a run into it; it reads back the same run,
only for its tenant, and appending a batch twice keeps one copy (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest

from tomasulo import Orchestrator
from tomasulo.runtime import RunResult, RunStore
from tomasulo.service._runs_store import RunRecords, SqlRunStore
from tomasulo.service._store import Database
from tomasulo.tools.builtins import builtin_toolset

pytestmark = pytest.mark.anyio

PLAN = '1. math(expression="2 + 3")\n2. math(expression="${1} * 2")\n3. join()'


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def records(database_url: str) -> Iterator[RunRecords]:
    db = Database.open(database_url)
    try:
        db.upgrade()
        db.bootstrap({})
        db.create_tenant("other")
        yield RunRecords(db)
    finally:
        db.close()


def _new_run(records: RunRecords, run_id: str, tenant: str = "default") -> None:
    records.create_run(
        run_id=run_id, tenant_id=tenant, kind="plan", request={"plan": PLAN}, metadata={}, model=None,
        owner="test", lease_s=30,
    )  # fmt: skip


async def test_a_library_run_round_trips_through_the_sql_store(records: RunRecords) -> None:
    store = SqlRunStore(records, "default")
    assert isinstance(store, RunStore)
    _new_run(records, "r1")
    with anyio.fail_after(30):
        async with Orchestrator(builtin_toolset(), store=store) as orch:
            handle = orch.start_plan(PLAN, run_id="r1")
            result = await handle.result()
    assert (result.run_id, result.status, result.answer) == ("r1", "finished", "10")
    events = await store.load_events("r1")
    assert [e.to_json() for e in events] == [e.to_json() for e in result.timeline]
    assert [e.seq for e in await store.load_events("r1", after=3)] == list(range(4, len(events) + 1))
    loaded = await store.load_result("r1")
    assert isinstance(loaded, RunResult) and loaded.answer == "10" and loaded.status == "finished"
    (summary,) = await store.list_runs()
    assert (summary.run_id, summary.status, summary.events) == ("r1", "finished", len(events))
    row = records.get_run("default", "r1")
    assert row is not None and row.status == "finished" and row.result is not None
    assert [t["value"] for t in row.result["tasks"]] == [5, 10]
    # another tenant's store does not see it
    other = SqlRunStore(records, "other")
    with pytest.raises(KeyError):
        await other.load_events("r1")
    assert await other.list_runs() == []
    # a batch appended again (a retried write) is kept once
    await store.append("r1", events[:5])
    assert len(await store.load_events("r1")) == len(events)


async def test_a_cancelled_plan_run_is_saved_cancelled(records: RunRecords) -> None:
    store = SqlRunStore(records, "default")
    _new_run(records, "r2")
    with anyio.fail_after(30):
        async with Orchestrator(builtin_toolset(), store=store) as orch:
            handle = orch.start_plan("1. sleep(seconds=30)\n2. join()", run_id="r2")
            async for event in handle.events():
                if event.kind == "task_started":
                    handle.cancel()
            result = await handle.result()
    assert result.status == "cancelled"
    row = records.get_run("default", "r2")
    assert row is not None and row.status == "cancelled"
    assert (await store.load_events("r2"))[-1].kind == "run_finished"


async def test_a_run_the_library_starts_on_its_own_gets_a_row_of_the_stores_tenant(
    records: RunRecords,
) -> None:
    store = SqlRunStore(records, "other")
    with anyio.fail_after(30):
        result = await Orchestrator(builtin_toolset(), store=store).execute_plan(PLAN)
    row = records.get_run("other", result.run_id)
    assert row is not None and (row.status, row.kind) == ("finished", "plan")
    assert records.get_run("default", result.run_id) is None
    # the same id from another tenant's store is refused, never written into that run
    with pytest.raises(KeyError):
        await SqlRunStore(records, "default").append(result.run_id, result.timeline[:1])
