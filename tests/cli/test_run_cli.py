"""`tomasulo run`: results, reports, --json, --gantt, batch mode and exit codes, as a subprocess."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from conftest import ROOT, clean_env, result_of, tomasulo, tomasulo_many

EXAMPLES = ROOT / "examples"
PNG = b"\x89PNG\r\n\x1a\n"


def test_research_runs_prints_outputs_and_draws_both_charts(tmp_path: Path) -> None:
    png, html = tmp_path / "g.png", tmp_path / "g.html"
    plain, as_json = tomasulo_many(
        ("run", str(EXAMPLES / "research.yaml"), "-i", "second=Argentina", "--gantt", str(png)),
        ("run", str(EXAMPLES / "research.yaml"), "--json", "--gantt", str(html)),
    )
    assert plain.returncode == 0, plain.stderr
    outputs = json.loads(result_of(plain.stdout))  # the results come last
    assert outputs["summary"]["mountains"] == ["Mount Everest", "Aconcagua"]
    assert outputs["height_ratio"] == round(8849 / 6961, 3)
    # not a terminal: one plain line per change, then the report, on standard output
    assert "[compare] task 3 sql: running" in plain.stdout
    assert "[compare] task 9 echo: done" in plain.stdout
    assert "step compare: 9 of 9 tasks succeeded" in plain.stdout
    assert f"Gantt chart: {png}" in plain.stdout
    assert plain.stderr == ""  # nothing logged
    assert png.read_bytes()[:8] == PNG and png.stat().st_size > 5000

    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert data["ok"] is True and data["outputs"]["summary"]["mountains"][1] == "Kilimanjaro"
    assert [t["id"] for t in data["tasks"]] == list(range(1, 10))
    assert all(t["status"] == "succeeded" and t["step"] == "compare" for t in data["tasks"])
    assert data["gantt"] == str(html)
    assert "<svg" in html.read_text() and "3. sql" in html.read_text()
    assert as_json.stderr == ""  # --json keeps the terminal quiet


def test_flaky_run_retries_skips_and_reports_clearly() -> None:
    done = tomasulo("run", str(EXAMPLES / "flaky.yaml"))
    assert done.returncode == 0, done.stderr  # the step's output exists, so the run is done
    assert json.loads(result_of(done.stdout)) == {"total_sales": 2100}
    err = done.stdout
    assert "[sales] task 1 fetch_report: retrying: attempt 1 failed: report service busy" in err
    assert "step sales: 3 of 5 tasks succeeded (1 failed, 1 skipped)" in err
    assert "task 1 fetch_report: succeeded after 3 attempts" in err
    assert "task 3 legacy_lookup: failed: RuntimeError: legacy system is down (asked for north)" in err
    assert "task 5 echo: skipped: its input task 3 failed (RuntimeError)" in err


def test_a_failing_run_exits_1_with_the_reason(tmp_path: Path) -> None:
    plain, as_json = tomasulo_many(
        ("run", str(EXAMPLES / "research.yaml"), "-i", "first=Atlantis"),
        ("run", str(EXAMPLES / "research.yaml"), "-i", "first=Atlantis", "--json"),
    )
    assert plain.returncode == 1
    assert "error: step 'compare' gave no output (task 9 did not succeed)" in plain.stderr
    assert "error:" not in plain.stdout
    assert "task 7 math: failed" in plain.stdout and "index out of range" in plain.stdout
    assert as_json.returncode == 1
    data = json.loads(as_json.stdout)
    assert data["ok"] is False and data["failed_step"] == "compare"
    statuses = {t["id"]: t["status"] for t in data["tasks"]}
    assert (statuses[3], statuses[7], statuses[9]) == ("succeeded", "failed", "skipped")


def test_batch_runs_resumes_and_fails_with_1(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    args = ("run", str(EXAMPLES / "batch.yaml"), "--inputs", str(EXAMPLES / "batch_inputs.jsonl"))
    first = tomasulo(*args, "--out", str(out), "-j", "3")
    assert first.returncode == 0, first.stderr
    assert "line np: done" in first.stdout
    assert f"batch: 8 ran, 0 already done, 0 failed; results in {out}" in first.stdout
    records = {json.loads(x)["key"]: json.loads(x) for x in out.read_text().splitlines()}
    assert records["jp"]["outputs"] == {"capital": "Tokyo", "density_per_km2": 329.4}

    bad_inputs = tmp_path / "in.jsonl"
    bad_inputs.write_text('{"id": "np", "country": "Nepal"}\n{"id": "xx", "country": "Atlantis"}\n')
    again, failing = tomasulo_many(
        (*args, "--out", str(out), "--json"),
        (
            "run",
            str(EXAMPLES / "batch.yaml"),
            "--inputs",
            str(bad_inputs),
            "--out",
            str(tmp_path / "b.jsonl"),
        ),
    )
    assert json.loads(again.stdout) == {"ok": True, "ran": 0, "skipped": 8, "failed": 0, "out": str(out)}
    assert failing.returncode == 1
    assert "line xx: failed" in failing.stdout and "1 failed" in failing.stdout


def _workflow(tmp_path: Path, text: str) -> str:
    path = tmp_path / "wf.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_bad_input_exits_2_with_a_message_and_writes_nothing(tmp_path: Path) -> None:
    research = str(EXAMPLES / "research.yaml")
    numbers = _workflow(
        tmp_path,
        """\
        tools: [math]
        inputs: {x: number}
        steps:
          - plan: |
              1. input("x")
              2. math(expression="x * 2", variables={"x": $1})
        """,
    )
    bad_plan = tmp_path / "bad_plan.yaml"
    bad_plan.write_text('tools: [math]\nsteps:\n  - plan: |\n      1. math(expresion="1")\n')
    out = tmp_path / "never.jsonl"
    gantt = tmp_path / "never.png"
    cases = [
        (("run", numbers, "-i", "x=abc"), "input 'x' needs a number, got 'abc'"),
        (("run", research, "--inputs", str(EXAMPLES / "batch_inputs.jsonl")), "--inputs needs --out"),
        (("run", research, "--out", str(out)), "--out goes with --inputs"),
        (("run", research, "--gantt", str(tmp_path / "g.gif")), "--gantt"),
        (("run", str(bad_plan), "--gantt", str(gantt)), "math has no parameter 'expresion'"),
        (("run", str(tmp_path / "missing.yaml")), "cannot read the workflow file"),
        (("run", research, "-i", "first=Nepal", "--jobs", "0"), "Invalid value for '--jobs'"),
    ]
    results = tomasulo_many(*(args for args, _ in cases))
    for (args, message), done in zip(cases, results, strict=True):
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr, (args, done.stderr)
    assert "bad_plan.yaml:4:15:" in results[4].stderr  # plan errors point into the YAML file
    assert not out.exists() and not gantt.exists()


def test_query_step_without_a_model_says_how_to_configure(tmp_path: Path) -> None:
    path = _workflow(tmp_path, "tools: [math]\nsteps:\n  - query: what is 2 + 2?\n")
    done = tomasulo("run", path, env=clean_env(HOME=str(tmp_path)))
    assert done.returncode == 2
    for hint in ("--base-url", "TOMASULO_BASE_URL", "TOMASULO_MODEL", "model: {base_url"):
        assert hint in done.stderr
