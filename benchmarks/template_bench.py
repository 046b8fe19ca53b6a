"""Answer templates against a joiner call (issue 16): streaming runs, with and without templates.

Run: ``.venv/bin/python benchmarks/template_bench.py`` (``--n 10`` questions per workload,
``--preset llama-8b-1xh100``, ``--workloads parallelqa movie``; tools as in ``e2e_bench.py``).

Each question of the ParallelQA-shaped and movie-shaped workloads (``_workloads.py``) runs in
the streaming mode twice through the real Orchestrator, over real HTTP, against a SimulatedLLM
in its own process with the preset's latency model (prefill and prefix cache included): once
with plans that end in ``join()`` and a joiner call that writes the answer, once with plans
that end in an answer template (``_templates.py``), which the run renders with no joiner call.
It prints the mean makespans, the template mode's oracle (each task at ``max(line emitted,
inputs done)``, the answer when the last line is out and every task is done, prefill not
counted), the LLM calls, and the speedup; the goal is 1.25x or more under the 8B preset.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _templates import make_template_replier, template_oracle  # noqa: E402
from _workloads import (  # noqa: E402
    DATASETS_ENV,
    Item,
    check_datasets,
    default_datasets,
    load_items,
    make_tools,
    simulator_process,
)

from tomasulo.planner import LLM  # noqa: E402
from tomasulo.runtime import Orchestrator, RunResult  # noqa: E402
from tomasulo.testing import LATENCY_PRESETS, RecordedRequest, SimulatedLLM  # noqa: E402

GOAL = 1.25
WORKLOADS = ("parallelqa", "movie")


# -- the simulated model, in its own process ----------------------------------------------------


async def serve(spec: dict[str, Any]) -> None:
    """``--serve SPEC``: a SimulatedLLM answering every question; prints its URL, stops at EOF."""
    from _simserver import prewarm

    items = [
        item
        for workload in spec["workloads"]
        for item in load_items(workload, spec["n"], datasets=Path(spec["datasets"]), seed=spec["seed"])
    ]
    prewarm(items)
    replier = make_template_replier(items, templates=spec["templates"])

    def script(req: RecordedRequest) -> str:
        return replier(req.body)[2]

    sim = SimulatedLLM(script, latency=LATENCY_PRESETS[spec["preset"]])
    async with sim.serve() as url:
        print(url, flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)


@contextmanager
def sim_process(args: argparse.Namespace, templates: bool) -> Iterator[str]:
    spec = {
        "workloads": args.workloads,
        "n": args.n,
        "seed": args.seed,
        "datasets": str(args.datasets),
        "preset": args.preset,
        "templates": templates,
    }
    with simulator_process([__file__, "--serve", json.dumps(spec)]) as url:
        yield url


# -- running ------------------------------------------------------------------------------------


async def run_all(url: str, items: Sequence[Item], args: argparse.Namespace) -> list[tuple[Item, RunResult]]:
    tools = make_tools(median=args.tool_median, sigma=args.tool_sigma, seed=args.seed)
    llm = LLM(url, model="simulated-llm", dialect="vllm")
    orch = Orchestrator(tools, llm, mode="stream")
    limiter = anyio.CapacityLimiter(args.concurrency)
    rows: list[tuple[Item, RunResult]] = []

    async def one(item: Item, delay: float) -> None:
        await anyio.sleep(delay)
        async with limiter:
            rows.append((item, await orch.run(item.question)))

    try:
        await orch.run(items[0].question)  # warm up: connections, imports, caches
        async with anyio.create_task_group() as tg:
            for i, item in enumerate(items):
                tg.start_soon(one, item, i * args.stagger)
    finally:
        await llm.aclose()
    order = {it.name: i for i, it in enumerate(items)}
    return sorted(rows, key=lambda r: order[r[0].name])


def problem(item: Item, result: RunResult, templates: bool) -> str | None:
    """Why a run is not comparable, or ``None``."""
    if result.status != "finished":
        return f"status {result.status}: {result.reason}"
    want = "template" if templates else "joiner"
    if result.answered_by != want:
        return f"answered by {result.answered_by}, expected {want}"
    if result.llm_calls != (1 if templates else 2):
        return f"{result.llm_calls} LLM calls"
    for step in item.steps:
        try:
            task = result.task(step.id)
        except KeyError:
            return f"task {step.id} never ran"
        if task.tool != step.tool or task.status != "succeeded":
            return f"task {step.id}: {task.tool} {task.status}"
    return None


def oracle_of(item: Item, result: RunResult, ttft: float, tps: float) -> float:
    durations = {}
    for step in item.steps:
        task = result.task(step.id)
        assert task.started is not None and task.finished is not None
        durations[step.id] = task.finished - task.started
    return template_oracle(item, durations, ttft=ttft, tps=tps)


async def bench(args: argparse.Namespace) -> int:
    check_datasets(args.datasets, args.workloads)
    preset = LATENCY_PRESETS[args.preset]
    tps = preset.tokens_per_second or float("inf")
    print(
        f"preset {args.preset}: ttft {preset.ttft * 1000:g} ms, {tps:g} tokens/s, prefill "
        f"{preset.prefill_tokens_per_second or 0:g} tokens/s; tools: log-normal median "
        f"{args.tool_median:g} s, sigma {args.tool_sigma:g}; {args.n} questions per workload, "
        f"{args.concurrency} at once, {args.stagger:g} s apart"
    )
    items = {w: load_items(w, args.n, datasets=args.datasets, seed=args.seed) for w in args.workloads}
    flat = [it for w in args.workloads for it in items[w]]
    results: dict[bool, dict[str, tuple[Item, RunResult]]] = {}
    bad = 0
    started = time.monotonic()
    for templates in (False, True):
        with sim_process(args, templates) as url:
            rows = await run_all(url, flat, args)
        results[templates] = {}
        for item, result in rows:
            why = problem(item, result, templates)
            if why is not None:
                bad += 1
                print(f"  ! {item.name} {'template' if templates else 'joiner'}: {why}", file=sys.stderr)
                continue
            results[templates][item.name] = (item, result)
    print(f"\n{'workload':<12}{'mode':<22}{'runs':>5}{'makespan':>10}{'oracle':>9}{'ratio':>7}{'calls':>7}")
    met = True
    summary: list[tuple[str, float, float, bool]] = []
    for w in args.workloads:
        names = [it.name for it in items[w] if it.name in results[False] and it.name in results[True]]
        joiner = [results[False][n][1].makespan for n in names]
        template = [results[True][n][1].makespan for n in names]
        bounds = [oracle_of(*results[True][n], preset.ttft, tps) for n in names]
        mj, mt, mo = statistics.fmean(joiner), statistics.fmean(template), statistics.fmean(bounds)
        print(f"{w:<12}{'stream + joiner call':<22}{len(names):>5}{mj:>9.3f}s{'':>9}{'':>7}{2:>7}")
        print(f"{w:<12}{'stream + template':<22}{len(names):>5}{mt:>9.3f}s{mo:>8.3f}s{mt / mo:>7.3f}{1:>7}")
        speedup = mj / mt
        ok = speedup >= GOAL
        met = met and ok
        summary.append((w, speedup, mj / mo, ok))
    print(f"\ngoal: makespan with templates at least {GOAL}x lower than with a joiner call ({args.preset}):")
    for w, speedup, ceiling, ok in summary:
        print(
            f"  {'met   ' if ok else 'MISSED'}  {w}: {speedup:.2f}x (ceiling: joiner-call makespan "
            f"over the template oracle, {ceiling:.2f}x)"
        )
    print(f"({time.monotonic() - started:.0f} s of benchmark)")
    return 1 if bad else 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=10, help="questions per workload (default 10)")
    p.add_argument("--preset", choices=sorted(LATENCY_PRESETS), default="llama-8b-1xh100")
    p.add_argument("--tool-median", type=float, default=0.5, help="median tool latency, s (default 0.5)")
    p.add_argument("--tool-sigma", type=float, default=0.5, help="log-normal sigma (default 0.5)")
    p.add_argument("--concurrency", type=int, default=10, help="questions run at once (default 10)")
    p.add_argument("--stagger", type=float, default=0.2, help="seconds between run starts (default 0.2)")
    p.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    p.add_argument("--seed", type=int, default=0, help="picks the questions and the tool latencies")
    p.add_argument(
        "--datasets",
        type=Path,
        default=default_datasets(ROOT),
        help=f"the LLMCompiler question sets (default: ${DATASETS_ENV}, else ../shared/datasets)",
    )
    return p.parse_args(argv)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        anyio.run(serve, json.loads(sys.argv[2]))
    else:
        sys.exit(anyio.run(bench, parse_args()))
