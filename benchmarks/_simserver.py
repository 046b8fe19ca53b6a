"""The benchmark's simulated model, served from a process of its own.

``e2e_bench.py`` starts it so that the simulator's own CPU work (compiling and checking every
request's grammar with llguidance) never stalls the orchestrator's event loop: a real model server
is another machine. It prints its base URL and stops when its standard input closes. Each
request's record (arrival time on the shared monotonic clock, question, kind of call, prompt,
cached and completion tokens, the modelled time to first token) is served as JSON at
``GET /bench/calls?after=N`` (the records from the N-th on), once the request has been answered.

    python benchmarks/_simserver.py '{"workloads": ["movie"], "n": 2, ..., "latency": {...}}'

``latency`` holds the :class:`~tomasulo.testing.Latency` fields (a preset's, or a flat
``ttft``/``tokens_per_second``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _workloads import Item, load_items, make_replier, make_tools

from tomasulo.grammar import build_grammar, joiner_schema
from tomasulo.testing import Latency, RecordedRequest, Reply, SimulatedLLM, count_tokens, find_constraint


def build(spec: dict[str, Any]) -> SimulatedLLM:
    """A SimulatedLLM answering every question of the spec's workloads in every mode."""
    items = [
        item
        for workload in spec["workloads"]
        for item in load_items(
            workload, spec["n"], datasets=Path(spec["datasets"]), seed=spec["seed"], thoughts=spec["thoughts"]
        )
    ]
    prewarm(items)
    replier = make_replier(items)
    calls: list[tuple[RecordedRequest, str, str, int]] = []

    def script(req: RecordedRequest) -> Reply:
        item, kind, reply = replier(req.body)
        completion = count_tokens(reply.text or "") + sum(
            count_tokens(c.name) + count_tokens(c.arguments_json()) for c in reply.tool_calls
        )
        calls.append((req, item.name, kind, completion))
        return reply

    sim = SimulatedLLM(script, latency=Latency(**spec["latency"]))

    async def served(request: Request) -> JSONResponse:
        after = int(request.query_params.get("after", "0"))
        out = [
            {
                "t": req.time,
                "name": name,
                "kind": kind,
                "prompt_tokens": count_tokens(req.prompt),
                "cached_tokens": req.cached_tokens,
                "completion_tokens": completion,
                "ttft": req.ttft,
                "stream": req.stream,
            }
            for req, name, kind, completion in calls[after:]
        ]
        return JSONResponse(out)

    sim.app.router.routes.append(Route("/bench/calls", served, methods=["GET"]))
    return sim


def prewarm(items: list[Item]) -> None:
    """Compile every grammar the runs will send before serving (the simulator caches them).

    Converting a plan grammar takes the simulator a tenth of a second or more of CPU; done on
    the request path it would stall every stream in flight, which no real server does.
    """
    tools = make_tools(median=1.0, sigma=0.0, seed=0)  # same schemas as the client's tools
    last = max(len(item.steps) for item in items) + 2
    for max_tasks in (1, 32):
        for start in range(1, last + 1):
            gbnf = build_grammar(tools, max_tasks=max_tasks, start_id=start).gbnf()
            find_constraint("/v1/chat/completions", {"structured_outputs": {"grammar": gbnf}})
    find_constraint("/v1/chat/completions", {"structured_outputs": {"json": joiner_schema()}})


async def main(spec: dict[str, Any]) -> None:
    sim = build(spec)
    async with sim.serve() as url:
        print(url, flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)


if __name__ == "__main__":
    anyio.run(main, json.loads(sys.argv[1]))
