"""The offline demo: the example workflows, run through the real ``tomasulo`` command.

Run with ``make demo``. No network and no LLM server are needed: the last part starts
``tomasulo simulate-llm`` (a scripted OpenAI-compatible server on 127.0.0.1) to show the planner.

1. a fan-out / fan-in research plan over the bundled SQLite facts database, with a Gantt chart;
2. a flaky tool retried, and a failure that skips its dependents, with a clear report;
3. a batch over a JSONL file of inputs, run again to show it resumes;
4. ``tomasulo ask``: a plan streamed by the (simulated) LLM, tasks starting while it streams;
5. the REST service: ``tomasulo serve`` on 127.0.0.1, then ``tomasulo remote`` (the Python
   client) runs a plan and a question over HTTP, streams their events, and interrupts a run.

Pictures and results go to ``out/`` (git-ignored).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
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


def simulated_llm(script: Path = EXAMPLES / "sim_replies.txt") -> tuple[subprocess.Popen[str], str]:
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
            str(script),
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

    console.rule("[bold]5. As a service: tomasulo serve, then tomasulo remote over HTTP")
    service_demo()

    console.rule()
    console.print(
        f"Done in {time.monotonic() - started:.1f}s. Gantt charts: out/demo-gantt.png (research), "
        "out/demo-flaky.html, out/demo-ask.png; batch results: out/demo-batch.jsonl"
    )


def tomasulo_out(*args: str) -> str:
    """Run the real command and return its standard output (shown too)."""
    console.print(f"[bold cyan]$ tomasulo {' '.join(a if ' ' not in a else repr(a) for a in args)}[/]")
    done = subprocess.run(
        [sys.executable, "-m", "tomasulo.cli", *args], cwd=ROOT, check=False, capture_output=True, text=True
    )
    sys.stdout.write(done.stdout)
    if done.returncode != 0:
        console.print(f"[red]demo: exit code {done.returncode}: {done.stderr.strip()}[/]")
        sys.exit(1)
    return done.stdout


def start_service(sim_url: str) -> tuple[subprocess.Popen[str], str, str]:
    """`tomasulo serve` on a free port with a fresh data folder; returns it, its URL, its key."""
    data = OUT / "demo-service"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    config = data / "service.yaml"
    config.write_text(
        f"models:\n  sim: {{base_url: '{sim_url}', model: simulated, dialect: vllm}}\n"
        f"tools: [math, sleep, {{builtin: sql, db: '{EXAMPLES / 'facts.sql'}'}}]\n"
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "tomasulo.cli", "serve", "--config", str(config), "--data-dir", str(data),
         "--port", "0"],
        cwd=ROOT, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert server.stderr is not None
    url = key = ""
    for line in server.stderr:  # the banner: URL first, the admin key last
        console.print(f"  [dim]{line.rstrip()}[/]", markup=True)
        if line.startswith("tomasulo service on "):
            url = line.split(" on ", 1)[1].strip()
        if "admin key:" in line:
            key = line.split("admin key:", 1)[1].strip()
            return server, url, key
    console.print("[red]demo: the service did not start[/]")
    sys.exit(1)


def service_demo() -> None:
    sim, sim_url = simulated_llm(EXAMPLES / "sim_service_replies.txt")
    server: subprocess.Popen[str] | None = None
    try:
        server, url, key = start_service(sim_url)
        os.environ.update(TOMASULO_URL=url, TOMASULO_API_KEY=key)
        plan = OUT / "demo-plan.txt"
        plan.write_text(
            "1. sleep(seconds=0.5, value=6)\n2. sleep(seconds=0.5, value=7)\n"
            '3. math(expression="${1} * ${2}")\n4. join()\n'
        )
        console.print("  [dim]a fixed plan: the two sleeps run at once, then the product[/]")
        tomasulo("remote", "run", str(plan))
        console.print(
            "  [dim]a question: the planner streams its plan, the server runs it, events arrive live[/]"
        )
        tomasulo("remote", "ask", "How many times higher is Mount Everest than Mont Blanc?")
        console.print("  [dim]a run that is interrupted by its user: it replans, the slow task goes on[/]")
        run_id = tomasulo_out("remote", "ask", "Look it up the slow way.", "--no-follow").strip()
        from tomasulo.client import Client

        with Client(url, api_key=key) as client:  # the Python client: wait for the first plan
            next(e for e in client.events(run_id) if e.kind == "plan_finished")
        tomasulo("remote", "interrupt", run_id, "Never mind: just tell me 40 + 2.")
        tomasulo("remote", "events", run_id)
    finally:
        if server is not None:
            server.send_signal(signal.SIGINT)  # stops accepting, lets runs end, then stops
            server.wait(timeout=30)
        sim.terminate()
        sim.wait(timeout=10)


if __name__ == "__main__":
    main()
