"""Tool source benchmark: what calling a tool through a source costs over a direct async function.

Run: ``.venv/bin/python benchmarks/tools_bench.py`` (``--quick`` for fewer calls). Prints:

- MCP per-call overhead: the median wall time of one ``echo`` call through :class:`MCPTools`
  (the SDK's client and server, JSON-RPC, the process or HTTP boundary), over stdio and over
  streamable HTTP (uvicorn on loopback, in a subprocess), minus that of a direct ``async def``
  doing the same thing.
- MCP 10-way fan-out: a plan of ten ``slow(seconds=L)`` calls run by ``Orchestrator.execute_plan``
  over one MCP session; its makespan over one call's latency (1.0 is perfect overlap, 10 is
  one after another).

- OpenAPI per-call overhead and 10-way fan-out (``openapi_sections``, in ``_openapi_bench.py``):
  an OpenAPI tool against FastAPI + uvicorn on loopback, next to a direct ``async def`` and a
  bare httpx GET of the same URL.

Sections are functions returning printable lines (``mcp_sections``, ``openapi_sections``), so
other sources add theirs.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _openapi_bench import openapi_sections  # noqa: E402

from tomasulo.runtime import Orchestrator  # noqa: E402
from tomasulo.tools import MCPTools  # noqa: E402
from tomasulo.tools._net import NetPolicy  # noqa: E402

SERVER = ROOT / "tests" / "mcp" / "servers" / "basic.py"


async def _median_call(call: Callable[[], Awaitable[Any]], n: int) -> float:
    for _ in range(min(20, n)):  # warm-up
        await call()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        await call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


async def _direct(text: str) -> str:
    await anyio.lowlevel.checkpoint()
    return text


def _http_server() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, str(SERVER), "--http"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    port = proc.stdout.readline().strip()
    return proc, f"http://127.0.0.1:{port}/mcp"


async def _source_overhead(source: MCPTools, n: int) -> float:
    async with source:
        echo = {t.name: t for t in await source.list_tools()}["echo"]
        assert echo.fn is not None
        fn = echo.fn
        return await _median_call(lambda: fn(text="ping"), n)


async def _fanout(latency: float) -> tuple[float, float]:
    async with MCPTools.stdio(sys.executable, [str(SERVER)]) as source:
        orch = Orchestrator(await source.list_tools())
        one = await orch.execute_plan(f"1. slow(seconds={latency})\n2. join()\n")
        plan = "".join(f"{i}. slow(seconds={latency})\n" for i in range(1, 11)) + "11. join()\n"
        ten = await orch.execute_plan(plan)
    assert one.ok and ten.ok
    return one.makespan, ten.makespan


async def mcp_sections(quick: bool = False) -> list[str]:
    """The MCP figures, as lines to print."""
    n = 50 if quick else 300
    direct = await _median_call(lambda: _direct("ping"), n)
    stdio = await _source_overhead(MCPTools.stdio(sys.executable, [str(SERVER)]), n)
    proc, url = _http_server()
    try:
        http = await _source_overhead(
            MCPTools.http(url, net_policy=NetPolicy(allow_private_hosts=("127.0.0.1",))), n
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    latency = 0.2 if quick else 0.5
    one, ten = await _fanout(latency)
    return [
        "## MCP tools",
        f"calls per figure: {n} (median)",
        f"direct async function:        {direct * 1e6:9.1f} us per call",
        f"MCP over stdio:               {stdio * 1e3:9.2f} ms per call"
        f"  (overhead {(stdio - direct) * 1e3:.2f} ms)",
        f"MCP over streamable HTTP:     {http * 1e3:9.2f} ms per call"
        f"  (overhead {(http - direct) * 1e3:.2f} ms)",
        f"10-way fan-out of {latency:g} s calls: makespan {ten:.3f} s; one call {one:.3f} s; "
        f"ratio {ten / one:.2f} (1.0 = full overlap, 10 = serial)",
    ]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls")
    args = parser.parse_args()
    for line in await mcp_sections(args.quick):
        print(line, flush=True)
    for line in await openapi_sections(args.quick):
        print(line, flush=True)


if __name__ == "__main__":
    anyio.run(main)
