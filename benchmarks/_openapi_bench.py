"""OpenAPI tool benchmark (a section of ``tools_bench.py``; also runs alone).

Run: ``.venv/bin/python benchmarks/_openapi_bench.py`` (``--quick`` for fewer calls). Prints:

- OpenAPI per-call overhead: the median wall time of one ``getItem(item_id=...)`` call through
  :class:`OpenAPITools` (argument mapping, the SSRF check and pinning, httpx, uvicorn + FastAPI on
  loopback, JSON parsing) next to a direct ``async def`` and to a bare ``httpx`` GET of the same
  URL on a plain client (so the server's and httpx's share can be told apart from ours).
- OpenAPI 10-way fan-out: a plan of ten ``slow(seconds=L)`` operations run by
  ``Orchestrator.execute_plan``; its makespan over one call's latency (1.0 is full overlap).
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tomasulo.runtime import Orchestrator  # noqa: E402
from tomasulo.tools import OpenAPITools  # noqa: E402
from tomasulo.tools._net import NetPolicy  # noqa: E402

LOOPBACK = NetPolicy(allow_private_hosts=("127.0.0.1",))


def _app() -> Any:
    from fastapi import FastAPI

    app = FastAPI(title="bench")

    @app.get("/items/{item_id}", operation_id="getItem")
    async def get_item(item_id: int) -> dict[str, Any]:
        return {"id": item_id, "name": "thing"}

    @app.get("/slow", operation_id="slow")
    async def slow(seconds: float) -> float:
        await anyio.sleep(seconds)
        return seconds

    return app


@contextlib.contextmanager
def _serve() -> Iterator[str]:
    """uvicorn in a subprocess (so the server does not share this process's GIL)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "_openapi_bench:_app", "--port", str(port)]
    cmd += ["--log-level", "warning", "--lifespan", "off", "--app-dir", str(Path(__file__).parent)]
    proc = subprocess.Popen(cmd)
    try:
        deadline = time.monotonic() + 30
        while True:  # wait for the port to accept (start-up of a separate process)
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the benchmark server did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


async def _median(call: Callable[[], Awaitable[Any]], n: int) -> float:
    for _ in range(min(20, n)):  # warm-up
        await call()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        await call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


async def _direct(item_id: int) -> dict[str, Any]:
    await anyio.lowlevel.checkpoint()
    return {"id": item_id, "name": "thing"}


async def openapi_sections(quick: bool = False) -> list[str]:
    """The OpenAPI figures, as lines to print."""
    n = 50 if quick else 300
    latency = 0.2 if quick else 0.5
    app = _app()
    with _serve() as url:
        direct = await _median(lambda: _direct(7), n)
        async with httpx.AsyncClient(trust_env=False) as plain:

            async def bare() -> Any:
                response = await plain.get(f"{url}/items/7")
                return response.json()

            raw = await _median(bare, n)
        async with OpenAPITools.from_spec(app.openapi(), base_url=url, policy=LOOPBACK) as source:
            tools = {t.name: t for t in await source.list_tools()}
            get_item = tools["getItem"]
            assert get_item.fn is not None
            fn = get_item.fn
            tool = await _median(lambda: fn(item_id=7), n)
            orch = Orchestrator(list(tools.values()))
            one = await orch.execute_plan(f"1. slow(seconds={latency})\n2. join()\n")
            plan = "".join(f"{i}. slow(seconds={latency})\n" for i in range(1, 11)) + "11. join()\n"
            ten = await orch.execute_plan(plan)
    assert one.ok and ten.ok
    return [
        "## OpenAPI tools (FastAPI + uvicorn on loopback)",
        f"calls per figure: {n} (median)",
        f"direct async function:        {direct * 1e6:9.1f} us per call",
        f"bare httpx GET, same server:  {raw * 1e3:9.2f} ms per call",
        f"OpenAPI tool:                 {tool * 1e3:9.2f} ms per call"
        f"  (overhead {(tool - direct) * 1e3:.2f} ms over direct, "
        f"{(tool - raw) * 1e3:.2f} ms over bare httpx)",
        f"10-way fan-out of {latency:g} s calls: makespan {ten.makespan:.3f} s; one call "
        f"{one.makespan:.3f} s; ratio {ten.makespan / one.makespan:.2f} (1.0 = full overlap, 10 = serial)",
    ]


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls")
    args = parser.parse_args()
    for line in await openapi_sections(args.quick):
        print(line, flush=True)


if __name__ == "__main__":
    anyio.run(main)
