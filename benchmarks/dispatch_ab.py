"""Paired A/B of the dispatcher's hot path: two source trees, alternated, on one CPU.

Run: ``.venv/bin/python benchmarks/dispatch_ab.py TREE_A TREE_B [--rounds 4] [--listen]``
(each tree is a checkout of this repository; ``--listen`` sets an ``on_event`` callback, so every
event object is built as it happens).

Each round runs one process per tree, A then B; each process times ``Dispatcher.run_plan`` on
three 2,000-task random DAGs of instant async tools (``dispatch_bench.py``'s instant section)
five times each, and streams them one task per loop step for the dispatch latency. It prints,
per tree, the median over rounds of each process's best throughput and its streamed p50
latency, and B over A. On a shared machine the best of many runs and the median over
alternated rounds are what stays stable; a single run is not.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import gc, json, os, sys, time
sys.path.insert(0, os.path.join(sys.argv[1], "benchmarks"))
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
import anyio
from dispatch_bench import SCHEMA, dispatch_latencies, instant, pct, random_dag
from tomasulo.dispatcher import Dispatcher
from tomasulo.tools import Tool, Toolset

async def main() -> None:
    listen = sys.argv[2] == "1"
    tools = Toolset([Tool(name="t", input_schema=SCHEMA, fn=instant)])
    plans = [random_dag(2000, seed) for seed in range(3)]
    await Dispatcher.run_plan(tools, random_dag(2000, 99))  # warm up
    best = float("inf")
    for _ in range(5):
        for plan in plans:
            gc.collect()
            t0 = time.perf_counter()
            await Dispatcher.run_plan(tools, plan, on_event=(lambda e: None) if listen else None)
            best = min(best, time.perf_counter() - t0)
    lat = []
    for plan in plans:
        async def stream(plan=plan):
            for task in plan.tasks:
                yield task
                await anyio.lowlevel.checkpoint()
        gc.collect()
        lat.extend(dispatch_latencies(plan, await Dispatcher.run_plan(tools, stream())))
    print(json.dumps({"throughput": 2000 / best, "streamed_p50_us": pct(lat, 0.5) * 1e6}))

anyio.run(main)
"""


def measure(tree: Path, listen: bool) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(tree), "1" if listen else "0"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("a", type=Path, help="source tree A (the baseline)")
    parser.add_argument("b", type=Path, help="source tree B")
    parser.add_argument("--rounds", type=int, default=4, help="alternated rounds (default 4)")
    parser.add_argument("--listen", action="store_true", help="with an on_event callback")
    opts = parser.parse_args()
    runs: dict[str, list[dict[str, float]]] = {"A": [], "B": []}
    for r in range(opts.rounds):
        for side, tree in (("A", opts.a), ("B", opts.b)):
            got = measure(tree.resolve(), opts.listen)
            runs[side].append(got)
            tput, p50 = got["throughput"], got["streamed_p50_us"]
            print(f"round {r + 1} {side}: {tput:8.0f} tasks/s  p50 {p50:5.1f} us")
    med = {s: {k: statistics.median(x[k] for x in v) for k in v[0]} for s, v in runs.items()}
    for side in ("A", "B"):
        m = med[side]
        print(f"{side} median: {m['throughput']:8.0f} tasks/s  streamed p50 {m['streamed_p50_us']:5.1f} us")
    print(
        f"B/A: throughput {med['B']['throughput'] / med['A']['throughput']:.3f}, "
        f"streamed p50 {med['B']['streamed_p50_us'] / med['A']['streamed_p50_us']:.3f}"
    )


if __name__ == "__main__":
    main()
