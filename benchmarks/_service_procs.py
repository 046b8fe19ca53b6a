"""The service benchmark's two servers, each in a process of its own (a real deployment's LLM
and service are other processes; here they also keep their CPU work off the client's loop).

    python benchmarks/_service_procs.py sim '{"seed": 1, "ttft": 0.02, "tps": 400}'
    python benchmarks/_service_procs.py service '{"database_url": "...", "sim_url": "..."}'

Each prints one JSON line on standard output once it listens (``{"url": ...}``, plus ``"key"``
for the service; ``"pid"`` for both) and stops when its standard input closes.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import sys
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tomasulo.testing import Latency, RecordedRequest, SimulatedLLM

#: Each plan: this many sleep tasks with log-normal durations (median 20 ms), then join.
TASKS = 4
MEDIAN_S = 0.020
SIGMA = 0.5


def _replier(seed: int) -> Any:
    rng = random.Random(seed)

    def reply(record: RecordedRequest) -> str:
        messages = record.body.get("messages") or []
        system = messages[0]["content"] if messages else ""
        if "joiner" in system:
            return json.dumps({"thought": "done", "action": "finish", "answer": "all slept"})
        lines = [
            f"{i}. sleep(seconds={min(2.0, MEDIAN_S * math.exp(rng.gauss(0, SIGMA))):.4f})"
            for i in range(1, TASKS + 1)
        ]
        return "\n".join([*lines, f"{TASKS + 1}. join()"])

    return reply


async def _until_stdin_closes() -> None:
    await anyio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)


async def sim(spec: dict[str, Any]) -> None:
    server = SimulatedLLM(
        _replier(spec["seed"]), latency=Latency(ttft=spec["ttft"], tokens_per_second=spec["tps"])
    )
    async with server.serve("127.0.0.1", 0) as url:
        print(json.dumps({"url": url, "pid": os.getpid()}), flush=True)
        await _until_stdin_closes()


CONFIG = """
models:
  sim: {{base_url: "{sim_url}", model: sim, dialect: vllm}}
default_model: sim
tools: [sleep, math]
tenants:
  bench:
    tools: ["*"]
limits:
  requests_per_minute: null
  max_concurrent_runs: 1000
  max_sse_connections: 2000
  max_body_bytes: 1048576
"""


async def service(spec: dict[str, Any]) -> None:
    import tempfile

    from tomasulo.service import load_service_config, prepare, serve

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "service.yaml"
        path.write_text(CONFIG.format(sim_url=spec["sim_url"]), encoding="utf-8")
        config = load_service_config(path)
    prepared = prepare(config, database_url=spec["database_url"])
    key = prepared.db.create_key("bench", "member", "bench")[1]
    listening = anyio.Event()
    found: dict[str, str] = {}

    def on_listening(url: str) -> None:
        found["url"] = url
        listening.set()

    async def stop_when_stdin_closes() -> None:
        await listening.wait()
        print(json.dumps({"url": found["url"], "key": key, "pid": os.getpid()}), flush=True)
        await _until_stdin_closes()
        os.kill(os.getpid(), signal.SIGTERM)  # uvicorn's own graceful stop

    async with anyio.create_task_group() as tg:
        tg.start_soon(stop_when_stdin_closes)
        await serve(prepared, host="127.0.0.1", port=0, out=sys.stderr, on_listening=on_listening)
        tg.cancel_scope.cancel()
    prepared.db.close()


if __name__ == "__main__":
    kind, spec = sys.argv[1], json.loads(sys.argv[2])
    anyio.run({"sim": sim, "service": service}[kind], spec)
