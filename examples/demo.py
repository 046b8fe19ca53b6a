"""The offline demo: the example workflows, run through the real ``tomasulo`` command.

Run with ``make demo``. No network and no LLM server are needed: the last part starts
``tomasulo simulate-llm`` (a scripted OpenAI-compatible server on 127.0.0.1) to show the planner.

1. a fan-out / fan-in research plan over the bundled SQLite facts database, with a Gantt chart;
2. a flaky tool retried, and a failure that skips its dependents, with a clear report;
3. a batch over a JSONL file of inputs, run again to show it resumes;
4. ``tomasulo ask``: a plan streamed by the (simulated) LLM, tasks starting while it streams.

Pictures and results go to ``out/`` (git-ignored).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
OUT = ROOT / "out"
console = Console(highlight=False)


def tomasulo(*args: str, expect: int = 0) -> None:
    """Run the real command, on this terminal, and check its exit code."""
    shown = " ".join(a if " " not in a else repr(a) for a in args)
    console.print(f"[bold cyan]$ tomasulo {shown}[/]")
    done = subprocess.run([sys.executable, "-m", "tomasulo.cli", *args], cwd=ROOT, check=False)
    if done.returncode != expect:
        console.print(f"[red]demo: expected exit code {expect}, got {done.returncode}[/]")
        sys.exit(1)


def simulated_llm() -> tuple[subprocess.Popen[str], str]:
    """Start `tomasulo simulate-llm` with the scripted replies; return it and its base URL."""
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tomasulo.cli",
            "simulate-llm",
            "--port",
            "0",
            "--script",
            str(EXAMPLES / "sim_replies.txt"),
            "--ttft",
            "0.3",
            "--tokens-per-second",
            "60",
        ],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert server.stderr is not None
    for line in server.stderr:  # its first line names the URL once it listens
        if "serving on" in line:
            return server, line.split("serving on", 1)[1].strip()
    server.wait()
    console.print("[red]demo: the simulated LLM did not start[/]")
    sys.exit(1)


def main() -> None:
    started = time.monotonic()
    OUT.mkdir(exist_ok=True)
    os.environ.setdefault("COLUMNS", "110")

    console.rule("[bold]1. Fan-out / fan-in: four lookups at once, then the comparisons")
    tomasulo(
        "run",
        "examples/research.yaml",
        "-i",
        "first=Nepal",
        "-i",
        "second=Argentina",
        "--gantt",
        "out/demo-gantt.png",
    )

    console.rule("[bold]2. A flaky tool is retried; a tool that is down skips only what needs it")
    tomasulo("run", "examples/flaky.yaml", "--gantt", "out/demo-flaky.html")

    console.rule("[bold]3. Batch: one run per JSONL line, 4 at a time, resumable")
    results = OUT / "demo-batch.jsonl"
    results.unlink(missing_ok=True)
    batch = ("run", "examples/batch.yaml", "--inputs", "examples/batch_inputs.jsonl", "--out", str(results))
    tomasulo(*batch, "-j", "4")
    for line in results.read_text().splitlines()[:3]:
        record = json.loads(line)
        console.print(f"  {record['key']}: {record['outputs']}", markup=False)
    console.print("  [dim]run it again: every line is already done, nothing reruns[/]")
    tomasulo(*batch, "-j", "4")

    console.rule("[bold]4. tomasulo ask: the planner streams a plan; tasks start before it ends")
    server, base_url = simulated_llm()
    try:
        tomasulo(
            "ask",
            "How many times higher is Mount Everest than Mont Blanc?",
            "--db",
            "examples/facts.sql",
            "--base-url",
            base_url,
            "--model",
            "simulated",
            "--dialect",
            "vllm",
            "--gantt",
            "out/demo-ask.png",
        )
    finally:
        server.terminate()
        server.wait(timeout=10)

    console.rule()
    console.print(
        f"Done in {time.monotonic() - started:.1f}s. Gantt charts: out/demo-gantt.png (research), "
        "out/demo-flaky.html, out/demo-ask.png; batch results: out/demo-batch.jsonl"
    )


if __name__ == "__main__":
    main()
