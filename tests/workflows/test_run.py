"""Running workflows step by step and in batches (with the plain runner from conftest)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from tomasulo.exceptions import WorkflowError
from tomasulo.workflows import load_workflow, run_batch, run_workflow

pytestmark = pytest.mark.anyio
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


async def test_research_fans_out_and_in(runner: Any) -> None:
    wf = load_workflow(EXAMPLES / "research.yaml")
    with anyio.fail_after(20):
        result = await run_workflow(wf, {"second": "Argentina"}, runner)
    assert result.ok, result.error
    assert result.outputs["summary"]["mountains"] == ["Mount Everest", "Aconcagua"]
    assert result.outputs["height_ratio"] == round(8849 / 6961, 3)
    plan = runner.plans[0]
    assert plan.generations()[1] == [3, 4, 5, 6]  # the four lookups are independent


async def test_inputs_arrive_as_values_not_text(runner: Any) -> None:
    wf = load_workflow(EXAMPLES / "research.yaml")
    hostile = "Nepal'); DROP TABLE mountains; --"
    with anyio.fail_after(20):
        result = await run_workflow(wf, {"first": hostile}, runner)
    assert not result.ok  # no such country: the lookup gives no rows, nothing is injected
    assert "step 'compare'" in (result.error or "")
    assert hostile not in wf.plans["compare"].to_text()


async def test_flaky_tool_is_retried_and_failure_skips_dependents(runner: Any) -> None:
    wf = load_workflow(EXAMPLES / "flaky.yaml")
    with anyio.fail_after(20):
        result = await run_workflow(wf, {}, runner)
    assert result.ok, result.error
    assert result.outputs["total_sales"] == 2100
    assert result.steps["sales"] == 2100


async def test_failed_output_fails_the_run_with_a_report(runner: Any, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        (EXAMPLES / "flaky.yaml")
        .read_text()
        .replace("output: $4", "output: $5")
        .replace("flaky_tools:toolset", "flaky_tools:toolset")
    )
    (tmp_path / "flaky_tools.py").write_text((EXAMPLES / "flaky_tools.py").read_text())
    wf = load_workflow(path)
    with anyio.fail_after(20):
        result = await run_workflow(wf, {}, runner)
    assert not result.ok
    assert result.failed_step == "sales"
    assert "task 3: RuntimeError: legacy system is down" in (result.error or "")
    assert "task 5: skipped because task 3 did not succeed" in (result.error or "")


async def test_query_steps_get_inputs_filled_in(runner: Any) -> None:
    wf = load_workflow(EXAMPLES / "ask.yaml")
    with anyio.fail_after(20):
        result = await run_workflow(wf, {"question": "How tall is K2?"}, runner)
    assert runner.questions == [
        "How tall is K2? Use the sql tool on the tables countries, mountains and rivers."
    ]
    assert result.outputs["answer"].startswith("answered: How tall is K2?")


async def test_batch_runs_resumes_and_never_duplicates(runner: Any, tmp_path: Path) -> None:
    wf = load_workflow(EXAMPLES / "batch.yaml")
    out = tmp_path / "out" / "batch.jsonl"
    with anyio.fail_after(30):
        report = await run_batch(wf, EXAMPLES / "batch_inputs.jsonl", out, runner, concurrency=3)
    assert (report.ran, report.skipped, report.failed) == (8, 0, 0)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    by_key = {r["key"]: r for r in records}
    assert by_key["np"]["outputs"] == {"capital": "Kathmandu", "density_per_km2": 209.5}
    assert len(runner.plans) == 16

    # a crash left a torn line; one record failed: both are dropped, and only those rerun
    lines = out.read_text().splitlines(keepends=True)
    failed = json.loads(lines[0])
    failed.update(ok=False, error="boom")
    out.write_text(json.dumps(failed) + "\n" + "".join(lines[1:]) + '{"key": "zz", "ok": tr')
    with anyio.fail_after(30):
        again = await run_batch(wf, EXAMPLES / "batch_inputs.jsonl", out, runner, concurrency=3)
    assert (again.ran, again.skipped) == (1, 7)
    keys = [json.loads(line)["key"] for line in out.read_text().splitlines()]
    assert sorted(keys) == sorted(by_key) and len(keys) == 8


async def test_bad_batch_line_stops_before_writing(runner: Any, tmp_path: Path) -> None:
    wf = load_workflow(EXAMPLES / "batch.yaml")
    inputs = tmp_path / "in.jsonl"
    inputs.write_text('{"country": "Nepal"}\n{"contry": "Japan"}\n')
    out = tmp_path / "out.jsonl"
    with anyio.fail_after(10), pytest.raises(WorkflowError) as info:
        await run_batch(wf, inputs, out, runner)
    assert info.value.line == 2 and "did you mean 'country'?" in str(info.value)
    assert not out.exists()
    assert runner.plans == []
