"""Service benchmark: 200 concurrent runs through the HTTP API, their events followed over SSE.

Run: ``.venv/bin/python benchmarks/service_bench.py`` (``--runs N``, ``--no-postgres``,
``--postgres-url URL`` for a server of your own; otherwise a PostgreSQL is started the way the
tests start one, when ``initdb`` is installed).

Three processes, as in a deployment: the SimulatedLLM (planner and joiner, 20 ms to the first
token), the service (real uvicorn on loopback, SQLite in a temporary folder or PostgreSQL), and
this client, which submits every run at once with :class:`tomasulo.client.AsyncClient` and
follows each run's events from its first one. Each plan has four ``sleep`` tasks of log-normal
durations (median 20 ms). Figures, per database:

- Event latency: an event's receipt here minus the moment the server's journal stamped it. The
  server stamps events with its monotonic clock (``ts``); ``RunStarted.wall_time`` is the same
  moment as the wall clock, so ``wall_time + (ts - start.ts)`` dates each event, and the client
  reads ``time.time()`` on receipt (one machine: one clock). Only events stamped after the
  client's stream had opened count (the earlier ones were replayed from the store, not tailed).
  Goals: p50 <= 10 ms, p99 <= 50 ms.
- Lost or duplicated events: each run's events must be its seq numbers 1..last_seq once each.
- Runs per second: runs over the wall time from the first POST to the last ``RunFinished``.
- Memory per live run: the service's peak resident memory over its idle size, per run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tomasulo.client import AsyncClient, Retries  # noqa: E402 - after the path is set
from tomasulo.runtime import RunFinished, RunStarted  # noqa: E402

PROCS = Path(__file__).with_name("_service_procs.py")


@contextmanager
def process(kind: str, spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A server from ``_service_procs.py``; yields the JSON line it printed once listening."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, str(PROCS), kind, json.dumps(spec)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdin is not None
    try:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {kind} process exited before it listened (status {proc.wait(30)})")
        yield json.loads(line)
    finally:
        proc.stdin.close()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def cpu_s(pid: int) -> float:
    """The process's user + system CPU seconds so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int, field_name: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return 0


@dataclass
class Sampler:
    """The peak resident memory of a process, sampled every 20 ms on a thread."""

    pid: int
    peak: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Sampler:
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_kib(self.pid))

    def __exit__(self, *exc: object) -> None:
        self._stop.set()


@dataclass
class Figures:
    latencies: list[float] = field(default_factory=list)  # seconds
    monotonic: list[float] = field(default_factory=list)  # the same, on the shared monotonic clock
    replayed: int = 0
    lost: int = 0
    duplicated: int = 0
    errors: list[str] = field(default_factory=list)
    events: int = 0
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds during the runs, per process


async def one_run(client: AsyncClient, index: int, figures: Figures) -> None:
    try:
        run = await client.create_run(query=f"bench run {index}", metadata={"bench": str(index)})
        opened: float | None = None
        anchor: tuple[float, float] | None = None
        seqs: list[int] = []
        async for event in client.events(run.id):
            now, mono = time.time(), time.monotonic()
            opened = opened if opened is not None else now
            seqs.append(event.seq)
            if isinstance(event, RunStarted):
                anchor = (event.wall_time, event.ts)
            if anchor is not None:
                stamped = anchor[0] + (event.ts - anchor[1])
                if stamped >= opened:
                    figures.latencies.append(now - stamped)
                    figures.monotonic.append(mono - event.ts)
                else:
                    figures.replayed += 1
            if isinstance(event, RunFinished):
                break
        final = await client.get_run(run.id)
        figures.events += len(seqs)
        figures.duplicated += len(seqs) - len(set(seqs))
        figures.lost += len(set(range(1, final.last_seq + 1)) - set(seqs))
        if final.status != "finished":
            figures.errors.append(f"run {run.id}: {final.status} ({final.reason})")
    except Exception as exc:
        figures.errors.append(f"run {index}: {type(exc).__name__}: {exc}")


async def bench(url: str, key: str, runs: int, pids: dict[str, int]) -> tuple[Figures, float]:
    figures = Figures()
    limits = httpx.Limits(max_connections=4 * runs, max_keepalive_connections=4 * runs)
    http = httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(60.0, connect=30.0))
    async with http, AsyncClient(url, api_key=key, http_client=http, retries=Retries(attempts=6)) as client:
        await client.create_run(query="warm-up", wait=30)  # imports, first connections, caches
        started = time.perf_counter()
        before = {name: cpu_s(pid) for name, pid in pids.items()} | {"client": time.process_time()}
        with anyio.fail_after(600):
            async with anyio.create_task_group() as tg:
                for i in range(runs):
                    tg.start_soon(one_run, client, i, figures)
        wall = time.perf_counter() - started
        after = {name: cpu_s(pid) for name, pid in pids.items()} | {"client": time.process_time()}
        figures.cpu = {name: after[name] - before[name] for name in after}
    return figures, wall


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def report(name: str, figures: Figures, wall: float, runs: int, idle_kib: int, peak_kib: int) -> None:
    ms = [x * 1000 for x in figures.latencies]
    p50, p99 = percentile(ms, 0.50), percentile(ms, 0.99)
    print(f"\n== {name}: {runs} concurrent runs ==")
    print(f"  events received           {figures.events} ({len(ms)} live, {figures.replayed} replayed)")
    print(f"  event latency p50         {p50:8.2f} ms   (goal <= 10 ms) {'ok' if p50 <= 10 else 'MISSED'}")
    print(f"  event latency p99         {p99:8.2f} ms   (goal <= 50 ms) {'ok' if p99 <= 50 else 'MISSED'}")
    if ms:
        print(f"  event latency mean / max  {statistics.fmean(ms):8.2f} / {max(ms):.2f} ms")
        mono = [x * 1000 for x in figures.monotonic]
        p50m, p99m = percentile(mono, 0.5), percentile(mono, 0.99)
        print(f"  (check, monotonic clock:  p50 {p50m:.2f} ms, p99 {p99m:.2f} ms)")
    print(f"  lost / duplicated events  {figures.lost} / {figures.duplicated}   (goal 0 / 0)")
    print(f"  errors                    {len(figures.errors)}   (goal 0)")
    for line in figures.errors[:5]:
        print(f"    {line}")
    print(f"  runs per second           {runs / wall:8.1f}   ({wall:.2f} s for all)")
    busy = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in figures.cpu.items())
    print(f"  CPU used meanwhile        {busy} (of {wall:.1f} s wall time, {os.cpu_count()} cores)")
    print(f"  memory per live run       {(peak_kib - idle_kib) / max(1, runs):8.1f} KiB "
          f"(service peak {peak_kib / 1024:.0f} MiB, idle {idle_kib / 1024:.0f} MiB)")  # fmt: skip


def run_on(name: str, database_url: str, sim: dict[str, Any], runs: int) -> None:
    with process("service", {"database_url": database_url, "sim_url": sim["url"]}) as svc:
        idle = rss_kib(svc["pid"])
        pids = {"service": svc["pid"], "LLM": sim["pid"]}
        with Sampler(svc["pid"]) as sampler:
            figures, wall = anyio.run(bench, svc["url"], svc["key"], runs, pids)
        report(name, figures, wall, runs, idle, max(sampler.peak, idle))


def start_postgres() -> Any:
    spec = importlib.util.spec_from_file_location("_bench_pg", ROOT / "tests" / "service" / "pg.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (its dataclasses look their module up)
    spec.loader.exec_module(module)
    try:
        return module.PostgresServer.start()
    except BaseException as exc:  # pg.py skips (a pytest outcome) when PostgreSQL is not installed
        print(f"\n(PostgreSQL left out: {exc})")
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--postgres-url", default=None)
    args = parser.parse_args()
    print(__doc__.split("\n\n")[0])
    with process("sim", {"seed": 1, "ttft": 0.02, "tps": 400}) as sim:
        with tempfile.TemporaryDirectory() as folder:
            run_on("SQLite", f"sqlite:///{Path(folder) / 'bench.db'}", sim, args.runs)
        if args.no_postgres:
            return
        if args.postgres_url:
            run_on("PostgreSQL", args.postgres_url, sim, args.runs)
            return
        server = start_postgres()
        if server is not None:
            try:
                url = server.create_database("bench")
                run_on("PostgreSQL", url, sim, args.runs)
            finally:
                server.stop()


if __name__ == "__main__":
    main()
