"""Running workflows step by step and in batches, with the Orchestrator behind each step."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

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
    run = runner.runs[0].result
    t = {r.id: r for r in run.tasks}
    assert all(r.status == "succeeded" for r in run.tasks)
    lookups, comparisons = [t[i] for i in (3, 4, 5, 6)], [t[7], t[8]]
    # the four lookups need only the inputs: all of them were ready before either comparison ran
    assert max(r.ready or 0 for r in lookups) <= min(r.started or 0 for r in comparisons)
    assert t[7].started is not None and t[7].started >= max(t[3].finished or 0, t[4].finished or 0)
    assert t[9].started is not None and t[9].started >= max(t[7].finished or 0, t[8].finished or 0)


async def test_inputs_arrive_as_values_not_text(runner: Any) -> None:
    wf = load_workflow(EXAMPLES / "research.yaml")
    hostile = "Nepal'); DROP TABLE mountains; --"
    with anyio.fail_after(20):
        result = await run_workflow(wf, {"first": hostile}, runner)
    assert not result.ok  # no such country: the lookup gives no rows, nothing is injected
    assert "step 'compare'" in (result.error or "")
    assert hostile not in wf.plans["compare"].to_text()
    assert hostile not in runner.runs[0].result.plans[0]


async def test_flaky_tool_is_retried_and_failure_skips_dependents(runner: Any) -> None:
    wf = load_workflow(EXAMPLES / "flaky.yaml")
    with anyio.fail_after(20):
        result = await run_workflow(wf, {}, runner)
    assert result.ok, result.error
    assert result.outputs["total_sales"] == 2100
    assert result.steps["sales"] == 2100
    tasks = {r.id: r for r in runner.runs[0].result.tasks}
    assert [tasks[i].status for i in (1, 2, 3, 4, 5)] == [
        "succeeded",
        "succeeded",
        "failed",
        "succeeded",
        "skipped",
    ]
    assert tasks[1].attempts == 3 and tasks[2].attempts == 3  # failed twice, retried
    assert tasks[3].attempts == 1  # not idempotent: no retry
    assert "task 3 failed" in (tasks[5].message or "")


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
    assert "legacy system is down" in (result.error or "")
    assert "task 5: skipped: its input task 3 failed" in (result.error or "")


async def test_batch_runs_resumes_and_never_duplicates(runner: Any, tmp_path: Path) -> None:
    wf = load_workflow(EXAMPLES / "batch.yaml")
    out = tmp_path / "out" / "batch.jsonl"
    with anyio.fail_after(30):
        report = await run_batch(wf, EXAMPLES / "batch_inputs.jsonl", out, runner, concurrency=3)
    assert (report.ran, report.skipped, report.failed) == (8, 0, 0)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    by_key = {r["key"]: r for r in records}
    assert by_key["np"]["outputs"] == {"capital": "Kathmandu", "density_per_km2": 209.5}
    assert len(runner.runs) == 16  # two steps per line

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


async def test_a_bad_batch_line_fails_alone_with_its_reason(runner: Any, tmp_path: Path) -> None:
    wf = load_workflow(EXAMPLES / "batch.yaml")
    inputs = tmp_path / "in.jsonl"
    lines = [
        b'{"country": "Nepal"}',
        b'{"contry": "Japan"}',
        b"not json",
        b'{"country": "\\ud800"}',  # a lone surrogate, escaped in the JSON text
        b'{"country": NaN}',
        b'{"country": 1e999}',
        b"[1, 2]",
        b'{"country": "caf\xe9"}',  # Latin-1, not UTF-8
    ]
    inputs.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "out.jsonl"
    with anyio.fail_after(30):
        report = await run_batch(wf, inputs, out, runner)
    assert (report.ran, report.failed) == (8, 7)
    text = out.read_bytes().decode("utf-8")  # the output is UTF-8 whatever the inputs held
    records = {r["line"]: r for r in map(_strict_json, text.splitlines())}
    assert records[1]["ok"] is True and records[1]["outputs"]["capital"] == "Kathmandu"
    reasons = {n: records[n]["error"] for n in range(2, 9)}
    assert "line 2: unknown input 'contry' (did you mean 'country'?)" in reasons[2]
    assert reasons[3].startswith("line 3: not JSON")
    assert "lone surrogate (U+D800)" in reasons[4]
    assert "NaN is not a JSON number" in reasons[5]
    assert "too large" in reasons[6]
    assert "must be a JSON object" in reasons[7]
    assert "not UTF-8 text: byte 0xe9 at offset 16" in reasons[8]


def _strict_json(line: str) -> Any:
    def refuse(name: str) -> Any:
        raise ValueError(f"{name} in the output")

    return json.loads(line, parse_constant=refuse)
